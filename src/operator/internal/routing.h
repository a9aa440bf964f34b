/// Routing decisions of the operator module, as functions over one write transaction: who is free, who gets a
/// dialog, which group a handover belongs to, serving the queues. Used by OperatorService only; every caller runs
/// them inside a single store write, which is what makes "no dialog assigned twice, capacity never exceeded" hold.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/store.h"

namespace parley::operators::internal {

namespace json = boost::json;

/// Creates the operator's row (offline, default capacity) when missing.
void ensure_operator(store::Tx& tx, const std::string& user_id, std::int64_t now);

/// Whether an operator status exists (built-in or custom), and whether it accepts dialogs.
std::optional<bool> status_accepts(store::Tx& tx, std::string_view status);

/// The operator who gets the next dialog of `group_id` ("" = no group: every operator), by the group's policy
/// (least_busy, round_robin, by_skill; no group: least busy), among operators whose status accepts dialogs and who
/// have room, except `avoid` (the operator who handed the dialog on); "" when none. Round robin advances the
/// group's pointer, so call it only when you assign.
std::string pick_operator(store::Tx& tx, const std::string& group_id, const std::string& avoid = {});

/// Whether anyone who could serve `group_id` is in a status that accepts dialogs (room or not).
bool anyone_available(store::Tx& tx, const std::string& group_id);

/// Assigns the dialog to `user_id` (state, times, the operator's load; clears avoid_operator). The caller has
/// checked the room.
void assign(store::Tx& tx, const std::string& dialog_id, const std::string& user_id, std::int64_t now);

/// The dialog leaves `user_id` (load - 1, never below 0).
void unload(store::Tx& tx, const std::string& user_id);

/// Whether the operator has room for one more dialog (an existing row and active < capacity).
bool has_room(store::Tx& tx, const std::string& user_id);

/// The group a handover goes to: the first segment rule whose condition matches `card`, else the subject's
/// group, else "".
std::string group_for(store::Tx& tx, std::string_view subject, const json::object& card);

/// Serves the queues: queued dialogs oldest first, each to a free operator of its group; a group whose first
/// waiting dialog finds nobody is skipped for the rest of the pass (its order is kept). Returns (dialog, user).
std::vector<std::pair<std::string, std::string>> dispatch(store::Tx& tx, std::int64_t now);

/// ISO-8601 UTC ("2026-11-24", "2026-11-24T10:00:00Z", "...T10:00:00.123Z") → ms; nullopt when malformed.
std::optional<std::int64_t> parse_time(std::string_view text);

/// `[a-z0-9_.-]{1,max}`.
bool valid_alias(std::string_view text, std::size_t max);

}  // namespace parley::operators::internal

/// Transaction-level building blocks of the client directory: rows ↔ cards, merged-id resolution, matching by
/// phone/e-mail keys, merging, client field definitions and value checks, and what other modules' tables tell
/// about a client (dialogs, channels). Every function runs inside the caller's read or write transaction.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clients/clients.h"
#include "store/store.h"

namespace parley::clients::internal {

/// The columns client_from_row() reads, over the alias `c`.
inline constexpr const char* kClientColumns =
    "c.id, c.name, c.phone, c.email, c.language, c.fields, c.created_at, c.last_seen_at";

Client client_from_row(const store::Row& row);
std::optional<Client> load_client(store::Tx& tx, std::string_view id);
/// The survivor a merged id now resolves to, or nullopt when `id` was never merged.
std::optional<std::string> resolve_merged(store::Tx& tx, std::string_view id);
/// Live cards with this phone key or e-mail key (each ignored when empty), oldest first, at most
/// kMaxAutoMergeMatches + 1.
std::vector<std::string> matching_clients(store::Tx& tx, const std::string& phone_key, const std::string& email_key);
/// Writes every standard field, the custom fields and the match keys of `c`.
void save_client(store::Tx& tx, const Client& c);

/// Auto-merge: merges every other card sharing `id`'s phone key or e-mail key into the oldest of them (unless more
/// than kMaxAutoMergeMatches share it). Returns the surviving id (`id` itself when nothing matched).
std::string link_by_keys(store::Tx& tx, const std::string& id, std::int64_t now_ms);

/// Merges card `absorbed` into `survivor` (both live, different): combines fields (the survivor's non-empty
/// values win, then the absorbed card's; custom fields: the survivor's keys win, the others are added; first
/// seen = the earlier, last seen = the later), re-points every `client_id` column of other modules' tables and the
/// subscriptions (on a topic both have, the newer choice wins), records the merge (with a snapshot of the
/// absorbed card) so its id keeps resolving, and deletes the absorbed row. Returns rows moved per table.
json::object merge_into(store::Tx& tx, const std::string& survivor, const std::string& absorbed,
                        std::string_view reason, const core::Principal* actor, std::int64_t now_ms);

/// Tables of other modules with a `client_id` column (the convention for referring to a card), by name.
std::vector<std::string> referencing_tables(store::Tx& tx);
/// Whether any such table refers to `id`.
bool referenced_elsewhere(store::Tx& tx, const std::string& id);

/// Which other modules' tables exist (the clients module reads them only when present).
struct Schema {
    bool dialogs = false;
    bool channels = false;
    bool identities = false;
};
Schema probe_schema(store::Tx& tx);

/// The distinct channel kinds (or channel ids / "preview" / "api" when there is no channel row) of a client.
json::array channel_kinds(store::Tx& tx, const Schema& schema, const std::string& client_id);

// ---- client fields ----
using FieldMap = std::map<std::string, ClientField, std::less<>>;
ClientField field_from_row(const store::Row& row);
inline constexpr const char* kFieldColumns =
    "name, label, description, type, options, indexed, position, created_at, updated_at";
/// Every definition, in position order.
std::vector<ClientField> load_fields(store::Tx& tx);
FieldMap field_map(store::Tx& tx);
std::optional<FieldType> parse_field_type(std::string_view text);
/// A name no client field may take (standard fields and card keys).
bool reserved_field_name(std::string_view name);
/// `[a-z][a-z0-9_]{0,63}`.
bool valid_field_name(std::string_view name);
/// `[a-z0-9][a-z0-9_-]{0,63}` (segments, topics).
bool valid_slug(std::string_view name);
/// Checks (and, with `lenient`, converts from text: "12" → 12, "true" → true) one value of a field. Returns the
/// problem, or nullopt.
std::optional<std::string> check_value(const ClientField& field, json::value& value, bool lenient);
/// YYYY-MM-DD with a real calendar day.
bool valid_date(std::string_view text);
/// Appends core::format_time(ms) (`2024-05-01T10:00:00.000Z`) without formatting machinery (the export writes
/// two per row).
void append_iso_time(std::string& out, std::int64_t ms);

/// The SQL expression of a custom field's value (`json_extract(c.fields, '$."name"')`); `alias` "" drops `c.`.
std::string field_expression(std::string_view name, bool with_alias = true);

}  // namespace parley::clients::internal

/// Validation of Action Jail API input: action names, tags, events, the params schema and per-action limits.
/// Every problem throws core::BadRequest (or TooLarge) naming the field; nothing here touches storage.
#pragma once

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jail/sandbox.h"

namespace parley::jail::internal {

namespace json = boost::json;

/// Limits an action sets; absent fields fall back to JailOptions::defaults.
struct LimitOverrides {
    std::optional<std::int64_t> timeout_ms, cpu_ms, memory_mb, output_kb, max_fetches;
    bool operator==(const LimitOverrides&) const = default;
};

/// A create or update body after validation. Absent optionals mean "unchanged" for updates.
struct ActionDraft {
    std::optional<std::string> name;
    std::optional<std::string> code;
    std::optional<std::string> description;
    std::optional<json::object> params;  ///< as given (shorthand or full schema), validated
    std::optional<std::vector<std::string>> events;
    std::optional<std::vector<std::string>> tags;
    std::optional<LimitOverrides> limits;
    std::optional<bool> enabled;
    std::optional<std::string> note;  ///< a comment on the version this change creates
};

/// `[a-z0-9_]{1,64}`.
bool is_valid_action_name(std::string_view name);
/// `[a-z0-9_-]{1,32}`.
bool is_valid_tag(std::string_view tag);

/// Parses a POST (creating: name and code required) or PUT body.
ActionDraft parse_action_body(const json::object& body, bool creating, const JailOptions& options);

/// The params as a JSON-Schema-like object for the action registry and the builder:
/// `{"type":"object","properties":{...},"required":[...]}`. Accepts the full form or the shorthand
/// `{"order_id": {"type": "string", "required": true}}` (throws BadRequest `invalid_params` otherwise).
json::object normalize_params(const json::object& params);

/// Fills absent params that declare a `default` (the schema must come from normalize_params).
void apply_param_defaults(const json::object& schema, json::object& params);

LimitOverrides parse_limits(const json::value& value, const Limits& maxima);
json::object limits_to_json(const LimitOverrides& limits);
LimitOverrides limits_from_json(const json::value& value);  ///< stored form; tolerant
Limits effective_limits(const LimitOverrides& overrides, const Limits& defaults);
json::object effective_limits_json(const Limits& limits);

}  // namespace parley::jail::internal

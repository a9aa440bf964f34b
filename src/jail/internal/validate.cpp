#include "jail/internal/validate.h"

#include <fmt/format.h>

#include <set>

#include "core/error.h"
#include "core/json.h"

namespace parley::jail::internal {

namespace {

constexpr std::size_t kMaxDescription = 2000;
constexpr std::size_t kMaxNote = 500;
constexpr std::size_t kMaxTags = 20;
constexpr std::size_t kMaxEvents = 50;
constexpr std::size_t kMaxParams = 100;
constexpr std::size_t kMaxParamsBytes = 64 * 1024;

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

[[noreturn]] void bad(std::string_view name, const std::string& message, std::string code = "invalid_field") {
    throw core::BadRequest(message, std::move(code), field(name));
}

bool is_word(std::string_view s, std::size_t max, bool dash) {
    if (s.empty() || s.size() > max) return false;
    for (char c : s) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (dash && c == '-'))) return false;
    }
    return true;
}

bool is_param_name(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
    for (char c : s) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
    }
    return true;
}

std::vector<std::string> word_list(const json::object& body, std::string_view key, std::size_t max_items,
                                   bool (*valid)(std::string_view), std::string_view rule) {
    const json::array* items = core::optional_array(body, key);
    std::vector<std::string> out;
    if (!items) return out;
    if (items->size() > max_items) bad(key, fmt::format("'{}' has more than {} items", key, max_items), "too_many_items");
    std::set<std::string> seen;
    for (const auto& item : *items) {
        if (!item.is_string() || !valid(item.as_string())) {
            bad(key, fmt::format("each item of '{}' must be a string matching {}", key, rule));
        }
        std::string text(item.as_string());
        if (!seen.insert(text).second) bad(key, fmt::format("'{}' lists '{}' twice", key, text));
        out.push_back(std::move(text));
    }
    return out;
}

bool valid_event(std::string_view s) { return is_word(s, 64, false); }
bool valid_tag(std::string_view s) { return is_word(s, 32, true); }

const std::set<std::string, std::less<>> kTypes = {"string", "number", "integer", "boolean", "object", "array"};

json::object normalize_property(std::string_view name, const json::value& spec, bool& required) {
    if (!spec.is_object()) bad("params", fmt::format("param '{}' must be an object like {{\"type\": \"string\"}}", name), "invalid_params");
    const json::object& in = spec.as_object();
    json::object out;
    for (const auto& [key, value] : in) {
        if (key == "type") {
            if (!value.is_string() || !kTypes.count(value.as_string())) {
                bad("params", fmt::format("param '{}': type must be one of string, number, integer, boolean, object, array", name), "invalid_params");
            }
            out["type"] = value;
        } else if (key == "description" || key == "title") {
            if (!value.is_string() || value.as_string().size() > kMaxDescription) {
                bad("params", fmt::format("param '{}': {} must be a string", name, std::string_view(key)), "invalid_params");
            }
            out[key] = value;
        } else if (key == "required") {
            if (!value.is_bool()) bad("params", fmt::format("param '{}': required must be true or false", name), "invalid_params");
            required = value.as_bool();
        } else if (key == "enum") {
            if (!value.is_array() || value.as_array().empty() || value.as_array().size() > 100) {
                bad("params", fmt::format("param '{}': enum must be a non-empty list", name), "invalid_params");
            }
            out["enum"] = value;
        } else if (key == "default" || key == "example" || key == "items" || key == "format") {
            out[key] = value;
        } else {
            bad("params", fmt::format("param '{}': unknown key '{}'", name, std::string_view(key)), "invalid_params");
        }
    }
    return out;
}

std::int64_t limit_value(const json::object& obj, std::string_view key, std::int64_t min, std::int64_t max) {
    const json::value& v = obj.at(key);
    std::int64_t n = 0;
    if (v.is_int64()) {
        n = v.as_int64();
    } else if (v.is_uint64() && v.as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
        n = static_cast<std::int64_t>(v.as_uint64());
    } else {
        bad(std::string("limits.") + std::string(key), fmt::format("'limits.{}' must be a whole number", key), "wrong_type");
    }
    if (n < min || n > max) {
        bad(std::string("limits.") + std::string(key),
            fmt::format("'limits.{}' must be from {} to {} (the instance maximum)", key, min, max), "limit_out_of_range");
    }
    return n;
}

}  // namespace

bool is_valid_action_name(std::string_view name) { return is_word(name, 64, false); }
bool is_valid_tag(std::string_view tag) { return valid_tag(tag); }

json::object normalize_params(const json::object& params) {
    const bool full = params.contains("properties") ||
                      (params.contains("type") && params.at("type").is_string() && params.at("type").as_string() == "object");
    json::object properties;
    json::array required;
    if (full) {
        for (const auto& [key, value] : params) {
            if (key != "type" && key != "properties" && key != "required" && key != "description" &&
                key != "additionalProperties") {
                bad("params", fmt::format("params schema: unknown key '{}'", std::string_view(key)), "invalid_params");
            }
        }
        if (params.contains("type") && params.at("type") != "object") bad("params", "params schema: type must be \"object\"", "invalid_params");
        const json::value* props = params.if_contains("properties");
        if (props && !props->is_object()) bad("params", "params schema: properties must be an object", "invalid_params");
        std::set<std::string> names;
        if (props) {
            if (props->as_object().size() > kMaxParams) bad("params", fmt::format("at most {} params", kMaxParams), "too_many_items");
            for (const auto& [name, spec] : props->as_object()) {
                if (!is_param_name(name)) bad("params", fmt::format("param name '{}' must match [A-Za-z_][A-Za-z0-9_]{{0,63}}", std::string_view(name)), "invalid_params");
                bool req = false;
                properties[name] = normalize_property(name, spec, req);
                if (req) required.emplace_back(name);
                names.insert(std::string(name));
            }
        }
        if (const json::value* req = params.if_contains("required")) {
            if (!req->is_array()) bad("params", "params schema: required must be a list of param names", "invalid_params");
            for (const auto& r : req->as_array()) {
                if (!r.is_string() || !names.count(std::string(r.as_string()))) {
                    bad("params", "params schema: required lists a param that is not declared", "invalid_params");
                }
                if (std::find(required.begin(), required.end(), r) == required.end()) required.push_back(r);
            }
        }
    } else {
        if (params.size() > kMaxParams) bad("params", fmt::format("at most {} params", kMaxParams), "too_many_items");
        for (const auto& [name, spec] : params) {
            if (!is_param_name(name)) bad("params", fmt::format("param name '{}' must match [A-Za-z_][A-Za-z0-9_]{{0,63}}", std::string_view(name)), "invalid_params");
            bool req = false;
            properties[name] = normalize_property(name, spec, req);
            if (req) required.emplace_back(name);
        }
    }
    return json::object{{"type", "object"}, {"properties", std::move(properties)}, {"required", std::move(required)}};
}

void apply_param_defaults(const json::object& schema, json::object& params) {
    const json::value* props = schema.if_contains("properties");
    if (!props || !props->is_object()) return;
    for (const auto& [name, spec] : props->as_object()) {
        if (!spec.is_object() || params.contains(name)) continue;
        if (const json::value* d = spec.as_object().if_contains("default")) params[name] = *d;
    }
}

LimitOverrides parse_limits(const json::value& value, const Limits& m) {
    if (!value.is_object()) bad("limits", "'limits' must be an object", "wrong_type");
    const json::object& obj = value.as_object();
    core::reject_unknown_fields(obj, {"timeout_ms", "cpu_ms", "memory_mb", "output_kb", "max_fetches"});
    LimitOverrides out;
    if (obj.contains("timeout_ms")) out.timeout_ms = limit_value(obj, "timeout_ms", 1, m.timeout_ms);
    if (obj.contains("cpu_ms")) out.cpu_ms = limit_value(obj, "cpu_ms", 1, m.cpu_ms);
    if (obj.contains("memory_mb")) out.memory_mb = limit_value(obj, "memory_mb", 1, m.memory_mb);
    if (obj.contains("output_kb")) out.output_kb = limit_value(obj, "output_kb", 1, m.output_kb);
    if (obj.contains("max_fetches")) out.max_fetches = limit_value(obj, "max_fetches", 0, m.max_fetches);
    return out;
}

json::object limits_to_json(const LimitOverrides& l) {
    json::object out;
    if (l.timeout_ms) out["timeout_ms"] = *l.timeout_ms;
    if (l.cpu_ms) out["cpu_ms"] = *l.cpu_ms;
    if (l.memory_mb) out["memory_mb"] = *l.memory_mb;
    if (l.output_kb) out["output_kb"] = *l.output_kb;
    if (l.max_fetches) out["max_fetches"] = *l.max_fetches;
    return out;
}

LimitOverrides limits_from_json(const json::value& value) {
    LimitOverrides out;
    if (!value.is_object()) return out;
    auto get = [&](std::string_view key) -> std::optional<std::int64_t> {
        const json::value* v = value.as_object().if_contains(key);
        if (v && v->is_int64()) return v->as_int64();
        return std::nullopt;
    };
    out.timeout_ms = get("timeout_ms");
    out.cpu_ms = get("cpu_ms");
    out.memory_mb = get("memory_mb");
    out.output_kb = get("output_kb");
    out.max_fetches = get("max_fetches");
    return out;
}

Limits effective_limits(const LimitOverrides& o, const Limits& d) {
    return Limits{o.timeout_ms.value_or(d.timeout_ms), o.cpu_ms.value_or(d.cpu_ms), o.memory_mb.value_or(d.memory_mb),
                  o.output_kb.value_or(d.output_kb), o.max_fetches.value_or(d.max_fetches)};
}

json::object effective_limits_json(const Limits& l) {
    return json::object{{"timeout_ms", l.timeout_ms}, {"cpu_ms", l.cpu_ms}, {"memory_mb", l.memory_mb},
                        {"output_kb", l.output_kb}, {"max_fetches", l.max_fetches}};
}

ActionDraft parse_action_body(const json::object& body, bool creating, const JailOptions& options) {
    core::reject_unknown_fields(body,
                                {"name", "code", "description", "params", "events", "tags", "limits", "enabled", "note"});
    ActionDraft d;
    if (creating || body.contains("name")) {
        std::string name(core::required_string(body, "name"));
        if (!is_valid_action_name(name)) bad("name", "'name' must match [a-z0-9_]{1,64}", "invalid_name");
        d.name = std::move(name);
    }
    if (creating || body.contains("code")) {
        std::string_view code = core::required_string(body, "code");
        if (code.size() > options.max_code_bytes) {
            throw core::TooLarge(fmt::format("'code' is larger than {} bytes", options.max_code_bytes), "too_large",
                                 field("code"));
        }
        if (code.find_first_not_of(" \t\r\n") == std::string_view::npos) bad("code", "'code' is empty");
        d.code = std::string(code);
    }
    if (auto description = core::optional_string(body, "description")) {
        if (description->size() > kMaxDescription) bad("description", fmt::format("'description' is longer than {} bytes", kMaxDescription));
        d.description = std::move(*description);
    }
    if (auto note = core::optional_string(body, "note")) {
        if (note->size() > kMaxNote) bad("note", fmt::format("'note' is longer than {} bytes", kMaxNote));
        d.note = std::move(*note);
    }
    if (const json::value* params = body.if_contains("params"); params && !params->is_null()) {
        if (!params->is_object()) bad("params", "'params' must be an object (a schema of the action's params)", "wrong_type");
        if (json::serialize(*params).size() > kMaxParamsBytes) bad("params", "'params' is too large", "too_large");
        (void)normalize_params(params->as_object());
        d.params = params->as_object();
    }
    if (body.contains("events") && !body.at("events").is_null()) {
        d.events = word_list(body, "events", kMaxEvents, &valid_event, "[a-z0-9_]{1,64}");
    }
    if (body.contains("tags") && !body.at("tags").is_null()) {
        d.tags = word_list(body, "tags", kMaxTags, &valid_tag, "[a-z0-9_-]{1,32}");
    }
    if (const json::value* limits = body.if_contains("limits"); limits && !limits->is_null()) {
        d.limits = parse_limits(*limits, options.maxima);
    }
    d.enabled = core::optional_bool(body, "enabled");
    return d;
}

}  // namespace parley::jail::internal

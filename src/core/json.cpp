#include "core/json.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"

namespace parley::core {

namespace {

/// Boost.JSON reads numbers beyond double range (`1e999`) as infinity and would write them back as `Infinity`,
/// which is not JSON: such input is refused instead of being stored.
bool has_non_finite(const json::value& v, std::size_t depth = 0) {
    if (depth > 1000) return false;
    switch (v.kind()) {
        case json::kind::double_: return !std::isfinite(v.get_double());
        case json::kind::array:
            for (const auto& x : v.get_array()) {
                if (has_non_finite(x, depth + 1)) return true;
            }
            return false;
        case json::kind::object:
            for (const auto& kv : v.get_object()) {
                if (has_non_finite(kv.value(), depth + 1)) return true;
            }
            return false;
        default: return false;
    }
}

}  // namespace

json::value parse_json(std::string_view text, const JsonLimits& limits) {
    if (text.size() > limits.max_bytes) {
        throw TooLarge(fmt::format("JSON body of {} bytes exceeds the limit of {} bytes", text.size(),
                                   limits.max_bytes));
    }
    json::parse_options options;
    options.max_depth = limits.max_depth;
    json::stream_parser parser({}, options);
    boost::system::error_code ec;
    std::size_t consumed = parser.write_some(text.data(), text.size(), ec);
    if (!ec && consumed < text.size()) ec = json::error::extra_data;
    if (!ec) parser.finish(ec);
    if (ec) {
        if (ec == json::error::too_deep) {
            throw BadRequest(fmt::format("JSON nesting exceeds the limit of {} levels", limits.max_depth),
                             "too_deep");
        }
        std::size_t line = 1, column = 1;
        for (std::size_t i = 0; i < consumed && i < text.size(); ++i) {
            if (text[i] == '\n') {
                ++line;
                column = 1;
            } else {
                ++column;
            }
        }
        throw BadRequest(fmt::format("malformed JSON at line {}, column {}: {}", line, column, ec.message()),
                         "invalid_json", json::array{json::object{{"line", line}, {"column", column}}});
    }
    json::value value = parser.release();
    if (has_non_finite(value)) {
        throw BadRequest("a number in the JSON is too large to represent", "number_out_of_range");
    }
    return value;
}

json::object parse_json_object(std::string_view text, const JsonLimits& limits) {
    json::value value = parse_json(text, limits);
    if (!value.is_object()) throw BadRequest("the body must be a JSON object", "expected_object");
    return std::move(value.as_object());
}

namespace {

[[noreturn]] void wrong_type(std::string_view key, std::string_view expected) {
    throw BadRequest(fmt::format("field '{}' must be {}", key, expected), "wrong_type",
                     json::array{json::object{{"field", key}, {"expected", expected}}});
}

[[noreturn]] void missing(std::string_view key) {
    throw BadRequest(fmt::format("field '{}' is required", key), "missing_field",
                     json::array{json::object{{"field", key}}});
}

const json::value* find(const json::object& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->value().is_null()) return nullptr;
    return &it->value();
}

}  // namespace

std::string_view required_string(const json::object& obj, std::string_view key) {
    const json::value* v = find(obj, key);
    if (!v) missing(key);
    if (!v->is_string()) wrong_type(key, "a string");
    return {v->as_string().data(), v->as_string().size()};
}

std::optional<std::string> optional_string(const json::object& obj, std::string_view key) {
    const json::value* v = find(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong_type(key, "a string");
    return std::string(v->as_string());
}

std::int64_t required_int(const json::object& obj, std::string_view key) {
    auto value = optional_int(obj, key);
    if (!value) missing(key);
    return *value;
}

std::optional<std::int64_t> optional_int(const json::object& obj, std::string_view key) {
    const json::value* v = find(obj, key);
    if (!v) return std::nullopt;
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
        return static_cast<std::int64_t>(v->as_uint64());
    }
    if (v->is_double()) {
        double d = v->as_double();
        if (d == static_cast<double>(static_cast<std::int64_t>(d)) && d > -9.2e18 && d < 9.2e18) {
            return static_cast<std::int64_t>(d);
        }
    }
    wrong_type(key, "an integer");
}

std::optional<bool> optional_bool(const json::object& obj, std::string_view key) {
    const json::value* v = find(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_bool()) wrong_type(key, "a boolean");
    return v->as_bool();
}

std::optional<double> optional_number(const json::object& obj, std::string_view key) {
    const json::value* v = find(obj, key);
    if (!v) return std::nullopt;
    if (v->is_double()) return v->as_double();
    if (v->is_int64()) return static_cast<double>(v->as_int64());
    if (v->is_uint64()) return static_cast<double>(v->as_uint64());
    wrong_type(key, "a number");
}

const json::object& required_object(const json::object& obj, std::string_view key) {
    const json::value* v = find(obj, key);
    if (!v) missing(key);
    if (!v->is_object()) wrong_type(key, "an object");
    return v->as_object();
}

const json::array* optional_array(const json::object& obj, std::string_view key) {
    const json::value* v = find(obj, key);
    if (!v) return nullptr;
    if (!v->is_array()) wrong_type(key, "an array");
    return &v->as_array();
}

void reject_unknown_fields(const json::object& obj, std::initializer_list<std::string_view> allowed) {
    for (const auto& kv : obj) {
        bool known = false;
        for (auto name : allowed) known = known || kv.key() == name;
        if (!known) {
            throw BadRequest(fmt::format("unknown field '{}'", std::string_view(kv.key())), "unknown_field",
                             json::array{json::object{{"field", kv.key()}}});
        }
    }
}

std::string to_json(const json::value& value) { return json::serialize(value); }

std::string json_quote(std::string_view text) { return json::serialize(json::string_view(text.data(), text.size())); }

}  // namespace parley::core

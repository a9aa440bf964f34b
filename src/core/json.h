/// JSON helpers on Boost.JSON: bounded parsing of untrusted input and typed field access that answers bad
/// input with a clear BadRequest naming the field.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace parley::core {

namespace json = boost::json;

/// Limits applied to every untrusted JSON document.
struct JsonLimits {
    std::size_t max_bytes = 1 << 20;  ///< body size; larger answers 413
    std::size_t max_depth = 64;       ///< nesting of arrays/objects
};

/// Parses `text` as one JSON value. Throws BadRequest (code `invalid_json`, with line/column) on a syntax
/// error, TooLarge when over `limits.max_bytes`, BadRequest `too_deep` when nesting exceeds max_depth.
json::value parse_json(std::string_view text, const JsonLimits& limits = {});

/// Parses `text` and requires an object (BadRequest `expected_object` otherwise).
json::object parse_json_object(std::string_view text, const JsonLimits& limits = {});

/// Typed field access. `required_*` throw BadRequest(`missing_field` / `wrong_type`) naming `key`;
/// `optional_*` return nullopt when absent or null and throw on a wrong type.
/// The view stays valid as long as `obj` does.
std::string_view required_string(const json::object& obj, std::string_view key);
std::optional<std::string> optional_string(const json::object& obj, std::string_view key);
std::int64_t required_int(const json::object& obj, std::string_view key);
std::optional<std::int64_t> optional_int(const json::object& obj, std::string_view key);
std::optional<bool> optional_bool(const json::object& obj, std::string_view key);
std::optional<double> optional_number(const json::object& obj, std::string_view key);
const json::object& required_object(const json::object& obj, std::string_view key);
const json::array* optional_array(const json::object& obj, std::string_view key);

/// Rejects keys of `obj` that are not in `allowed` (BadRequest `unknown_field`), so typos never pass silently.
void reject_unknown_fields(const json::object& obj, std::initializer_list<std::string_view> allowed);

/// Serializes compactly.
std::string to_json(const json::value& value);

/// Escapes a string as a JSON string literal including quotes (for hand-built hot-path bodies).
std::string json_quote(std::string_view text);

}  // namespace parley::core

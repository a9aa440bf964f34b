/// Cursor pagination as every listing of the API takes it: `limit` (1..200, default 50) and an opaque `cursor`
/// from the previous page's `next_cursor`. Answers are `{"items": [...], "next_cursor": "..." | null}`.
#pragma once

#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "http/http.h"

namespace parley::http {

inline constexpr std::size_t kDefaultPageLimit = 50;
inline constexpr std::size_t kMaxPageLimit = 200;

/// `limit` from the query, or the default. BadRequest `invalid_limit` outside 1..kMaxPageLimit.
inline std::size_t page_limit(const Request& req, std::size_t fallback = kDefaultPageLimit) {
    auto text = req.query_param("limit");
    if (!text) return fallback;
    std::size_t value = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value < 1 || value > kMaxPageLimit) {
        throw core::BadRequest(fmt::format("'limit' must be a whole number from 1 to {}", kMaxPageLimit),
                               "invalid_limit", boost::json::array{boost::json::object{{"field", "limit"}}});
    }
    return value;
}

/// A whole-number query parameter in [min, max], or nullopt when absent. BadRequest `invalid_query` otherwise.
inline std::optional<std::int64_t> query_int(const Request& req, std::string_view name, std::int64_t min,
                                             std::int64_t max) {
    auto text = req.query_param(name);
    if (!text || text->empty()) return std::nullopt;
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value < min || value > max) {
        throw core::BadRequest(fmt::format("'{}' must be a whole number from {} to {}", name, min, max),
                               "invalid_query", boost::json::array{boost::json::object{{"field", name}}});
    }
    return value;
}

/// A text query parameter of at most `max_bytes`, or nullopt when absent or empty.
inline std::optional<std::string> query_text(const Request& req, std::string_view name, std::size_t max_bytes = 200) {
    auto text = req.query_param(name);
    if (!text || text->empty()) return std::nullopt;
    if (text->size() > max_bytes) {
        throw core::BadRequest(fmt::format("'{}' is longer than {} bytes", name, max_bytes), "invalid_query",
                               boost::json::array{boost::json::object{{"field", name}}});
    }
    return std::string(*text);
}

/// `{"items": items, "next_cursor": cursor|null}`.
inline boost::json::object page(boost::json::array items, const std::optional<std::string>& next_cursor) {
    return boost::json::object{{"items", std::move(items)},
                               {"next_cursor", next_cursor ? boost::json::value(*next_cursor) : boost::json::value(nullptr)}};
}

}  // namespace parley::http

/// Reading Telegram Bot API answers (shared by the registry and the runtime).
#pragma once

#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>
#include <cstdint>
#include <string>

#include "outbound/outbound.h"

namespace parley::channels::internal {

/// Replaces the bot token in text that may quote a URL (outbound error messages), so it never reaches a log or
/// the API.
inline std::string redact(std::string text, const std::string& token) {
    if (token.empty()) return text;
    for (std::size_t at = text.find(token); at != std::string::npos; at = text.find(token, at)) {
        text.replace(at, token.size(), "<token>");
    }
    return text;
}

/// True for HTTP 200 with `"ok": true`. Otherwise `description` says why (Telegram's description, the HTTP
/// status or the transport error, token redacted) and `retry_after` holds the seconds a 429 asks to wait
/// (`parameters.retry_after`, else the Retry-After header, else 1).
inline bool answer_ok(const outbound::Response& r, const std::string& token, std::int64_t* retry_after,
                      std::string* description) {
    *retry_after = 0;
    description->clear();
    if (r.error) {
        *description = redact(fmt::format("{}: {}", outbound::error_code_name(r.error->code), r.error->message), token);
        return false;
    }
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(r.body, ec);
    bool ok = false;
    if (!ec && v.is_object()) {
        const auto& o = v.get_object();
        if (auto it = o.find("ok"); it != o.end() && it->value().is_bool()) ok = it->value().get_bool();
        if (auto it = o.find("description"); it != o.end() && it->value().is_string()) {
            *description = std::string(it->value().get_string());
        }
        if (auto it = o.find("parameters"); it != o.end() && it->value().is_object()) {
            const auto& p = it->value().get_object();
            if (auto ra = p.find("retry_after"); ra != p.end() && ra->value().is_int64()) {
                *retry_after = ra->value().get_int64();
            }
        }
    }
    if (r.status == 429 && *retry_after <= 0) {
        std::string_view h = r.header("retry-after");
        std::int64_t s = 0;
        std::from_chars(h.data(), h.data() + h.size(), s);
        *retry_after = s > 0 ? s : 1;
    }
    if (description->empty()) *description = fmt::format("HTTP {}", r.status);
    *description = redact(*description, token);
    return ok && r.status == 200;
}

}  // namespace parley::channels::internal

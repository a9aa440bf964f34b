/// Small JSON readers shared by the webhook parsers: every malformed field throws core::BadRequest with the
/// adapter's error code, so a parser either returns events or refuses the whole body (nothing stored).
#pragma once

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "channels/adapter.h"
#include "core/error.h"
#include "core/json.h"

namespace parley::channels::internal {

/// Most events one webhook body may carry (WhatsApp and Messenger batch them).
inline constexpr std::size_t kMaxEventsPerWebhook = 1000;
/// Inbound text kept per message (longer is cut at a character).
inline constexpr std::size_t kMaxInboundTextBytes = 16 * 1024;
/// Ids, names and similar short strings kept.
inline constexpr std::size_t kMaxShortBytes = 512;

class JsonReader {
public:
    explicit JsonReader(std::string_view what) : what_(what) {}

    [[noreturn]] void fail(std::string_view why) const {
        throw core::BadRequest(fmt::format("not a {} webhook: {}", what_, why), "invalid_update");
    }

    json::value parse(std::string_view body) const {
        try {
            return core::parse_json(body);
        } catch (const core::Error&) {
            fail("the body is not JSON");
        }
    }

    const json::object& root(const json::value& v) const {
        if (!v.is_object()) fail("the body is not a JSON object");
        return v.get_object();
    }

    const json::object* object(const json::object& o, std::string_view key) const {
        auto it = o.find(key);
        if (it == o.end() || it->value().is_null()) return nullptr;
        if (!it->value().is_object()) fail(fmt::format("'{}' is not an object", key));
        return &it->value().get_object();
    }
    const json::object& required_object(const json::object& o, std::string_view key) const {
        const json::object* p = object(o, key);
        if (!p) fail(fmt::format("'{}' is missing", key));
        return *p;
    }

    const json::array* array(const json::object& o, std::string_view key) const {
        auto it = o.find(key);
        if (it == o.end() || it->value().is_null()) return nullptr;
        if (!it->value().is_array()) fail(fmt::format("'{}' is not an array", key));
        if (it->value().get_array().size() > kMaxEventsPerWebhook) {
            fail(fmt::format("'{}' has more than {} items", key, kMaxEventsPerWebhook));
        }
        return &it->value().get_array();
    }

    const json::object& item(const json::value& v, std::string_view key) const {
        if (!v.is_object()) fail(fmt::format("an item of '{}' is not an object", key));
        return v.get_object();
    }

    /// A string ("" when absent or null), cut at `max` bytes.
    std::string string(const json::object& o, std::string_view key, std::size_t max = kMaxShortBytes) const {
        auto it = o.find(key);
        if (it == o.end() || it->value().is_null()) return {};
        if (!it->value().is_string()) fail(fmt::format("'{}' is not a string", key));
        return cut_bytes(std::string(it->value().get_string()), max);
    }
    std::string required_string(const json::object& o, std::string_view key) const {
        std::string s = string(o, key);
        if (s.empty()) fail(fmt::format("'{}' is missing", key));
        return s;
    }

    /// An id given as a JSON integer or string, as text ("" when absent).
    std::string id(const json::object& o, std::string_view key) const {
        auto it = o.find(key);
        if (it == o.end() || it->value().is_null()) return {};
        const json::value& v = it->value();
        if (v.is_int64()) return std::to_string(v.get_int64());
        if (v.is_uint64()) return std::to_string(v.get_uint64());
        if (v.is_string()) return cut_bytes(std::string(v.get_string()), kMaxShortBytes);
        fail(fmt::format("'{}' is not an id", key));
    }
    std::string required_id(const json::object& o, std::string_view key) const {
        std::string s = id(o, key);
        if (s.empty()) fail(fmt::format("'{}' is missing", key));
        return s;
    }

    /// An integer given as a JSON number or a decimal string (WhatsApp's timestamps); nullopt when absent.
    std::optional<std::int64_t> integer(const json::object& o, std::string_view key) const {
        auto it = o.find(key);
        if (it == o.end() || it->value().is_null()) return std::nullopt;
        const json::value& v = it->value();
        if (v.is_int64()) return v.get_int64();
        if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
            return static_cast<std::int64_t>(v.get_uint64());
        }
        if (v.is_string()) {
            std::string_view s = v.get_string();
            std::int64_t out = 0;
            if (s.empty() || s.size() > 18) fail(fmt::format("'{}' is not an integer", key));
            for (char c : s) {
                if (c < '0' || c > '9') fail(fmt::format("'{}' is not an integer", key));
                out = out * 10 + (c - '0');
            }
            return out;
        }
        fail(fmt::format("'{}' is not an integer", key));
    }

    /// A number as text with 6 decimals ("?" when absent or not a number).
    static std::string coordinate(const json::object& o, std::string_view key) {
        auto it = o.find(key);
        if (it == o.end()) return "?";
        const json::value& v = it->value();
        if (v.is_double()) return fmt::format("{:.6f}", v.get_double());
        if (v.is_int64()) return fmt::format("{:.6f}", static_cast<double>(v.get_int64()));
        if (v.is_uint64()) return fmt::format("{:.6f}", static_cast<double>(v.get_uint64()));
        return "?";
    }

private:
    std::string_view what_;
};

/// "[label] caption" or "[label]".
inline std::string labelled(std::string_view label, std::string_view caption) {
    if (caption.empty()) return fmt::format("[{}]", label);
    return fmt::format("[{}] {}", label, caption);
}

/// The text followed by the labels of buttons[from..] as a list the client can type back ("text equal to a
/// button's label counts as pressing it"): how adapters degrade buttons beyond the platform's limit.
inline std::string with_choices(std::string text, const std::vector<scenario::ReplyButton>& buttons,
                                std::size_t from) {
    for (std::size_t i = from; i < buttons.size(); ++i) {
        if (!text.empty()) text += "\n";
        text += "• " + (buttons[i].text.empty() ? buttons[i].id : buttons[i].text);
    }
    return text;
}

/// The invisible separator platforms accept where they refuse an empty text next to buttons.
inline constexpr std::string_view kInvisibleText = "\u2063";

}  // namespace parley::channels::internal

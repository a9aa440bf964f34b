// Shared body of the channel webhook fuzz targets (fuzz_<kind>_webhook.cpp): any input either parses into
// events that survive the inbox's JSON round trip, or throws core::Error; rendering the input as a reply never
// throws and never builds an unparsable request body.
#pragma once

#include <boost/json.hpp>
#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "channels/adapter.h"
#include "core/error.h"

namespace webhook_fuzz {

/// The input with every non-ASCII byte replaced by '?'.
inline std::string ascii_copy(std::string_view input) {
    std::string out(input);
    for (char& c : out) c = static_cast<unsigned char>(c) < 0x80 ? c : '?';
    return out;
}

/// Replies come from JSON documents, so their text is valid UTF-8: render the input itself when it is, else an
/// ASCII copy.
inline std::string reply_text(std::string_view input) {
    boost::system::error_code ec;
    boost::json::parse(boost::json::serialize(boost::json::string(input)), ec);
    if (!ec) return std::string(input);
    return ascii_copy(input);
}

/// Every adapter named in `kinds` gets the same input as a webhook body and as a reply text.
inline int fuzz_webhook(std::initializer_list<const char*> kinds, const std::uint8_t* data, std::size_t size) {
    using namespace parley::channels;
    std::string_view input(reinterpret_cast<const char*>(data), size);
    for (const char* kind : kinds) {
        const Adapter* adapter = find_adapter(kind);
        if (!adapter) __builtin_trap();
        try {
            for (const auto& event : adapter->parse(input)) {
                if (event.type != InboundEvent::Type::kIgnored && event.key.empty()) __builtin_trap();
                InboundEvent back = InboundEvent::from_json(event.to_json());
                if (back.key != event.key || back.message.text != event.message.text) __builtin_trap();
            }
        } catch (const parley::core::Error&) {
        }
        ChannelRef channel;
        channel.id = "c";
        channel.kind = kind;
        channel.api_base_url = "http://127.0.0.1:1";
        channel.credentials = boost::json::object{{"token", "t"}, {"secret", "0123456789abcdef"},
                                                  {"phone_number_id", "1"}, {"template", "t"}};
        OutboundContext to{"chat", "user", "d", 1, 1, 2};
        std::string text = reply_text(input);
        std::string ascii = ascii_copy(input);
        std::vector<parley::scenario::ReplyButton> buttons;
        for (std::size_t i = 0; i < size % 17; ++i) {
            buttons.push_back({ascii.substr(0, i * 3), ascii.substr(std::min(i, ascii.size()), 40)});
        }
        Rendered r = adapter->render(channel, to, text, buttons, [](const std::string& id) { return id; });
        for (const auto& request : r.requests) {
            boost::system::error_code ec;
            boost::json::parse(request.body, ec);
            if (ec) __builtin_trap();
        }
    }
    return 0;
}

}  // namespace webhook_fuzz

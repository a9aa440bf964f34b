// Fuzz target: the webhooks module's parsers — map_event (an EventHub event's JSON text → webhook events; the
// first line of the input names the hub type), parse_retry_after, and SubscriptionInput::from_json (a
// subscription body). Nothing may crash; mapped events must be well formed; bad bodies answer a 4xx error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "core/error.h"
#include "webhooks/webhooks.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::webhooks;
    namespace json = boost::json;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto nl = text.find('\n');
    std::string_view type = text.substr(0, nl);
    std::string_view body = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    for (const auto& e : map_event(type, body)) {
        if (e.entity.empty() || e.key.empty()) __builtin_trap();
        bool known = false;
        for (auto t : event_types()) known = known || t == e.type;
        if (!known) __builtin_trap();
        if (e.data.contains("id") || e.data.contains("type")) __builtin_trap();
    }
    if (auto ms = parse_retry_after(text, 1'700'000'000'000)) {
        if (*ms < 0) __builtin_trap();
    }
    boost::system::error_code ec;
    json::value value = json::parse(body, ec);
    if (!ec && value.is_object()) {
        for (bool creating : {true, false}) {
            try {
                auto in = SubscriptionInput::from_json(value.as_object(), creating);
                if (in.url && (in.url->size() > kMaxUrlBytes || in.url->find("://") == std::string::npos)) __builtin_trap();
                if (in.events && (in.events->empty() || in.events->size() > kMaxEventTypes)) __builtin_trap();
            } catch (const parley::core::Error& e) {
                if (e.status() < 400 || e.status() >= 500) __builtin_trap();
            }
        }
    }
    return 0;
}

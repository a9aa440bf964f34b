// Fuzzes what a widget visitor's browser (or anyone on the internet) can send the widget: client frames, and, for
// the administrator's side, the settings document and the origin check. Any input either parses or throws
// core::Error; a parsed frame respects every limit; settings that parse survive a JSON round trip.
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "widget/frame.h"
#include "widget/widget.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    using namespace parley::widget;
    try {
        ClientFrame f = parse_client_frame(input);
        if (f.text.size() > kMaxTextBytes || f.id.size() > kMaxFrameIdBytes || f.button.size() > kMaxButtonIdBytes ||
            f.alias.size() > kMaxAliasBytes || boost::json::serialize(f.params).size() > kMaxParamsBytes) {
            __builtin_trap();
        }
    } catch (const parley::core::Error&) {
    }
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(input, ec);
    if (!ec && v.is_object()) {
        try {
            WidgetSettings s = WidgetSettings::from_json(v.get_object());
            if (WidgetSettings::from_json(s.to_json()).to_json() != s.to_json()) __builtin_trap();
            for (const auto& d : s.allowed_domains) {
                if (!origin_allowed(s.allowed_domains, "https://" + (d.rfind("*.", 0) == 0 ? "a" + d.substr(1) : d))) {
                    __builtin_trap();
                }
            }
        } catch (const parley::core::Error&) {
        }
    }
    (void)origin_allowed({"example.com", "*.example.org"}, input);
    (void)host_of(input);
    return 0;
}

// Fuzz target: the operator module's parsers — client-segment conditions (SegmentCondition::parse, then matches
// against a card), saved folder filters (DialogFilter::from_json, and the round trip through to_json), query
// filters (DialogFilter::set) and the ISO-8601 parser behind them. Any input must parse or throw a 4xx error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "core/clock.h"
#include "core/error.h"
#include "operator/internal/routing.h"
#include "operator/internal/segment.h"
#include "operator/operator.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::operators;
    namespace json = boost::json;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto ms = internal::parse_time(text)) {
        if (*ms < 0) __builtin_trap();
        if (internal::parse_time(parley::core::format_time(*ms)) != ms) __builtin_trap();
    }
    // "name=value" lines as query parameters of the dialog list.
    try {
        DialogFilter f;
        std::string_view rest = text;
        for (int i = 0; !rest.empty() && i < 32; ++i) {
            auto nl = rest.find('\n');
            std::string_view line = rest.substr(0, nl);
            rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
            auto eq = line.find('=');
            f.set(line.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : line.substr(eq + 1));
        }
        if (f.states.size() > 4) __builtin_trap();
        if (f.text && f.text->size() > kMaxSearchBytes) __builtin_trap();
    } catch (const parley::core::BadRequest&) {
    }
    boost::system::error_code ec;
    json::value value = json::parse(text, ec);
    if (ec) return 0;
    try {
        auto condition = internal::SegmentCondition::parse(value);
        json::object card{{"name", "Olena"}, {"segment", "vip"}, {"tags", json::array{"gold", 1}},
                          {"fields", json::object{{"city", "Lviv"}, {"spend", 1200}}}};
        (void)condition.matches(card);
        (void)condition.matches(json::object{});
    } catch (const parley::core::Unprocessable&) {
    }
    if (value.is_object()) {
        try {
            DialogFilter f = DialogFilter::from_json(value.get_object());
            // What was accepted serializes to what parses back to the same filter.
            if (DialogFilter::from_json(f.to_json()).to_json() != f.to_json()) __builtin_trap();
        } catch (const parley::core::BadRequest&) {
        }
    }
    return 0;
}

// Fuzz target: the business-hours calendar parser (BusinessCalendar::parse) and its arithmetic. Any JSON input must
// either parse or throw a 400; a parsed calendar's normalised definition parses back to itself, and its figures
// keep their invariants: business time within a span is at most the span, open instants are counted, next_open
// is not before the instant asked and is open, and adding business time then measuring it gives it back.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "core/json.h"
#include "operator/sla.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::operators;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    boost::json::object body;
    try {
        body = parley::core::parse_json_object(text);
    } catch (const parley::core::Error&) {
        return 0;
    }
    try {
        BusinessCalendar c = BusinessCalendar::parse(body, {"name"});
        auto once = c.to_json();
        if (BusinessCalendar::parse(once).to_json() != once) __builtin_trap();
        constexpr std::int64_t kDay = 86'400'000;
        const std::int64_t t0 = 1'772'409'600'000;  // 2026-03-02T00:00:00Z, a Monday
        for (std::int64_t t : {t0, t0 + kDay / 3, t0 + 5 * kDay + 7 * 3'600'000}) {
            std::int64_t week = c.business_ms(t, t + 7 * kDay);
            if (week < 0 || week > 7 * kDay) __builtin_trap();
            if (c.is_open(t) && c.business_ms(t, t + 1) != 1) __builtin_trap();
            if (auto next = c.next_open(t)) {
                if (*next < t || !c.is_open(*next)) __builtin_trap();
            }
            for (std::int64_t ms : {std::int64_t{0}, std::int64_t{60'000}, 3 * kDay / 2}) {
                if (auto due = c.add_business_ms(t, ms)) {
                    if (*due < t || c.business_ms(t, *due) != ms) __builtin_trap();
                }
            }
        }
    } catch (const parley::core::BadRequest&) {
    }
    return 0;
}

// Fuzz target: cron expressions (and time zone names) for scheduled triggers never crash or hang.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bots/cron.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto bar = input.find('|');
    std::string_view expression = input.substr(0, bar);
    std::string_view zone = bar == std::string_view::npos ? std::string_view("UTC") : input.substr(bar + 1);
    try {
        auto schedule = parley::bots::CronSchedule::parse(expression, zone);
        (void)schedule.next_after(1795514400000);
    } catch (const parley::core::Error&) {
    }
    return 0;
}

/// Cron expressions for scheduled triggers: five fields `minute hour day-of-month month day-of-week` with `*`,
/// lists `1,15`, ranges `1-5`, steps `*/10` and `8-18/2`, month and weekday names (`jan`, `mon`), `7` = Sunday;
/// evaluated in an IANA time zone (ICU), so `0 9 * * mon-fri` in `Europe/Kyiv` fires at 09:00 Kyiv time across
/// daylight-saving changes. Day-of-month and day-of-week combine as in Vixie cron: when both are restricted, either
/// may match.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace parley::bots {

class CronSchedule {
public:
    static constexpr std::size_t kMaxExpressionBytes = 200;

    /// Parses `expression` for `timezone` (an IANA name such as `Europe/Kyiv`; empty = UTC). Throws
    /// core::BadRequest naming the field that is wrong.
    static CronSchedule parse(std::string_view expression, std::string_view timezone);

    /// The first minute strictly after `after_ms` (Unix ms) that matches, or nullopt when none within 4 years
    /// (e.g. `0 0 30 2 *`).
    std::optional<std::int64_t> next_after(std::int64_t after_ms) const;

    const std::string& expression() const { return expression_; }
    const std::string& timezone() const { return timezone_; }

private:
    std::bitset<60> minutes_;
    std::bitset<24> hours_;
    std::bitset<32> days_;    ///< 1..31
    std::bitset<13> months_;  ///< 1..12
    std::bitset<7> weekdays_; ///< 0 = Sunday
    bool any_day_ = true;
    bool any_weekday_ = true;
    std::string expression_;
    std::string timezone_;
};

}  // namespace parley::bots

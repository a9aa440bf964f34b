#include "bots/cron.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace parley::bots {
namespace {

// 2026-11-24T10:00:00Z (a Tuesday); Kyiv is UTC+2 in winter.
constexpr std::int64_t kTuesday10Utc = 1795514400000;
constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kHour = 60 * kMinute;

TEST(Cron, EveryFifteenMinutes) {
    auto s = CronSchedule::parse("*/15 * * * *", "UTC");
    EXPECT_EQ(s.next_after(kTuesday10Utc), kTuesday10Utc + 15 * kMinute);
    EXPECT_EQ(s.next_after(kTuesday10Utc + 1), kTuesday10Utc + 15 * kMinute);
}

TEST(Cron, WeekdayMorningInKyiv) {
    auto s = CronSchedule::parse("0 9 * * mon-fri", "Europe/Kyiv");
    // 10:00Z is 12:00 in Kyiv: the next 09:00 Kyiv is Wednesday 07:00Z.
    EXPECT_EQ(s.next_after(kTuesday10Utc), kTuesday10Utc + 21 * kHour);
}

TEST(Cron, SummerTimeShiftsTheUtcHour) {
    auto s = CronSchedule::parse("0 9 1 7 *", "Europe/Kyiv");
    auto next = s.next_after(kTuesday10Utc);
    ASSERT_TRUE(next);
    // 2027-07-01T09:00 in Kyiv (UTC+3) = 06:00Z.
    EXPECT_EQ(*next % (24 * kHour), 6 * kHour);
}

TEST(Cron, ListsRangesStepsNamesAndSunday) {
    EXPECT_NO_THROW(CronSchedule::parse("0,30 8-18/2 1,15 jan,jul sun", "UTC"));
    auto s = CronSchedule::parse("0 0 * * 7", "UTC");  // 7 = Sunday
    auto next = s.next_after(kTuesday10Utc);
    ASSERT_TRUE(next);
    EXPECT_EQ(*next, kTuesday10Utc - 10 * kHour + 5 * 24 * kHour);  // Sunday 2026-11-29T00:00Z
}

TEST(Cron, NeverAndBadInput) {
    EXPECT_FALSE(CronSchedule::parse("0 0 30 2 *", "UTC").next_after(kTuesday10Utc));
    for (const char* bad : {"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
                            "5-1 * * * *", "*/0 * * * *", "a * * * *", "1,,2 * * * *", "* * * * * *"}) {
        EXPECT_THROW(CronSchedule::parse(bad, "UTC"), core::BadRequest) << bad;
    }
    EXPECT_THROW(CronSchedule::parse("* * * * *", "Mars/Olympus"), core::BadRequest);
}

}  // namespace
}  // namespace parley::bots

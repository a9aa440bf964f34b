#include "bots/cron.h"

#include <fmt/format.h>
#include <unicode/ucal.h>
#include <unicode/ustring.h>

#include <array>
#include <charconv>
#include <memory>
#include <vector>

#include "core/error.h"

namespace parley::bots {

namespace {

constexpr std::array<std::string_view, 5> kFieldNames = {"minute", "hour", "day of month", "month", "day of week"};
constexpr std::array<std::string_view, 12> kMonths = {"jan", "feb", "mar", "apr", "may", "jun",
                                                      "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kWeekdays = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

[[noreturn]] void bad(std::size_t field, std::string_view why) {
    throw core::BadRequest(fmt::format("cron {}: {}", kFieldNames[field], why), "invalid_cron",
                           boost::json::array{boost::json::object{{"field", "cron"}}});
}

int value_of(std::string_view text, std::size_t field) {
    if (field == 3 || field == 4) {
        std::string lower;
        for (char c : text) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
        const auto& names = field == 3 ? std::vector<std::string_view>(kMonths.begin(), kMonths.end())
                                       : std::vector<std::string_view>(kWeekdays.begin(), kWeekdays.end());
        for (std::size_t i = 0; i < names.size(); ++i) {
            if (lower == names[i]) return static_cast<int>(field == 3 ? i + 1 : i);
        }
    }
    int v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
        bad(field, fmt::format("'{}' is not a number", text));
    }
    return v;
}

/// Sets the bits of one field; returns whether it was `*` (unrestricted).
bool parse_field(std::string_view text, std::size_t field, int lo, int hi, std::vector<bool>& bits) {
    bool star = text == "*";
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t comma = text.find(',', start);
        std::string_view part = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        if (part.empty()) bad(field, "empty list item");
        int step = 1;
        if (auto slash = part.find('/'); slash != std::string_view::npos) {
            step = value_of(part.substr(slash + 1), field == 3 || field == 4 ? 0 : field);
            if (step < 1 || step > hi) bad(field, fmt::format("step {} is out of range", step));
            part = part.substr(0, slash);
        }
        int from = lo;
        int to = hi;
        if (part != "*") {
            if (auto dash = part.find('-'); dash != std::string_view::npos && dash > 0) {
                from = value_of(part.substr(0, dash), field);
                to = value_of(part.substr(dash + 1), field);
            } else {
                from = to = value_of(part, field);
                if (step > 1) to = hi;  // `5/15` = from 5 every 15
            }
        }
        int max = field == 4 ? 7 : hi;  // 7 is Sunday too
        if (from < lo || to > max || from > to) bad(field, fmt::format("{}-{} is outside {}-{}", from, to, lo, max));
        for (int v = from; v <= to; v += step) bits[static_cast<std::size_t>(field == 4 && v == 7 ? 0 : v)] = true;
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return star;
}

struct CalendarCloser {
    void operator()(UCalendar* c) const { ucal_close(c); }
};

std::unique_ptr<UCalendar, CalendarCloser> open_calendar(const std::string& timezone) {
    std::u16string zone(timezone.begin(), timezone.end());
    UErrorCode status = U_ZERO_ERROR;
    UCalendar* cal = ucal_open(reinterpret_cast<const UChar*>(zone.data()), static_cast<int32_t>(zone.size()), "en_US",
                               UCAL_GREGORIAN, &status);
    if (U_FAILURE(status)) return nullptr;
    return std::unique_ptr<UCalendar, CalendarCloser>(cal);
}

}  // namespace

CronSchedule CronSchedule::parse(std::string_view expression, std::string_view timezone) {
    if (expression.size() > kMaxExpressionBytes) {
        throw core::BadRequest(fmt::format("a cron expression has at most {} bytes", kMaxExpressionBytes), "invalid_cron");
    }
    std::vector<std::string_view> fields;
    std::size_t i = 0;
    while (i < expression.size()) {
        while (i < expression.size() && (expression[i] == ' ' || expression[i] == '\t')) ++i;
        std::size_t start = i;
        while (i < expression.size() && expression[i] != ' ' && expression[i] != '\t') ++i;
        if (i > start) fields.push_back(expression.substr(start, i - start));
    }
    if (fields.size() != 5) {
        throw core::BadRequest("a cron expression has five fields: minute hour day-of-month month day-of-week",
                               "invalid_cron", boost::json::array{boost::json::object{{"field", "cron"}}});
    }
    CronSchedule s;
    std::vector<bool> bits(61);
    auto take = [&](std::size_t field, int lo, int hi, auto& out) {
        std::fill(bits.begin(), bits.end(), false);
        bool star = parse_field(fields[field], field, lo, hi, bits);
        for (int v = lo; v <= hi; ++v) {
            if (bits[static_cast<std::size_t>(v)]) out.set(static_cast<std::size_t>(v));
        }
        return star;
    };
    take(0, 0, 59, s.minutes_);
    take(1, 0, 23, s.hours_);
    s.any_day_ = take(2, 1, 31, s.days_);
    take(3, 1, 12, s.months_);
    s.any_weekday_ = take(4, 0, 6, s.weekdays_);
    s.expression_ = std::string(expression);
    s.timezone_ = timezone.empty() ? "UTC" : std::string(timezone);
    // ICU falls back to GMT for unknown names; ask for the canonical id to tell.
    std::u16string zone(s.timezone_.begin(), s.timezone_.end());
    UChar canonical[128];
    UBool system = false;
    UErrorCode status = U_ZERO_ERROR;
    ucal_getCanonicalTimeZoneID(reinterpret_cast<const UChar*>(zone.data()), static_cast<int32_t>(zone.size()), canonical,
                                128, &system, &status);
    if (U_FAILURE(status) || !system) {
        throw core::BadRequest(fmt::format("'{}' is not a time zone name like Europe/Kyiv", s.timezone_),
                               "invalid_timezone", boost::json::array{boost::json::object{{"field", "timezone"}}});
    }
    return s;
}

std::optional<std::int64_t> CronSchedule::next_after(std::int64_t after_ms) const {
    auto cal = open_calendar(timezone_);
    if (!cal) return std::nullopt;
    constexpr std::int64_t kMinute = 60'000;
    std::int64_t t = (after_ms / kMinute + 1) * kMinute;
    const std::int64_t limit = after_ms + std::int64_t{4} * 366 * 24 * 60 * kMinute;
    UErrorCode status = U_ZERO_ERROR;
    while (t <= limit) {
        ucal_setMillis(cal.get(), static_cast<UDate>(t), &status);
        int month = ucal_get(cal.get(), UCAL_MONTH, &status) + 1;
        int day = ucal_get(cal.get(), UCAL_DAY_OF_MONTH, &status);
        int weekday = ucal_get(cal.get(), UCAL_DAY_OF_WEEK, &status) - 1;  // ICU: 1 = Sunday
        int hour = ucal_get(cal.get(), UCAL_HOUR_OF_DAY, &status);
        int minute = ucal_get(cal.get(), UCAL_MINUTE, &status);
        if (U_FAILURE(status)) return std::nullopt;
        bool day_ok;
        if (any_day_ && any_weekday_) {
            day_ok = true;
        } else if (any_day_) {
            day_ok = weekdays_.test(static_cast<std::size_t>(weekday));
        } else if (any_weekday_) {
            day_ok = days_.test(static_cast<std::size_t>(day));
        } else {
            day_ok = days_.test(static_cast<std::size_t>(day)) || weekdays_.test(static_cast<std::size_t>(weekday));
        }
        if (!months_.test(static_cast<std::size_t>(month)) || !day_ok) {
            // Jump to the next local midnight (approximately; the loop re-checks every field).
            t += ((23 - hour) * 60 + (60 - minute)) * kMinute;
            continue;
        }
        if (!hours_.test(static_cast<std::size_t>(hour))) {
            t += (60 - minute) * kMinute;
            continue;
        }
        if (!minutes_.test(static_cast<std::size_t>(minute))) {
            t += kMinute;
            continue;
        }
        return t;
    }
    return std::nullopt;
}

}  // namespace parley::bots

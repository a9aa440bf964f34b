#include "operator/sla.h"

#include <fmt/format.h>
#include <unicode/basictz.h>
#include <unicode/timezone.h>
#include <unicode/ucal.h>
#include <unicode/unistr.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "events/events.h"
#include "operator/internal/routing.h"
#include "operator/operator.h"
#include "store/async.h"

namespace parley::operators {

namespace {

constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kDay = 24 * 60 * kMinute;
constexpr std::int64_t kWeek = 7 * kDay;
constexpr std::size_t kMaxZoneBytes = 64;
constexpr std::size_t kMaxHolidayNameBytes = 100;
constexpr std::array<std::string_view, 7> kWeekdays{"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

[[noreturn]] void bad(const std::string& field, const std::string& message, const std::string& code = {}) {
    throw core::BadRequest(message, code.empty() ? "invalid_" + field.substr(0, field.find_first_of(".[")) : code,
                           json::array{json::object{{"field", field}}});
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

/// "HH:MM" → minutes; "24:00" only when `end`.
std::optional<int> parse_hhmm(std::string_view s, bool end) {
    if (s.size() != 5 || s[2] != ':') return std::nullopt;
    for (std::size_t i : {0u, 1u, 3u, 4u}) {
        if (s[i] < '0' || s[i] > '9') return std::nullopt;
    }
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59) return std::nullopt;
    if (h == 24 && m == 0 && end) return 1440;
    if (h > 23) return std::nullopt;
    return h * 60 + m;
}

std::string format_hhmm(int minutes) { return fmt::format("{:02}:{:02}", minutes / 60, minutes % 60); }

/// "YYYY-MM-DD" → days since 1970-01-01.
std::optional<std::int64_t> parse_date(std::string_view s) {
    if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
    for (std::size_t i = 0; i < 10; ++i) {
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return std::nullopt;
    }
    int y = std::stoi(std::string(s.substr(0, 4)));
    unsigned m = static_cast<unsigned>(std::stoi(std::string(s.substr(5, 2))));
    unsigned d = static_cast<unsigned>(std::stoi(std::string(s.substr(8, 2))));
    using namespace std::chrono;
    year_month_day date{year{y}, month{m}, day{d}};
    if (y < 1970 || !date.ok()) return std::nullopt;
    return sys_days(date).time_since_epoch().count();
}

std::string format_date(std::int64_t days) {
    using namespace std::chrono;
    year_month_day date{sys_days{std::chrono::days{days}}};
    return fmt::format("{:04}-{:02}-{:02}", static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                       static_cast<unsigned>(date.day()));
}

std::vector<BusinessCalendar::Interval> parse_intervals(const json::value& v, const std::string& field) {
    if (!v.is_array()) bad(field, fmt::format("'{}' is a list of {{\"from\": \"HH:MM\", \"to\": \"HH:MM\"}}", field));
    const auto& list = v.get_array();
    if (list.size() > kMaxCalendarIntervalsPerDay) {
        bad(field, fmt::format("'{}' has at most {} intervals", field, kMaxCalendarIntervalsPerDay), "too_many_intervals");
    }
    std::vector<BusinessCalendar::Interval> out;
    for (std::size_t i = 0; i < list.size(); ++i) {
        std::string at = fmt::format("{}[{}]", field, i);
        if (!list[i].is_object()) bad(at, fmt::format("'{}' is {{\"from\": \"HH:MM\", \"to\": \"HH:MM\"}}", at));
        const auto& o = list[i].get_object();
        for (const auto& kv : o) {
            if (kv.key() != "from" && kv.key() != "to") {
                bad(at, fmt::format("'{}' has only 'from' and 'to' (not '{}')", at, std::string_view(kv.key())),
                    "unknown_field");
            }
        }
        const auto* from = o.if_contains("from");
        const auto* to = o.if_contains("to");
        std::optional<int> f = from && from->is_string() ? parse_hhmm(from->get_string(), false) : std::nullopt;
        std::optional<int> t = to && to->is_string() ? parse_hhmm(to->get_string(), true) : std::nullopt;
        if (!f) bad(at + ".from", fmt::format("'{}.from' is a time 00:00..23:59", at));
        if (!t) bad(at + ".to", fmt::format("'{}.to' is a time 00:00..24:00", at));
        // An end not after the start runs overnight into the next day.
        int start = f.value_or(0), end = t.value_or(0);
        out.push_back({start, end <= start ? end + 1440 : end});
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.from_min < b.from_min; });
    for (std::size_t i = 1; i < out.size(); ++i) {
        if (out[i].from_min < out[i - 1].to_min) bad(field, fmt::format("intervals of '{}' overlap", field), "overlapping_intervals");
    }
    return out;
}

json::array intervals_json(const std::vector<BusinessCalendar::Interval>& list) {
    json::array out;
    for (const auto& iv : list) {
        int to = iv.to_min > 1440 ? iv.to_min - 1440 : iv.to_min;
        out.push_back(json::object{{"from", format_hhmm(iv.from_min)}, {"to", format_hhmm(to)}});
    }
    return out;
}

}  // namespace

// ---- BusinessCalendar ------------------------------------------------------------------------------------------

struct BusinessCalendar::Zone {
    std::unique_ptr<icu::TimeZone> tz;
    const icu::BasicTimeZone* basic = nullptr;

    std::int64_t offset_at(std::int64_t utc) const {
        int32_t raw = 0, dst = 0;
        UErrorCode status = U_ZERO_ERROR;
        tz->getOffset(static_cast<UDate>(utc), false, raw, dst, status);
        return U_FAILURE(status) ? 0 : std::int64_t{raw} + dst;
    }
    /// Local wall time → UTC; a time that does not exist or repeats takes the offset before the change.
    std::int64_t to_utc(std::int64_t local) const {
        int32_t raw = 0, dst = 0;
        UErrorCode status = U_ZERO_ERROR;
        if (basic) {
            basic->getOffsetFromLocal(static_cast<UDate>(local), UCAL_TZ_LOCAL_FORMER, UCAL_TZ_LOCAL_FORMER, raw, dst, status);
        } else {
            tz->getOffset(static_cast<UDate>(local), true, raw, dst, status);
        }
        return U_FAILURE(status) ? local : local - raw - dst;
    }
};

BusinessCalendar BusinessCalendar::parse(const json::object& body, std::initializer_list<std::string_view> extra) {
    for (const auto& kv : body) {
        std::string_view key = kv.key();
        bool known = key == "time_zone" || key == "week" || key == "holidays" ||
                     std::find(extra.begin(), extra.end(), key) != extra.end();
        if (!known) bad(std::string(key), fmt::format("unknown field '{}'", key), "unknown_field");
    }
    BusinessCalendar c;
    const auto* zone = body.if_contains("time_zone");
    if (!zone || !zone->is_string()) bad("time_zone", "'time_zone' is required: an IANA name such as Europe/Kyiv or UTC");
    std::string name(zone->get_string());
    if (name.empty() || name.size() > kMaxZoneBytes) bad("time_zone", fmt::format("'time_zone' is 1 to {} bytes", kMaxZoneBytes));
    icu::UnicodeString id = icu::UnicodeString::fromUTF8(name);
    icu::UnicodeString canonical;
    UBool system = false;
    UErrorCode status = U_ZERO_ERROR;
    icu::TimeZone::getCanonicalID(id, canonical, system, status);
    if (U_FAILURE(status) || !system) {
        bad("time_zone", fmt::format("'{}' is not a time zone name like Europe/Kyiv", name), "invalid_time_zone");
    }
    auto z = std::make_shared<Zone>();
    z->tz.reset(icu::TimeZone::createTimeZone(id));
    z->basic = dynamic_cast<const icu::BasicTimeZone*>(z->tz.get());
    c.zone_ = std::move(z);
    c.zone_name_ = std::move(name);

    const auto* week = body.if_contains("week");
    if (!week || !week->is_object()) bad("week", "'week' is required: {\"mon\": [{\"from\": \"09:00\", \"to\": \"18:00\"}], ...}");
    bool any = false;
    for (const auto& kv : week->get_object()) {
        auto it = std::find(kWeekdays.begin(), kWeekdays.end(), std::string_view(kv.key()));
        if (it == kWeekdays.end()) {
            bad("week", fmt::format("'week' has the days mon tue wed thu fri sat sun (not '{}')", std::string_view(kv.key())),
                "unknown_field");
        }
        auto& day = c.week_[static_cast<std::size_t>(it - kWeekdays.begin())];
        day = parse_intervals(kv.value(), fmt::format("week.{}", std::string_view(kv.key())));
        any = any || !day.empty();
    }
    if (!any) bad("week", "'week' opens at least once (a calendar with no weekly hours is never open)", "never_open");

    if (const auto* holidays = body.if_contains("holidays"); holidays && !holidays->is_null()) {
        if (!holidays->is_array()) bad("holidays", "'holidays' is a list of {\"date\": \"YYYY-MM-DD\", \"name\"?, \"intervals\"?}");
        const auto& list = holidays->get_array();
        if (list.size() > kMaxCalendarHolidays) {
            bad("holidays", fmt::format("'holidays' has at most {} entries", kMaxCalendarHolidays), "too_many_holidays");
        }
        for (std::size_t i = 0; i < list.size(); ++i) {
            std::string at = fmt::format("holidays[{}]", i);
            if (!list[i].is_object()) bad(at, fmt::format("'{}' is {{\"date\": \"YYYY-MM-DD\", \"name\"?, \"intervals\"?}}", at));
            const auto& o = list[i].get_object();
            for (const auto& kv : o) {
                if (kv.key() != "date" && kv.key() != "name" && kv.key() != "intervals") {
                    bad(at, fmt::format("'{}' has only date, name and intervals (not '{}')", at, std::string_view(kv.key())),
                        "unknown_field");
                }
            }
            const auto* date = o.if_contains("date");
            std::optional<std::int64_t> day = date && date->is_string() ? parse_date(date->get_string()) : std::nullopt;
            if (!day) bad(at + ".date", fmt::format("'{}.date' is a date YYYY-MM-DD from 1970", at));
            Holiday h;
            if (const auto* n = o.if_contains("name"); n && !n->is_null()) {
                if (!n->is_string() || n->get_string().size() > kMaxHolidayNameBytes) {
                    bad(at + ".name", fmt::format("'{}.name' is text of at most {} bytes", at, kMaxHolidayNameBytes));
                }
                h.name = std::string(n->get_string());
            }
            if (const auto* iv = o.if_contains("intervals"); iv && !iv->is_null()) h.intervals = parse_intervals(*iv, at + ".intervals");
            if (!c.holidays_.emplace(*day, std::move(h)).second) {
                bad(at + ".date", fmt::format("the date {} is listed twice", format_date(*day)), "duplicate_date");
            }
        }
    }
    return c;
}

json::object BusinessCalendar::to_json() const {
    json::object week;
    for (std::size_t d = 0; d < 7; ++d) week[kWeekdays[d]] = intervals_json(week_[d]);
    json::array holidays;
    for (const auto& [day, h] : holidays_) {
        holidays.push_back(json::object{{"date", format_date(day)}, {"name", h.name}, {"intervals", intervals_json(h.intervals)}});
    }
    return json::object{{"time_zone", zone_name_}, {"week", std::move(week)}, {"holidays", std::move(holidays)}};
}

std::vector<BusinessCalendar::Span> BusinessCalendar::spans(std::int64_t from, std::int64_t to) const {
    std::vector<Span> out;
    if (to <= from) return out;
    std::int64_t first = floor_div(from + zone_->offset_at(from), kDay) - 1;  // yesterday's overnight interval
    std::int64_t last = floor_div(to + zone_->offset_at(to), kDay) + 1;
    for (std::int64_t day = first; day <= last; ++day) {
        auto h = holidays_.find(day);
        const auto& list = h != holidays_.end() ? h->second.intervals
                                                : week_[static_cast<std::size_t>(((day + 3) % 7 + 7) % 7)];
        for (const auto& iv : list) {
            std::int64_t s = zone_->to_utc(day * kDay + iv.from_min * kMinute);
            std::int64_t e = zone_->to_utc(day * kDay + iv.to_min * kMinute);
            if (e <= s || e <= from || s >= to) continue;
            out.push_back({s, e});
        }
    }
    std::sort(out.begin(), out.end(), [](const Span& a, const Span& b) { return a.from < b.from; });
    std::vector<Span> merged;
    for (const auto& s : out) {
        if (!merged.empty() && s.from <= merged.back().to) {
            merged.back().to = std::max(merged.back().to, s.to);
        } else {
            merged.push_back(s);
        }
    }
    return merged;
}

bool BusinessCalendar::is_open(std::int64_t t) const {
    for (const auto& s : spans(t, t + 1)) {
        if (s.from <= t && t < s.to) return true;
    }
    return false;
}

std::optional<std::int64_t> BusinessCalendar::next_open(std::int64_t t) const {
    for (std::int64_t cursor = t; cursor < t + kCalendarHorizonDays * kDay; cursor += kWeek) {
        for (const auto& s : spans(cursor, cursor + kWeek)) {
            if (s.to > t) return std::max(s.from, t);
        }
    }
    return std::nullopt;
}

std::int64_t BusinessCalendar::business_ms(std::int64_t from, std::int64_t to) const {
    std::int64_t total = 0;
    for (const auto& s : spans(from, to)) total += std::min(s.to, to) - std::max(s.from, from);
    return total;
}

std::optional<std::int64_t> BusinessCalendar::add_business_ms(std::int64_t from, std::int64_t ms) const {
    std::int64_t remaining = std::max<std::int64_t>(0, ms);
    for (std::int64_t cursor = from; cursor < from + kCalendarHorizonDays * kDay; cursor += kWeek) {
        std::int64_t end = cursor + kWeek;
        for (const auto& s : spans(cursor, end)) {
            std::int64_t a = std::max(s.from, cursor);
            std::int64_t b = std::min(s.to, end);
            if (b - a >= remaining) return a + remaining;
            remaining -= b - a;
        }
    }
    return std::nullopt;
}

// ---- Storage -----------------------------------------------------------------------------------------------------

std::vector<store::Migration> sla_migrations() {
    return {{"operator_sla", 1, "business-hours calendars, SLA policies, per-dialog SLA figures, breaches",
             R"sql(
CREATE TABLE op_sla_calendars (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  definition TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE op_sla_policies (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  tfr_minutes INTEGER,
  ttc_minutes INTEGER,
  calendar_id TEXT,
  client_idle_minutes INTEGER,
  operator_idle_minutes INTEGER,
  is_default INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE op_sla_policy_groups (
  group_id TEXT PRIMARY KEY,
  policy_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX op_sla_policy_groups_policy ON op_sla_policy_groups(policy_id);
CREATE TABLE op_dialog_sla (
  dialog_id TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  group_id TEXT NOT NULL DEFAULT '',
  policy_id TEXT,
  calendar_id TEXT,
  tfr_target_ms INTEGER,
  ttc_target_ms INTEGER,
  tfr_due_at INTEGER,
  ttc_due_at INTEGER,
  first_response_at INTEGER,
  closed_at INTEGER,
  tfr_ms INTEGER,
  ttc_ms INTEGER,
  tfr_breached INTEGER NOT NULL DEFAULT 0,
  ttc_breached INTEGER NOT NULL DEFAULT 0,
  requeues INTEGER NOT NULL DEFAULT 0,
  idle_closed INTEGER NOT NULL DEFAULT 0,
  active INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (dialog_id, started_at)
) WITHOUT ROWID;
CREATE INDEX op_dialog_sla_active ON op_dialog_sla(active) WHERE active = 1;
CREATE INDEX op_dialog_sla_started ON op_dialog_sla(started_at);
CREATE TABLE op_sla_breaches (
  dialog_id TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  metric TEXT NOT NULL,
  group_id TEXT NOT NULL,
  target_ms INTEGER NOT NULL,
  actual_ms INTEGER NOT NULL,
  due_at INTEGER NOT NULL,
  recorded_at INTEGER NOT NULL,
  PRIMARY KEY (dialog_id, started_at, metric)
) WITHOUT ROWID;
CREATE INDEX op_sla_breaches_recorded ON op_sla_breaches(recorded_at);
)sql"}};
}

namespace {

json::value time_or_null(std::optional<std::int64_t> ms) {
    return ms ? json::value(core::format_time(*ms)) : json::value(nullptr);
}
json::value int_or_null(std::optional<std::int64_t> v) { return v ? json::value(*v) : json::value(nullptr); }
store::Value opt_value(std::optional<std::int64_t> v) { return v ? store::Value(*v) : store::Value(nullptr); }
store::Value opt_text(const std::string& v) { return v.empty() ? store::Value(nullptr) : store::Value(v); }

constexpr const char* kCalendarColumns = "id, name, definition, created_at, updated_at";

json::object calendar_json(const store::Row& r) {
    json::object out{{"id", r.text(0)}, {"name", r.text(1)}};
    try {
        json::value definition = json::parse(r.text(2));
        for (auto& kv : definition.as_object()) out[kv.key()] = kv.value();
    } catch (const std::exception&) {
        // Definitions are validated on write; an unreadable one shows without its hours.
    }
    out["created_at"] = core::format_time(r.integer(3));
    out["updated_at"] = core::format_time(r.integer(4));
    return out;
}

constexpr const char* kPolicyColumns =
    "id, name, tfr_minutes, ttc_minutes, calendar_id, client_idle_minutes, operator_idle_minutes, is_default, "
    "created_at, updated_at";

/// A stored policy (what the sweeper and the planner use).
struct Policy {
    std::string id;
    std::string name;
    std::optional<std::int64_t> tfr_minutes, ttc_minutes;
    std::string calendar_id;
    std::optional<std::int64_t> client_idle_minutes, operator_idle_minutes;
    bool is_default = false;
};

Policy policy_of(const store::Row& r) {
    return Policy{r.text(0),          r.text(1), r.opt_integer(2), r.opt_integer(3), r.is_null(4) ? "" : r.text(4),
                  r.opt_integer(5), r.opt_integer(6), r.integer(7) != 0};
}

json::object policy_json(store::Tx& tx, const store::Row& r) {
    Policy p = policy_of(r);
    json::array groups;
    for (const auto& g : tx.query("SELECT group_id FROM op_sla_policy_groups WHERE policy_id = ? ORDER BY group_id", {p.id})) {
        groups.emplace_back(g.text(0));
    }
    return json::object{{"id", p.id},
                        {"name", p.name},
                        {"tfr_minutes", int_or_null(p.tfr_minutes)},
                        {"ttc_minutes", int_or_null(p.ttc_minutes)},
                        {"calendar_id", p.calendar_id.empty() ? json::value(nullptr) : json::value(p.calendar_id)},
                        {"client_idle_minutes", int_or_null(p.client_idle_minutes)},
                        {"operator_idle_minutes", int_or_null(p.operator_idle_minutes)},
                        {"group_ids", std::move(groups)},
                        {"default", p.is_default},
                        {"created_at", core::format_time(r.integer(8))},
                        {"updated_at", core::format_time(r.integer(9))}};
}

std::string checked_name(const json::object& body) {
    std::string name(core::required_string(body, "name"));
    if (name.empty() || name.size() > kMaxNameBytes || name.find_first_of("\r\n") != std::string::npos) {
        bad("name", fmt::format("'name' is 1 to {} bytes on one line", kMaxNameBytes));
    }
    return name;
}

/// The policy for a dialog of `group_id`: the group's, else the default, else none.
std::optional<Policy> policy_for(store::Tx& tx, const std::string& group_id) {
    if (!group_id.empty()) {
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM op_sla_policies WHERE id = (SELECT policy_id FROM "
                                              "op_sla_policy_groups WHERE group_id = ?)",
                                              kPolicyColumns),
                                  {group_id})) {
            return policy_of(*r);
        }
    }
    if (auto r = tx.query_one(fmt::format("SELECT {} FROM op_sla_policies WHERE is_default = 1", kPolicyColumns))) {
        return policy_of(*r);
    }
    return std::nullopt;
}

/// The figures of one dialog episode (a row of op_dialog_sla, or a plan not stored yet).
struct Episode {
    std::string dialog_id;
    std::int64_t started_at = 0;
    std::string group_id;
    std::string policy_id;
    std::string calendar_id;
    std::optional<std::int64_t> tfr_target, ttc_target, tfr_due, ttc_due;
    std::optional<std::int64_t> first_response_at, closed_at, tfr_ms, ttc_ms;
    bool tfr_breached = false, ttc_breached = false;
    std::int64_t requeues = 0;
    bool idle_closed = false;
    bool stored = false;
};

constexpr const char* kEpisodeColumns =
    "dialog_id, started_at, group_id, coalesce(policy_id, ''), coalesce(calendar_id, ''), tfr_target_ms, "
    "ttc_target_ms, tfr_due_at, ttc_due_at, first_response_at, closed_at, tfr_ms, ttc_ms, tfr_breached, "
    "ttc_breached, requeues, idle_closed";

Episode episode_of(const store::Row& r) {
    Episode e;
    e.dialog_id = r.text(0);
    e.started_at = r.integer(1);
    e.group_id = r.text(2);
    e.policy_id = r.text(3);
    e.calendar_id = r.text(4);
    e.tfr_target = r.opt_integer(5);
    e.ttc_target = r.opt_integer(6);
    e.tfr_due = r.opt_integer(7);
    e.ttc_due = r.opt_integer(8);
    e.first_response_at = r.opt_integer(9);
    e.closed_at = r.opt_integer(10);
    e.tfr_ms = r.opt_integer(11);
    e.ttc_ms = r.opt_integer(12);
    e.tfr_breached = r.integer(13) != 0;
    e.ttc_breached = r.integer(14) != 0;
    e.requeues = r.integer(15);
    e.idle_closed = r.integer(16) != 0;
    e.stored = true;
    return e;
}

/// The first operator message of the episode.
std::optional<std::int64_t> first_response(store::Tx& tx, const std::string& dialog_id, std::int64_t started_at) {
    auto r = tx.query_one("SELECT min(created_at) FROM messages WHERE dialog_id = ? AND sender = 'operator' AND created_at >= ?",
                          {dialog_id, started_at});
    return r ? r->opt_integer(0) : std::nullopt;
}

std::int64_t percentile(std::vector<std::int64_t>& v, double p) {
    std::sort(v.begin(), v.end());
    auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::max<std::size_t>(rank, 1) - 1];
}

}  // namespace

// ---- SlaService --------------------------------------------------------------------------------------------------

SlaService::SlaService(store::Store& store, const core::Clock& clock, OperatorService& operators, events::EventHub* hub,
                       core::Metrics* metrics)
    : store_(store), clock_(clock), operators_(operators), hub_(hub), metrics_(metrics) {}

std::shared_ptr<const BusinessCalendar> SlaService::compiled(store::Tx& tx, const std::string& id) const {
    if (id.empty()) return nullptr;
    auto r = tx.query_one("SELECT definition FROM op_sla_calendars WHERE id = ?", {id});
    if (!r) return nullptr;
    std::string definition = r->text(0);
    {
        std::lock_guard lock(cache_mutex_);
        auto it = cache_.find(id);
        if (it != cache_.end() && it->second.first == definition) return it->second.second;
    }
    std::shared_ptr<const BusinessCalendar> calendar;
    try {
        calendar = std::make_shared<const BusinessCalendar>(BusinessCalendar::parse(core::parse_json_object(definition)));
    } catch (const std::exception& e) {
        // Validated on write: a definition that no longer parses counts wall-clock time, and says so.
        core::log_event(spdlog::level::warn, "sla_calendar_unreadable",
                        fmt::format(R"("calendar":{},"error":{})", core::json_quote(id), core::json_quote(e.what())));
        return nullptr;
    }
    std::lock_guard lock(cache_mutex_);
    cache_[id] = {definition, calendar};
    return calendar;
}

void SlaService::publish(const std::string& type, json::object body, const std::string& operator_id) {
    if (!hub_) return;
    const std::string module(auth::kModuleOperator);
    if (operator_id.empty()) {
        hub_->publish(type, std::move(body), events::Audience::permission(module, core::Action::kView));
        return;
    }
    hub_->publish(type, std::move(body), events::Audience::users_or({operator_id}, module, core::Action::kDelete));
}

// ---- Calendars -----------------------------------------------------------------------------------------------------

json::array SlaService::calendars() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_sla_calendars ORDER BY name", kCalendarColumns))) {
            out.push_back(calendar_json(r));
        }
    });
    return out;
}

json::object SlaService::calendar(std::string_view id) const {
    std::optional<json::object> out;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM op_sla_calendars WHERE id = ?", kCalendarColumns),
                                  {std::string(id)})) {
            out = calendar_json(*r);
        }
    });
    if (!out) throw core::NotFound(fmt::format("no calendar '{}'", id), "calendar_not_found");
    return *out;
}

boost::asio::awaitable<json::object> SlaService::create_calendar(json::object body) {
    std::string name = checked_name(body);
    std::string definition = json::serialize(BusinessCalendar::parse(body, {"name"}).to_json());
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    auto write = [id, name, definition, now](store::Tx& tx) {
        auto count = tx.query_one("SELECT count(*) FROM op_sla_calendars")->integer(0);
        if (static_cast<std::size_t>(count) >= kMaxCalendars) {
            throw core::Conflict(fmt::format("at most {} calendars", kMaxCalendars), "too_many_calendars");
        }
        if (tx.query_one("SELECT 1 FROM op_sla_calendars WHERE name = ?", {name})) {
            throw core::Conflict(fmt::format("a calendar is named '{}'", name), "calendar_exists");
        }
        tx.exec("INSERT INTO op_sla_calendars(id, name, definition, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                {id, name, definition, now, now});
        return calendar_json(*tx.query_one(fmt::format("SELECT {} FROM op_sla_calendars WHERE id = ?", kCalendarColumns), {id}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<json::object> SlaService::update_calendar(std::string id, json::object body) {
    core::reject_unknown_fields(body, {"name", "time_zone", "week", "holidays"});
    if (body.empty()) bad("body", "give at least one of name, time_zone, week, holidays");
    std::optional<std::string> name;
    if (body.contains("name")) name = checked_name(body);
    json::object current = calendar(id);  // NotFound
    json::object merged{{"time_zone", current["time_zone"]}, {"week", current["week"]}, {"holidays", current["holidays"]}};
    for (const char* key : {"time_zone", "week", "holidays"}) {
        if (body.contains(key)) merged[key] = body.at(key);
    }
    std::string definition = json::serialize(BusinessCalendar::parse(merged).to_json());
    std::int64_t now = clock_.now_ms();
    auto write = [id, name, definition, now](store::Tx& tx) -> std::optional<json::object> {
        if (!tx.query_one("SELECT 1 FROM op_sla_calendars WHERE id = ?", {id})) return std::nullopt;
        if (name && tx.query_one("SELECT 1 FROM op_sla_calendars WHERE name = ? AND id <> ?", {*name, id})) {
            throw core::Conflict(fmt::format("a calendar is named '{}'", *name), "calendar_exists");
        }
        if (name) tx.exec("UPDATE op_sla_calendars SET name = ? WHERE id = ?", {*name, id});
        tx.exec("UPDATE op_sla_calendars SET definition = ?, updated_at = ? WHERE id = ?", {definition, now, id});
        return calendar_json(*tx.query_one(fmt::format("SELECT {} FROM op_sla_calendars WHERE id = ?", kCalendarColumns), {id}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("no calendar '{}'", id), "calendar_not_found");
    co_return *out;
}

boost::asio::awaitable<void> SlaService::delete_calendar(std::string id) {
    auto write = [id](store::Tx& tx) {
        if (auto p = tx.query_one("SELECT name FROM op_sla_policies WHERE calendar_id = ? ORDER BY name LIMIT 1", {id})) {
            throw core::Conflict(fmt::format("the SLA policy '{}' counts in this calendar", p->text(0)), "calendar_in_use");
        }
        return tx.exec("DELETE FROM op_sla_calendars WHERE id = ?", {id}) > 0;
    };
    if (!co_await store::co_write(store_, std::move(write))) {
        throw core::NotFound(fmt::format("no calendar '{}'", id), "calendar_not_found");
    }
    std::lock_guard lock(cache_mutex_);
    cache_.erase(id);
}

json::object SlaService::probe_calendar(std::string_view id, std::int64_t at, std::optional<std::int64_t> until) const {
    std::shared_ptr<const BusinessCalendar> c;
    store_.read([&](store::Tx& tx) { c = compiled(tx, std::string(id)); });
    if (!c) throw core::NotFound(fmt::format("no calendar '{}'", id), "calendar_not_found");
    json::object out{{"at", core::format_time(at)}, {"open", c->is_open(at)}, {"next_open_at", time_or_null(c->next_open(at))}};
    if (until) {
        if (*until < at || *until - at > kMaxSlaReportDays * kDay) {
            bad("until", fmt::format("'until' is after 'at' and at most {} days later", kMaxSlaReportDays));
        }
        out["until"] = core::format_time(*until);
        out["business_ms"] = c->business_ms(at, *until);
    }
    return out;
}

// ---- Policies ------------------------------------------------------------------------------------------------------

json::array SlaService::policies() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_sla_policies ORDER BY name", kPolicyColumns))) {
            out.push_back(policy_json(tx, r));
        }
    });
    return out;
}

json::object SlaService::policy(std::string_view id) const {
    std::optional<json::object> out;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM op_sla_policies WHERE id = ?", kPolicyColumns), {std::string(id)})) {
            out = policy_json(tx, *r);
        }
    });
    if (!out) throw core::NotFound(fmt::format("no SLA policy '{}'", id), "policy_not_found");
    return *out;
}

namespace {

/// The validated fields of a policy body; `present` says which were given (null included).
struct PolicyInput {
    std::optional<std::string> name;
    std::map<std::string, std::optional<std::int64_t>> minutes;  ///< given minute fields (nullopt = null)
    std::optional<std::optional<std::string>> calendar_id;
    std::optional<std::vector<std::string>> group_ids;
    std::optional<bool> is_default;
};

PolicyInput parse_policy(const json::object& body, bool create) {
    core::reject_unknown_fields(body, {"name", "tfr_minutes", "ttc_minutes", "calendar_id", "client_idle_minutes",
                                       "operator_idle_minutes", "group_ids", "default"});
    PolicyInput in;
    if (create || body.contains("name")) in.name = checked_name(body);
    for (const char* key : {"tfr_minutes", "ttc_minutes", "client_idle_minutes", "operator_idle_minutes"}) {
        if (!body.contains(key)) continue;
        auto v = core::optional_int(body, key);
        std::int64_t max = std::string_view(key).find("idle") != std::string_view::npos ? kMaxIdleMinutes : kMaxTargetMinutes;
        if (v && (*v < 1 || *v > max)) bad(key, fmt::format("'{}' is from 1 to {} minutes (or null)", key, max));
        in.minutes[key] = v;
    }
    if (body.contains("calendar_id")) {
        auto c = core::optional_string(body, "calendar_id");
        in.calendar_id = c && !c->empty() ? c : std::nullopt;
    }
    if (body.contains("group_ids")) {
        const auto* list = core::optional_array(body, "group_ids");
        std::vector<std::string> ids;
        if (list) {
            if (list->size() > kMaxSkillGroups) bad("group_ids", fmt::format("'group_ids' has at most {} ids", kMaxSkillGroups));
            std::set<std::string> seen;
            for (const auto& v : *list) {
                if (!v.is_string() || v.get_string().empty() || v.get_string().size() > 64) {
                    bad("group_ids", "'group_ids' is a list of skill group ids");
                }
                if (seen.insert(std::string(v.get_string())).second) ids.emplace_back(v.get_string());
            }
        }
        in.group_ids = std::move(ids);
    }
    in.is_default = core::optional_bool(body, "default");
    if (!create && body.empty()) bad("body", "give at least one field to change");
    return in;
}

/// Applies `in` to policy `id` inside a write (the row exists); checks references and the result as a whole.
void apply_policy(store::Tx& tx, const std::string& id, const PolicyInput& in, std::int64_t now) {
    if (in.name && tx.query_one("SELECT 1 FROM op_sla_policies WHERE name = ? AND id <> ?", {*in.name, id})) {
        throw core::Conflict(fmt::format("an SLA policy is named '{}'", *in.name), "policy_exists");
    }
    if (in.name) tx.exec("UPDATE op_sla_policies SET name = ? WHERE id = ?", {*in.name, id});
    for (const auto& [key, v] : in.minutes) {
        tx.exec(fmt::format("UPDATE op_sla_policies SET {} = ? WHERE id = ?", key), {opt_value(v), id});
    }
    if (in.calendar_id) {
        if (*in.calendar_id && !tx.query_one("SELECT 1 FROM op_sla_calendars WHERE id = ?", {**in.calendar_id})) {
            throw core::Unprocessable(fmt::format("no calendar '{}'", **in.calendar_id), "calendar_not_found",
                                      json::array{json::object{{"field", "calendar_id"}}});
        }
        tx.exec("UPDATE op_sla_policies SET calendar_id = ? WHERE id = ?",
                {*in.calendar_id ? store::Value(**in.calendar_id) : store::Value(nullptr), id});
    }
    if (in.group_ids) {
        for (const auto& g : *in.group_ids) {
            if (!tx.query_one("SELECT 1 FROM op_skill_groups WHERE id = ?", {g})) {
                throw core::Unprocessable(fmt::format("no skill group '{}'", g), "group_not_found",
                                          json::array{json::object{{"field", "group_ids"}}});
            }
            if (auto other = tx.query_one("SELECT p.name FROM op_sla_policy_groups g JOIN op_sla_policies p ON p.id = g.policy_id "
                                          "WHERE g.group_id = ? AND g.policy_id <> ?",
                                          {g, id})) {
                throw core::Conflict(fmt::format("the skill group '{}' already follows the SLA policy '{}'", g, other->text(0)),
                                     "group_has_policy", json::array{json::object{{"field", "group_ids"}}});
            }
        }
        tx.exec("DELETE FROM op_sla_policy_groups WHERE policy_id = ?", {id});
        for (const auto& g : *in.group_ids) tx.exec("INSERT INTO op_sla_policy_groups(group_id, policy_id) VALUES (?, ?)", {g, id});
    }
    if (in.is_default) {
        // One default: making this one the default takes it from the other.
        if (*in.is_default) tx.exec("UPDATE op_sla_policies SET is_default = 0 WHERE id <> ?", {id});
        tx.exec("UPDATE op_sla_policies SET is_default = ? WHERE id = ?", {static_cast<std::int64_t>(*in.is_default), id});
    }
    auto r = tx.query_one(fmt::format("SELECT {} FROM op_sla_policies WHERE id = ?", kPolicyColumns), {id});
    Policy p = policy_of(*r);
    if (!p.tfr_minutes && !p.ttc_minutes && !p.client_idle_minutes && !p.operator_idle_minutes) {
        throw core::Unprocessable("a policy sets at least one of tfr_minutes, ttc_minutes, client_idle_minutes, operator_idle_minutes",
                                  "empty_policy");
    }
    if (p.tfr_minutes && p.ttc_minutes && *p.ttc_minutes < *p.tfr_minutes) {
        throw core::Unprocessable("closing cannot be due before the first response", "invalid_policy",
                                  json::array{json::object{{"field", "ttc_minutes"}, {"reason", "less than tfr_minutes"}}});
    }
    tx.exec("UPDATE op_sla_policies SET updated_at = ? WHERE id = ?", {now, id});
}

}  // namespace

boost::asio::awaitable<json::object> SlaService::create_policy(json::object body) {
    PolicyInput in = parse_policy(body, true);
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    auto write = [id, in, now](store::Tx& tx) {
        auto count = tx.query_one("SELECT count(*) FROM op_sla_policies")->integer(0);
        if (static_cast<std::size_t>(count) >= kMaxSlaPolicies) {
            throw core::Conflict(fmt::format("at most {} SLA policies", kMaxSlaPolicies), "too_many_policies");
        }
        if (tx.query_one("SELECT 1 FROM op_sla_policies WHERE name = ?", {*in.name})) {
            throw core::Conflict(fmt::format("an SLA policy is named '{}'", *in.name), "policy_exists");
        }
        tx.exec("INSERT INTO op_sla_policies(id, name, created_at, updated_at) VALUES (?, ?, ?, ?)", {id, *in.name, now, now});
        apply_policy(tx, id, in, now);
        return policy_json(tx, *tx.query_one(fmt::format("SELECT {} FROM op_sla_policies WHERE id = ?", kPolicyColumns), {id}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<json::object> SlaService::update_policy(std::string id, json::object body) {
    PolicyInput in = parse_policy(body, false);
    std::int64_t now = clock_.now_ms();
    auto write = [id, in, now](store::Tx& tx) -> std::optional<json::object> {
        if (!tx.query_one("SELECT 1 FROM op_sla_policies WHERE id = ?", {id})) return std::nullopt;
        apply_policy(tx, id, in, now);
        return policy_json(tx, *tx.query_one(fmt::format("SELECT {} FROM op_sla_policies WHERE id = ?", kPolicyColumns), {id}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("no SLA policy '{}'", id), "policy_not_found");
    co_return *out;
}

boost::asio::awaitable<void> SlaService::delete_policy(std::string id) {
    auto write = [id](store::Tx& tx) {
        if (tx.exec("DELETE FROM op_sla_policies WHERE id = ?", {id}) == 0) return false;
        tx.exec("DELETE FROM op_sla_policy_groups WHERE policy_id = ?", {id});
        return true;
    };
    if (!co_await store::co_write(store_, std::move(write))) {
        throw core::NotFound(fmt::format("no SLA policy '{}'", id), "policy_not_found");
    }
}

// ---- Planning and figures ------------------------------------------------------------------------------------------

namespace {

/// A new episode's plan: the policy of its group (or the default), targets and due times.
template <typename Compile>
Episode plan(store::Tx& tx, Compile&& compile, const std::string& dialog_id, std::int64_t started_at,
             const std::string& group_id, bool outgoing) {
    Episode e;
    e.dialog_id = dialog_id;
    e.started_at = started_at;
    e.group_id = group_id;
    auto p = policy_for(tx, group_id);
    if (!p) return e;
    e.policy_id = p->id;
    std::shared_ptr<const BusinessCalendar> calendar = compile(tx, p->calendar_id);
    if (calendar) e.calendar_id = p->calendar_id;
    auto due = [&](std::int64_t target) -> std::optional<std::int64_t> {
        return calendar ? calendar->add_business_ms(started_at, target) : std::optional<std::int64_t>(started_at + target);
    };
    // The operator wrote first in an outgoing dialog: there is no first response to wait for.
    if (p->tfr_minutes && !outgoing) {
        e.tfr_target = *p->tfr_minutes * kMinute;
        e.tfr_due = due(*e.tfr_target);
    }
    if (p->ttc_minutes) {
        e.ttc_target = *p->ttc_minutes * kMinute;
        e.ttc_due = due(*e.ttc_target);
    }
    return e;
}

std::int64_t measure(const BusinessCalendar* calendar, std::int64_t from, std::int64_t to) {
    if (to <= from) return 0;
    return calendar ? calendar->business_ms(from, to) : to - from;
}

/// Whether a metric is breached at `now`: done after its due time, or not done and due.
bool late(std::optional<std::int64_t> due, std::optional<std::int64_t> done, std::int64_t now) {
    if (!due) return false;
    return done ? *done > *due : now >= *due;
}

}  // namespace

json::object SlaService::dialog_sla(const core::Principal& who, std::string_view dialog_id) const {
    operators_.dialog(who, dialog_id);  // NotFound / Forbidden by the panel's rules
    std::int64_t now = clock_.now_ms();
    Episode e;
    std::string state;
    std::string policy_name;
    std::shared_ptr<const BusinessCalendar> calendar;
    store_.read([&](store::Tx& tx) {
        auto o = tx.query_one("SELECT created_at, coalesce(group_id, ''), outgoing, state, closed_at FROM op_dialogs "
                              "WHERE dialog_id = ?",
                              {std::string(dialog_id)});
        if (!o) return;
        state = o->text(3);
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM op_dialog_sla WHERE dialog_id = ? AND started_at = ?", kEpisodeColumns),
                                  {std::string(dialog_id), o->integer(0)})) {
            e = episode_of(*r);
        } else {
            auto compile = [this](store::Tx& t, const std::string& id) { return compiled(t, id); };
            e = plan(tx, compile, std::string(dialog_id), o->integer(0), o->text(1), o->integer(2) != 0);
        }
        if (!e.first_response_at) e.first_response_at = first_response(tx, e.dialog_id, e.started_at);
        if (!e.closed_at && state == "closed") e.closed_at = o->integer(4);
        calendar = compiled(tx, e.calendar_id);
        if (!e.policy_id.empty()) {
            if (auto p = tx.query_one("SELECT name FROM op_sla_policies WHERE id = ?", {e.policy_id})) policy_name = p->text(0);
        }
    });
    if (state.empty()) throw core::NotFound(fmt::format("no operator dialog '{}'", dialog_id), "dialog_not_found");
    auto metric = [&](std::optional<std::int64_t> target, std::optional<std::int64_t> due, std::optional<std::int64_t> done,
                      bool stored_breach) {
        std::int64_t elapsed = measure(calendar.get(), e.started_at, done.value_or(now));
        json::value remaining = nullptr;
        if (target && due && !done) remaining = *target - elapsed;
        return json::object{{"target_minutes", target ? json::value(*target / kMinute) : json::value(nullptr)},
                            {"due_at", time_or_null(due)},
                            {"done_at", time_or_null(done)},
                            {"elapsed_ms", elapsed},
                            {"remaining_ms", remaining},
                            {"breached", stored_breach || late(due, done, now)}};
    };
    json::object tfr = metric(e.tfr_target, e.tfr_due, e.first_response_at, e.tfr_breached);
    json::object ttc = metric(e.ttc_target, e.ttc_due, e.closed_at, e.ttc_breached);
    bool breached = tfr.at("breached").as_bool() || ttc.at("breached").as_bool();
    return json::object{{"dialog_id", std::string(dialog_id)},
                        {"status", state},
                        {"started_at", core::format_time(e.started_at)},
                        {"group_id", e.group_id.empty() ? json::value(nullptr) : json::value(e.group_id)},
                        {"policy_id", e.policy_id.empty() ? json::value(nullptr) : json::value(e.policy_id)},
                        {"policy_name", policy_name.empty() ? json::value(nullptr) : json::value(policy_name)},
                        {"calendar_id", e.calendar_id.empty() ? json::value(nullptr) : json::value(e.calendar_id)},
                        {"business_hours", calendar != nullptr},
                        {"tfr", std::move(tfr)},
                        {"ttc", std::move(ttc)},
                        {"breached", breached},
                        {"requeues", e.requeues},
                        {"idle_closed", e.idle_closed},
                        {"now", core::format_time(now)}};
}

json::object SlaService::report(std::int64_t from, std::int64_t to, std::optional<std::string> group_id) const {
    if (to <= from) bad("to", "'to' is after 'from'");
    if (to - from > kMaxSlaReportDays * kDay) bad("to", fmt::format("the range is at most {} days", kMaxSlaReportDays), "range_too_long");
    struct Acc {
        std::int64_t dialogs = 0, answered = 0, closed = 0, tfr_breaches = 0, ttc_breaches = 0;
        std::vector<std::int64_t> tfr, ttc;
    };
    std::map<std::string, Acc> groups;
    Acc total;
    bool truncated = false;
    std::map<std::string, std::string> names;
    store_.read([&](store::Tx& tx) {
        std::string sql =
            "SELECT group_id, first_response_at, closed_at, tfr_ms, ttc_ms, tfr_breached, ttc_breached FROM op_dialog_sla "
            "WHERE started_at >= ? AND started_at < ?";
        store::Params params{from, to};
        if (group_id) {
            sql += " AND group_id = ?";
            params.emplace_back(*group_id == "none" ? std::string() : *group_id);
        }
        sql += " LIMIT ?";
        params.emplace_back(static_cast<std::int64_t>(kMaxSlaReportDialogs + 1));
        auto rows = tx.query(sql, params);
        truncated = rows.size() > kMaxSlaReportDialogs;
        for (std::size_t i = 0; i < rows.size() && i < kMaxSlaReportDialogs; ++i) {
            const auto& r = rows[i];
            for (Acc* a : {&groups[r.text(0)], &total}) {
                ++a->dialogs;
                if (!r.is_null(1)) ++a->answered;
                if (!r.is_null(2)) ++a->closed;
                if (!r.is_null(3)) a->tfr.push_back(r.integer(3));
                if (!r.is_null(4)) a->ttc.push_back(r.integer(4));
                a->tfr_breaches += r.integer(5);
                a->ttc_breaches += r.integer(6);
            }
        }
        for (const auto& r : tx.query("SELECT id, name FROM op_skill_groups")) names[r.text(0)] = r.text(1);
    });
    auto figures = [](Acc& a) {
        auto pct = [](std::vector<std::int64_t>& v, double p) { return v.empty() ? json::value(nullptr) : json::value(percentile(v, p)); };
        return json::object{{"dialogs", a.dialogs},
                            {"answered", a.answered},
                            {"closed", a.closed},
                            {"tfr_breaches", a.tfr_breaches},
                            {"ttc_breaches", a.ttc_breaches},
                            {"tfr_median_ms", pct(a.tfr, 0.5)},
                            {"tfr_p90_ms", pct(a.tfr, 0.9)},
                            {"ttc_median_ms", pct(a.ttc, 0.5)},
                            {"ttc_p90_ms", pct(a.ttc, 0.9)}};
    };
    json::array items;
    for (auto& [group, acc] : groups) {
        json::object item = figures(acc);
        item["group_id"] = group.empty() ? json::value(nullptr) : json::value(group);
        auto n = names.find(group);
        item["group_name"] = n == names.end() ? json::value(nullptr) : json::value(n->second);
        items.push_back(std::move(item));
    }
    return json::object{{"from", core::format_time(from)},
                        {"to", core::format_time(to)},
                        {"groups", std::move(items)},
                        {"total", figures(total)},
                        {"truncated", truncated}};
}

// ---- The sweeper ---------------------------------------------------------------------------------------------------

namespace {

/// What one tick decided for one episode (applied in one write).
struct Change {
    Episode episode;
    bool insert = false;  ///< a new episode's plan
    bool settle = false;  ///< the episode is over: no more timers
    std::vector<std::pair<std::string, std::int64_t>> breaches;  ///< metric, actual ms
};

struct IdleAction {
    std::string dialog_id;
    std::int64_t started_at;
    std::string operator_id;
    std::string group_id;
    std::int64_t last_n;
    std::int64_t idle_ms;
    std::int64_t timeout_minutes;
    bool close;  ///< client idle → close; operator idle → requeue
};

constexpr std::int64_t kEnrolClosedWithinMs = 10 * kMinute;  ///< closed dialogs still planned after a restart

}  // namespace

boost::asio::awaitable<SlaTickResult> SlaService::tick(std::int64_t now) {
    SlaTickResult result;
    if (ticking_.exchange(true)) co_return result;
    struct Reset {
        std::atomic<bool>& flag;
        ~Reset() { flag = false; }
    } reset{ticking_};

    std::vector<Change> changes;
    std::vector<IdleAction> idle;
    auto compile = [this](store::Tx& t, const std::string& id) { return compiled(t, id); };
    store_.read([&](store::Tx& tx) {
        std::map<std::string, Policy> policies;
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_sla_policies", kPolicyColumns))) {
            Policy p = policy_of(r);
            policies.emplace(p.id, std::move(p));
        }
        // Stored episodes still running, then new ones: handed-over (or started) dialogs without a plan.
        std::vector<Episode> active;
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_dialog_sla WHERE active = 1 LIMIT ?", kEpisodeColumns),
                                      {static_cast<std::int64_t>(kSlaSweepBatch)})) {
            active.push_back(episode_of(r));
        }
        const std::size_t stored = active.size();
        for (const auto& r : tx.query("SELECT o.dialog_id, o.created_at, coalesce(o.group_id, ''), o.outgoing FROM op_dialogs o "
                                      "WHERE (o.state <> 'closed' OR o.closed_at >= ?) AND NOT EXISTS (SELECT 1 FROM "
                                      "op_dialog_sla s WHERE s.dialog_id = o.dialog_id AND s.started_at = o.created_at) LIMIT ?",
                                      {now - kEnrolClosedWithinMs, static_cast<std::int64_t>(kSlaSweepBatch)})) {
            active.push_back(plan(tx, compile, r.text(0), r.integer(1), r.text(2), r.integer(3) != 0));
        }
        for (std::size_t i = 0; i < active.size(); ++i) {
            Episode& e = active[i];
            bool fresh = i >= stored;
            auto o = tx.query_one("SELECT o.created_at, o.state, coalesce(o.operator_id, ''), o.assigned_at, o.closed_at, "
                                  "coalesce(d.last_n, 0) FROM op_dialogs o LEFT JOIN dialogs d ON d.id = o.dialog_id "
                                  "WHERE o.dialog_id = ?",
                                  {e.dialog_id});
            Change c;
            c.insert = fresh;
            bool changed = fresh;
            if (!o || o->integer(0) != e.started_at) {
                // A new handover replaced the episode before a tick saw it close: it is over, its close time unknown.
                c.settle = true;
                c.episode = e;
                changes.push_back(std::move(c));
                continue;
            }
            std::shared_ptr<const BusinessCalendar> calendar = compiled(tx, e.calendar_id);
            if (!e.first_response_at) {
                if ((e.first_response_at = first_response(tx, e.dialog_id, e.started_at))) {
                    e.tfr_ms = measure(calendar.get(), e.started_at, *e.first_response_at);
                    changed = true;
                }
            }
            const std::string state = o->text(1);
            if (state == "closed") {
                e.closed_at = o->integer(4);
                e.ttc_ms = measure(calendar.get(), e.started_at, *e.closed_at);
                c.settle = true;
                changed = true;
            }
            if (e.tfr_target && !e.tfr_breached && late(e.tfr_due, e.first_response_at, now)) {
                c.breaches.emplace_back("tfr", measure(calendar.get(), e.started_at, e.first_response_at.value_or(now)));
                e.tfr_breached = true;
                changed = true;
            }
            if (e.ttc_target && !e.ttc_breached && late(e.ttc_due, e.closed_at, now)) {
                c.breaches.emplace_back("ttc", measure(calendar.get(), e.started_at, e.closed_at.value_or(now)));
                e.ttc_breached = true;
                changed = true;
            }
            // Idle timeouts (wall-clock) of the episode's policy as it is now.
            auto p = policies.find(e.policy_id);
            if (state == "assigned" && p != policies.end() &&
                (p->second.client_idle_minutes || p->second.operator_idle_minutes)) {
                std::string op = o->text(2);
                std::int64_t assigned_at = o->integer(3);
                std::int64_t last_n = o->integer(5);
                auto last = tx.query_one("SELECT n, sender, created_at FROM messages WHERE dialog_id = ? AND sender IN "
                                         "('client', 'operator') ORDER BY n DESC LIMIT 1",
                                         {e.dialog_id});
                if (last && last->text(1) == "operator") {
                    std::int64_t quiet = now - last->integer(2);
                    if (p->second.client_idle_minutes && quiet >= *p->second.client_idle_minutes * kMinute) {
                        idle.push_back({e.dialog_id, e.started_at, op, e.group_id, last_n, quiet,
                                        *p->second.client_idle_minutes, true});
                    }
                } else if (p->second.operator_idle_minutes) {
                    // The client waits since their first message after the operator's last one, or since the
                    // operator got the dialog, whichever is later.
                    std::int64_t since = assigned_at;
                    if (last) {
                        auto first = tx.query_one("SELECT min(created_at) FROM messages WHERE dialog_id = ? AND sender = 'client' "
                                                  "AND n > coalesce((SELECT max(n) FROM messages WHERE dialog_id = ? AND "
                                                  "sender = 'operator'), 0)",
                                                  {e.dialog_id, e.dialog_id});
                        if (first && !first->is_null(0)) since = std::max(since, first->integer(0));
                    }
                    std::int64_t waited = now - since;
                    if (waited >= *p->second.operator_idle_minutes * kMinute) {
                        idle.push_back({e.dialog_id, e.started_at, op, e.group_id, last_n, waited,
                                        *p->second.operator_idle_minutes, false});
                    }
                }
            }
            if (changed) {
                c.episode = e;
                changes.push_back(std::move(c));
            }
        }
    });

    struct Recorded {
        std::string dialog_id;
        std::string group_id;
        std::string metric;
        std::int64_t target, actual, due;
    };
    std::vector<Recorded> recorded;
    std::size_t enrolled = 0;
    if (!changes.empty()) {
        auto write = [changes, now](store::Tx& tx) {
            std::pair<std::size_t, std::vector<Recorded>> out;
            for (const auto& c : changes) {
                const Episode& e = c.episode;
                if (c.insert) {
                    out.first += static_cast<std::size_t>(tx.exec("INSERT OR IGNORE INTO op_dialog_sla(dialog_id, started_at, group_id, policy_id, "
                                         "calendar_id, tfr_target_ms, ttc_target_ms, tfr_due_at, ttc_due_at) VALUES (?, ?, ?, "
                                         "?, ?, ?, ?, ?, ?)",
                                         {e.dialog_id, e.started_at, e.group_id, opt_text(e.policy_id), opt_text(e.calendar_id),
                                          opt_value(e.tfr_target), opt_value(e.ttc_target), opt_value(e.tfr_due),
                                          opt_value(e.ttc_due)}));
                }
                tx.exec("UPDATE op_dialog_sla SET first_response_at = coalesce(first_response_at, ?), "
                        "tfr_ms = coalesce(tfr_ms, ?), closed_at = coalesce(closed_at, ?), ttc_ms = coalesce(ttc_ms, ?), "
                        "active = CASE WHEN ? THEN 0 ELSE active END WHERE dialog_id = ? AND started_at = ?",
                        {opt_value(e.first_response_at), opt_value(e.tfr_ms), opt_value(e.closed_at), opt_value(e.ttc_ms),
                         static_cast<std::int64_t>(c.settle), e.dialog_id, e.started_at});
                for (const auto& [metric, actual] : c.breaches) {
                    std::int64_t target = metric == "tfr" ? *e.tfr_target : *e.ttc_target;
                    std::int64_t due = metric == "tfr" ? *e.tfr_due : *e.ttc_due;
                    // Once per dialog episode and metric: a repeat (another tick, a restart) inserts nothing.
                    if (tx.exec("INSERT OR IGNORE INTO op_sla_breaches(dialog_id, started_at, metric, group_id, target_ms, "
                                "actual_ms, due_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                {e.dialog_id, e.started_at, metric, e.group_id, target, actual, due, now}) == 0) {
                        continue;
                    }
                    tx.exec(fmt::format("UPDATE op_dialog_sla SET {}_breached = 1 WHERE dialog_id = ? AND started_at = ?", metric),
                            {e.dialog_id, e.started_at});
                    out.second.push_back({e.dialog_id, e.group_id, metric, target, actual, due});
                }
            }
            return out;
        };
        auto written = co_await store::co_write(store_, std::move(write));
        enrolled = written.first;
        recorded = std::move(written.second);
    }
    result.enrolled = enrolled;
    result.breaches = recorded.size();
    for (const auto& b : recorded) {
        std::string holder;
        store_.read([&](store::Tx& tx) {
            if (auto r = tx.query_one("SELECT coalesce(operator_id, '') FROM op_dialogs WHERE dialog_id = ? AND state = 'assigned'",
                                      {b.dialog_id})) {
                holder = r->text(0);
            }
        });
        publish("sla.breached",
                json::object{{"dialog_id", b.dialog_id},
                             {"metric", b.metric},
                             {"group_id", b.group_id.empty() ? json::value(nullptr) : json::value(b.group_id)},
                             {"operator_id", holder.empty() ? json::value(nullptr) : json::value(holder)},
                             {"target_ms", b.target},
                             {"target_minutes", b.target / kMinute},
                             {"actual_ms", b.actual},
                             {"due_at", core::format_time(b.due)}},
                holder);
        if (metrics_) {
            metrics_->counter("parley_sla_breaches_total", "SLA breaches recorded, by metric (tfr, ttc)",
                              fmt::format("metric=\"{}\"", b.metric))++;
        }
    }

    for (const auto& a : idle) {
        bool done = false;
        if (a.close) {
            done = co_await operators_.close_idle(a.dialog_id, a.operator_id, a.last_n);
        } else {
            done = co_await operators_.requeue_idle(a.dialog_id, a.operator_id, a.last_n);
        }
        if (!done) continue;
        auto mark = [a](store::Tx& tx) {
            tx.exec(a.close ? "UPDATE op_dialog_sla SET idle_closed = 1 WHERE dialog_id = ? AND started_at = ?"
                            : "UPDATE op_dialog_sla SET requeues = requeues + 1 WHERE dialog_id = ? AND started_at = ?",
                    {a.dialog_id, a.started_at});
        };
        co_await store::co_write(store_, std::move(mark));
        json::object body{{"dialog_id", a.dialog_id},
                          {"operator_id", a.operator_id},
                          {"group_id", a.group_id.empty() ? json::value(nullptr) : json::value(a.group_id)},
                          {"idle_ms", a.idle_ms},
                          {"timeout_minutes", a.timeout_minutes}};
        publish(a.close ? "dialog.idle_closed" : "dialog.requeued", std::move(body), a.operator_id);
        if (a.close) {
            ++result.idle_closed;
        } else {
            ++result.requeued;
        }
        if (metrics_) {
            metrics_->counter(a.close ? "parley_sla_idle_closed_total" : "parley_sla_requeued_total",
                              a.close ? "Dialogs closed because the client went quiet"
                                      : "Dialogs put back in the queue because the operator did not answer")++;
        }
    }
    co_return result;
}

boost::asio::awaitable<void> SlaService::run(std::chrono::milliseconds interval) {
    auto executor = co_await boost::asio::this_coro::executor;
    boost::asio::steady_timer timer(executor);
    while (!stopped_) {
        try {
            co_await tick(clock_.now_ms());
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::warn, "sla_tick_failed", fmt::format(R"("error":{})", core::json_quote(e.what())));
        }
        timer.expires_after(interval);
        boost::system::error_code ec;
        co_await timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    }
}

}  // namespace parley::operators

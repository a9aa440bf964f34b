/// Timers and SLA of the operator panel: business-hours calendars (an IANA time zone, weekly hours, holidays and
/// exception days), SLA policies per skill group (TFR — time to the first operator response after the handover —
/// and TTC — time to close — targets, counted in wall-clock or business time; idle timeouts that close a dialog
/// the client left or put back in the queue a dialog the operator left), and the sweeper that watches open dialogs,
/// records each breach once, publishes it and counts it. See src/operator/README.md "Timers and SLA".
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/principal.h"
#include "store/store.h"

namespace parley::core {
class Metrics;
}
namespace parley::events {
class EventHub;
}
namespace parley::http {
class Router;
}

namespace parley::operators {

namespace json = boost::json;

class OperatorService;

// Limits (README "Timers and SLA"; each has a test). TFR/TTC targets use kMaxSlaMinutes of tickets.h (a year).
inline constexpr std::size_t kMaxCalendars = 50;
inline constexpr std::size_t kMaxCalendarIntervalsPerDay = 10;  ///< per weekday and per holiday/exception day
inline constexpr std::size_t kMaxCalendarHolidays = 400;        ///< dated entries of one calendar
inline constexpr std::size_t kMaxSlaPolicies = 100;
inline constexpr std::int64_t kMaxTargetMinutes = 525'600;      ///< TFR/TTC: a year (= tickets' kMaxSlaMinutes)
inline constexpr std::int64_t kMaxIdleMinutes = 10'080;         ///< idle timeouts: a week
inline constexpr std::int64_t kMaxSlaReportDays = 366;          ///< the report's time range
inline constexpr std::size_t kMaxSlaReportDialogs = 200'000;    ///< dialogs one report reads (more: `truncated`)
inline constexpr std::size_t kSlaSweepBatch = 5000;             ///< dialogs enrolled / examined per tick
inline constexpr int kCalendarHorizonDays = 5 * 366;            ///< how far due times and next-open look ahead

/// Migrations of store module `operator_sla` (independent of module `operator`'s own).
std::vector<store::Migration> sla_migrations();

/// A business-hours calendar: weekly open intervals per weekday in local time of an IANA time zone (ICU), and
/// dated holidays/exceptions that replace the weekday's intervals for that date (no intervals: closed all day). An
/// interval whose end is not after its start runs overnight into the next day ("22:00"-"06:00"); "24:00" ends a
/// day. Intervals belong to the day they start on (a holiday on Saturday does not cut Friday's night shift short).
/// Local times that do not exist (spring forward) or repeat (fall back) take the offset before the change.
/// Immutable once parsed; thread-safe to share.
class BusinessCalendar {
public:
    /// `{"time_zone": "Europe/Kyiv", "week": {"mon": [{"from": "09:00", "to": "18:00"}], ...},
    ///   "holidays": [{"date": "2026-01-01", "name": "New Year", "intervals": [...]?}]}`; `extra` names further
    /// fields the caller handles (e.g. "name"). Throws core::BadRequest naming the field on anything malformed,
    /// unknown or over a limit. Fuzzed by tests/fuzz/fuzz_sla_calendar.cpp.
    static BusinessCalendar parse(const json::object& body, std::initializer_list<std::string_view> extra = {});
    /// The normalised definition (what parse() reads back).
    json::object to_json() const;

    bool is_open(std::int64_t t) const;
    /// `t` when open, else the start of the next open interval; nullopt when closed for kCalendarHorizonDays.
    std::optional<std::int64_t> next_open(std::int64_t t) const;
    /// Open milliseconds in [from, to) (0 when to <= from).
    std::int64_t business_ms(std::int64_t from, std::int64_t to) const;
    /// The instant at which `ms` open milliseconds have passed since `from`; nullopt beyond the horizon.
    std::optional<std::int64_t> add_business_ms(std::int64_t from, std::int64_t ms) const;

    const std::string& time_zone() const { return zone_name_; }

    struct Interval {
        int from_min = 0;  ///< minutes after local midnight
        int to_min = 0;    ///< > from_min; up to 2 × 1440 for an overnight interval
    };
    struct Holiday {
        std::string name;
        std::vector<Interval> intervals;
    };

private:
    struct Zone;
    struct Span {
        std::int64_t from, to;
    };
    /// Open spans (UTC, merged, sorted) that overlap [from, to).
    std::vector<Span> spans(std::int64_t from, std::int64_t to) const;

    std::shared_ptr<const Zone> zone_;
    std::string zone_name_;
    std::array<std::vector<Interval>, 7> week_;  ///< 0 = Monday
    std::map<std::int64_t, Holiday> holidays_;   ///< days since 1970-01-01 → entry
};

/// The sweeper's report of one tick (for tests and logs).
struct SlaTickResult {
    std::size_t enrolled = 0;     ///< dialogs that got their SLA plan
    std::size_t breaches = 0;     ///< new breaches recorded
    std::size_t idle_closed = 0;  ///< dialogs closed because the client went quiet
    std::size_t requeued = 0;     ///< dialogs put back in the queue because the operator went quiet
};

/// Calendars, policies, per-dialog SLA figures, the report and the sweeper. Thread-safety: every method may be
/// called from any thread; tick() runs one at a time (a tick that finds another running returns at once). Writes
/// go through the store's single writer; idle actions go through OperatorService (its own transactions, which
/// re-check that nothing happened since the decision). Owns nothing but a cache of parsed calendars.
class SlaService {
public:
    /// `hub` and `metrics` may be null.
    SlaService(store::Store& store, const core::Clock& clock, OperatorService& operators, events::EventHub* hub,
               core::Metrics* metrics);

    // ---- Calendars (operator_settings) ---------------------------------------------------------------------
    json::array calendars() const;
    json::object calendar(std::string_view id) const;
    boost::asio::awaitable<json::object> create_calendar(json::object body);
    /// Replaces the given fields (`name`, `time_zone`, `week`, `holidays`); the result is validated as a whole.
    boost::asio::awaitable<json::object> update_calendar(std::string id, json::object body);
    /// Conflict `calendar_in_use` while a policy names it.
    boost::asio::awaitable<void> delete_calendar(std::string id);
    /// `{"at", "open", "next_open_at", "until"?, "business_ms"?}`: a calendar checked at an instant (and over a span).
    json::object probe_calendar(std::string_view id, std::int64_t at, std::optional<std::int64_t> until) const;

    // ---- Policies (operator_settings) ----------------------------------------------------------------------
    json::array policies() const;
    json::object policy(std::string_view id) const;
    /// `{"name", "tfr_minutes"?, "ttc_minutes"?, "calendar_id"?, "client_idle_minutes"?, "operator_idle_minutes"?,
    ///   "group_ids"?: [...], "default"?: bool}`. A group belongs to at most one policy; one policy is the default.
    boost::asio::awaitable<json::object> create_policy(json::object body);
    /// The given fields replace the stored ones (null clears an optional one).
    boost::asio::awaitable<json::object> update_policy(std::string id, json::object body);
    boost::asio::awaitable<void> delete_policy(std::string id);

    // ---- Figures ---------------------------------------------------------------------------------------------
    /// SLA figures of a dialog's current episode (since its handover); `who` must see the dialog (OperatorService
    /// rules: NotFound / Forbidden).
    json::object dialog_sla(const core::Principal& who, std::string_view dialog_id) const;
    /// Per skill group over dialogs handed over in [from, to): count, answered, closed, breaches, median/p90 TFR
    /// and TTC (nearest rank), plus a `total`. BadRequest when the range is empty or longer than kMaxSlaReportDays.
    json::object report(std::int64_t from, std::int64_t to, std::optional<std::string> group_id) const;

    // ---- The sweeper ------------------------------------------------------------------------------------------
    /// One pass at `now`: plans new dialogs, records first responses and closes, records and publishes breaches
    /// (once per dialog episode and metric), closes dialogs idle on the client's side and requeues dialogs idle on
    /// the operator's side.
    boost::asio::awaitable<SlaTickResult> tick(std::int64_t now);
    /// Calls tick(clock.now_ms()) every `interval` until stop(); errors are logged and the loop goes on. Spawn it
    /// on the server's io_context.
    boost::asio::awaitable<void> run(std::chrono::milliseconds interval = std::chrono::seconds(1));
    void stop() { stopped_ = true; }

private:
    /// The parsed calendar `id` (null when missing or unreadable), cached while its definition is unchanged.
    std::shared_ptr<const BusinessCalendar> compiled(store::Tx& tx, const std::string& id) const;
    void publish(const std::string& type, json::object body, const std::string& operator_id);

    store::Store& store_;
    const core::Clock& clock_;
    OperatorService& operators_;
    events::EventHub* hub_;
    core::Metrics* metrics_;
    std::atomic<bool> ticking_{false};
    std::atomic<bool> stopped_{false};
    mutable std::mutex cache_mutex_;
    mutable std::map<std::string, std::pair<std::string, std::shared_ptr<const BusinessCalendar>>> cache_;  ///< id → (definition, parsed)
};

/// `/api/v1/operator/sla/...` and `/api/v1/operator/dialogs/{id}/sla` (docs/api/sla.yaml).
void register_sla_routes(http::Router& router, SlaService& service);

}  // namespace parley::operators

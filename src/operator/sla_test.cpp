// Timers and SLA with a controllable clock: business-hours arithmetic (weekly hours, overnight intervals, holidays
// and exception days, daylight-saving changes in Europe/Kyiv), calendar validation, SLA planning and breaches (TFR
// once and only when late, business-hours counting, TTC), idle timeouts (client idle → closed and handed back to
// the bot; operator idle → requeued and served by another operator), the per-dialog figures, the report, policy
// validation and limits, the bot staying silent in an outgoing dialog, and the routes over real HTTP.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "auth/auth.h"
#include "auth/permissions.h"
#include "auth/route_test_server.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "bots/triggers.h"
#include "clients/clients.h"
#include "core/error.h"
#include "core/metrics.h"
#include "events/events.h"
#include "http/http.h"
#include "operator/internal/routing.h"
#include "operator/operator.h"
#include "operator/sla.h"

namespace parley::operators {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace fs = std::filesystem;
using auth::testing::HttpResponse;

constexpr std::int64_t kMin = 60'000;
constexpr std::int64_t kHour = 60 * kMin;

std::int64_t at(std::string_view iso) { return *internal::parse_time(iso); }

json::object parse_object(std::string_view text) { return json::parse(text).as_object(); }

/// The API's text of an instant, as a JSON value.
json::value iso(std::string_view text) { return json::value(core::format_time(at(text))); }

template <typename E, typename F>
std::string code_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.code();
    } catch (const std::exception& e) {
        return std::string("wrong exception: ") + e.what();
    }
    return "no exception";
}

BusinessCalendar office_utc() {
    return BusinessCalendar::parse(parse_object(R"({"time_zone": "UTC", "week": {
        "mon": [{"from": "09:00", "to": "18:00"}], "tue": [{"from": "09:00", "to": "18:00"}],
        "wed": [{"from": "09:00", "to": "18:00"}], "thu": [{"from": "09:00", "to": "18:00"}],
        "fri": [{"from": "09:00", "to": "18:00"}]}})"));
}

// ---- Business-hours arithmetic ---------------------------------------------------------------------------------

// 2026-03-02 is a Monday.
TEST(BusinessCalendarTest, WeeklyHours) {
    auto c = office_utc();
    EXPECT_TRUE(c.is_open(at("2026-03-02T09:00:00Z")));
    EXPECT_TRUE(c.is_open(at("2026-03-02T17:59:59Z")));
    EXPECT_FALSE(c.is_open(at("2026-03-02T18:00:00Z")));
    EXPECT_FALSE(c.is_open(at("2026-03-02T08:59:59Z")));
    EXPECT_FALSE(c.is_open(at("2026-03-07T10:00:00Z")));  // Saturday
    EXPECT_EQ(c.next_open(at("2026-03-06T18:00:00Z")), at("2026-03-09T09:00:00Z"));
    EXPECT_EQ(c.next_open(at("2026-03-04T10:00:00Z")), at("2026-03-04T10:00:00Z"));
    EXPECT_EQ(c.business_ms(at("2026-03-06T17:00:00Z"), at("2026-03-09T10:00:00Z")), 2 * kHour);
    EXPECT_EQ(c.business_ms(at("2026-03-02T00:00:00Z"), at("2026-03-09T00:00:00Z")), 45 * kHour);
    EXPECT_EQ(c.business_ms(at("2026-03-09T00:00:00Z"), at("2026-03-02T00:00:00Z")), 0);
    EXPECT_EQ(c.add_business_ms(at("2026-03-06T17:00:00Z"), 2 * kHour), at("2026-03-09T10:00:00Z"));
    EXPECT_EQ(c.add_business_ms(at("2026-03-07T12:00:00Z"), 0), at("2026-03-09T09:00:00Z"));
    // Whole weeks of business time, and back: add and measure agree.
    auto due = c.add_business_ms(at("2026-03-03T11:00:00Z"), 100 * kHour);
    ASSERT_TRUE(due);
    EXPECT_EQ(c.business_ms(at("2026-03-03T11:00:00Z"), *due), 100 * kHour);
}

TEST(BusinessCalendarTest, OvernightIntervalsBelongToTheDayTheyStart) {
    auto c = BusinessCalendar::parse(parse_object(R"({"time_zone": "UTC", "week": {
        "fri": [{"from": "22:00", "to": "06:00"}], "sun": [{"from": "12:00", "to": "24:00"}]},
        "holidays": [{"date": "2026-03-07", "name": "Saturday off"}]})"));
    EXPECT_TRUE(c.is_open(at("2026-03-06T23:00:00Z")));
    // The Saturday holiday does not cut Friday's night shift short.
    EXPECT_TRUE(c.is_open(at("2026-03-07T05:59:00Z")));
    EXPECT_FALSE(c.is_open(at("2026-03-07T06:00:00Z")));
    EXPECT_TRUE(c.is_open(at("2026-03-08T23:59:00Z")));
    EXPECT_FALSE(c.is_open(at("2026-03-09T00:00:00Z")));
    EXPECT_EQ(c.business_ms(at("2026-03-06T00:00:00Z"), at("2026-03-09T00:00:00Z")), 8 * kHour + 12 * kHour);
    // "00:00"-"00:00" is a whole day.
    auto all = BusinessCalendar::parse(parse_object(R"({"time_zone": "UTC", "week": {"mon": [{"from": "00:00", "to": "00:00"}]}})"));
    EXPECT_EQ(all.business_ms(at("2026-03-02T00:00:00Z"), at("2026-03-09T00:00:00Z")), 24 * kHour);
}

TEST(BusinessCalendarTest, HolidaysCloseAndExceptionDaysReplaceTheWeek) {
    auto c = BusinessCalendar::parse(parse_object(R"({"time_zone": "UTC",
        "week": {"mon": [{"from": "09:00", "to": "18:00"}], "tue": [{"from": "09:00", "to": "18:00"}],
                 "wed": [{"from": "09:00", "to": "18:00"}]},
        "holidays": [{"date": "2026-03-03", "name": "Closed"},
                     {"date": "2026-03-04", "name": "Short day", "intervals": [{"from": "09:00", "to": "13:00"}]},
                     {"date": "2026-03-07", "name": "Working Saturday", "intervals": [{"from": "10:00", "to": "12:00"}]}]})"));
    EXPECT_FALSE(c.is_open(at("2026-03-03T10:00:00Z")));
    EXPECT_TRUE(c.is_open(at("2026-03-04T12:59:00Z")));
    EXPECT_FALSE(c.is_open(at("2026-03-04T13:00:00Z")));
    EXPECT_TRUE(c.is_open(at("2026-03-07T11:00:00Z")));
    EXPECT_EQ(c.business_ms(at("2026-03-02T00:00:00Z"), at("2026-03-09T00:00:00Z")), 9 * kHour + 4 * kHour + 2 * kHour);
    EXPECT_EQ(c.next_open(at("2026-03-02T18:00:00Z")), at("2026-03-04T09:00:00Z"));
}

// Europe/Kyiv: 2026-03-29 03:00 → 04:00 (UTC+2 → UTC+3), 2026-10-25 04:00 → 03:00.
TEST(BusinessCalendarTest, DaylightSavingChangesInAZone) {
    auto c = BusinessCalendar::parse(parse_object(R"({"time_zone": "Europe/Kyiv", "week": {
        "mon": [{"from": "09:00", "to": "18:00"}], "sun": [{"from": "00:00", "to": "24:00"}]}})"));
    EXPECT_EQ(c.time_zone(), "Europe/Kyiv");
    // Monday 09:00 local is 07:00 UTC in winter and 06:00 UTC in summer.
    EXPECT_TRUE(c.is_open(at("2026-03-23T07:00:00Z")));
    EXPECT_FALSE(c.is_open(at("2026-03-23T06:59:00Z")));
    EXPECT_TRUE(c.is_open(at("2026-03-30T06:00:00Z")));
    EXPECT_FALSE(c.is_open(at("2026-03-30T05:59:00Z")));
    // The spring-forward Sunday has 23 hours, the fall-back Sunday 25.
    EXPECT_EQ(c.business_ms(at("2026-03-28T12:00:00Z"), at("2026-03-30T00:00:00Z")), 23 * kHour);
    EXPECT_EQ(c.business_ms(at("2026-10-24T12:00:00Z"), at("2026-10-26T00:00:00Z")), 25 * kHour);
    // A night interval across the missing hour: 02:00–05:00 local is two hours long that night.
    auto night = BusinessCalendar::parse(parse_object(R"({"time_zone": "Europe/Kyiv", "week": {
        "sun": [{"from": "02:00", "to": "05:00"}]}})"));
    EXPECT_EQ(night.business_ms(at("2026-03-28T00:00:00Z"), at("2026-03-30T00:00:00Z")), 2 * kHour);
    EXPECT_EQ(night.business_ms(at("2026-03-21T00:00:00Z"), at("2026-03-23T00:00:00Z")), 3 * kHour);
}

TEST(BusinessCalendarTest, ValidationNamesTheField) {
    auto code = [](std::string_view text) {
        return code_of<core::BadRequest>([&] { BusinessCalendar::parse(parse_object(text)); });
    };
    EXPECT_EQ(code(R"({"time_zone": "Mars/Olympus", "week": {"mon": [{"from": "09:00", "to": "18:00"}]}})"), "invalid_time_zone");
    EXPECT_EQ(code(R"({"week": {"mon": [{"from": "09:00", "to": "18:00"}]}})"), "invalid_time_zone");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "25:00", "to": "18:00"}]}})"), "invalid_week");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "24:00", "to": "18:00"}]}})"), "invalid_week");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "9:00", "to": "18:00"}]}})"), "invalid_week");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "09:00"}]}})"), "invalid_week");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "09:00", "to": "18:00", "x": 1}]}})"), "unknown_field");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"monday": []}})"), "unknown_field");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {}})"), "never_open");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "09:00", "to": "12:00"}, {"from": "11:00", "to": "13:00"}]}})"),
              "overlapping_intervals");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "09:00", "to": "18:00"}]}, "colour": "red"})"), "unknown_field");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "09:00", "to": "18:00"}]}, "holidays": [{"date": "2026-02-30"}]})"),
              "invalid_holidays");
    EXPECT_EQ(code(R"({"time_zone": "UTC", "week": {"mon": [{"from": "09:00", "to": "18:00"}]},
                       "holidays": [{"date": "2026-01-01"}, {"date": "2026-01-01"}]})"),
              "duplicate_date");
    // Limits: intervals per day and holidays.
    json::array many;
    for (std::size_t i = 0; i <= kMaxCalendarIntervalsPerDay; ++i) {
        many.push_back(json::object{{"from", fmt::format("{:02}:00", i)}, {"to", fmt::format("{:02}:30", i)}});
    }
    json::object body{{"time_zone", "UTC"}, {"week", json::object{{"mon", many}}}};
    EXPECT_EQ(code_of<core::BadRequest>([&] { BusinessCalendar::parse(body); }), "too_many_intervals");
    many.pop_back();
    body["week"] = json::object{{"mon", many}};
    EXPECT_NO_THROW(BusinessCalendar::parse(body));
    json::array holidays;
    for (std::size_t i = 0; i <= kMaxCalendarHolidays; ++i) {
        holidays.push_back(json::object{{"date", core::format_time(at("2026-01-01") + static_cast<std::int64_t>(i) * 24 * kHour).substr(0, 10)}});
    }
    body["holidays"] = holidays;
    EXPECT_EQ(code_of<core::BadRequest>([&] { BusinessCalendar::parse(body); }), "too_many_holidays");
}

TEST(BusinessCalendarTest, NormalisedDefinitionReadsBackTheSame) {
    auto c = BusinessCalendar::parse(parse_object(R"({"time_zone": "Europe/Kyiv", "week": {
        "fri": [{"from": "22:00", "to": "06:00"}], "mon": [{"from": "13:00", "to": "24:00"}, {"from": "08:00", "to": "12:00"}]},
        "holidays": [{"date": "2026-05-01", "intervals": [{"from": "10:00", "to": "10:00"}]}]})"));
    json::object once = c.to_json();
    EXPECT_EQ(once.at("week").at("mon").as_array().size(), 2u);
    EXPECT_EQ(once.at("week").at("mon").at(0).at("from"), "08:00");
    EXPECT_EQ(once.at("week").at("mon").at(1).at("to"), "24:00");
    EXPECT_EQ(once.at("week").at("fri").at(0).at("to"), "06:00");
    EXPECT_EQ(BusinessCalendar::parse(once).to_json(), once);
}

// ---- The service with a store, the operator panel and a manual clock ----------------------------------------------

/// Collects what the hub sends to one user.
class FakeSocket final : public http::WebSocketSession {
public:
    void send(std::string text) override {
        std::lock_guard lock(mutex_);
        sent_.push_back(json::parse(text).as_object());
    }
    void close() override {}
    std::size_t pending() const override { return 0; }
    std::size_t count(const std::string& type, const std::string& dialog_id) const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& e : sent_) {
            const auto* d = e.if_contains("dialog_id");
            if (e.at("type").as_string() == type && d && d->is_string() && d->as_string() == dialog_id) ++n;
        }
        return n;
    }
    std::optional<json::object> last(const std::string& type) const {
        std::lock_guard lock(mutex_);
        for (auto it = sent_.rbegin(); it != sent_.rend(); ++it) {
            if (it->at("type").as_string() == type) return *it;
        }
        return std::nullopt;
    }

private:
    mutable std::mutex mutex_;
    std::vector<json::object> sent_;
};

std::shared_ptr<core::Principal> person(const std::string& id, const std::string& role) {
    auto p = std::make_shared<core::Principal>();
    p->user_id = id;
    p->name = id;
    p->roles = {role};
    for (const auto& r : auth::builtin_roles()) {
        if (r.name == role) p->permissions.insert(r.defaults.begin(), r.defaults.end());
    }
    return p;
}

const char* kScenario = R"({"format":"parley.scenario/1","name":"t","languages":["en"],"sections":[{"name":"main","nodes":[
  {"id":"start","type":"start","next":"q"},
  {"id":"q","type":"input","prompt":"Your question?","save_as":"question","next":"say"},
  {"id":"say","type":"message","text":"Bot heard {{question}}","next":"q"}]},
  {"name":"feedback","nodes":[{"id":"e","type":"entry","alias":"csat","next":"ask"},
   {"id":"ask","type":"message","text":"How did we do?","next":"fin"},{"id":"fin","type":"end"}]}]})";

class SlaTest : public ::testing::Test {
protected:
    SlaTest() : clock_(at("2026-03-02T10:00:00Z")) {}
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("parley-sla-test-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        std::vector<store::Migration> migrations = auth::migrations();
        for (auto& m : clients::migrations()) migrations.push_back(m);
        for (auto& m : bots::migrations()) migrations.push_back(m);
        for (auto& m : operators::migrations()) migrations.push_back(m);
        for (auto& m : operators::sla_migrations()) migrations.push_back(m);
        store::StoreOptions options;
        options.path = (dir_ / "t.db").string();
        options.durable = false;
        store_ = store::Store::open_sqlite(options, migrations);
        bots_ = std::make_unique<bots::BotService>(*store_, clock_, registry_);
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        triggers_ = std::make_unique<bots::TriggerService>(*bots_, *dialogs_);
        service_ = std::make_unique<OperatorService>(*store_, clock_, *dialogs_, *triggers_, &hub_);
        sla_ = std::make_unique<SlaService>(*store_, clock_, *service_, &hub_, &metrics_);
        thread_ = std::thread([this] { io_.run(); });
        bot_ = await(bots_->create("Support", true)).id;
        await(bots_->put_scenario(bot_, kScenario, bots::Author{"sue", "sue@example.com"}, ""));
        for (const char* id : {"anna", "boris", "sue"}) {
            store_->write_sync([id = std::string(id), now = clock_.now_ms()](store::Tx& tx) {
                tx.exec("INSERT INTO auth_users(id, email, name, language, password_hash, active, created_at, updated_at, "
                        "password_changed_at) VALUES (?, ?, ?, 'en', 'x', 1, ?, ?, ?)",
                        {id, id + "@example.com", id, now, now, now});
            });
        }
        anna_ = person("anna", "operator");
        boris_ = person("boris", "operator");
        sue_ = person("sue", "supervisor");
        anna_socket_ = std::make_shared<FakeSocket>();
        hub_.attach(anna_socket_, anna_, std::nullopt);
        sue_socket_ = std::make_shared<FakeSocket>();
        hub_.attach(sue_socket_, sue_, std::nullopt);
    }
    void TearDown() override {
        work_.reset();
        thread_.join();
        store_->close();
        fs::remove_all(dir_);
    }
    template <typename T>
    T await(asio::awaitable<T> a) {
        return asio::co_spawn(io_, std::move(a), asio::use_future).get();
    }
    void await_void(asio::awaitable<void> a) { asio::co_spawn(io_, std::move(a), asio::use_future).get(); }

    std::string new_dialog() {
        clients::NewClient client{"Olena", "", "", "uk", {}};
        return await(dialogs_->create(bot_, "telegram", std::move(client))).id;
    }
    std::string handover(const std::string& dialog_id, json::object params = {{"auto_connect_operator", true},
                                                                               {"status", "queue"}}) {
        std::promise<actions::ActionResult> done;
        actions::ActionCall call{"operator_panel__connect_to_operator_with_msg", std::move(params), dialog_id, "", {}, {}};
        service_->connect(std::move(call), [&](actions::ActionResult r) { done.set_value(std::move(r)); });
        return done.get_future().get().event;
    }
    void online(const core::Principal& who, unsigned capacity) { await(service_->set_status(who, "online", capacity)); }
    std::string state(const std::string& dialog_id) {
        std::string out;
        store_->read([&](store::Tx& tx) {
            if (auto r = tx.query_one("SELECT state FROM op_dialogs WHERE dialog_id = ?", {dialog_id})) out = r->text(0);
        });
        return out;
    }
    std::string holder(const std::string& dialog_id) {
        std::string out;
        store_->read([&](store::Tx& tx) {
            if (auto r = tx.query_one("SELECT coalesce(operator_id, '') FROM op_dialogs WHERE dialog_id = ?", {dialog_id})) {
                out = r->text(0);
            }
        });
        return out;
    }
    std::int64_t count(const std::string& sql, store::Params params = {}) {
        std::int64_t out = 0;
        store_->read([&](store::Tx& tx) { out = tx.query_one(sql, params)->integer(0); });
        return out;
    }
    SlaTickResult tick() { return await(sla_->tick(clock_.now_ms())); }
    json::object policy(json::object body) { return await(sla_->create_policy(std::move(body))); }
    std::string client_says(const std::string& dialog_id, std::string text) {
        auto out = await(dialogs_->run(dialog_id, bots::Trigger{bots::Trigger::Kind::kMessage,
                                                                  scenario::ClientMessage::from_text(std::move(text))}));
        std::string replies;
        for (const auto& r : out.replies) replies += r.text;
        return replies;
    }
    std::uint64_t counter(const std::string& needle) {
        std::string text = metrics_.render();
        auto pos = text.find("\n" + needle + " ");  // a sample line, not the # HELP line
        if (pos == std::string::npos) return 0;
        return std::stoull(text.substr(pos + needle.size() + 2));
    }

    fs::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    events::EventHub hub_;
    core::Metrics metrics_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    std::unique_ptr<bots::TriggerService> triggers_;
    std::unique_ptr<OperatorService> service_;
    std::unique_ptr<SlaService> sla_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    std::thread thread_;
    std::string bot_;
    std::shared_ptr<core::Principal> anna_, boris_, sue_;
    std::shared_ptr<FakeSocket> anna_socket_, sue_socket_;
};

TEST_F(SlaTest, TfrBreachFiresOnceAndNotWhenAnsweredInTime) {
    policy(json::object{{"name", "Standard"}, {"tfr_minutes", 5}, {"ttc_minutes", 60}, {"default", true}});
    online(*anna_, 5);
    auto answered = new_dialog();
    auto ignored = new_dialog();
    ASSERT_EQ(handover(answered), "connected");
    ASSERT_EQ(handover(ignored), "connected");
    EXPECT_EQ(tick().enrolled, 2u);
    clock_.advance_ms(2 * kMin);
    await(service_->reply(*anna_, answered, "Hello, how can I help?"));
    clock_.advance_ms(2 * kMin);
    EXPECT_EQ(tick().breaches, 0u);
    clock_.advance_ms(1 * kMin);  // 5 minutes since the handover: due now
    auto r = tick();
    EXPECT_EQ(r.breaches, 1u);
    EXPECT_EQ(tick().breaches, 0u);
    clock_.advance_ms(10 * kMin);
    EXPECT_EQ(tick().breaches, 0u);
    EXPECT_EQ(count("SELECT count(*) FROM op_sla_breaches"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM op_sla_breaches WHERE dialog_id = ? AND metric = 'tfr' AND actual_ms = ? AND target_ms = ?",
                    {ignored, 5 * kMin, 5 * kMin}),
              1);
    EXPECT_EQ(anna_socket_->count("sla.breached", ignored), 1u);
    EXPECT_EQ(sue_socket_->count("sla.breached", ignored), 1u);
    EXPECT_EQ(anna_socket_->count("sla.breached", answered), 0u);
    auto event = anna_socket_->last("sla.breached");
    ASSERT_TRUE(event);
    EXPECT_EQ(event->at("metric"), "tfr");
    EXPECT_EQ(event->at("target_minutes"), 5);
    EXPECT_EQ(event->at("operator_id"), "anna");
    EXPECT_EQ(counter("parley_sla_breaches_total{metric=\"tfr\"}"), 1u);

    auto ok = sla_->dialog_sla(*anna_, answered);
    EXPECT_FALSE(ok.at("tfr").at("breached").as_bool());
    EXPECT_EQ(ok.at("tfr").at("elapsed_ms"), 2 * kMin);
    EXPECT_EQ(ok.at("tfr").at("due_at"), iso("2026-03-02T10:05:00Z"));
    EXPECT_EQ(ok.at("ttc").at("remaining_ms"), 45 * kMin);
    EXPECT_EQ(ok.at("policy_name"), "Standard");
    EXPECT_FALSE(ok.at("business_hours").as_bool());
    auto late = sla_->dialog_sla(*anna_, ignored);
    EXPECT_TRUE(late.at("tfr").at("breached").as_bool());
    EXPECT_TRUE(late.at("breached").as_bool());
    EXPECT_EQ(late.at("tfr").at("remaining_ms"), -10 * kMin);
    EXPECT_EQ(code_of<core::Forbidden>([&] { sla_->dialog_sla(*boris_, ignored); }), "not_your_dialog");
    EXPECT_EQ(code_of<core::NotFound>([&] { sla_->dialog_sla(*anna_, "nope"); }), "dialog_not_found");

    // A late answer leaves the breach as it was; TTC breaches once too.
    await(service_->reply(*anna_, ignored, "Sorry for the wait"));
    clock_.advance_ms(60 * kMin);
    r = tick();
    EXPECT_EQ(r.breaches, 2u);  // TTC of both
    EXPECT_EQ(tick().breaches, 0u);
    EXPECT_EQ(counter("parley_sla_breaches_total{metric=\"ttc\"}"), 2u);

    // The report: two dialogs, both answered, one TFR breach; median TFR 2 minutes (nearest rank), p90 the late one.
    auto report = sla_->report(at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z"), std::nullopt);
    const auto& total = report.at("total").as_object();
    EXPECT_EQ(total.at("dialogs"), 2);
    EXPECT_EQ(total.at("answered"), 2);
    EXPECT_EQ(total.at("tfr_breaches"), 1);
    EXPECT_EQ(total.at("ttc_breaches"), 2);
    EXPECT_EQ(total.at("tfr_median_ms"), 2 * kMin);
    EXPECT_EQ(total.at("tfr_p90_ms"), 15 * kMin);
    EXPECT_TRUE(total.at("ttc_median_ms").is_null());
    EXPECT_EQ(report.at("groups").as_array().size(), 1u);
    EXPECT_TRUE(report.at("groups").at(0).at("group_id").is_null());
    EXPECT_EQ(code_of<core::BadRequest>([&] { sla_->report(at("2026-03-02T00:00:00Z"), at("2026-03-01T00:00:00Z"), std::nullopt); }),
              "invalid_to");
    EXPECT_EQ(code_of<core::BadRequest>([&] { sla_->report(at("2025-01-01T00:00:00Z"), at("2026-03-01T00:00:00Z"), std::nullopt); }),
              "range_too_long");
}

TEST_F(SlaTest, ClosingSettlesTtcAndAClosedDialogNeverBreaches) {
    policy(json::object{{"name", "Fast"}, {"tfr_minutes", 5}, {"ttc_minutes", 10}, {"default", true}});
    online(*anna_, 5);
    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    tick();
    clock_.advance_ms(1 * kMin);
    await(service_->reply(*anna_, id, "Done"));
    clock_.advance_ms(2 * kMin);
    await_void(service_->close(*anna_, id));
    EXPECT_EQ(tick().breaches, 0u);
    clock_.advance_ms(60 * kMin);
    EXPECT_EQ(tick().breaches, 0u);
    EXPECT_EQ(count("SELECT count(*) FROM op_dialog_sla WHERE dialog_id = ? AND active = 0 AND ttc_ms = ? AND tfr_ms = ?",
                    {id, 3 * kMin, 1 * kMin}),
              1);
    auto figures = sla_->dialog_sla(*anna_, id);
    EXPECT_EQ(figures.at("ttc").at("elapsed_ms"), 3 * kMin);
    EXPECT_TRUE(figures.at("ttc").at("remaining_ms").is_null());
    EXPECT_FALSE(figures.at("breached").as_bool());
}

TEST_F(SlaTest, BusinessHoursOnlyCounting) {
    auto calendar = await(sla_->create_calendar(parse_object(R"({"name": "Office", "time_zone": "UTC", "week": {
        "mon": [{"from": "09:00", "to": "18:00"}], "tue": [{"from": "09:00", "to": "18:00"}],
        "wed": [{"from": "09:00", "to": "18:00"}], "thu": [{"from": "09:00", "to": "18:00"}],
        "fri": [{"from": "09:00", "to": "18:00"}]}})")));
    auto group = await(service_->create_skill_group(*sue_, json::object{{"name", "Billing"}, {"policy", "least_busy"},
                                                                        {"members", json::array{json::object{{"user_id", "anna"}, {"skill_level", 5}}}}}));
    std::string group_id(group.at("id").as_string());
    await(service_->create_subject(*sue_, json::object{{"alias", "billing"}, {"group_id", group_id}}));
    policy(json::object{{"name", "Office hours"}, {"tfr_minutes", 60}, {"calendar_id", calendar.at("id")},
                        {"group_ids", json::array{json::value(group_id)}}});
    // A default policy with a wall-clock target applies to dialogs outside the group.
    policy(json::object{{"name", "Everyone else"}, {"tfr_minutes", 60}, {"default", true}});

    clock_.set_ms(at("2026-03-06T17:30:00Z"));  // Friday, half an hour before closing
    online(*anna_, 5);
    auto billing = new_dialog();
    auto other = new_dialog();
    ASSERT_EQ(handover(billing, json::object{{"auto_connect_operator", true}, {"subject_alias", "billing"}}), "connected");
    ASSERT_EQ(handover(other), "connected");
    tick();
    clock_.set_ms(at("2026-03-06T18:30:00Z"));
    EXPECT_EQ(tick().breaches, 1u);  // only the wall-clock one
    EXPECT_EQ(anna_socket_->count("sla.breached", other), 1u);
    auto figures = sla_->dialog_sla(*anna_, billing);
    EXPECT_TRUE(figures.at("business_hours").as_bool());
    EXPECT_EQ(figures.at("group_id"), json::value(group_id));
    EXPECT_EQ(figures.at("tfr").at("due_at"), iso("2026-03-09T09:30:00Z"));
    EXPECT_EQ(figures.at("tfr").at("elapsed_ms"), 30 * kMin);
    clock_.set_ms(at("2026-03-09T09:29:00Z"));  // Monday: 59 business minutes
    EXPECT_EQ(tick().breaches, 0u);
    clock_.set_ms(at("2026-03-09T09:31:00Z"));
    EXPECT_EQ(tick().breaches, 1u);
    EXPECT_EQ(count("SELECT actual_ms FROM op_sla_breaches WHERE dialog_id = ?", {billing}), 61 * kMin);
    auto report = sla_->report(at("2026-03-06T00:00:00Z"), at("2026-03-07T00:00:00Z"), group_id);
    ASSERT_EQ(report.at("groups").as_array().size(), 1u);
    EXPECT_EQ(report.at("groups").at(0).at("group_name"), "Billing");
    EXPECT_EQ(report.at("groups").at(0).at("tfr_breaches"), 1);
    // The calendar is in use: it cannot go.
    EXPECT_EQ(code_of<core::Conflict>([&] { await_void(sla_->delete_calendar(std::string(calendar.at("id").as_string()))); }),
              "calendar_in_use");
    auto probe = sla_->probe_calendar(calendar.at("id").as_string(), at("2026-03-07T12:00:00Z"), at("2026-03-09T10:00:00Z"));
    EXPECT_FALSE(probe.at("open").as_bool());
    EXPECT_EQ(probe.at("next_open_at"), iso("2026-03-09T09:00:00Z"));
    EXPECT_EQ(probe.at("business_ms"), kHour);
}

TEST_F(SlaTest, ClientIdleClosesAndHandsBackToTheBot) {
    await(triggers_->create(bot_, json::object{{"kind", "event"}, {"event", "dialog_closed"}, {"alias", "csat"}}));
    policy(json::object{{"name", "Idle"}, {"client_idle_minutes", 10}, {"default", true}});
    online(*anna_, 5);
    auto id = new_dialog();
    EXPECT_EQ(client_says(id, "hi"), "Your question?");
    ASSERT_EQ(handover(id), "connected");
    clock_.advance_ms(1 * kMin);
    await(service_->reply(*anna_, id, "Anything else?"));
    clock_.advance_ms(9 * kMin);
    EXPECT_EQ(tick().idle_closed, 0u);
    // The client answers: the clock starts again from the operator's next message.
    client_says(id, "one more thing");
    await(service_->reply(*anna_, id, "Sure"));
    clock_.advance_ms(9 * kMin);
    EXPECT_EQ(tick().idle_closed, 0u);
    clock_.advance_ms(1 * kMin);
    EXPECT_EQ(tick().idle_closed, 1u);
    EXPECT_EQ(state(id), "closed");
    EXPECT_EQ(anna_socket_->count("dialog.idle_closed", id), 1u);
    EXPECT_EQ(sue_socket_->count("dialog.idle_closed", id), 1u);
    EXPECT_GE(anna_socket_->count("operator.dialog", id), 1u);
    EXPECT_EQ(counter("parley_sla_idle_closed_total"), 1u);
    EXPECT_EQ(count("SELECT active_dialogs FROM op_operators WHERE user_id = 'anna'"), 0);
    // Handed back: the bot's dialog_closed trigger ran, and the bot answers the client again.
    EXPECT_EQ(count("SELECT count(*) FROM messages WHERE dialog_id = ? AND sender = 'bot' AND text = 'How did we do?'", {id}), 1);
    EXPECT_EQ(count("SELECT count(*) FROM dialogs WHERE id = ? AND status = 'bot'", {id}), 1);
    EXPECT_FALSE(client_says(id, "hello again").empty());
    EXPECT_EQ(tick().idle_closed, 0u);
    EXPECT_TRUE(sla_->dialog_sla(*sue_, id).at("idle_closed").as_bool());
}

TEST_F(SlaTest, OperatorIdleRequeuesAndAnotherOperatorTakesIt) {
    policy(json::object{{"name", "Idle"}, {"operator_idle_minutes", 5}, {"default", true}});
    online(*anna_, 1);
    auto answered = new_dialog();
    ASSERT_EQ(handover(answered), "connected");
    clock_.advance_ms(3 * kMin);
    await(service_->reply(*anna_, answered, "Hi"));
    clock_.advance_ms(3 * kMin);
    EXPECT_EQ(tick().requeued, 0u);  // the operator answered; the client is the one who is quiet
    await_void(service_->close(*anna_, answered));

    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    clock_.advance_ms(4 * kMin);
    EXPECT_EQ(tick().requeued, 0u);
    clock_.advance_ms(1 * kMin);
    EXPECT_EQ(tick().requeued, 1u);
    // Nobody else is free and the dispatch avoids anna: it waits in the queue.
    EXPECT_EQ(state(id), "queue");
    EXPECT_EQ(holder(id), "");
    EXPECT_EQ(anna_socket_->count("dialog.requeued", id), 1u);
    EXPECT_EQ(counter("parley_sla_requeued_total"), 1u);
    EXPECT_EQ(count("SELECT active_dialogs FROM op_operators WHERE user_id = 'anna'"), 0);
    EXPECT_EQ(tick().requeued, 0u);  // waiting dialogs are not requeued again
    // A free operator gets it.
    online(*boris_, 5);
    EXPECT_EQ(state(id), "assigned");
    EXPECT_EQ(holder(id), "boris");
    EXPECT_EQ(sla_->dialog_sla(*sue_, id).at("requeues"), 1);
    // Boris's own five minutes start when he got it.
    clock_.advance_ms(4 * kMin);
    EXPECT_EQ(tick().requeued, 0u);
}

TEST_F(SlaTest, OutgoingDialogKeepsTheBotSilentUntilClosed) {
    online(*anna_, 5);
    auto id = new_dialog();
    EXPECT_EQ(client_says(id, "hi"), "Your question?");
    std::string client;
    store_->read([&](store::Tx& tx) { client = tx.query_one("SELECT client_id FROM dialogs WHERE id = ?", {id})->text(0); });
    await(service_->start_dialog(*anna_, client, "telegram", "Your order has shipped"));
    EXPECT_EQ(count("SELECT count(*) FROM dialogs WHERE id = ? AND status = 'operator'", {id}), 1);
    EXPECT_EQ(client_says(id, "thanks, when will it arrive?"), "");
    EXPECT_EQ(client_says(id, "hello?"), "");
    await_void(service_->close(*anna_, id));
    EXPECT_FALSE(client_says(id, "back to the bot").empty());
    // No policy: the dialog still gets figures (for the report), without targets.
    tick();
    auto figures = sla_->dialog_sla(*anna_, id);
    EXPECT_TRUE(figures.at("policy_id").is_null());
    EXPECT_TRUE(figures.at("tfr").at("due_at").is_null());
}

TEST_F(SlaTest, OutgoingDialogsHaveNoFirstResponseTarget) {
    policy(json::object{{"name", "Standard"}, {"tfr_minutes", 5}, {"default", true}});
    online(*anna_, 5);
    auto id = new_dialog();
    client_says(id, "hi");
    std::string client;
    store_->read([&](store::Tx& tx) { client = tx.query_one("SELECT client_id FROM dialogs WHERE id = ?", {id})->text(0); });
    await(service_->start_dialog(*anna_, client, "telegram", "Hello from us"));
    tick();
    clock_.advance_ms(60 * kMin);
    EXPECT_EQ(tick().breaches, 0u);
}

TEST_F(SlaTest, PolicyValidationAndLimits) {
    auto bad = [&](json::object body) {
        return code_of<core::BadRequest>([&] { policy(std::move(body)); });
    };
    EXPECT_EQ(bad(json::object{{"tfr_minutes", 5}}), "missing_field");
    EXPECT_EQ(bad(json::object{{"name", "x"}, {"tfr_minutes", 0}}), "invalid_tfr_minutes");
    EXPECT_EQ(bad(json::object{{"name", "x"}, {"tfr_minutes", kMaxTargetMinutes + 1}}), "invalid_tfr_minutes");
    EXPECT_EQ(bad(json::object{{"name", "x"}, {"client_idle_minutes", kMaxIdleMinutes + 1}}), "invalid_client_idle_minutes");
    EXPECT_EQ(bad(json::object{{"name", "x"}, {"tfr_minutes", "5"}}), "wrong_type");
    EXPECT_EQ(bad(json::object{{"name", "x"}, {"tfr_minutes", 5}, {"sla", 1}}), "unknown_field");
    EXPECT_EQ(bad(json::object{{"name", "x"}, {"tfr_minutes", 5}, {"group_ids", json::array{1}}}), "invalid_group_ids");
    EXPECT_EQ(bad(json::object{{"name", std::string(kMaxNameBytes + 1, 'x')}, {"tfr_minutes", 5}}), "invalid_name");
    auto unprocessable = [&](json::object body) {
        return code_of<core::Unprocessable>([&] { policy(std::move(body)); });
    };
    EXPECT_EQ(unprocessable(json::object{{"name", "x"}}), "empty_policy");
    EXPECT_EQ(unprocessable(json::object{{"name", "x"}, {"tfr_minutes", 30}, {"ttc_minutes", 10}}), "invalid_policy");
    EXPECT_EQ(unprocessable(json::object{{"name", "x"}, {"tfr_minutes", 5}, {"calendar_id", "nope"}}), "calendar_not_found");
    EXPECT_EQ(unprocessable(json::object{{"name", "x"}, {"tfr_minutes", 5}, {"group_ids", json::array{"nope"}}}), "group_not_found");
    EXPECT_EQ(count("SELECT count(*) FROM op_sla_policies"), 0);  // nothing half-written

    auto group = await(service_->create_skill_group(*sue_, json::object{{"name", "G"}, {"policy", "least_busy"}}));
    json::array groups{group.at("id")};
    auto first = policy(json::object{{"name", "A"}, {"tfr_minutes", 5}, {"group_ids", groups}, {"default", true}});
    EXPECT_EQ(code_of<core::Conflict>([&] { policy(json::object{{"name", "B"}, {"tfr_minutes", 5}, {"group_ids", groups}}); }),
              "group_has_policy");
    EXPECT_EQ(code_of<core::Conflict>([&] { policy(json::object{{"name", "A"}, {"tfr_minutes", 5}}); }), "policy_exists");
    // One default: a new default takes it over.
    auto second = policy(json::object{{"name", "B"}, {"ttc_minutes", 50}, {"default", true}});
    EXPECT_FALSE(sla_->policy(first.at("id").as_string()).at("default").as_bool());
    EXPECT_TRUE(second.at("default").as_bool());
    // Update: null clears; the result is checked as a whole.
    std::string a(first.at("id").as_string());
    auto updated = await(sla_->update_policy(a, json::object{{"ttc_minutes", 30}, {"group_ids", json::array{}}}));
    EXPECT_EQ(updated.at("ttc_minutes"), 30);
    EXPECT_TRUE(updated.at("group_ids").as_array().empty());
    EXPECT_EQ(code_of<core::Unprocessable>([&] { await(sla_->update_policy(a, json::object{{"tfr_minutes", 40}})); }),
              "invalid_policy");
    EXPECT_EQ(sla_->policy(a).at("tfr_minutes"), 5);
    EXPECT_EQ(code_of<core::Unprocessable>([&] {
                  await(sla_->update_policy(a, json::object{{"tfr_minutes", nullptr}, {"ttc_minutes", nullptr}}));
              }),
              "empty_policy");
    EXPECT_EQ(code_of<core::NotFound>([&] { await(sla_->update_policy("nope", json::object{{"tfr_minutes", 1}})); }),
              "policy_not_found");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(sla_->update_policy(a, json::object{})); }), "invalid_body");
    await_void(sla_->delete_policy(a));
    EXPECT_EQ(code_of<core::NotFound>([&] { await_void(sla_->delete_policy(a)); }), "policy_not_found");

    // The policy limit.
    for (std::size_t i = count("SELECT count(*) FROM op_sla_policies"); i < kMaxSlaPolicies; ++i) {
        policy(json::object{{"name", fmt::format("p{}", i)}, {"tfr_minutes", 5}});
    }
    EXPECT_EQ(code_of<core::Conflict>([&] { policy(json::object{{"name", "one too many"}, {"tfr_minutes", 5}}); }),
              "too_many_policies");
}

TEST_F(SlaTest, CalendarCrudAndLimits) {
    const std::string week = R"("week": {"mon": [{"from": "09:00", "to": "18:00"}]})";
    auto made = await(sla_->create_calendar(parse_object(R"({"name": "Kyiv", "time_zone": "Europe/Kyiv", )" + week + "}")));
    std::string id(made.at("id").as_string());
    EXPECT_EQ(made.at("time_zone"), "Europe/Kyiv");
    EXPECT_EQ(made.at("week").at("tue").as_array().size(), 0u);
    EXPECT_EQ(code_of<core::Conflict>([&] { await(sla_->create_calendar(parse_object(R"({"name": "Kyiv", "time_zone": "UTC", )" + week + "}"))); }),
              "calendar_exists");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(sla_->create_calendar(parse_object(R"({"time_zone": "UTC", )" + week + "}"))); }),
              "missing_field");
    auto updated = await(sla_->update_calendar(id, parse_object(R"({"holidays": [{"date": "2026-01-01", "name": "New Year"}]})")));
    EXPECT_EQ(updated.at("holidays").as_array().size(), 1u);
    EXPECT_EQ(updated.at("time_zone"), "Europe/Kyiv");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(sla_->update_calendar(id, parse_object(R"({"time_zone": "Nowhere/Land"})"))); }),
              "invalid_time_zone");
    EXPECT_EQ(sla_->calendar(id).at("time_zone"), "Europe/Kyiv");
    EXPECT_EQ(code_of<core::NotFound>([&] { await(sla_->update_calendar("nope", parse_object(R"({"name": "x"})"))); }),
              "calendar_not_found");
    for (std::size_t i = 1; i < kMaxCalendars; ++i) {
        await(sla_->create_calendar(parse_object(fmt::format(R"({{"name": "c{}", "time_zone": "UTC", {}}})", i, week))));
    }
    EXPECT_EQ(code_of<core::Conflict>([&] { await(sla_->create_calendar(parse_object(R"({"name": "extra", "time_zone": "UTC", )" + week + "}"))); }),
              "too_many_calendars");
    await_void(sla_->delete_calendar(id));
    EXPECT_EQ(code_of<core::NotFound>([&] { sla_->calendar(id); }), "calendar_not_found");
    EXPECT_EQ(sla_->calendars().size(), kMaxCalendars - 1);
}

TEST_F(SlaTest, TheSweeperLoopTicksOnTheIoContext) {
    policy(json::object{{"name", "Standard"}, {"tfr_minutes", 1}, {"default", true}});
    online(*anna_, 5);
    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    clock_.advance_ms(2 * kMin);
    asio::co_spawn(io_, sla_->run(std::chrono::milliseconds(5)), asio::detached);
    for (int i = 0; i < 400 && count("SELECT count(*) FROM op_sla_breaches") == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    sla_->stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    EXPECT_EQ(count("SELECT count(*) FROM op_sla_breaches"), 1);
    EXPECT_EQ(anna_socket_->count("sla.breached", id), 1u);
}

// ---- Routes over real HTTP -------------------------------------------------------------------------------------

class SlaRoutesTest : public SlaTest {
protected:
    void SetUp() override {
        SlaTest::SetUp();
        register_routes(router_, *service_);
        register_sla_routes(router_, *sla_);
        server_ = std::make_unique<auth::testing::RouteServer>(io_, router_);  // built-in roles by name
        server_->set_principal("anna", anna_);
    }
    void TearDown() override {
        server_.reset();  // stops gracefully while the io thread still runs
        SlaTest::TearDown();
    }
    HttpResponse call(bhttp::verb verb, const std::string& target, const std::string& body = {},
                      const std::string& who = "supervisor") {
        return server_->call(verb, target, body, who);
    }
    static json::value body_of(const HttpResponse& r) { return auth::testing::RouteServer::body_of(r); }
    static std::string error_code(const HttpResponse& r) { return auth::testing::RouteServer::error_code(r); }

    http::Router router_;
    std::unique_ptr<auth::testing::RouteServer> server_;
};

TEST_F(SlaRoutesTest, CalendarsAndPoliciesOverHttp) {
    const std::string calendar = R"({"name": "Office", "time_zone": "UTC", "week": {"mon": [{"from": "09:00", "to": "18:00"}]}})";
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/sla/calendars", calendar, "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/sla/calendars", "", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/sla/calendars", "", "").result_int(), 401);
    auto made = call(bhttp::verb::post, "/api/v1/operator/sla/calendars", calendar);
    ASSERT_EQ(made.result_int(), 201) << made.body();
    std::string id(body_of(made).at("id").as_string());
    auto list = call(bhttp::verb::get, "/api/v1/operator/sla/calendars");
    EXPECT_EQ(body_of(list).at("items").as_array().size(), 1u);
    EXPECT_TRUE(body_of(list).at("next_cursor").is_null());
    auto bad = call(bhttp::verb::post, "/api/v1/operator/sla/calendars",
                    R"({"name": "X", "time_zone": "UTC", "week": {"mon": [{"from": "09:00", "to": "12:00"}, {"from": "10:00", "to": "11:00"}]}})");
    EXPECT_EQ(bad.result_int(), 400);
    EXPECT_EQ(error_code(bad), "overlapping_intervals");
    EXPECT_NE(bad.body().find("week.mon"), std::string::npos);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/sla/calendars", "{not json").result_int(), 400);
    auto probe = call(bhttp::verb::get, "/api/v1/operator/sla/calendars/" + id + "/probe?at=2026-03-02T10:00:00Z&until=2026-03-02T12:00:00Z");
    ASSERT_EQ(probe.result_int(), 200) << probe.body();
    EXPECT_TRUE(body_of(probe).at("open").as_bool());
    EXPECT_EQ(body_of(probe).at("business_ms"), 2 * kHour);
    EXPECT_EQ(error_code(call(bhttp::verb::get, "/api/v1/operator/sla/calendars/" + id + "/probe?at=yesterday")), "invalid_at");
    EXPECT_EQ(error_code(call(bhttp::verb::get, "/api/v1/operator/sla/calendars/" + id + "/probe?at=2026-03-02T10:00:00Z&x=1")),
              "invalid_query");
    EXPECT_EQ(call(bhttp::verb::patch, "/api/v1/operator/sla/calendars/" + id, R"({"name": "Head office"})").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/sla/calendars/nope").result_int(), 404);

    auto policy = call(bhttp::verb::post, "/api/v1/operator/sla/policies",
                       R"({"name": "Standard", "tfr_minutes": 5, "calendar_id": ")" + id + R"(", "default": true})");
    ASSERT_EQ(policy.result_int(), 201) << policy.body();
    std::string pid(body_of(policy).at("id").as_string());
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/operator/sla/calendars/" + id).result_int(), 409);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/sla/policies", "", "analyst").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/sla/policies", "", "administrator").result_int(), 200);
    EXPECT_EQ(error_code(call(bhttp::verb::patch, "/api/v1/operator/sla/policies/" + pid, R"({"tfr_minutes": -1})")),
              "invalid_tfr_minutes");
    EXPECT_EQ(call(bhttp::verb::patch, "/api/v1/operator/sla/policies/" + pid, R"({"calendar_id": null})").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/operator/sla/calendars/" + id).result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/operator/sla/policies/" + pid, "", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/operator/sla/policies/" + pid).result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/sla/policies/" + pid).result_int(), 404);
}

TEST_F(SlaRoutesTest, DialogFiguresAndTheReportOverHttp) {
    ASSERT_EQ(call(bhttp::verb::post, "/api/v1/operator/sla/policies", R"({"name": "Standard", "tfr_minutes": 5, "default": true})")
                  .result_int(),
              201);
    online(*anna_, 5);
    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    clock_.advance_ms(6 * kMin);
    tick();
    auto mine = call(bhttp::verb::get, "/api/v1/operator/dialogs/" + id + "/sla", "", "anna");
    ASSERT_EQ(mine.result_int(), 200) << mine.body();
    EXPECT_TRUE(body_of(mine).at("tfr").at("breached").as_bool());
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs/" + id + "/sla", "", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs/nope/sla", "", "anna").result_int(), 404);
    const std::string range = "from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z";
    auto report = call(bhttp::verb::get, "/api/v1/operator/sla/report?" + range, "", "analyst");
    ASSERT_EQ(report.result_int(), 200) << report.body();
    EXPECT_EQ(body_of(report).at("total").at("tfr_breaches"), 1);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/sla/report?" + range, "", "operator").result_int(), 403);
    EXPECT_EQ(error_code(call(bhttp::verb::get, "/api/v1/operator/sla/report?from=2026-03-02T00:00:00Z")), "missing_field");
    EXPECT_EQ(error_code(call(bhttp::verb::get, "/api/v1/operator/sla/report?from=2020-01-01T00:00:00Z&to=2026-03-03T00:00:00Z")),
              "range_too_long");
    EXPECT_EQ(error_code(call(bhttp::verb::get, "/api/v1/operator/sla/report?" + range + "&sort=x")), "invalid_query");
}

}  // namespace
}  // namespace parley::operators

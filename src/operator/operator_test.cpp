// OperatorService against a real SQLite store: routing under concurrency (no dialog assigned twice, capacity never
// exceeded, fair distribution), queue order, policies, segment rules, statuses, transfers and reassignment,
// permission boundaries, dialog metadata (tags, notes, labels, read markers, folders, filters, signatures,
// attachments, history, outgoing dialogs), the limits, and who receives live events.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "auth/auth.h"
#include "auth/permissions.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "bots/triggers.h"
#include "clients/clients.h"
#include "core/error.h"
#include "core/ids.h"
#include "events/events.h"
#include "http/http.h"
#include "operator/internal/routing.h"
#include "operator/internal/segment.h"
#include "operator/operator.h"

namespace parley::operators {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;

/// Collects what the hub sends to one user.
class FakeSocket final : public http::WebSocketSession {
public:
    void send(std::string text) override {
        std::lock_guard lock(mutex_);
        sent_.push_back(json::parse(text).as_object());
    }
    void close() override {}
    std::size_t pending() const override { return 0; }
    /// Events of `type` about `dialog_id`.
    std::size_t count(const std::string& type, const std::string& dialog_id) const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& e : sent_) {
            const auto* d = e.if_contains("dialog_id");
            if (e.at("type").as_string() == type && d && d->is_string() && d->as_string() == dialog_id) ++n;
        }
        return n;
    }

private:
    mutable std::mutex mutex_;
    std::vector<json::object> sent_;
};

class FakeSettings final : public auth::InstanceSettings {
public:
    std::optional<json::value> get(std::string_view key) const override {
        std::lock_guard lock(mutex_);
        auto it = values_.find(std::string(key));
        if (it == values_.end()) return std::nullopt;
        return it->second;
    }
    void set(const std::string& key, json::value v) {
        std::lock_guard lock(mutex_);
        values_[key] = std::move(v);
    }

private:
    mutable std::mutex mutex_;
    std::map<std::string, json::value> values_;
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

class OperatorTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("parley-operator-test-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        std::vector<store::Migration> migrations = auth::migrations();
        for (auto& m : clients::migrations()) migrations.push_back(m);
        for (auto& m : bots::migrations()) migrations.push_back(m);
        for (auto& m : operators::migrations()) migrations.push_back(m);
        store::StoreOptions options;
        options.path = (dir_ / "t.db").string();
        options.durable = false;
        store_ = store::Store::open_sqlite(options, migrations);
        bots_ = std::make_unique<bots::BotService>(*store_, clock_, registry_);
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        triggers_ = std::make_unique<bots::TriggerService>(*bots_, *dialogs_);
        service_ = std::make_unique<OperatorService>(*store_, clock_, *dialogs_, *triggers_, &hub_, &settings_);
        thread_ = std::thread([this] { io_.run(); });
        bot_ = await(bots_->create("Support", true)).id;
        for (const char* id : {"anna", "boris", "carl", "dora", "sue"}) add_user(id);
        anna_ = person("anna", "operator");
        boris_ = person("boris", "operator");
        carl_ = person("carl", "operator");
        dora_ = person("dora", "operator");
        sue_ = person("sue", "supervisor");
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

    void add_user(const std::string& id) {
        store_->write_sync([id, now = clock_.now_ms()](store::Tx& tx) {
            tx.exec("INSERT INTO auth_users(id, email, name, language, password_hash, active, created_at, updated_at, "
                    "password_changed_at) VALUES (?, ?, ?, 'en', 'x', 1, ?, ?, ?)",
                    {id, id + "@example.com", id, now, now, now});
        });
    }
    std::string new_dialog(json::object fields = {}, const std::string& channel = "telegram") {
        clients::NewClient client{"Olena", "", "", "uk", std::move(fields)};
        return await(dialogs_->create(bot_, channel, std::move(client))).id;
    }
    /// Runs the scenario action for the dialog; returns its event.
    std::string handover(const std::string& dialog_id, json::object params = {{"auto_connect_operator", true},
                                                                                {"status", "queue"}}) {
        std::promise<actions::ActionResult> done;
        actions::ActionCall call{"operator_panel__connect_to_operator_with_msg", std::move(params), dialog_id, "", {}, {}};
        service_->connect(std::move(call), [&](actions::ActionResult r) { done.set_value(std::move(r)); });
        return done.get_future().get().event;
    }
    void online(const core::Principal& who, unsigned capacity) { await(service_->set_status(who, "online", capacity)); }
    std::string holder(const std::string& dialog_id) {
        std::string out;
        store_->read([&](store::Tx& tx) {
            auto r = tx.query_one("SELECT coalesce(operator_id, '') FROM op_dialogs WHERE dialog_id = ?", {dialog_id});
            if (r) out = r->text(0);
        });
        return out;
    }
    std::string state(const std::string& dialog_id) {
        std::string out;
        store_->read([&](store::Tx& tx) {
            if (auto r = tx.query_one("SELECT state FROM op_dialogs WHERE dialog_id = ?", {dialog_id})) out = r->text(0);
        });
        return out;
    }
    /// Checks the invariants: each operator's counter equals their assigned dialogs and never exceeds capacity.
    void expect_consistent() {
        store_->read([&](store::Tx& tx) {
            for (const auto& r : tx.query("SELECT o.user_id, o.active_dialogs, o.capacity, (SELECT count(*) FROM op_dialogs d "
                                          "WHERE d.operator_id = o.user_id AND d.state = 'assigned') FROM op_operators o")) {
                EXPECT_EQ(r.integer(1), r.integer(3)) << r.text(0);
                EXPECT_LE(r.integer(3), r.integer(2)) << r.text(0);
            }
            EXPECT_EQ(tx.query_one("SELECT count(*) FROM op_dialogs WHERE state = 'assigned' AND operator_id IS NULL")->integer(0), 0);
        });
    }
    std::map<std::string, int> load() {
        std::map<std::string, int> out;
        store_->read([&](store::Tx& tx) {
            for (const auto& r : tx.query("SELECT operator_id, count(*) FROM op_dialogs WHERE state = 'assigned' GROUP BY operator_id")) {
                out[r.text(0)] = static_cast<int>(r.integer(1));
            }
        });
        return out;
    }
    std::vector<std::string> ids_of(const json::array& items) {
        std::vector<std::string> out;
        for (const auto& i : items) out.emplace_back(i.at("id").as_string());
        return out;
    }
    json::array list(const core::Principal& who, std::string_view folder, const DialogFilter& filter = {}) {
        std::optional<std::string> next;
        return service_->dialogs(who, folder, filter, std::nullopt, 200, &next);
    }
    std::string make_group(const std::string& name, const std::string& policy, std::vector<std::pair<std::string, int>> members) {
        json::array list;
        for (auto& [u, level] : members) list.push_back(json::object{{"user_id", u}, {"skill_level", level}});
        auto g = await(service_->create_skill_group(*sue_, json::object{{"name", name}, {"policy", policy}, {"members", list}}));
        return std::string(g.at("id").as_string());
    }

    fs::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    events::EventHub hub_;
    FakeSettings settings_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    std::unique_ptr<bots::TriggerService> triggers_;
    std::unique_ptr<OperatorService> service_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    std::thread thread_;
    std::string bot_;
    std::shared_ptr<core::Principal> anna_, boris_, carl_, dora_, sue_;
};

// ---- Routing under concurrency -------------------------------------------------------------------------------

TEST_F(OperatorTest, ConcurrentHandoversNeverDoubleAssignNorExceedCapacity) {
    online(*anna_, 7);
    online(*boris_, 5);
    online(*carl_, 3);
    constexpr int kDialogs = 60;
    std::vector<std::string> ids;
    for (int i = 0; i < kDialogs; ++i) ids.push_back(new_dialog());
    // Four threads hand over at once while the operators close and take dialogs.
    std::vector<std::thread> threads;
    std::mutex m;
    std::map<std::string, int> events;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = t; i < kDialogs; i += 4) {
                auto e = handover(ids[i]);
                std::lock_guard lock(m);
                ++events[e];
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(events["connected"], 15);
    EXPECT_EQ(events["queued"], kDialogs - 15);
    expect_consistent();
    auto l = load();
    EXPECT_EQ(l["anna"], 7);
    EXPECT_EQ(l["boris"], 5);
    EXPECT_EQ(l["carl"], 3);

    // Closing and taking concurrently keeps the invariants; every queued dialog ends with one operator.
    std::vector<std::thread> workers;
    for (auto who : {anna_, boris_, carl_}) {
        workers.emplace_back([&, who] {
            for (int round = 0; round < 30; ++round) {
                std::optional<std::string> next;
                auto mine = service_->dialogs(*who, "mine", std::nullopt, 50, &next);
                if (mine.empty()) break;
                await_void(service_->close(*who, std::string(mine[0].at("id").as_string())));
            }
        });
    }
    for (auto& w : workers) w.join();
    expect_consistent();
    for (const auto& id : ids) {
        auto s = state(id);
        EXPECT_TRUE(s == "closed" || s == "assigned" || s == "queue") << s;
    }
}

TEST_F(OperatorTest, ConcurrentTakesGiveEachDialogToExactlyOneOperator) {
    std::vector<std::string> ids;
    for (int i = 0; i < 20; ++i) {
        ids.push_back(new_dialog());
        ASSERT_EQ(handover(ids.back(), json::object{}), "queued");  // no auto-connect: Unassigned
    }
    std::atomic<int> won{0}, lost{0};
    std::vector<std::thread> threads;
    for (auto who : {anna_, boris_, carl_, dora_}) {
        threads.emplace_back([&, who] {
            for (const auto& id : ids) {
                try {
                    await(service_->take(*who, id));
                    ++won;
                } catch (const core::Conflict&) {
                    ++lost;
                } catch (const core::Forbidden&) {
                    ++lost;  // already someone else's: no longer visible
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    // Default capacity 5 each: 20 dialogs, 4 operators → every take that fits succeeds exactly once.
    EXPECT_EQ(won.load(), 20);
    EXPECT_EQ(lost.load(), 60);
    expect_consistent();
    for (const auto& [op, n] : load()) EXPECT_EQ(n, 5) << op;
}

TEST_F(OperatorTest, LeastBusyIsFairOverManyDialogs) {
    for (auto who : {anna_, boris_, carl_, dora_}) online(*who, kMaxCapacity);
    for (int i = 0; i < 400; ++i) ASSERT_EQ(handover(new_dialog()), "connected");
    for (const auto& [op, n] : load()) EXPECT_EQ(n, 100) << op;
    expect_consistent();
}

TEST_F(OperatorTest, RoundRobinCyclesAndBySkillPrefersTheBest) {
    std::string rr = make_group("RR", "round_robin", {{"anna", 1}, {"boris", 1}, {"carl", 1}});
    std::string skill = make_group("Skill", "by_skill", {{"anna", 2}, {"boris", 9}, {"carl", 5}});
    await(service_->create_subject(*sue_, json::object{{"alias", "rr"}, {"group_id", rr}}));
    await(service_->create_subject(*sue_, json::object{{"alias", "skill"}, {"group_id", skill}}));
    for (auto who : {anna_, boris_, carl_}) online(*who, 10);
    // Round robin: a strict cycle even though the first operator is busier.
    std::vector<std::string> order;
    for (int i = 0; i < 6; ++i) {
        auto id = new_dialog();
        ASSERT_EQ(handover(id, {{"auto_connect_operator", true}, {"subject_alias", "rr"}}), "connected");
        order.push_back(holder(id));
    }
    EXPECT_EQ(order, (std::vector<std::string>{"anna", "boris", "carl", "anna", "boris", "carl"}));
    // By skill: boris (9) until full, then carl (5).
    std::map<std::string, int> got;
    for (int i = 0; i < 12; ++i) {
        auto id = new_dialog();
        ASSERT_EQ(handover(id, {{"auto_connect_operator", true}, {"subject_alias", "skill"}}), "connected");
        ++got[holder(id)];
    }
    EXPECT_EQ(got["boris"], 8);  // 10 capacity, 2 from round robin
    EXPECT_EQ(got["carl"], 4);
    expect_consistent();
}

// ---- Queues ------------------------------------------------------------------------------------------------------

TEST_F(OperatorTest, QueueIsServedOldestFirstPerGroup) {
    std::string billing = make_group("Billing", "least_busy", {{"anna", 1}});
    await(service_->create_subject(*sue_, json::object{{"alias", "billing"}, {"group_id", billing}}));
    json::object to_billing{{"auto_connect_operator", true}, {"status", "queue"}, {"subject_alias", "billing"}};
    // Nobody of Billing is available: `status: queue` waits only when someone could serve, so this is `limit`.
    EXPECT_EQ(handover(new_dialog(), to_billing), "limit");
    online(*anna_, 1);  // Billing
    online(*boris_, 1);  // not in Billing: serves dialogs without a group
    auto b0 = new_dialog();
    ASSERT_EQ(handover(b0, to_billing), "connected");
    auto g0 = new_dialog();
    ASSERT_EQ(handover(g0), "connected");
    EXPECT_EQ(holder(b0), "anna");
    EXPECT_EQ(holder(g0), "boris");
    std::vector<std::string> g, b;
    for (int i = 0; i < 2; ++i) {
        clock_.advance_ms(1000);
        g.push_back(new_dialog());
        ASSERT_EQ(handover(g.back()), "queued");
        clock_.advance_ms(1000);
        b.push_back(new_dialog());
        ASSERT_EQ(handover(b.back(), to_billing), "queued");
    }
    auto queues = service_->queues();
    ASSERT_EQ(queues.size(), 2u);
    EXPECT_EQ(queues[0].at("waiting"), 2);
    EXPECT_EQ(queues[1].at("waiting"), 2);
    // boris frees up: the oldest dialog he may serve (g[0]); Billing's wait on.
    await_void(service_->close(*boris_, g0));
    EXPECT_EQ(holder(g[0]), "boris");
    EXPECT_EQ(state(b[0]), "queue");
    // anna frees up: the oldest waiting dialog (b[0], older than g[1]).
    await_void(service_->close(*anna_, b0));
    EXPECT_EQ(holder(b[0]), "anna");
    EXPECT_EQ(state(g[1]), "queue");
    // A newer general dialog is not held up behind a Billing dialog nobody can take.
    clock_.advance_ms(1000);
    auto g2 = new_dialog();
    ASSERT_EQ(handover(g2), "queued");
    online(*boris_, 3);
    EXPECT_EQ(holder(g[1]), "boris");
    EXPECT_EQ(holder(g2), "boris");
    EXPECT_EQ(state(b[1]), "queue");
    online(*anna_, 2);
    EXPECT_EQ(holder(b[1]), "anna");
    EXPECT_TRUE(service_->queues().empty());
    expect_consistent();
}

TEST_F(OperatorTest, GoingOfflineRedistributesChats) {
    online(*anna_, 3);
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) {
        ids.push_back(new_dialog());
        ASSERT_EQ(handover(ids.back()), "connected");
    }
    online(*boris_, 2);
    await(service_->set_status(*anna_, "offline", std::nullopt));
    auto l = load();
    EXPECT_EQ(l["boris"], 2);
    EXPECT_EQ(l.count("anna"), 0u);
    int queued = 0;
    for (const auto& id : ids) queued += state(id) == "queue";
    EXPECT_EQ(queued, 1);
    expect_consistent();
}

TEST_F(OperatorTest, AutoConnectSettingSendsHandoversToUnassigned) {
    online(*anna_, 5);
    settings_.set(std::string(kSettingAutoConnect), false);
    auto id = new_dialog();
    EXPECT_EQ(handover(id), "queued");
    EXPECT_EQ(state(id), "unassigned");
    settings_.set(std::string(kSettingAutoConnect), true);
    auto other = new_dialog();
    EXPECT_EQ(handover(other), "connected");
}

TEST_F(OperatorTest, SegmentRulesRouteVipClients) {
    std::string vip = make_group("VIP", "least_busy", {{"carl", 5}});
    auto rule = await(service_->create_segment_rule(
        *sue_, json::object{{"name", "vip"},
                            {"condition", json::object{{"any", json::array{json::object{{"var", "segment"}, {"op", "eq"}, {"value", "vip"}},
                                                                           json::object{{"var", "fields.spend"}, {"op", "gte"}, {"value", 1000}}}}}},
                            {"group_id", vip}}));
    EXPECT_EQ(rule.at("position"), 1);
    for (auto who : {anna_, carl_}) online(*who, 5);
    auto a = new_dialog(json::object{{"segment", "vip"}});
    auto b = new_dialog(json::object{{"spend", "2500"}});
    auto c = new_dialog(json::object{{"segment", "regular"}});
    for (const auto& id : {a, b, c}) ASSERT_EQ(handover(id), "connected");
    EXPECT_EQ(holder(a), "carl");
    EXPECT_EQ(holder(b), "carl");
    EXPECT_EQ(holder(c), "anna");  // least busy among everyone
    // Bad conditions are refused with the path of the problem.
    EXPECT_EQ(code_of<core::Unprocessable>([&] {
                  await(service_->create_segment_rule(*sue_, json::object{{"name", "x"}, {"group_id", vip},
                                                                          {"condition", json::object{{"var", "a"}, {"op", "like"}, {"value", 1}}}}));
              }),
              "invalid_condition");
    EXPECT_EQ(code_of<core::Forbidden>([&] {
                  await(service_->create_segment_rule(*anna_, json::object{{"name", "x"}, {"group_id", vip},
                                                                           {"condition", json::object{{"var", "a"}, {"op", "is_set"}}}}));
              }),
              "forbidden");
}

TEST_F(OperatorTest, SegmentConditionParsing) {
    using internal::SegmentCondition;
    auto c = SegmentCondition::parse(json::parse(R"({"all":[{"var":"tags","op":"contains","value":"gold"},
        {"not":{"var":"city","op":"in","value":["Lviv","Kyiv"]}}]})"));
    EXPECT_TRUE(c.matches(json::parse(R"({"tags":["gold"],"city":"Odesa"})").as_object()));
    EXPECT_FALSE(c.matches(json::parse(R"({"tags":["gold"],"city":"Lviv"})").as_object()));
    EXPECT_FALSE(c.matches(json::object{}));
    json::value deep = json::object{{"var", "x"}, {"op", "is_set"}};
    for (int i = 0; i < 10; ++i) deep = json::object{{"not", deep}};
    EXPECT_THROW(SegmentCondition::parse(deep), core::Unprocessable);
    EXPECT_THROW(SegmentCondition::parse(json::parse(R"({"var":"x","op":"in","value":1})")), core::Unprocessable);
    EXPECT_THROW(SegmentCondition::parse(json::parse(R"({"var":"x","op":"eq"})")), core::Unprocessable);
    EXPECT_THROW(SegmentCondition::parse(json::parse(R"({"all":[]})")), core::Unprocessable);
    EXPECT_THROW(SegmentCondition::parse(json::parse(R"({"var":"a..b","op":"is_set"})")), core::Unprocessable);
}

// ---- Statuses ------------------------------------------------------------------------------------------------

TEST_F(OperatorTest, CustomStatusesAndTheirRules) {
    auto training = await(service_->create_status(*sue_, "operator", json::object{{"name", "training"}, {"accepts_dialogs", true}}));
    EXPECT_EQ(training.at("accepts_dialogs"), true);
    await(service_->set_status(*anna_, "training", std::nullopt));
    auto id = new_dialog();
    EXPECT_EQ(handover(id), "connected");
    EXPECT_EQ(holder(id), "anna");
    EXPECT_EQ(code_of<core::Conflict>([&] { await_void(service_->delete_status(*sue_, "operator", "training")); }), "status_in_use");
    EXPECT_EQ(code_of<core::Conflict>([&] { await_void(service_->delete_status(*sue_, "operator", "online")); }), "builtin_status");
    EXPECT_EQ(code_of<core::Conflict>([&] {
                  await(service_->update_status(*sue_, "operator", "offline", json::object{{"accepts_dialogs", true}}));
              }),
              "builtin_status");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->set_status(*anna_, "sleeping", std::nullopt)); }), "invalid_status");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->set_status(*anna_, "online", kMaxCapacity + 1)); }), "invalid_capacity");
    auto label = await(service_->create_status(*sue_, "dialog", json::object{{"name", "waiting_for_client"}, {"title", "Waiting"}}));
    EXPECT_FALSE(label.contains("accepts_dialogs"));
    EXPECT_EQ(service_->statuses("operator").size(), 5u);
    for (std::size_t i = service_->statuses("dialog").size(); i < kMaxStatusesPerKind; ++i) {
        await(service_->create_status(*sue_, "dialog", json::object{{"name", "s" + std::to_string(i)}}));
    }
    EXPECT_EQ(code_of<core::Conflict>([&] { await(service_->create_status(*sue_, "dialog", json::object{{"name", "one_more"}})); }),
              "too_many_statuses");
    EXPECT_EQ(code_of<core::NotFound>([&] { service_->statuses("robot"); }), "not_found");
}

TEST_F(OperatorTest, SupervisorViewAndUpdateOperator) {
    std::string g = make_group("Sales", "least_busy", {{"anna", 3}});
    online(*anna_, 4);
    clock_.advance_ms(90'000);
    ASSERT_EQ(handover(new_dialog()), "connected");
    auto ops = service_->operators();
    ASSERT_EQ(ops.size(), 1u);
    const auto& a = ops[0].as_object();
    EXPECT_EQ(a.at("user_id"), "anna");
    EXPECT_EQ(a.at("status"), "online");
    EXPECT_EQ(a.at("seconds_in_status"), 90);
    EXPECT_EQ(a.at("active_dialogs"), 1);
    EXPECT_EQ(a.at("capacity"), 4);
    EXPECT_EQ(a.at("groups").as_array().at(0).at("id"), json::value(g));
    EXPECT_EQ(code_of<core::Forbidden>([&] { await(service_->update_operator(*boris_, "anna", "away", std::nullopt)); }), "forbidden");
    auto out = await(service_->update_operator(*sue_, "anna", "break", 2));
    EXPECT_EQ(out.at("status"), "break");
    EXPECT_EQ(out.at("capacity"), 2);
    EXPECT_EQ(out.at("accepts_dialogs"), false);
    EXPECT_EQ(code_of<core::NotFound>([&] { await(service_->update_operator(*sue_, "ghost", "away", std::nullopt)); }), "user_not_found");
}

// ---- Transfers and reassignment ----------------------------------------------------------------------------------

TEST_F(OperatorTest, TransferToOperatorAndGroup) {
    std::string g = make_group("Tech", "least_busy", {{"carl", 5}, {"anna", 5}});
    online(*anna_, 1);
    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    ASSERT_EQ(holder(id), "anna");
    // boris is offline: refused; then online but full.
    EXPECT_EQ(code_of<core::Conflict>([&] { await(service_->transfer(*anna_, id, "boris", std::nullopt, "")); }), "operator_unavailable");
    online(*boris_, 1);
    auto other = new_dialog();
    ASSERT_EQ(handover(other), "connected");
    ASSERT_EQ(holder(other), "boris");
    EXPECT_EQ(code_of<core::Conflict>([&] { await(service_->transfer(*anna_, id, "boris", std::nullopt, "")); }), "operator_at_capacity");
    // Not the holder: forbidden.
    EXPECT_EQ(code_of<core::Forbidden>([&] { await(service_->transfer(*boris_, id, "carl", std::nullopt, "")); }), "not_your_dialog");
    // To a group with nobody free: queued for that group, anna is not a candidate.
    auto out = await(service_->transfer(*anna_, id, std::nullopt, g, "needs a technician"));
    EXPECT_EQ(out.at("status"), "queue");
    EXPECT_EQ(state(id), "queue");
    online(*carl_, 2);
    EXPECT_EQ(holder(id), "carl");
    auto notes = service_->notes(*carl_, id);
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_EQ(notes[0].at("kind"), "transfer");
    EXPECT_EQ(notes[0].at("text"), "needs a technician");
    // Direct transfer to an operator with room.
    await(service_->transfer(*carl_, id, "anna", std::nullopt, ""));
    EXPECT_EQ(holder(id), "anna");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->transfer(*anna_, id, "carl", g, "")); }), "invalid_target");
    EXPECT_EQ(code_of<core::TooLarge>([&] {
                  await(service_->transfer(*anna_, id, "carl", std::nullopt, std::string(kMaxTransferCommentBytes + 1, 'x')));
              }),
              "too_large");
    expect_consistent();
}

TEST_F(OperatorTest, SupervisorReassignsChats) {
    online(*anna_, 4);
    std::vector<std::string> ids;
    for (int i = 0; i < 4; ++i) {
        ids.push_back(new_dialog());
        ASSERT_EQ(handover(ids.back()), "connected");
    }
    online(*boris_, 2);
    EXPECT_EQ(code_of<core::Forbidden>([&] { await(service_->reassign(*boris_, "anna", {}, "boris")); }), "forbidden");
    auto out = await(service_->reassign(*sue_, "anna", {ids[0]}, "boris"));
    EXPECT_EQ(out.at("moved").as_array().size(), 1u);
    EXPECT_EQ(holder(ids[0]), "boris");
    out = await(service_->reassign(*sue_, "anna", {}, "boris"));
    EXPECT_EQ(out.at("moved").as_array().size(), 1u);  // boris had room for one more
    EXPECT_EQ(out.at("queued").as_array().size(), 2u);
    // The requeued dialogs avoid anna, whom they were taken from: they wait for someone else.
    EXPECT_EQ(load()["anna"], 0);
    EXPECT_EQ(code_of<core::Unprocessable>([&] { await(service_->reassign(*sue_, "anna", {ids[0]}, std::nullopt)); }),
              "not_operator_dialog");
    expect_consistent();
}

// ---- Permission boundaries ---------------------------------------------------------------------------------------

TEST_F(OperatorTest, OperatorsCannotReadOrAnswerEachOthersDialogs) {
    online(*anna_, 5);
    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    ASSERT_EQ(holder(id), "anna");
    auto forbidden = [&](auto f) { return code_of<core::Forbidden>(f); };
    EXPECT_EQ(forbidden([&] { service_->messages(*boris_, id, 0, 10); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { service_->dialog(*boris_, id); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { service_->notes(*boris_, id); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { await(service_->reply(*boris_, id, "hi")); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { await(service_->take(*boris_, id)); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { await(service_->add_note(*boris_, id, "x")); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { await(service_->add_tags(*boris_, id, {"x"})); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { await(service_->mark_read(*boris_, id, std::nullopt)); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { await_void(service_->close(*boris_, id)); }), "not_your_dialog");
    EXPECT_EQ(forbidden([&] { list(*boris_, "all"); }), "forbidden");
    EXPECT_TRUE(list(*boris_, "mine").empty());
    DialogFilter by_anna;
    by_anna.set("operator_id", "anna");
    EXPECT_TRUE(list(*boris_, "closed", by_anna).empty());
    // A custom folder looks only at what its owner may see.
    auto folder = await(service_->create_folder(*boris_, json::object{{"name", "Everything"}}));
    EXPECT_TRUE(list(*boris_, folder.at("id").as_string()).empty());
    EXPECT_EQ(code_of<core::NotFound>([&] { list(*anna_, folder.at("id").as_string()); }), "folder_not_found");
    // The supervisor sees and answers everything.
    EXPECT_EQ(list(*sue_, "all").size(), 1u);
    EXPECT_EQ(await(service_->reply(*sue_, id, "Supervisor here")).at("text"), "Supervisor here");
    // A waiting dialog is everyone's to read and take.
    auto waiting = new_dialog();
    ASSERT_EQ(handover(waiting, json::object{}), "queued");
    EXPECT_NO_THROW(service_->messages(*boris_, waiting, 0, 10));
    EXPECT_EQ(await(service_->take(*boris_, waiting)).at("operator_id"), "boris");
    EXPECT_EQ(forbidden([&] { service_->messages(*anna_, waiting, 0, 10); }), "not_your_dialog");
}

TEST_F(OperatorTest, LiveEventsReachOnlyThoseAllowed) {
    auto socket = [&](const std::shared_ptr<core::Principal>& who) {
        auto s = std::make_shared<FakeSocket>();
        hub_.attach(s, who, std::nullopt);
        return s;
    };
    auto a = socket(anna_), b = socket(boris_), s = socket(sue_);
    online(*anna_, 5);
    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    await(service_->reply(*anna_, id, "hello"));
    await(service_->add_note(*anna_, id, "internal"));
    EXPECT_GE(a->count("operator.message", id), 1u);
    EXPECT_GE(s->count("operator.message", id), 1u);
    EXPECT_EQ(b->count("operator.message", id), 0u);
    EXPECT_GE(a->count("operator.note", id), 1u);
    EXPECT_EQ(b->count("operator.note", id), 0u);
    // A waiting dialog's events go to every operator (anyone may take it).
    auto waiting = new_dialog();
    ASSERT_EQ(handover(waiting, json::object{}), "queued");
    await(service_->add_note(*sue_, waiting, "for whoever takes it"));
    EXPECT_GE(b->count("operator.note", waiting), 1u);
}

// ---- Dialog metadata ---------------------------------------------------------------------------------------------

TEST_F(OperatorTest, TagsNotesLabelsSubjectAndReadMarkers) {
    online(*anna_, 5);
    std::string g = make_group("Billing", "least_busy", {{"boris", 5}});
    await(service_->create_subject(*sue_, json::object{{"alias", "billing"}, {"title", "Billing"}, {"group_id", g}}));
    await(service_->create_status(*sue_, "dialog", json::object{{"name", "pending"}}));
    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    EXPECT_EQ(await(service_->add_tags(*anna_, id, {"refund", "angry"})), (json::array{"angry", "refund"}));
    EXPECT_EQ(await(service_->add_tags(*anna_, id, {"refund"})).size(), 2u);
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->add_tags(*anna_, id, {"a,b"})); }), "invalid_tags");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->add_tags(*anna_, id, {std::string(kMaxDialogTagBytes + 1, 't')})); }),
              "invalid_tags");
    std::vector<std::string> many;
    for (std::size_t i = 0; i < kMaxDialogTags - 1; ++i) many.push_back("t" + std::to_string(i));
    EXPECT_EQ(code_of<core::Conflict>([&] { await(service_->add_tags(*anna_, id, many)); }), "too_many_tags");
    EXPECT_EQ(service_->dialog(*anna_, id).at("tags").as_array().size(), 2u);  // nothing half-written
    EXPECT_EQ(await(service_->remove_tag(*anna_, id, "angry")), (json::array{"refund"}));
    EXPECT_EQ(code_of<core::NotFound>([&] { await(service_->remove_tag(*anna_, id, "angry")); }), "tag_not_found");
    DialogFilter tagged;
    tagged.set("tag", "refund");
    EXPECT_EQ(list(*anna_, "mine", tagged).size(), 1u);

    auto updated = await(service_->update_dialog(*anna_, id, json::object{{"subject", "billing"}, {"label", "pending"}}));
    EXPECT_EQ(updated.at("subject"), "billing");
    EXPECT_EQ(updated.at("label"), "pending");
    EXPECT_EQ(code_of<core::Unprocessable>([&] { await(service_->update_dialog(*anna_, id, json::object{{"label", "nope"}})); }),
              "status_not_found");
    EXPECT_EQ(code_of<core::Unprocessable>([&] { await(service_->update_dialog(*anna_, id, json::object{{"subject", "nope"}})); }),
              "subject_not_found");
    EXPECT_EQ(service_->dialog(*anna_, id).at("subject_title"), "Billing");

    auto note = await(service_->add_note(*anna_, id, "Called the bank"));
    EXPECT_EQ(note.at("kind"), "note");
    EXPECT_EQ(code_of<core::TooLarge>([&] { await(service_->add_note(*anna_, id, std::string(kMaxNoteBytes + 1, 'n'))); }), "too_large");
    auto card = service_->dialog(*anna_, id);
    EXPECT_EQ(card.at("notes"), 1);
    EXPECT_EQ(card.at("client").at("language"), "uk");
    // Notes never reach the client.
    for (const auto& m : service_->messages(*anna_, id, 0, 100)) EXPECT_NE(m.at("text"), "Called the bank");

    // Read markers: the operator's own reply counts as read; markers never move back.
    await(dialogs_->post(id, "client", "first", false));
    await(dialogs_->post(id, "client", "second", false));
    DialogFilter unread;
    unread.set("unread", "true");
    EXPECT_EQ(list(*anna_, "mine", unread).size(), 1u);
    auto marker = await(service_->mark_read(*anna_, id, 1));
    EXPECT_EQ(marker.at("unread"), 1);
    marker = await(service_->mark_read(*anna_, id, std::nullopt));
    EXPECT_EQ(marker.at("unread"), 0);
    EXPECT_EQ(await(service_->mark_read(*anna_, id, 0)).at("read_n"), 2);
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->mark_read(*anna_, id, 99)); }), "invalid_n");
    EXPECT_TRUE(list(*anna_, "mine", unread).empty());
    await(service_->reply(*anna_, id, "answer"));
    EXPECT_EQ(service_->dialog(*anna_, id).at("unread"), 0);
}

TEST_F(OperatorTest, SignaturesAndAttachments) {
    online(*anna_, 5);
    auto id = new_dialog();
    ASSERT_EQ(handover(id), "connected");
    EXPECT_EQ(service_->signature(*anna_).at("enabled"), false);
    EXPECT_EQ(code_of<core::TooLarge>([&] { await(service_->set_signature(*anna_, std::string(kMaxSignatureBytes + 1, 's'), true)); }),
              "too_large");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->set_signature(*anna_, "", true)); }), "invalid_text");
    await(service_->set_signature(*anna_, "-- Anna, support", true));
    EXPECT_EQ(await(service_->reply(*anna_, id, "Hello")).at("text"), "Hello\n\n-- Anna, support");
    EXPECT_EQ(await(service_->reply(*anna_, id, "Bare", std::nullopt, false)).at("text"), "Bare");
    OperatorService::Attachment file{"https://files.example.com/invoice.pdf", "invoice.pdf", "application/pdf"};
    auto sent = await(service_->reply(*anna_, id, "", file, true));
    EXPECT_EQ(sent.at("payload").at("attachment").at("name"), "invoice.pdf");
    auto messages = service_->messages(*anna_, id, 0, 100);
    EXPECT_EQ(messages.back().at("payload").at("attachment").at("url"), "https://files.example.com/invoice.pdf");
    file.url = "file:///etc/passwd";
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->reply(*anna_, id, "x", file, true)); }), "invalid_attachment");
    file = {"https://x.example.com/a", "a", "not a mime"};
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->reply(*anna_, id, "x", file, true)); }), "invalid_attachment");
}

TEST_F(OperatorTest, FoldersFiltersAndTheirOrder) {
    online(*anna_, 5);
    auto a = new_dialog({}, "telegram");
    auto b = new_dialog({}, "viber");
    ASSERT_EQ(handover(a), "connected");
    ASSERT_EQ(handover(b), "connected");
    await(service_->add_tags(*anna_, a, {"vip"}));
    auto folder = await(service_->create_folder(*anna_, json::object{{"name", "VIP on Telegram"},
                                                                     {"filter", json::object{{"tag", "vip"}, {"channel", "telegram"},
                                                                                             {"states", json::array{"assigned"}}}}}));
    std::string fid(folder.at("id").as_string());
    EXPECT_EQ(ids_of(list(*anna_, fid)), std::vector<std::string>{a});
    await(service_->update_folder(*anna_, fid, json::object{{"filter", json::object{{"channel", "viber"}}}}));
    EXPECT_EQ(ids_of(list(*anna_, fid)), std::vector<std::string>{b});
    // Search: the handover message, the client's name, message texts.
    await(dialogs_->post(b, "client", "Where is my parcel 7731?", false));
    DialogFilter q;
    q.set("q", "PARCEL 7731");
    EXPECT_EQ(ids_of(list(*anna_, "mine", q)), std::vector<std::string>{b});
    q.set("q", "olena");
    EXPECT_EQ(list(*anna_, "mine", q).size(), 2u);
    DialogFilter from;
    from.set("created_from", "2100-01-01");
    EXPECT_TRUE(list(*anna_, "mine", from).empty());

    // Rearranging names every folder, the built-in ones too.
    auto folders = service_->folders(*anna_);
    ASSERT_EQ(folders.size(), 5u);  // unassigned, queue, mine, closed + one
    EXPECT_EQ(folders[0].at("id"), "unassigned");
    std::vector<std::string> order{fid, "mine", "queue", "unassigned", "closed"};
    auto ordered = await(service_->order_folders(*anna_, order));
    EXPECT_EQ(ids_of(ordered), order);
    EXPECT_EQ(ids_of(service_->folders(*anna_)), order);
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->order_folders(*anna_, {"mine", "queue"})); }), "invalid_ids");
    EXPECT_EQ(code_of<core::BadRequest>([&] {
                  await(service_->order_folders(*anna_, {fid, "mine", "queue", "unassigned", "closed", "all"}));
              }),
              "invalid_ids");
    await_void(service_->delete_folder(*anna_, fid));
    EXPECT_EQ(ids_of(service_->folders(*anna_)), (std::vector<std::string>{"mine", "queue", "unassigned", "closed"}));
    EXPECT_EQ(code_of<core::NotFound>([&] { await_void(service_->delete_folder(*anna_, fid)); }), "folder_not_found");

    for (std::size_t i = 0; i < kMaxFoldersPerUser; ++i) {
        await(service_->create_folder(*anna_, json::object{{"name", "f" + std::to_string(i)}}));
    }
    EXPECT_EQ(code_of<core::Conflict>([&] { await(service_->create_folder(*anna_, json::object{{"name", "more"}})); }),
              "too_many_folders");
    EXPECT_EQ(code_of<core::BadRequest>([&] {
                  await(service_->create_folder(*boris_, json::object{{"name", "x"}, {"filter", json::object{{"colour", "red"}}}}));
              }),
              "invalid_filter");
    EXPECT_EQ(code_of<core::BadRequest>([&] { list(*anna_, "nope"); }), "invalid_folder");
}

TEST_F(OperatorTest, FilterParsing) {
    DialogFilter f = DialogFilter::from_json(json::parse(R"({"states":["queue","closed"],"created_from":"2026-01-02T03:04:05Z",
        "closed_to":"2026-01-03","unread":true,"q":"x","group_id":"none"})").as_object());
    EXPECT_EQ(f.states.size(), 2u);
    EXPECT_EQ(*f.created_from, internal::parse_time("2026-01-02T03:04:05.000Z").value());
    EXPECT_EQ(DialogFilter::from_json(f.to_json()).to_json(), f.to_json());
    auto bad = [](const char* text) {
        return code_of<core::BadRequest>([&] { DialogFilter::from_json(json::parse(text).as_object()); });
    };
    EXPECT_EQ(bad(R"({"states":["open"]})"), "invalid_states");
    EXPECT_EQ(bad(R"({"created_from":"yesterday"})"), "invalid_created_from");
    EXPECT_EQ(bad(R"({"created_from":"2026-02-30"})"), "invalid_created_from");
    EXPECT_EQ(bad(R"({"unread":"yes"})"), "invalid_unread");
    EXPECT_EQ(bad(R"({"label":"Not An Alias"})"), "invalid_label");
    EXPECT_EQ(bad(R"({"tag":7})"), "invalid_tag");
    DialogFilter q;
    EXPECT_THROW(q.set("q", std::string(kMaxSearchBytes + 1, 'q')), core::BadRequest);
    EXPECT_THROW(q.set("sort", "id"), core::BadRequest);
    EXPECT_FALSE(internal::parse_time("2026-01-02T25:00:00Z"));
    EXPECT_FALSE(internal::parse_time("2026-01-02 10:00:00"));
}

TEST_F(OperatorTest, HistoryAcrossChannelsHidesOthersDialogs) {
    online(*anna_, 5);
    online(*boris_, 5);
    auto first = new_dialog({}, "telegram");
    std::string client;
    store_->read([&](store::Tx& tx) { client = tx.query_one("SELECT client_id FROM dialogs WHERE id = ?", {first})->text(0); });
    // The same client writes over Viber and the widget.
    std::vector<std::string> more;
    for (const char* channel : {"viber", "widget"}) {
        clock_.advance_ms(10);
        std::string id = core::new_id();
        store_->write_sync([&, id, channel](store::Tx& tx) {
            tx.exec("INSERT INTO dialogs(id, bot_id, client_id, channel, status, waiting, state, last_n, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, 'bot', 'none', '', 0, ?, ?)",
                    {id, bot_, client, std::string(channel), clock_.now_ms(), clock_.now_ms()});
        });
        await(dialogs_->post(id, "client", std::string("over ") + channel, false));
        more.push_back(id);
    }
    ASSERT_EQ(handover(first), "connected");   // anna (tie → user id)
    ASSERT_EQ(handover(more[0]), "connected");  // boris
    ASSERT_EQ(holder(more[0]), "boris");
    std::optional<std::string> next;
    auto history = service_->history(*anna_, first, std::nullopt, 10, &next);
    ASSERT_EQ(history.size(), 3u);
    EXPECT_EQ(history[0].at("channel"), "widget");
    EXPECT_EQ(history[0].at("messages").as_array().at(0).at("text"), "over widget");
    EXPECT_TRUE(history[1].at("messages").is_null());  // boris's dialog
    EXPECT_EQ(history[2].at("current"), true);
    EXPECT_EQ(service_->history(*sue_, first, std::nullopt, 10, &next)[1].at("messages").as_array().size(), 1u);
    auto page = service_->history(*anna_, first, std::nullopt, 2, &next);
    ASSERT_TRUE(next.has_value());
    EXPECT_EQ(service_->history(*anna_, first, next, 2, &next).size(), 1u);
}

TEST_F(OperatorTest, OutgoingDialogStartedByAnOperator) {
    online(*anna_, 1);
    auto id = new_dialog({}, "telegram");
    std::string client;
    store_->read([&](store::Tx& tx) { client = tx.query_one("SELECT client_id FROM dialogs WHERE id = ?", {id})->text(0); });
    auto out = await(service_->start_dialog(*anna_, client, "telegram", "Your order has shipped"));
    EXPECT_EQ(out.at("dialog").at("id"), json::value(id));
    EXPECT_EQ(out.at("dialog").at("outgoing"), true);
    EXPECT_EQ(out.at("dialog").at("status"), "assigned");
    EXPECT_EQ(out.at("message").at("from"), "operator");
    EXPECT_EQ(code_of<core::Unprocessable>([&] { await(service_->start_dialog(*anna_, client, "viber", "hi")); }),
              "no_dialog_on_channel");
    EXPECT_EQ(code_of<core::NotFound>([&] { await(service_->start_dialog(*anna_, "nobody", "telegram", "hi")); }),
              "client_not_found");
    EXPECT_EQ(code_of<core::Conflict>([&] { await(service_->start_dialog(*boris_, client, "telegram", "hi")); }),
              "dialog_with_operator");
    auto other = new_dialog({}, "viber");
    std::string other_client;
    store_->read([&](store::Tx& tx) { other_client = tx.query_one("SELECT client_id FROM dialogs WHERE id = ?", {other})->text(0); });
    EXPECT_EQ(code_of<core::Conflict>([&] { await(service_->start_dialog(*anna_, other_client, "viber", "hi")); }), "at_capacity");
    // Closing it and starting again reopens the same dialog.
    await_void(service_->close(*anna_, id));
    EXPECT_EQ(await(service_->start_dialog(*anna_, client, "telegram", "One more thing")).at("dialog").at("status"), "assigned");
    expect_consistent();
}

TEST_F(OperatorTest, SkillGroupLimitsAndValidation) {
    EXPECT_EQ(code_of<core::BadRequest>([&] { make_group("X", "random", {}); }), "invalid_policy");
    EXPECT_EQ(code_of<core::BadRequest>([&] { make_group("X", "least_busy", {{"anna", kMaxSkillLevel + 1}}); }), "invalid_skill_level");
    EXPECT_EQ(code_of<core::Unprocessable>([&] { make_group("X", "least_busy", {{"ghost", 1}}); }), "user_not_found");
    EXPECT_TRUE(service_->skill_groups().empty());  // nothing half-written
    std::string g = make_group("X", "least_busy", {});
    EXPECT_EQ(code_of<core::Conflict>([&] { make_group("X", "least_busy", {}); }), "group_exists");
    await(service_->put_member(*sue_, g, "anna", 4));
    EXPECT_EQ(service_->members_of(g), std::vector<std::string>{"anna"});
    EXPECT_EQ(service_->groups_of("anna"), std::vector<std::string>{g});
    await(service_->create_subject(*sue_, json::object{{"alias", "x"}, {"group_id", g}}));
    EXPECT_EQ(code_of<core::Conflict>([&] { await_void(service_->delete_skill_group(*sue_, g)); }), "group_in_use");
    EXPECT_EQ(code_of<core::BadRequest>([&] { await(service_->create_subject(*sue_, json::object{{"alias", "Bad Alias"}})); }),
              "invalid_alias");
    EXPECT_EQ(code_of<core::Forbidden>([&] { await(service_->create_subject(*anna_, json::object{{"alias", "y"}})); }), "forbidden");
}

}  // namespace
}  // namespace parley::operators

// TicketService against a real SQLite store: numbering, validation (nothing half-written), custom fields, statuses,
// SLA with a controllable clock, the filtered list, visibility, links, watchers, comments, history and events.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "auth/permissions.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "clients/clients.h"
#include "core/error.h"
#include "events/events.h"
#include "http/http.h"
#include "operator/operator.h"
#include "operator/tickets.h"

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
    std::vector<std::string> types() const {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        for (const auto& e : sent_) {
            if (e.at("type") != "hello") out.emplace_back(e.at("type").as_string());
        }
        return out;
    }
    void clear() {
        std::lock_guard lock(mutex_);
        sent_.clear();
    }

private:
    mutable std::mutex mutex_;
    std::vector<json::object> sent_;
};

std::shared_ptr<core::Principal> person(const std::string& id, const std::string& role) {
    auto p = std::make_shared<core::Principal>();
    p->user_id = id;
    p->roles = {role};
    for (const auto& r : auth::builtin_roles()) {
        if (r.name == role) p->permissions.insert(r.defaults.begin(), r.defaults.end());
    }
    if (role == "administrator") {
        auto all = auth::all_permissions();
        p->permissions.insert(all.begin(), all.end());
    }
    return p;
}

class TicketsTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("parley-tickets-test-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        std::vector<store::Migration> migrations = clients::migrations();
        for (auto& m : bots::migrations()) migrations.push_back(m);
        for (auto& m : operators::migrations()) migrations.push_back(m);
        for (auto& m : ticket_migrations()) migrations.push_back(m);
        store::StoreOptions options;
        options.path = (dir_ / "t.db").string();
        options.durable = false;
        store_ = store::Store::open_sqlite(options, migrations);
        bots_ = std::make_unique<bots::BotService>(*store_, clock_, registry_);
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        StaffDirectory staff;
        staff.user_exists = [](std::string_view id) { return id != "ghost"; };
        staff.groups_of = [this](std::string_view user) {
            std::vector<std::string> out;
            for (const auto& [g, members] : groups_) {
                if (members.count(std::string(user))) out.push_back(g);
            }
            return out;
        };
        staff.members_of = [this](std::string_view group) {
            auto it = groups_.find(std::string(group));
            return it == groups_.end() ? std::vector<std::string>{}
                                       : std::vector<std::string>(it->second.begin(), it->second.end());
        };
        service_ = std::make_unique<TicketService>(*store_, clock_, *dialogs_, &hub_, staff);
        thread_ = std::thread([this] { io_.run(); });
        anna_ = person("anna", "operator");
        boris_ = person("boris", "operator");
        sue_ = person("sue", "supervisor");
        admin_ = person("root", "administrator");
        analyst_ = person("ann", "analyst");
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

    json::object create(const core::Principal& who, const std::string& body) {
        return await(service_->create(who, json::parse(body).as_object()));
    }
    json::object update(const core::Principal& who, const std::string& id, const std::string& body) {
        return await(service_->update(who, id, json::parse(body).as_object()));
    }
    std::int64_t count(const std::string& sql) {
        std::int64_t n = 0;
        store_->read([&](store::Tx& tx) { n = tx.query_one(sql)->integer(0); });
        return n;
    }
    json::array list(const core::Principal& who, std::vector<std::pair<std::string, std::string>> query,
                     std::optional<std::string>* next = nullptr) {
        std::optional<std::string> ignored;
        return service_->list(who, parse_ticket_filter(query), next ? next : &ignored);
    }
    std::vector<std::string> keys(const json::array& items) {
        std::vector<std::string> out;
        for (const auto& t : items) out.emplace_back(t.at("key").as_string());
        return out;
    }
    /// A bot dialog with a client (and, when `state` is given, its operator-panel row).
    std::pair<std::string, std::string> make_dialog(const std::string& state = "", const std::string& operator_id = "",
                                                    const std::string& subject = "billing") {
        auto bot = await(bots_->create("Support", true));
        clients::NewClient c;
        c.name = "Olena";
        auto dialog = await(dialogs_->create(bot.id, "preview", c));
        if (!state.empty()) {
            store_->write_sync([&](store::Tx& tx) {
                tx.exec("INSERT INTO op_dialogs(dialog_id, bot_id, client_id, channel, subject, state, operator_id, created_at) "
                        "VALUES (?, ?, ?, 'preview', ?, ?, ?, 0)",
                        {dialog.id, bot.id, dialog.client_id, subject, state,
                         operator_id.empty() ? store::Value(nullptr) : store::Value(operator_id)});
            });
        }
        return {dialog.id, dialog.client_id};
    }
    std::shared_ptr<FakeSocket> listen(const std::shared_ptr<core::Principal>& who) {
        auto socket = std::make_shared<FakeSocket>();
        hub_.attach(socket, who, std::nullopt);
        sockets_.push_back(socket);
        return socket;
    }

    template <typename E, typename F>
    void expect_error(F&& f, const std::string& code) {
        try {
            f();
            ADD_FAILURE() << "no error, expected " << code;
        } catch (const E& e) {
            EXPECT_EQ(e.code(), code) << e.what();
        }
    }

    fs::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    events::EventHub hub_;
    std::map<std::string, std::set<std::string>> groups_;
    std::unique_ptr<TicketService> service_;
    std::shared_ptr<core::Principal> anna_, boris_, sue_, admin_, analyst_;
    std::vector<std::shared_ptr<FakeSocket>> sockets_;
    asio::io_context io_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{io_.get_executor()};
    std::thread thread_;
};

TEST(TicketParsing, IsoTimes) {
    EXPECT_EQ(parse_iso_time("1970-01-01"), 0);
    EXPECT_EQ(parse_iso_time("1970-01-02T00:00:00Z"), 86'400'000);
    EXPECT_EQ(parse_iso_time("2023-11-14T22:13:20.5Z"), 1'700'000'000'500);
    EXPECT_EQ(parse_iso_time("2023-11-15T00:13:20+02:00"), 1'700'000'000'000);
    EXPECT_EQ(parse_iso_time("2024-02-29"), parse_iso_time("2024-02-28T00:00Z").value() + 86'400'000);
    for (const char* bad : {"", "2023", "2023-02-29", "2023-13-01", "2023-1-01", "2023-01-01T25:00Z", "2023-01-01T10:00:00ZZ",
                            "2023-01-01T10:00:00.Z", "1969-12-31", "2023-01-01X", "2023-01-01T10:00+2:00", "２０２３-01-01",
                            "9999-12-31T23:59-01:00", "1970-01-01T00:00+01:00"}) {
        EXPECT_FALSE(parse_iso_time(bad).has_value()) << bad;
    }
}

TEST(TicketParsing, Filter) {
    auto f = parse_ticket_filter({{"status", "new,open"}, {"status", "pending"}, {"priority", "high"}, {"assignee", "me"},
                                  {"field.order_no", "A-1"}, {"q", "Refund"}, {"created_from", "2024-01-01"},
                                  {"breached", "true"}, {"sort", "-priority"}, {"limit", "10"}, {"cursor", "3.17"}});
    EXPECT_EQ(f.statuses, (std::vector<std::string>{"new", "open", "pending"}));
    EXPECT_EQ(f.priorities, std::vector<int>{2});
    EXPECT_EQ(f.assignee, "me");
    ASSERT_EQ(f.fields.size(), 1u);
    EXPECT_EQ(f.fields[0].first, "order_no");
    EXPECT_EQ(f.text, "Refund");
    EXPECT_TRUE(f.created_from.has_value());
    EXPECT_EQ(f.breached, true);
    EXPECT_EQ(f.limit, 10u);
    std::vector<std::vector<std::pair<std::string, std::string>>> bad = {
        {{"nope", "1"}},           {{"priority", "asap"}},      {{"status", "Bad Name"}}, {{"sort", "title"}},
        {{"limit", "0"}},          {{"limit", "201"}},          {{"cursor", "abc"}},      {{"cursor", "-1.2"}},
        {{"created_to", "today"}}, {{"breached", "yes"}},       {{"field.", "x"}},        {{"q", std::string(201, 'x')}},
        {{"q", "a"}, {"q", "b"}},  {{"assignee", ""}},          {{"field.A", "1"}},
    };
    for (const auto& q : bad) EXPECT_THROW(parse_ticket_filter(q), core::BadRequest) << q[0].first << "=" << q[0].second;
}

TEST_F(TicketsTest, CreateNumbersDefaultsAndLookupByKey) {
    auto t1 = create(*anna_, R"({"title": "Refund for order 17"})");
    auto t2 = create(*anna_, R"({"title": "Second", "priority": "urgent", "tags": ["vip", "refund", "vip"],
                                 "due_at": "2030-01-01T12:00:00Z", "description": "details"})");
    EXPECT_EQ(t1.at("number"), 1);
    EXPECT_EQ(t1.at("key"), "T-1");
    EXPECT_EQ(t1.at("status"), "new");
    EXPECT_EQ(t1.at("status_category"), "new");
    EXPECT_EQ(t1.at("priority"), "normal");
    EXPECT_TRUE(t1.at("assignee_id").is_null());
    EXPECT_EQ(t1.at("watchers"), json::array{"anna"});
    EXPECT_EQ(t1.at("version"), 1);
    EXPECT_EQ(t2.at("key"), "T-2");
    EXPECT_EQ(t2.at("tags"), (json::array{"refund", "vip"}));
    EXPECT_EQ(t2.at("due_at"), "2030-01-01T12:00:00.000Z");
    EXPECT_EQ(service_->get(*anna_, "T-2").at("id"), t2.at("id"));
    EXPECT_EQ(service_->get(*anna_, "2").at("id"), t2.at("id"));
    EXPECT_EQ(service_->get(*anna_, std::string(t1.at("id").as_string())).at("title"), "Refund for order 17");
    EXPECT_THROW(service_->get(*anna_, "T-99"), core::NotFound);
    // Numbers are never reused, even after the newest ticket is deleted.
    await_void(service_->remove(*sue_, "T-2"));
    EXPECT_EQ(create(*anna_, R"({"title": "Third"})").at("key"), "T-3");
    auto history = [&] {
        std::optional<std::string> next;
        return service_->history(*anna_, "T-1", std::nullopt, 50, &next);
    }();
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history[0].at("field"), "created");
    EXPECT_EQ(history[0].at("new"), "T-1");
}

TEST_F(TicketsTest, BadInputIsRefusedAndWritesNothing) {
    using core::BadRequest;
    using core::TooLarge;
    using core::Unprocessable;
    auto attempt = [&](const std::string& body) { create(*anna_, body); };
    expect_error<BadRequest>([&] { attempt(R"({})"); }, "missing_field");
    expect_error<BadRequest>([&] { attempt(R"({"title": "  "})"); }, "empty_field");
    expect_error<BadRequest>([&] { attempt(R"({"title": 5})"); }, "wrong_type");
    expect_error<TooLarge>([&] { attempt(R"({"title": ")" + std::string(kMaxTicketTitleBytes + 1, 'x') + "\"}"); }, "too_large");
    expect_error<TooLarge>([&] {
        attempt(R"({"title": "t", "description": ")" + std::string(kMaxTicketDescriptionBytes + 1, 'x') + "\"}");
    }, "too_large");
    expect_error<BadRequest>([&] { attempt(R"({"title": "t", "priority": "asap"})"); }, "invalid_priority");
    expect_error<BadRequest>([&] { attempt(R"({"title": "t", "due_at": "tomorrow"})"); }, "invalid_time");
    expect_error<BadRequest>([&] { attempt(R"({"title": "t", "colour": "red"})"); }, "unknown_field");
    expect_error<BadRequest>([&] { attempt(R"({"title": "t", "tags": ["a,b"]})"); }, "invalid_field");
    expect_error<BadRequest>([&] { attempt(R"({"title": "t", "tags": "vip"})"); }, "wrong_type");
    expect_error<BadRequest>([&] { attempt(R"({"title": "t", "assignee_id": ""})"); }, "invalid_field");
    std::string many_tags = "[";
    for (std::size_t i = 0; i <= kMaxTagsPerTicket; ++i) many_tags += (i ? ",\"t" : "\"t") + std::to_string(i) + "\"";
    expect_error<TooLarge>([&] { attempt(R"({"title": "t", "tags": )" + many_tags + "]}"); }, "too_large");
    expect_error<BadRequest>([&] { attempt(R"({"title": "t", "tags": [")" + std::string(kMaxTagBytes + 1, 'x') + "\"]}"); },
                             "invalid_field");
    expect_error<Unprocessable>([&] { attempt(R"({"title": "t", "status": "nonexistent"})"); }, "unknown_status");
    expect_error<Unprocessable>([&] { attempt(R"({"title": "t", "client_id": "no-such-client"})"); }, "unknown_client");
    expect_error<Unprocessable>([&] { attempt(R"({"title": "t", "dialog_ids": ["no-such-dialog"]})"); }, "unknown_dialog");
    expect_error<Unprocessable>([&] { attempt(R"({"title": "t", "assignee_id": "ghost"})"); }, "unknown_user");
    expect_error<Unprocessable>([&] { attempt(R"({"title": "t", "watchers": ["ghost"]})"); }, "unknown_user");
    EXPECT_EQ(count("SELECT count(*) FROM tk_tickets"), 0);
    EXPECT_EQ(count("SELECT count(*) FROM tk_history"), 0);
    EXPECT_EQ(count("SELECT count(*) FROM tk_watchers"), 0);
    EXPECT_EQ(count("SELECT next_number FROM tk_counter"), 1);

    // A refused update changes nothing either.
    auto t = create(*anna_, R"({"title": "ok", "tags": ["a"]})");
    std::string id(t.at("id").as_string());
    expect_error<Unprocessable>([&] { update(*anna_, id, R"({"title": "changed", "tags": ["b"], "status": "nope"})"); },
                                "unknown_status");
    auto after = service_->get(*anna_, id);
    EXPECT_EQ(after.at("title"), "ok");
    EXPECT_EQ(after.at("tags"), json::array{"a"});
    EXPECT_EQ(after.at("version"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM tk_history"), 1);
}

TEST_F(TicketsTest, CustomFieldsAreValidatedOnWrite) {
    await(service_->create_field(json::parse(R"({"name": "order_no", "label": "Order", "type": "string", "required": true})").as_object()));
    await(service_->create_field(json::parse(R"({"name": "notes", "type": "text"})").as_object()));
    await(service_->create_field(json::parse(R"({"name": "amount", "type": "number"})").as_object()));
    await(service_->create_field(json::parse(R"({"name": "urgent_call", "type": "bool"})").as_object()));
    await(service_->create_field(json::parse(R"({"name": "visit", "type": "date"})").as_object()));
    await(service_->create_field(json::parse(R"({"name": "reason", "type": "select", "options": ["delivery", "quality"]})").as_object()));
    EXPECT_EQ(service_->fields().size(), 6u);

    try {
        create(*anna_, R"({"title": "t", "fields": {"amount": "ten", "urgent_call": 1, "visit": "2024-02-30",
                                                     "reason": "price", "colour": "red"}})");
        FAIL() << "accepted";
    } catch (const core::Unprocessable& e) {
        EXPECT_EQ(e.code(), "invalid_fields");
        std::set<std::string> fields;
        for (const auto& d : e.details()) fields.insert(std::string(d.at("field").as_string()));
        EXPECT_EQ(fields, (std::set<std::string>{"fields.amount", "fields.urgent_call", "fields.visit", "fields.reason",
                                                 "fields.colour", "fields.order_no"}));
    }
    EXPECT_THROW(create(*anna_, R"({"title": "t", "fields": {"order_no": ""}})"), core::Unprocessable);
    EXPECT_THROW(create(*anna_, R"({"title": "t", "fields": {"order_no": ")" + std::string(kMaxStringFieldBytes + 1, 'x') + "\"}}"),
                 core::Unprocessable);
    EXPECT_EQ(count("SELECT count(*) FROM tk_tickets"), 0);

    auto t = create(*anna_, R"({"title": "t", "fields": {"order_no": "A-17", "amount": 12.5, "urgent_call": true,
                                                          "visit": "2024-02-29", "reason": "quality"}})");
    std::string id(t.at("id").as_string());
    EXPECT_EQ(t.at("fields").at("amount"), 12.5);
    EXPECT_THROW(update(*anna_, id, R"({"fields": {"order_no": null}})"), core::Unprocessable);
    auto u = update(*anna_, id, R"({"fields": {"amount": null, "reason": "delivery"}})");
    EXPECT_FALSE(u.at("fields").as_object().contains("amount"));
    EXPECT_EQ(u.at("fields").at("reason"), "delivery");
    EXPECT_EQ(list(*anna_, {{"field.reason", "delivery"}}).size(), 1u);
    EXPECT_EQ(list(*anna_, {{"field.urgent_call", "true"}}).size(), 1u);
    EXPECT_EQ(list(*anna_, {{"field.urgent_call", "false"}}).size(), 0u);
    EXPECT_THROW(list(*anna_, {{"field.colour", "red"}}), core::BadRequest);
    EXPECT_THROW(list(*anna_, {{"field.amount", "lots"}}), core::BadRequest);

    // Definition rules and limits.
    EXPECT_THROW(await(service_->create_field(json::parse(R"({"name": "order_no", "type": "string"})").as_object())), core::Conflict);
    EXPECT_THROW(await(service_->create_field(json::parse(R"({"name": "Bad-Name", "type": "string"})").as_object())), core::BadRequest);
    EXPECT_THROW(await(service_->create_field(json::parse(R"({"name": "x", "type": "colour"})").as_object())), core::BadRequest);
    EXPECT_THROW(await(service_->create_field(json::parse(R"({"name": "x", "type": "select"})").as_object())), core::BadRequest);
    EXPECT_THROW(await(service_->create_field(json::parse(R"({"name": "x", "type": "select", "options": ["a", "a"]})").as_object())),
                 core::BadRequest);
    json::array options;
    for (std::size_t i = 0; i <= kMaxSelectOptions; ++i) options.push_back(json::value("o" + std::to_string(i)));
    EXPECT_THROW(await(service_->create_field(json::object{{"name", "x"}, {"type", "select"}, {"options", options}})), core::TooLarge);
    EXPECT_THROW(await(service_->update_field("amount", json::parse(R"({"type": "string"})").as_object())), core::Unprocessable);
    EXPECT_THROW(await(service_->update_field("missing", json::parse(R"({"label": "x"})").as_object())), core::NotFound);
    auto relabeled = await(service_->update_field("reason", json::parse(R"({"label": "Reason", "options": ["delivery", "other"]})").as_object()));
    EXPECT_EQ(relabeled.at("options"), (json::array{"delivery", "other"}));
    for (std::size_t i = service_->fields().size(); i < kMaxTicketFields; ++i) {
        await(service_->create_field(json::object{{"name", "f" + std::to_string(i)}, {"type", "string"}}));
    }
    EXPECT_THROW(await(service_->create_field(json::parse(R"({"name": "one_more", "type": "string"})").as_object())), core::TooLarge);

    // Deleting a definition removes its values.
    await_void(service_->delete_field("reason"));
    EXPECT_FALSE(service_->get(*anna_, id).at("fields").as_object().contains("reason"));
    EXPECT_THROW(await_void(service_->delete_field("reason")), core::NotFound);
}

TEST_F(TicketsTest, StatusesAndResolutionTimes) {
    auto custom = await(service_->create_status(json::parse(R"({"name": "waiting_customer", "label": "Waiting", "category": "pending"})").as_object()));
    EXPECT_EQ(custom.at("builtin"), false);
    EXPECT_EQ(service_->statuses().size(), 6u);
    EXPECT_THROW(await(service_->create_status(json::parse(R"({"name": "open", "category": "open"})").as_object())), core::Conflict);
    EXPECT_THROW(await(service_->create_status(json::parse(R"({"name": "x", "category": "limbo"})").as_object())), core::BadRequest);
    auto t = create(*anna_, R"({"title": "t"})");
    std::string id(t.at("id").as_string());
    auto w = update(*anna_, id, R"({"status": "waiting_customer"})");
    EXPECT_EQ(w.at("status_category"), "pending");
    clock_.advance_ms(60'000);
    auto r = update(*anna_, id, R"({"status": "resolved"})");
    EXPECT_FALSE(r.at("sla").at("resolved_at").is_null());
    EXPECT_TRUE(r.at("closed_at").is_null());
    auto c = update(*anna_, id, R"({"status": "closed"})");
    EXPECT_EQ(c.at("sla").at("resolved_at"), r.at("sla").at("resolved_at"));  // closing after resolving keeps the time
    EXPECT_FALSE(c.at("closed_at").is_null());
    auto reopened = update(*anna_, id, R"({"status": "open"})");
    EXPECT_TRUE(reopened.at("sla").at("resolved_at").is_null());
    EXPECT_TRUE(reopened.at("closed_at").is_null());
    update(*anna_, id, R"({"status": "waiting_customer"})");
    expect_error<core::Conflict>([&] { await_void(service_->delete_status("waiting_customer")); }, "status_in_use");
    expect_error<core::Conflict>([&] { await_void(service_->delete_status("open")); }, "builtin_status");
    expect_error<core::Conflict>([&] { await(service_->update_status("open", json::parse(R"({"category": "closed"})").as_object())); },
                                 "builtin_status");
    update(*anna_, id, R"({"status": "open"})");
    await_void(service_->delete_status("waiting_customer"));
    EXPECT_EQ(service_->statuses().size(), 5u);
    for (std::size_t i = 0; i < kMaxCustomStatuses; ++i) {
        await(service_->create_status(json::object{{"name", "s" + std::to_string(i)}, {"category", "open"}}));
    }
    EXPECT_THROW(await(service_->create_status(json::parse(R"({"name": "more", "category": "open"})").as_object())), core::TooLarge);
}

TEST_F(TicketsTest, SlaBreachesFollowTheClock) {
    await(service_->put_sla_policy("high", json::parse(R"({"first_response_minutes": 30, "resolution_minutes": 120})").as_object()));
    EXPECT_THROW(await(service_->put_sla_policy("asap", json::parse(R"({"first_response_minutes": 30})").as_object())), core::NotFound);
    EXPECT_THROW(await(service_->put_sla_policy("low", json::parse(R"({})").as_object())), core::BadRequest);
    EXPECT_THROW(await(service_->put_sla_policy("low", json::parse(R"({"first_response_minutes": 0})").as_object())), core::BadRequest);
    EXPECT_THROW(await(service_->put_sla_policy("low", json::parse(R"({"first_response_minutes": 60, "resolution_minutes": 30})").as_object())),
                 core::Unprocessable);
    EXPECT_EQ(service_->sla_policies().size(), 1u);

    auto late = create(*anna_, R"({"title": "late", "priority": "high"})");
    auto quick = create(*anna_, R"({"title": "quick", "priority": "high"})");
    auto plain = create(*anna_, R"({"title": "no policy"})");
    EXPECT_FALSE(late.at("sla").at("first_response_due_at").is_null());
    EXPECT_TRUE(plain.at("sla").at("first_response_due_at").is_null());
    clock_.advance_ms(10 * 60'000);
    await(service_->comment(*anna_, "T-2", json::parse(R"({"kind": "public", "text": "Looking into it"})").as_object()));
    clock_.advance_ms(21 * 60'000);  // 31 minutes after creation
    auto sla = service_->sla(*anna_, "T-1");
    EXPECT_TRUE(sla.at("first_response_breached").as_bool());
    EXPECT_FALSE(sla.at("resolution_breached").as_bool());
    EXPECT_TRUE(sla.at("breached").as_bool());
    EXPECT_EQ(sla.at("resolution_remaining_ms"), 89 * 60'000);
    auto quick_sla = service_->sla(*anna_, "T-2");
    EXPECT_FALSE(quick_sla.at("breached").as_bool());
    EXPECT_EQ(quick_sla.at("first_response_ms"), 10 * 60'000);
    EXPECT_EQ(keys(list(*anna_, {{"breached", "true"}})), std::vector<std::string>{"T-1"});
    EXPECT_EQ(keys(list(*anna_, {{"breached", "false"}, {"sort", "number"}})), (std::vector<std::string>{"T-2", "T-3"}));

    // Resolved in time stays unbreached however late the clock gets; a late first response stays breached.
    update(*anna_, "T-2", R"({"status": "resolved"})");
    await(service_->comment(*anna_, "T-1", json::parse(R"({"kind": "public", "text": "Sorry for the wait"})").as_object()));
    clock_.advance_ms(1000 * 60'000);
    EXPECT_FALSE(service_->sla(*anna_, "T-2").at("breached").as_bool());
    EXPECT_TRUE(service_->sla(*anna_, "T-1").at("first_response_breached").as_bool());
    EXPECT_TRUE(service_->sla(*anna_, "T-1").at("resolution_breached").as_bool());
    // A priority change re-plans the due times from the ticket's creation under the new policy.
    auto lowered = update(*anna_, "T-1", R"({"priority": "low"})");
    EXPECT_TRUE(lowered.at("sla").at("first_response_due_at").is_null());
    EXPECT_FALSE(lowered.at("sla").at("breached").as_bool());
    await_void(service_->delete_sla_policy("high"));
    EXPECT_THROW(await_void(service_->delete_sla_policy("high")), core::NotFound);
}

TEST_F(TicketsTest, ListFiltersSortAndPaginate) {
    auto [dialog, client] = make_dialog();
    create(*anna_, R"({"title": "Refund order", "priority": "low", "tags": ["refund"]})");
    clock_.advance_ms(1000);
    create(*anna_, R"({"title": "Broken screen", "priority": "urgent", "assignee_id": "anna", "group_id": "support"})");
    clock_.advance_ms(1000);
    create(*anna_, R"({"title": "Another", "description": "customer wants a REFUND", "priority": "high",
                       "client_id": ")" + client + R"(", "dialog_ids": [")" + dialog + R"("]})");
    clock_.advance_ms(1000);
    create(*anna_, R"({"title": "Pending thing", "status": "pending", "assignee_id": "boris"})");
    clock_.advance_ms(1000);
    create(*anna_, R"({"title": "Fifth", "priority": "high"})");

    EXPECT_EQ(keys(list(*anna_, {})), (std::vector<std::string>{"T-5", "T-4", "T-3", "T-2", "T-1"}));
    EXPECT_EQ(keys(list(*anna_, {{"status", "pending"}})), std::vector<std::string>{"T-4"});
    EXPECT_EQ(keys(list(*anna_, {{"priority", "high,urgent"}, {"sort", "number"}})), (std::vector<std::string>{"T-2", "T-3", "T-5"}));
    EXPECT_EQ(keys(list(*anna_, {{"assignee", "me"}})), std::vector<std::string>{"T-2"});
    EXPECT_EQ(keys(list(*anna_, {{"assignee", "boris"}})), std::vector<std::string>{"T-4"});
    EXPECT_EQ(list(*anna_, {{"assignee", "none"}}).size(), 3u);
    EXPECT_EQ(keys(list(*anna_, {{"group", "support"}})), std::vector<std::string>{"T-2"});
    EXPECT_EQ(keys(list(*anna_, {{"client", client}})), std::vector<std::string>{"T-3"});
    EXPECT_EQ(keys(list(*anna_, {{"dialog", dialog}})), std::vector<std::string>{"T-3"});
    EXPECT_EQ(keys(list(*anna_, {{"tag", "refund"}})), std::vector<std::string>{"T-1"});
    EXPECT_EQ(keys(list(*anna_, {{"q", "refund"}, {"sort", "number"}})), (std::vector<std::string>{"T-1", "T-3"}));
    EXPECT_EQ(keys(list(*anna_, {{"created_from", core::format_time(clock_.now_ms() - 2000)}, {"sort", "created_at"}})),
              (std::vector<std::string>{"T-3", "T-4", "T-5"}));
    EXPECT_EQ(keys(list(*anna_, {{"created_to", core::format_time(clock_.now_ms() - 3000)}})), std::vector<std::string>{"T-1"});
    EXPECT_EQ(keys(list(*anna_, {{"sort", "-priority"}})), (std::vector<std::string>{"T-2", "T-5", "T-3", "T-4", "T-1"}));
    clock_.advance_ms(1000);
    update(*anna_, "T-1", R"({"title": "Refund order 17"})");
    EXPECT_EQ(keys(list(*anna_, {{"updated_from", core::format_time(clock_.now_ms())}})), std::vector<std::string>{"T-1"});

    // Walking pages with a cursor returns every ticket once, in order, for every sort.
    for (const std::string sort : {"-priority", "priority", "due_at", "-updated_at", "created_at", "-number"}) {
        std::vector<std::string> seen;
        std::optional<std::string> cursor;
        for (int page = 0; page < 10; ++page) {
            std::vector<std::pair<std::string, std::string>> q{{"sort", sort}, {"limit", "2"}};
            if (cursor) q.emplace_back("cursor", *cursor);
            std::optional<std::string> next;
            for (auto& k : keys(list(*anna_, q, &next))) seen.push_back(k);
            cursor = next;
            if (!cursor) break;
        }
        std::optional<std::string> unused;
        EXPECT_EQ(seen, keys(list(*anna_, {{"sort", sort}}))) << sort;
        EXPECT_EQ(seen.size(), 5u) << sort;
    }
}

TEST_F(TicketsTest, OperatorsSeeOnlyTheirTickets) {
    groups_["billing"] = {"boris"};
    create(*sue_, R"({"title": "for anna", "assignee_id": "anna"})");
    create(*sue_, R"({"title": "open to all"})");
    create(*sue_, R"({"title": "billing group", "assignee_id": "sue", "group_id": "billing"})");
    create(*sue_, R"({"title": "sue's own", "assignee_id": "sue"})");
    EXPECT_EQ(keys(list(*anna_, {{"sort", "number"}})), (std::vector<std::string>{"T-1", "T-2"}));
    EXPECT_EQ(keys(list(*boris_, {{"sort", "number"}})), (std::vector<std::string>{"T-2", "T-3"}));
    EXPECT_EQ(list(*sue_, {}).size(), 4u);
    expect_error<core::Forbidden>([&] { service_->get(*boris_, "T-1"); }, "not_your_ticket");
    expect_error<core::Forbidden>([&] { update(*boris_, "T-1", R"({"title": "mine now"})"); }, "not_your_ticket");
    expect_error<core::Forbidden>([&] {
        await(service_->comment(*boris_, "T-1", json::parse(R"({"kind": "internal", "text": "x"})").as_object()));
    }, "not_your_ticket");
    EXPECT_THROW(service_->history(*boris_, "T-4", std::nullopt, 10, nullptr), core::Forbidden);
    // Watching makes a ticket visible.
    await(service_->watch(*sue_, "T-1", "boris"));
    EXPECT_EQ(service_->get(*boris_, "T-1").at("title"), "for anna");
    EXPECT_EQ(keys(list(*boris_, {{"sort", "number"}})), (std::vector<std::string>{"T-1", "T-2", "T-3"}));
    // Reassigning away from oneself hides the ticket again (unless watching).
    update(*anna_, "T-1", R"({"assignee_id": "sue"})");
    EXPECT_THROW(service_->get(*anna_, "T-1"), core::Forbidden);
}

TEST_F(TicketsTest, LinksAreStoredOnceAndSeenFromBothSides) {
    for (int i = 0; i < 4; ++i) create(*anna_, R"({"title": "t"})");
    auto link = [&](const std::string& from, const std::string& kind, const std::string& to) {
        return await(service_->link(*anna_, from, json::object{{"kind", kind}, {"ticket_id", to}}));
    };
    auto blocks = link("T-1", "blocks", "T-2");
    EXPECT_EQ(blocks.at("kind"), "blocks");
    EXPECT_EQ(blocks.at("ticket").at("key"), "T-2");
    link("T-3", "relates_to", "T-1");
    link("T-4", "child_of", "T-1");
    EXPECT_EQ(count("SELECT count(*) FROM tk_links"), 3);
    auto from2 = service_->links(*anna_, "T-2");
    ASSERT_EQ(from2.size(), 1u);
    EXPECT_EQ(from2[0].at("kind"), "blocked_by");
    EXPECT_EQ(from2[0].at("ticket").at("key"), "T-1");
    std::set<std::string> kinds;
    for (const auto& l : service_->links(*anna_, "T-1")) kinds.insert(std::string(l.at("kind").as_string()));
    EXPECT_EQ(kinds, (std::set<std::string>{"blocks", "relates_to", "parent_of"}));
    EXPECT_EQ(service_->get(*anna_, "T-4").at("links").as_array()[0].at("kind"), "child_of");

    expect_error<core::Conflict>([&] { link("T-2", "blocked_by", "T-1"); }, "link_exists");
    expect_error<core::Conflict>([&] { link("T-1", "relates_to", "T-3"); }, "link_exists");
    expect_error<core::BadRequest>([&] { link("T-1", "relates_to", "T-1"); }, "self_link");
    expect_error<core::BadRequest>([&] { link("T-1", "friends_with", "T-2"); }, "invalid_kind");
    expect_error<core::Unprocessable>([&] { link("T-1", "relates_to", "T-99"); }, "unknown_ticket");
    expect_error<core::Conflict>([&] { link("T-1", "child_of", "T-4"); }, "link_cycle");
    expect_error<core::Conflict>([&] { link("T-2", "parent_of", "T-4"); }, "has_parent");
    EXPECT_EQ(count("SELECT count(*) FROM tk_links"), 3);

    // Removing from the other side removes the one row; both tickets log it.
    await_void(service_->unlink(*anna_, "T-2", std::string(blocks.at("id").as_string())));
    EXPECT_TRUE(service_->links(*anna_, "T-1").size() == 2u);
    EXPECT_THROW(await_void(service_->unlink(*anna_, "T-2", std::string(blocks.at("id").as_string()))), core::NotFound);
    auto h = service_->history(*anna_, "T-2", std::nullopt, 10, nullptr);
    EXPECT_EQ(h[0].at("field"), "links");
    EXPECT_EQ(h[0].at("old").at("kind"), "blocked_by");
    EXPECT_TRUE(h[0].at("new").is_null());

    // Limit: links per ticket.
    for (std::size_t i = 0; i < kMaxLinksPerTicket + 1; ++i) create(*anna_, R"({"title": "n"})");
    expect_error<core::TooLarge>([&] {
        for (std::size_t i = 0; i < kMaxLinksPerTicket + 1; ++i) link("T-3", "relates_to", "T-" + std::to_string(5 + i));
    }, "too_large");
    EXPECT_EQ(service_->links(*anna_, "T-3").size(), kMaxLinksPerTicket);
}

TEST_F(TicketsTest, WatchersAndTheirLimit) {
    create(*anna_, R"({"title": "t", "watchers": ["boris"]})");
    auto w = service_->watchers(*anna_, "T-1");
    EXPECT_EQ(w, (json::array{"anna", "boris"}));
    EXPECT_EQ(await(service_->watch(*anna_, "T-1", "boris")).size(), 2u);  // idempotent
    EXPECT_EQ(await(service_->unwatch(*anna_, "T-1", "me")), json::array{"boris"});
    EXPECT_THROW(await(service_->watch(*anna_, "T-1", "ghost")), core::Unprocessable);
    for (std::size_t i = 1; i < kMaxWatchersPerTicket; ++i) await(service_->watch(*anna_, "T-1", "u" + std::to_string(i)));
    EXPECT_EQ(service_->watchers(*anna_, "T-1").size(), kMaxWatchersPerTicket);
    EXPECT_THROW(await(service_->watch(*anna_, "T-1", "one_more")), core::TooLarge);
    json::array many;
    for (std::size_t i = 0; i <= kMaxWatchersPerTicket; ++i) many.push_back(json::value("w" + std::to_string(i)));
    EXPECT_THROW(await(service_->create(*anna_, json::object{{"title", "x"}, {"watchers", many}})), core::TooLarge);
    auto h = service_->history(*anna_, "T-1", std::nullopt, 200, nullptr);
    EXPECT_EQ(h.back().at("field"), "created");
    EXPECT_EQ(h.front().at("field"), "watchers");
}

TEST_F(TicketsTest, CommentsReachTheClientAndHistoryRecordsChanges) {
    auto [dialog, client] = make_dialog();
    create(*anna_, R"({"title": "t", "dialog_ids": [")" + dialog + R"("]})");
    auto pub = await(service_->comment(*anna_, "T-1", json::parse(R"({"kind": "public", "text": "Your refund is on its way"})").as_object()));
    EXPECT_EQ(pub.at("dialog_id"), json::value(dialog));
    EXPECT_TRUE(pub.at("message_n").is_int64());
    auto note = await(service_->comment(*anna_, "T-1", json::parse(R"({"kind": "internal", "text": "checked with finance"})").as_object()));
    EXPECT_TRUE(note.at("dialog_id").is_null());
    auto messages = dialogs_->messages(dialog, 0, 100);
    ASSERT_FALSE(messages.empty());
    EXPECT_EQ(messages.back().from, "operator");
    EXPECT_EQ(messages.back().text, "Your refund is on its way");  // the internal note never reaches the client
    std::optional<std::string> next;
    EXPECT_EQ(service_->comments(*anna_, "T-1", std::nullopt, std::nullopt, 1, &next).size(), 1u);
    ASSERT_TRUE(next);
    EXPECT_EQ(service_->comments(*anna_, "T-1", std::nullopt, next, 1, &next)[0].at("kind"), "internal");
    EXPECT_EQ(service_->comments(*anna_, "T-1", std::string("public"), std::nullopt, 10, &next).size(), 1u);
    EXPECT_THROW(await(service_->comment(*anna_, "T-1", json::object{{"kind", "internal"}, {"text", std::string(kMaxCommentBytes + 1, 'x')}})),
                 core::TooLarge);
    EXPECT_THROW(await(service_->comment(*anna_, "T-1", json::parse(R"({"kind": "shout", "text": "x"})").as_object())), core::BadRequest);
    EXPECT_THROW(await(service_->comment(*anna_, "T-1", json::parse(R"({"kind": "internal", "text": ""})").as_object())), core::BadRequest);
    EXPECT_THROW(await(service_->comment(*anna_, "T-1", json::parse(R"({"kind": "public", "text": "x", "dialog_id": "other"})").as_object())),
                 core::BadRequest);
    EXPECT_EQ(count("SELECT count(*) FROM tk_comments"), 2);

    clock_.advance_ms(5000);
    update(*anna_, "T-1", R"({"title": "Refund", "priority": "high", "assignee_id": "anna", "tags": ["x"]})");
    update(*anna_, "T-1", R"({"title": "Refund", "priority": "high"})");  // no change: no entries, same version
    EXPECT_EQ(service_->get(*anna_, "T-1").at("version"), 2);
    auto h = service_->history(*anna_, "T-1", std::nullopt, 3, &next);
    ASSERT_EQ(h.size(), 3u);
    ASSERT_TRUE(next);
    std::map<std::string, json::object> by_field;
    for (auto& e : h) by_field[std::string(e.at("field").as_string())] = e.as_object();
    auto rest = service_->history(*anna_, "T-1", next, 50, &next);
    for (auto& e : rest) by_field[std::string(e.at("field").as_string())] = e.as_object();
    EXPECT_EQ(by_field.at("title").at("old"), "t");
    EXPECT_EQ(by_field.at("title").at("new"), "Refund");
    EXPECT_EQ(by_field.at("title").at("actor_id"), "anna");
    EXPECT_EQ(by_field.at("priority").at("old"), "normal");
    EXPECT_TRUE(by_field.at("assignee_id").at("old").is_null());
    EXPECT_EQ(by_field.at("tags").at("new"), json::array{"x"});
    EXPECT_TRUE(by_field.count("first_response_at"));
    EXPECT_TRUE(by_field.count("created"));
    EXPECT_THROW(service_->history(*anna_, "T-1", std::string("x"), 10, &next), core::BadRequest);
}

TEST_F(TicketsTest, VersionGuardsConcurrentEdits) {
    create(*anna_, R"({"title": "t"})");
    update(*anna_, "T-1", R"({"title": "u", "version": 1})");
    expect_error<core::Conflict>([&] { update(*anna_, "T-1", R"({"title": "v", "version": 1})"); }, "version_conflict");
    EXPECT_EQ(service_->get(*anna_, "T-1").at("title"), "u");
}

TEST_F(TicketsTest, TicketFromDialog) {
    auto [dialog, client] = make_dialog("assigned", "anna", "Delivery problem");
    auto mine = await(service_->create_from_dialog(*anna_, dialog, {}));
    EXPECT_EQ(mine.at("client_id"), json::value(client));
    EXPECT_EQ(mine.at("subject"), "Delivery problem");
    EXPECT_EQ(mine.at("title"), "Delivery problem");
    EXPECT_EQ(mine.at("dialog_ids"), json::array{json::value(dialog)});
    EXPECT_EQ(mine.at("source").at("dialog_id"), json::value(dialog));
    EXPECT_TRUE(mine.at("source").at("message_n").is_int64());
    // Another operator's dialog is not boris's to copy; a supervisor may.
    expect_error<core::Forbidden>([&] { await(service_->create_from_dialog(*boris_, dialog, {})); }, "not_your_dialog");
    auto by_sue = await(service_->create_from_dialog(*sue_, dialog, json::parse(R"({"title": "Escalation", "priority": "urgent"})").as_object()));
    EXPECT_EQ(by_sue.at("title"), "Escalation");
    EXPECT_EQ(by_sue.at("priority"), "urgent");
    auto [queued, queued_client] = make_dialog("queue", "", "");
    EXPECT_EQ(await(service_->create_from_dialog(*boris_, queued, {})).at("title"), json::value("Dialog " + queued));
    EXPECT_THROW(await(service_->create_from_dialog(*anna_, "no-such-dialog", {})), core::NotFound);
    auto [bot_only, bot_client] = make_dialog();
    EXPECT_THROW(await(service_->create_from_dialog(*anna_, bot_only, {})), core::Forbidden);
    EXPECT_THROW(await(service_->create_from_dialog(*anna_, dialog, json::parse(R"({"title": 1})").as_object())), core::BadRequest);
    EXPECT_EQ(count("SELECT count(*) FROM tk_tickets"), 3);
}

TEST_F(TicketsTest, EventsReachOnlyThoseWhoMaySeeTheTicket) {
    groups_["billing"] = {"boris"};
    auto anna = listen(anna_);
    auto boris = listen(boris_);
    auto sue = listen(sue_);
    auto analyst = listen(analyst_);
    create(*sue_, R"({"title": "open to all"})");
    EXPECT_EQ(anna->types(), std::vector<std::string>{"ticket.created"});
    EXPECT_EQ(boris->types(), std::vector<std::string>{"ticket.created"});
    EXPECT_EQ(analyst->types(), std::vector<std::string>{"ticket.created"});  // analysts may view tickets
    for (auto& s : sockets_) s->clear();

    create(*sue_, R"({"title": "anna's", "assignee_id": "anna"})");
    EXPECT_EQ(anna->types(), std::vector<std::string>{"ticket.created"});
    EXPECT_TRUE(boris->types().empty());
    EXPECT_FALSE(sue->types().empty());
    for (auto& s : sockets_) s->clear();

    // Moving a ticket into the billing group tells its members; the old audience hears about the change too.
    update(*anna_, "T-2", R"({"group_id": "billing"})");
    EXPECT_EQ(boris->types(), std::vector<std::string>{"ticket.updated"});
    EXPECT_EQ(anna->types(), std::vector<std::string>{"ticket.updated"});
    for (auto& s : sockets_) s->clear();
    update(*anna_, "T-2", R"({"group_id": null})");
    for (auto& s : sockets_) s->clear();
    await(service_->comment(*anna_, "T-2", json::parse(R"({"kind": "internal", "text": "note"})").as_object()));
    EXPECT_EQ(anna->types(), std::vector<std::string>{"ticket.comment"});
    EXPECT_TRUE(boris->types().empty());
    EXPECT_TRUE(analyst->types().empty());
    EXPECT_FALSE(sue->types().empty());
    for (auto& s : sockets_) s->clear();
    await_void(service_->remove(*sue_, "T-2"));
    EXPECT_EQ(anna->types(), std::vector<std::string>{"ticket.deleted"});
    EXPECT_TRUE(boris->types().empty());
}

TEST_F(TicketsTest, RemainingLimits) {
    auto body = [](json::object o) {
        o["title"] = "t";
        return o;
    };
    EXPECT_THROW(await(service_->create(*anna_, body({{"subject", std::string(kMaxTicketSubjectBytes + 1, 's')}}))),
                 core::TooLarge);
    json::array dialogs;
    for (std::size_t i = 0; i <= kMaxDialogsPerTicket; ++i) dialogs.push_back(json::value("d" + std::to_string(i)));
    EXPECT_THROW(await(service_->create(*anna_, body({{"dialog_ids", dialogs}}))), core::TooLarge);
    EXPECT_THROW(await(service_->create(*anna_, body({{"client_id", std::string(kMaxIdBytes + 1, 'c')}}))), core::BadRequest);
    EXPECT_THROW(await(service_->create_field(json::object{{"name", "x"}, {"type", "string"},
                                                           {"label", std::string(kMaxFieldLabelBytes + 1, 'l')}})),
                 core::TooLarge);
    EXPECT_THROW(await(service_->create_field(json::object{{"name", "x"}, {"type", "select"},
                                                           {"options", json::array{std::string(kMaxSelectOptionBytes + 1, 'o')}}})),
                 core::BadRequest);
    EXPECT_THROW(await(service_->put_sla_policy("low", json::object{{"resolution_minutes", kMaxSlaMinutes + 1}})), core::BadRequest);
    EXPECT_EQ(await(service_->put_sla_policy("low", json::object{{"resolution_minutes", kMaxSlaMinutes}})).at("resolution_minutes"),
              kMaxSlaMinutes);
    await(service_->create_field(json::parse(R"({"name": "notes", "type": "text"})").as_object()));
    EXPECT_THROW(await(service_->create(*anna_, body({{"fields", {{"notes", std::string(kMaxTextFieldBytes + 1, 'n')}}}}))),
                 core::Unprocessable);
    EXPECT_EQ(count("SELECT count(*) FROM tk_tickets"), 0);

    // Comments per ticket: filled directly, then one more is refused.
    auto t = await(service_->create(*anna_, body({{"fields", {{"notes", std::string(kMaxTextFieldBytes, 'n')}}}})));
    std::string id(t.at("id").as_string());
    store_->write_sync([&](store::Tx& tx) {
        for (std::size_t i = 0; i < kMaxCommentsPerTicket; ++i) {
            tx.exec("INSERT INTO tk_comments(id, ticket_id, author_id, kind, text, created_at) VALUES (?, ?, 'anna', 'internal', 'x', 0)",
                    {fmt::format("c{:06}", i), id});
        }
    });
    expect_error<core::TooLarge>([&] {
        await(service_->comment(*anna_, id, json::parse(R"({"kind": "internal", "text": "one more"})").as_object()));
    }, "too_large");
    EXPECT_EQ(count("SELECT count(*) FROM tk_comments"), static_cast<std::int64_t>(kMaxCommentsPerTicket));
}

}  // namespace
}  // namespace parley::operators

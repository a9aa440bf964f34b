#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <filesystem>
#include <thread>

#include "bots/bots.h"
#include "bots/dialogs.h"
#include "bots/triggers.h"
#include "clients/clients.h"
#include "core/error.h"

namespace parley::bots {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;

const char* kBot = R"({"format":"parley.scenario/1","name":"t","languages":["en"],"sections":[{"name":"main","nodes":[
  {"id":"start","type":"start","next":"menu"},
  {"id":"menu","type":"message","text":"Hi {{user_name}}","buttons":[{"id":"ask","text":"Ask","next":"lookup"}]},
  {"id":"lookup","type":"action","action":"test_echo","params":{"event":"found","state":{"answer":"{{user_name}}!"}},
   "on":{"found":"say"}},
  {"id":"say","type":"message","text":"{{answer}}","next":"q"},
  {"id":"q","type":"input","prompt":"Your question?","save_as":"question","next":"menu"}]},
  {"name":"api","nodes":[{"id":"e","type":"entry","alias":"ping","next":"pong"},
   {"id":"pong","type":"message","text":"pong {{user_input}} {{x}}","next":"fin"},{"id":"fin","type":"end"}]}]})";

class BotsTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("parley-bots-test-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        std::vector<store::Migration> migrations = clients::migrations();
        for (auto& m : bots::migrations()) migrations.push_back(m);
        store::StoreOptions options;
        options.path = (dir_ / "t.db").string();
        options.durable = false;
        store_ = store::Store::open_sqlite(options, migrations);
        actions::register_builtin_actions(registry_);
        bots_ = std::make_unique<BotService>(*store_, clock_, registry_);
        dialogs_ = std::make_unique<DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
    }
    void TearDown() override {
        work_.reset();
        for (auto& t : threads_) t.join();
        store_->close();
        fs::remove_all(dir_);
    }
    template <typename T>
    T await(asio::awaitable<T> a) {
        return asio::co_spawn(io_, std::move(a), asio::use_future).get();
    }
    void await_void(asio::awaitable<void> a) { asio::co_spawn(io_, std::move(a), asio::use_future).get(); }

    fs::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    std::unique_ptr<BotService> bots_;
    std::unique_ptr<DialogService> dialogs_;
    asio::io_context io_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{io_.get_executor()};
    std::vector<std::thread> threads_;
};

TEST_F(BotsTest, VersionsDiffAndRestore) {
    Bot bot = await(bots_->create("Support", true));
    EXPECT_EQ(bot.version, 0);
    EXPECT_THROW(bots_->document(bot.id), core::NotFound);
    Author author{"u1", "a@example.com"};
    auto v1 = await(bots_->put_scenario(bot.id, kBot, author, "first"));
    EXPECT_EQ(v1.version, 1);
    std::string changed = kBot;
    changed.replace(changed.find("Hi {{user_name}}"), 16, "Hello {{user_name}}");
    auto v2 = await(bots_->put_scenario(bot.id, changed, author, ""));
    EXPECT_EQ(v2.version, 2);
    EXPECT_EQ(json::parse(bots_->document(bot.id)), json::parse(changed));
    EXPECT_EQ(json::parse(bots_->document(bot.id, 1)), json::parse(kBot));
    std::optional<std::int64_t> next;
    auto versions = bots_->versions(bot.id, std::nullopt, 1, &next);
    ASSERT_EQ(versions.size(), 1u);
    EXPECT_EQ(versions[0].version, 2);
    EXPECT_EQ(versions[0].author_email, "a@example.com");
    ASSERT_TRUE(next);
    auto diff = bots_->diff(bot.id, 1, 2);
    ASSERT_EQ(diff.at("nodes").at("changed").as_array().size(), 1u);
    EXPECT_EQ(diff.at("nodes").at("changed").as_array()[0].at("id"), "menu");
    EXPECT_TRUE(diff.at("nodes").at("added").as_array().empty());
    auto v3 = await(bots_->restore(bot.id, 1, author));
    EXPECT_EQ(v3.version, 3);
    EXPECT_EQ(json::parse(bots_->document(bot.id)), json::parse(kBot));
    EXPECT_EQ(bots_->versions(bot.id, std::nullopt, 10, &next)[0].restored_from, 1);
    // An invalid document changes nothing.
    EXPECT_THROW(await(bots_->put_scenario(bot.id, R"({"format":"parley.scenario/1","sections":[]})", author, "")),
                 core::Error);
    EXPECT_EQ(bots_->get(bot.id).version, 3);
}

TEST_F(BotsTest, PreviewTurnsActionsAndDuplicates) {
    Bot bot = await(bots_->create("Support", true));
    await(bots_->put_scenario(bot.id, kBot, {}, ""));
    clients::NewClient client;
    client.name = "Olena";
    client.language = "en";
    auto [dialog, first] = await(dialogs_->open(bot.id, "preview", client));
    ASSERT_EQ(first.replies.size(), 1u);
    EXPECT_EQ(first.replies[0].text, "Hi Olena");
    EXPECT_EQ(first.waiting, scenario::Waiting::kButtons);

    Trigger press;
    press.message = scenario::ClientMessage::from_button("ask");
    press.external_id = "m1";
    TurnOutput turn = await(dialogs_->run(dialog.id, press));
    ASSERT_EQ(turn.replies.size(), 2u);
    EXPECT_EQ(turn.replies[0].text, "Olena!");
    EXPECT_EQ(turn.replies[1].text, "Your question?");
    EXPECT_EQ(turn.waiting, scenario::Waiting::kInput);
    EXPECT_EQ(turn.variables.at("answer"), "Olena!");

    // The same message id again: the first answer, nothing runs or is stored twice.
    TurnOutput again = await(dialogs_->run(dialog.id, press));
    EXPECT_TRUE(again.duplicate);
    ASSERT_EQ(again.replies.size(), 2u);
    EXPECT_EQ(again.replies[1].text, "Your question?");
    auto messages = dialogs_->messages(dialog.id, 0, 100);
    ASSERT_EQ(messages.size(), 4u);  // hi, client press, answer, question
    EXPECT_EQ(messages[1].from, "client");
    EXPECT_EQ(messages[3].n, 4);
    EXPECT_EQ(dialogs_->messages(dialog.id, 3, 100).size(), 1u);

    // Alias call with params and input.
    Trigger call;
    call.kind = Trigger::Kind::kAlias;
    call.alias = "ping";
    call.input = "in";
    call.params = json::object{{"x", "y"}};
    TurnOutput pong = await(dialogs_->run(dialog.id, call));
    ASSERT_EQ(pong.replies.size(), 1u);
    EXPECT_EQ(pong.replies[0].text, "pong in y");
    // The interrupted wait is restored.
    EXPECT_EQ(pong.waiting, scenario::Waiting::kInput);

    std::optional<std::string> next;
    auto runs = dialogs_->runs(bot.id, dialog.id, std::nullopt, 10, &next);
    ASSERT_EQ(runs.size(), 3u);
    EXPECT_EQ(runs[1].at("actions").as_array()[0].at("action"), "test_echo");
    EXPECT_EQ(runs[1].at("nodes").as_array()[0], "lookup");
}

TEST_F(BotsTest, OneDialogRunsInOrderUnderConcurrentMessages) {
    Bot bot = await(bots_->create("Support", true));
    await(bots_->put_scenario(bot.id, kBot, {}, ""));
    auto [dialog, first] = await(dialogs_->open(bot.id, "preview", {}));
    std::vector<std::future<TurnOutput>> futures;
    for (int i = 0; i < 40; ++i) {
        Trigger t;
        t.message = scenario::ClientMessage::from_text("m" + std::to_string(i));
        futures.push_back(asio::co_spawn(io_, dialogs_->run(dialog.id, t), asio::use_future));
    }
    for (auto& f : futures) f.get();
    auto messages = dialogs_->messages(dialog.id, 0, 1000);
    for (std::size_t i = 0; i < messages.size(); ++i) EXPECT_EQ(messages[i].n, static_cast<std::int64_t>(i + 1));
    std::size_t from_client = 0;
    for (const auto& m : messages) from_client += m.from == "client";
    EXPECT_EQ(from_client, 40u);
}

TEST_F(BotsTest, ADialogLeftWaitingForAnActionIsRecovered) {
    Bot bot = await(bots_->create("Support", true));
    await(bots_->put_scenario(bot.id, kBot, {}, ""));
    auto [dialog, first] = await(dialogs_->open(bot.id, "preview", clients::NewClient{"Ivan", "", "", "en", {}}));
    // Simulate a process that died while the action ran: the state says waiting at the action node.
    auto state = scenario::DialogState::parse(store::read_value(*store_, [&](store::Tx& tx) {
        return tx.query_one("SELECT state FROM dialogs WHERE id = ?", {dialog.id})->text(0);
    }));
    ASSERT_TRUE(state);
    state->position = "lookup";
    state->waiting = scenario::Waiting::kAction;
    std::string text = state->serialize();
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("UPDATE dialogs SET state = ?, waiting = 'action' WHERE id = ?", {text, dialog.id});
    });
    EXPECT_EQ(await(dialogs_->recover()), 1u);
    auto messages = dialogs_->messages(dialog.id, 0, 100);
    ASSERT_EQ(messages.size(), 3u);
    EXPECT_EQ(messages[1].text, "Ivan!");
    EXPECT_EQ(messages[2].text, "Your question?");
    EXPECT_EQ(dialogs_->find(dialog.id)->waiting, "input");
}

TEST_F(BotsTest, EventAndScheduleTriggersRunTheirSection) {
    Bot bot = await(bots_->create("Support", true));
    await(bots_->put_scenario(bot.id, kBot, {}, ""));
    TriggerService triggers(*bots_, *dialogs_);
    auto [d1, t1] = await(dialogs_->open(bot.id, "preview", {}));
    auto [d2, t2] = await(dialogs_->open(bot.id, "telegram", {}));
    await(triggers.create(bot.id, json::object{{"kind", "event"}, {"event", "dialog_closed"}, {"alias", "ping"}}));
    EXPECT_EQ(await(triggers.emit(d1.id, "dialog_closed")), 1u);
    EXPECT_EQ(await(triggers.emit(d1.id, "something_else")), 0u);
    auto m = dialogs_->messages(d1.id, 0, 100);
    EXPECT_EQ(m.back().text, "pong  ");

    auto schedule = await(triggers.create(
        bot.id, json::object{{"kind", "schedule"}, {"cron", "*/5 * * * *"}, {"timezone", "Europe/Kyiv"},
                             {"alias", "ping"}, {"channel", "telegram"}}));
    EXPECT_GT(schedule.next_run_at, clock_.now_ms());
    EXPECT_EQ(await(triggers.run_due(clock_.now_ms())), 0u);  // not due yet
    clock_.set_ms(schedule.next_run_at);
    EXPECT_EQ(await(triggers.run_due(clock_.now_ms())), 1u);  // only the telegram dialog
    EXPECT_EQ(dialogs_->messages(d2.id, 0, 100).back().text, "pong  ");
    EXPECT_EQ(await(triggers.run_due(clock_.now_ms())), 0u);  // claimed: not twice for one fire time
    auto listed = triggers.list(bot.id);
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_GT(listed[1].next_run_at, schedule.next_run_at);

    EXPECT_THROW(await(triggers.create(bot.id, json::object{{"kind", "event"}, {"event", "x"}, {"alias", "nope"}})),
                 core::Unprocessable);
    EXPECT_THROW(await(triggers.create(bot.id, json::object{{"kind", "schedule"}, {"cron", "61 * * * *"}, {"alias", "ping"}})),
                 core::BadRequest);
    EXPECT_THROW(await(triggers.create(bot.id, json::object{{"kind", "event"}, {"event", "Bad Name"}, {"alias", "ping"}})),
                 core::BadRequest);
    await(triggers.remove(bot.id, listed[0].id));
    EXPECT_EQ(triggers.list(bot.id).size(), 1u);
}

TEST_F(BotsTest, NoScenarioAndUnknownDialog) {
    Bot bot = await(bots_->create("Empty", true));
    EXPECT_THROW(await(dialogs_->open(bot.id, "preview", {})), core::Conflict);
    EXPECT_THROW(await(dialogs_->run("nope", Trigger::start())), core::NotFound);
    EXPECT_THROW(await(bots_->create("   ", true)), core::BadRequest);
}

}  // namespace
}  // namespace parley::bots

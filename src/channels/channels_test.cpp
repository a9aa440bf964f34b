// ChannelService and the channel routes over real HTTP both ways: an in-process http::Server with the routes, and
// a fake Telegram Bot API (outbound::testing::TestServer on 127.0.0.1:0) that records setWebhook, sendMessage and
// answerCallbackQuery calls and serves getUpdates. Real SQLite store, BotService and DialogService.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "bots/bots.h"
#include "bots/dialogs.h"
#include "channels/adapter.h"
#include "channels/channels.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/metrics.h"
#include "http/http.h"
#include "outbound/test_server.h"

namespace parley::channels {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using outbound::testing::TestRequest;
using outbound::testing::TestResponse;

const char* kScenario = R"({"format":"parley.scenario/1","name":"t","languages":["en"],"sections":[{"name":"main",
 "nodes":[{"id":"start","type":"start","next":"menu"},
  {"id":"menu","type":"message","text":"Hi {{user_name}}","buttons":[{"id":"ask","text":"Ask","next":"q"}]},
  {"id":"q","type":"input","prompt":"Your question?","save_as":"question","next":"menu"}]}]})";

constexpr const char* kToken = "123:ABC";

struct Reply {
    int status = 0;
    json::value body;
};

struct ApiCall {
    std::string method;
    json::object body;
    std::chrono::steady_clock::time_point at;
};

/// The fake Bot API. Thread-safe (the test server's threads call handle()).
class FakeTelegram {
public:
    FakeTelegram() : server_([this](const TestRequest& r) { return handle(r); }, 2) {}

    std::string base_url() const { return server_.url("/").substr(0, server_.url("/").size() - 1); }
    std::vector<ApiCall> calls(std::string_view method) const {
        std::lock_guard lock(mutex_);
        std::vector<ApiCall> out;
        for (const auto& c : calls_) {
            if (c.method == method) out.push_back(c);
        }
        return out;
    }
    /// The next sendMessage answers get these (status, body) before the default ok.
    void queue_send_failure(int status, std::string body) {
        std::lock_guard lock(mutex_);
        send_failures_.emplace_back(status, std::move(body));
    }
    void add_update(json::object update) {
        std::lock_guard lock(mutex_);
        updates_.push_back(std::move(update));
    }

private:
    TestResponse handle(const TestRequest& r) {
        std::string prefix = std::string("/bot") + kToken + "/";
        if (r.path.rfind(prefix, 0) != 0) return TestResponse{404, {}, R"({"ok":false,"description":"Not Found"})"};
        std::string method = r.path.substr(prefix.size());
        json::object body;
        if (!r.body.empty()) body = json::parse(r.body).as_object();
        std::lock_guard lock(mutex_);
        calls_.push_back(ApiCall{method, body, std::chrono::steady_clock::now()});
        if (method == "sendMessage" && !send_failures_.empty()) {
            auto [status, text] = send_failures_.front();
            send_failures_.pop_front();
            return TestResponse{status, {{"Content-Type", "application/json"}}, text};
        }
        if (method == "getUpdates") {
            std::int64_t offset = body.contains("offset") ? body.at("offset").as_int64() : 0;
            json::array result;
            for (const auto& u : updates_) {
                if (u.at("update_id").as_int64() >= offset) result.push_back(u);
            }
            TestResponse res{200, {{"Content-Type", "application/json"}},
                             json::serialize(json::object{{"ok", true}, {"result", result}})};
            if (result.empty()) res.delay_ms = 200;  // a short long poll
            return res;
        }
        json::value result = true;
        if (method == "sendMessage") result = json::object{{"message_id", static_cast<std::int64_t>(calls_.size())}};
        return TestResponse{200, {{"Content-Type", "application/json"}},
                            json::serialize(json::object{{"ok", true}, {"result", result}})};
    }

    mutable std::mutex mutex_;
    std::vector<ApiCall> calls_;
    std::deque<std::pair<int, std::string>> send_failures_;
    std::vector<json::object> updates_;
    outbound::testing::TestServer server_;
};

class ChannelsTest : public ::testing::Test {
protected:
    ChannelsTest() : guard_(asio::make_work_guard(io_)) {
        dir_ = std::filesystem::temp_directory_path() / ("parley-channels-" + core::random_hex(8));
        std::filesystem::create_directories(dir_);
        store::StoreOptions options;
        options.path = (dir_ / "parley.db").string();
        options.durable = false;
        auto all = clients::migrations();
        for (auto& m : bots::migrations()) all.push_back(m);
        for (auto& m : migrations()) all.push_back(m);
        store_ = store::Store::open_sqlite(options, all);
        actions::register_builtin_actions(registry_);
        bots_ = std::make_unique<bots::BotService>(*store_, bot_clock_, registry_);
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        outbound::ClientOptions client_options;
        client_options.allowlist = [] { return std::optional<json::value>(json::array{"127.0.0.1"}); };
        client_ = std::make_unique<outbound::Client>(client_options);
        key_.fill(7);
        ChannelOptions channel_options;
        channel_options.public_base_url = "https://parley.example/";
        channel_options.poll_timeout_s = 1;
        channel_options.dispatch_idle_ms = 20;
        channel_options.backoff_base_ms = 50;
        service_ = std::make_unique<ChannelService>(*store_, clock_, *bots_, *dialogs_, *client_, key_,
                                                    channel_options);
        register_routes(router_, *service_);
        auto editor = std::make_shared<core::Principal>();
        editor->user_id = "editor";
        editor->permissions = {"channels.view", "channels.edit", "channels.delete"};
        auto viewer = std::make_shared<core::Principal>();
        viewer->user_id = "viewer";
        viewer->permissions = {"channels.view"};
        tokens_["editor"] = editor;
        tokens_["viewer"] = viewer;
        server_ = std::make_unique<http::Server>(io_, config_, router_, metrics_, [this](const http::Request& req)
                                                     -> std::optional<std::shared_ptr<const core::Principal>> {
            std::string auth(req.header("authorization"));
            if (auth.rfind("Bearer ", 0) != 0) return std::nullopt;
            auto it = tokens_.find(auth.substr(7));
            if (it == tokens_.end()) return std::nullopt;
            return it->second;
        });
        port_ = server_->start("127.0.0.1", 0);
        for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
        service_->start(io_.get_executor());
        bot_id_ = asio::co_spawn(io_, bots_->create("Support", true), asio::use_future).get().id;
        asio::co_spawn(io_, bots_->put_scenario(bot_id_, kScenario, {}, ""), asio::use_future).get();
    }

    ~ChannelsTest() override {
        service_->stop();
        client_->shutdown();
        service_->wait_stopped();
        std::promise<void> stopped;
        server_->stop([&] { stopped.set_value(); });
        stopped.get_future().wait();
        guard_.reset();
        io_.stop();
        for (auto& t : threads_) t.join();
        server_.reset();
        service_.reset();
        store_->close();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    Reply call(bhttp::verb verb, const std::string& target, const std::string& body = {},
               const std::string& token = "editor", const std::string& secret = {}) {
        std::vector<std::pair<std::string, std::string>> headers;
        if (!secret.empty()) headers.emplace_back("X-Telegram-Bot-Api-Secret-Token", secret);
        return request(verb, target, body, headers, token);
    }
    Reply request(bhttp::verb verb, const std::string& target, const std::string& body,
                  const std::vector<std::pair<std::string, std::string>>& headers, const std::string& token = {}) {
        asio::io_context io;
        beast::tcp_stream stream(io);
        stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
        stream.expires_after(20s);
        bhttp::request<bhttp::string_body> req{verb, target, 11};
        req.set(bhttp::field::host, "127.0.0.1");
        if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
        for (const auto& [name, value] : headers) req.set(name, value);
        if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        bhttp::write(stream, req);
        beast::flat_buffer buffer;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(stream, buffer, res);
        Reply r;
        r.status = static_cast<int>(res.result_int());
        boost::system::error_code ec;
        if (!res.body().empty()) r.body = json::parse(res.body(), ec);
        if (ec) r.body = json::string(res.body());
        return r;
    }
    Reply hook(const std::string& channel, const std::string& body, const std::string& secret) {
        return call(bhttp::verb::post, "/hooks/" + channel, body, "", secret);
    }
    std::string channels_url() const { return "/api/v1/bots/" + bot_id_ + "/channels"; }
    json::object create(const std::string& mode) {
        Reply r = call(bhttp::verb::post, channels_url(),
                       json::serialize(json::object{{"kind", "telegram"},
                                                    {"credentials", json::object{{"token", kToken}, {"mode", mode}}},
                                                    {"api_base_url", telegram_.base_url()}}));
        EXPECT_EQ(r.status, 201) << json::serialize(r.body);
        return r.body.as_object();
    }
    std::string secret_of(const std::string& channel) {
        return store::read_value(*store_, [&](store::Tx& tx) {
            return tx.query_one("SELECT webhook_secret FROM channels WHERE id = ?", {channel})->text(0);
        });
    }
    std::int64_t count(const std::string& sql) {
        return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
    }
    template <typename F>
    bool eventually(F&& condition, std::chrono::milliseconds limit = 10s) {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            if (condition()) return true;
            std::this_thread::sleep_for(10ms);
        }
        return condition();
    }
    static std::string text_update(std::int64_t id, const std::string& text) {
        return json::serialize(json::object{
            {"update_id", id},
            {"message", json::object{{"message_id", id},
                                     {"from", json::object{{"id", 42}, {"first_name", "Olena"}, {"language_code", "en"}}},
                                     {"chat", json::object{{"id", 42}, {"type", "private"}}},
                                     {"text", text}}}});
    }

    std::filesystem::path dir_;
    core::FakeClock bot_clock_;
    core::SystemClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    std::unique_ptr<outbound::Client> client_;
    auth::SecretKey key_{};
    FakeTelegram telegram_;
    std::unique_ptr<ChannelService> service_;
    http::Router router_;
    core::Config config_;
    core::Metrics metrics_;
    std::map<std::string, std::shared_ptr<core::Principal>> tokens_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::unique_ptr<http::Server> server_;
    std::uint16_t port_ = 0;
    std::vector<std::thread> threads_;
    std::string bot_id_;
};

TEST_F(ChannelsTest, RegistryStoresEncryptedCredentialsAndSetsTheWebhook) {
    json::object channel = create("webhook");
    std::string id(channel.at("id").as_string());
    EXPECT_EQ(channel.at("status"), "active");
    EXPECT_EQ(channel.at("mode"), "webhook");
    EXPECT_EQ(channel.at("credentials_set"), (json::array{"mode", "token"}));
    EXPECT_EQ(json::serialize(channel).find(kToken), std::string::npos);
    auto hooks = telegram_.calls("setWebhook");
    ASSERT_EQ(hooks.size(), 1u);
    EXPECT_EQ(hooks[0].body.at("url"), json::value("https://parley.example/hooks/" + id));
    EXPECT_EQ(hooks[0].body.at("secret_token"), json::value(secret_of(id)));
    // At rest the token is ciphertext.
    EXPECT_EQ(count("SELECT COUNT(*) FROM channels WHERE instr(credentials, '123:ABC') > 0"), 0);

    Reply list = call(bhttp::verb::get, channels_url(), {}, "viewer");
    ASSERT_EQ(list.status, 200);
    EXPECT_EQ(list.body.at("items").as_array().size(), 1u);
    EXPECT_TRUE(list.body.at("next_cursor").is_null());
    EXPECT_EQ(call(bhttp::verb::get, channels_url() + "/" + id, {}, "viewer").body.at("id"), json::value(id));

    // Bad input: 400/404/403, nothing stored.
    auto post = [&](const json::object& body, const std::string& token = "editor") {
        return call(bhttp::verb::post, channels_url(), json::serialize(body), token).status;
    };
    EXPECT_EQ(post({{"kind", "fax"}, {"credentials", json::object{}}}), 400);
    EXPECT_EQ(post({{"kind", "telegram"}, {"credentials", json::object{{"token", "nope"}}}}), 400);
    EXPECT_EQ(post({{"kind", "telegram"}, {"credentials", json::object{{"token", kToken}, {"mode", "push"}}}}), 400);
    EXPECT_EQ(post({{"kind", "telegram"}, {"credentials", json::object{{"token", kToken}}}, {"api_base_url", "ftp://x"}}),
              400);
    EXPECT_EQ(post({{"kind", "telegram"}, {"credentials", json::object{{"token", kToken}}}, {"extra", 1}}), 400);
    EXPECT_EQ(post({{"kind", "telegram"}, {"credentials", json::object{{"token", kToken}}}}, "viewer"), 403);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/bots/nobot/channels",
                   json::serialize(json::object{{"kind", "sms"}, {"credentials", json::object{}}}))
                  .status,
              404);
    EXPECT_EQ(count("SELECT COUNT(*) FROM channels"), 1);

    // Kinds served by other modules (widget) are stored with free-form credentials.
    EXPECT_EQ(post({{"kind", "widget"}, {"credentials", json::object{{"theme", "dark"}}}}), 201);
    // Email checks its settings (email_test.cpp).
    EXPECT_EQ(post({{"kind", "email"}, {"credentials", json::object{{"imap_host", "imap.example"}}}}), 400);
    // Kinds with an adapter check their credentials; the custom channel needs its endpoint.
    EXPECT_EQ(post({{"kind", "viber"}, {"credentials", json::object{}}}), 400);
    EXPECT_EQ(post({{"kind", "custom"}, {"credentials", json::object{{"secret", "0123456789abcdef"}}}}), 400);
    EXPECT_EQ(post({{"kind", "whatsapp"}, {"credentials", json::object{{"token", "t"}}}}), 400);
    EXPECT_EQ(count("SELECT COUNT(*) FROM channels"), 2);

    // A failing setWebhook leaves the channel in `error` with the reason (token redacted).
    Reply bad = call(bhttp::verb::patch, channels_url() + "/" + id,
                     json::serialize(json::object{{"api_base_url", "http://127.0.0.1:1"}}));
    ASSERT_EQ(bad.status, 200);
    EXPECT_EQ(bad.body.at("status"), "error");
    EXPECT_EQ(std::string(bad.body.at("last_error").as_string()).find(kToken), std::string::npos);
    Reply off = call(bhttp::verb::patch, channels_url() + "/" + id,
                     json::serialize(json::object{{"status", "disabled"}}));
    EXPECT_EQ(off.body.at("status"), "disabled");
    EXPECT_EQ(hook(id, text_update(1, "hi"), secret_of(id)).status, 404);  // disabled: no inbound
    EXPECT_EQ(call(bhttp::verb::delete_, channels_url() + "/" + id).status, 204);
    EXPECT_EQ(call(bhttp::verb::get, channels_url() + "/" + id).status, 404);
}

TEST_F(ChannelsTest, WebhookConversationWithButtons) {
    std::string id(create("webhook").at("id").as_string());
    std::string secret = secret_of(id);

    EXPECT_EQ(hook(id, text_update(100, "hi"), "wrong").status, 401);
    EXPECT_EQ(hook(id, text_update(100, "hi"), "").status, 401);
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_inbox"), 0);
    EXPECT_EQ(hook(id, "{not json", secret).status, 400);
    EXPECT_EQ(hook(id, R"({"message":{"text":"no id"}})", secret).status, 400);
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_inbox"), 0);

    ASSERT_EQ(hook(id, text_update(100, "hi"), secret).status, 200);
    ASSERT_TRUE(eventually([&] { return telegram_.calls("sendMessage").size() == 1; }));
    auto first = telegram_.calls("sendMessage")[0].body;
    EXPECT_EQ(first.at("chat_id"), "42");
    EXPECT_EQ(first.at("text"), "Hi Olena");
    const auto& keyboard = first.at("reply_markup").at("inline_keyboard").as_array();
    ASSERT_EQ(keyboard.size(), 1u);
    EXPECT_EQ(keyboard[0].as_array()[0].at("callback_data"), "ask");
    EXPECT_EQ(keyboard[0].as_array()[0].at("text"), "Ask");

    // Redelivery: 200, ignored.
    EXPECT_EQ(hook(id, text_update(100, "hi"), secret).status, 200);
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_inbox"), 1);
    EXPECT_EQ(service_->stats().duplicates, 1u);

    // The button press: answered, and the next reply arrives.
    std::string press = json::serialize(json::object{
        {"update_id", 101},
        {"callback_query", json::object{{"id", "cb-1"},
                                        {"from", json::object{{"id", 42}, {"first_name", "Olena"}}},
                                        {"message", json::object{{"message_id", 5}, {"chat", json::object{{"id", 42}}}}},
                                        {"data", "ask"}}}});
    ASSERT_EQ(hook(id, press, secret).status, 200);
    ASSERT_TRUE(eventually([&] { return telegram_.calls("sendMessage").size() == 2; }));
    EXPECT_EQ(telegram_.calls("sendMessage")[1].body.at("text"), "Your question?");
    ASSERT_EQ(telegram_.calls("answerCallbackQuery").size(), 1u);
    EXPECT_EQ(telegram_.calls("answerCallbackQuery")[0].body.at("callback_query_id"), "cb-1");
    EXPECT_TRUE(eventually([&] { return count("SELECT COUNT(*) FROM channel_inbox WHERE status = 'done'") == 2; }));
    // One client, one dialog on the channel id.
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_identities"), 1);
    std::string dialog = store::read_value(*store_, [&](store::Tx& tx) {
        return tx.query_one("SELECT dialog_id FROM channel_identities")->text(0);
    });
    EXPECT_EQ(dialogs_->find(dialog)->channel, id);
}

TEST_F(ChannelsTest, RetryAfterIsHonouredAndServerErrorsEndDead) {
    std::string id(create("webhook").at("id").as_string());
    telegram_.queue_send_failure(429, R"({"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1",
        "parameters":{"retry_after":1}})");
    ASSERT_EQ(hook(id, text_update(1, "hi"), secret_of(id)).status, 200);
    ASSERT_TRUE(eventually([&] { return telegram_.calls("sendMessage").size() == 2; }));
    auto sends = telegram_.calls("sendMessage");
    EXPECT_GE(sends[1].at - sends[0].at, 950ms);
    EXPECT_EQ(sends[1].body.at("text"), "Hi Olena");
    EXPECT_TRUE(eventually([&] { return service_->stats().sent == 1; }));

    for (int i = 0; i < kMaxDeliveryAttempts; ++i) telegram_.queue_send_failure(502, "bad gateway");
    std::string press = json::serialize(json::object{
        {"update_id", 2},
        {"callback_query", json::object{{"id", "cb"}, {"from", json::object{{"id", 42}}}, {"data", "ask"}}}});
    ASSERT_EQ(hook(id, press, secret_of(id)).status, 200);
    ASSERT_TRUE(eventually([&] { return service_->stats().dead == 1; }));
    EXPECT_EQ(telegram_.calls("sendMessage").size(), 2u + kMaxDeliveryAttempts);
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_deliveries"), 0);

    // The dead letter is listed and can be retried: the message goes out once more.
    Reply letters = call(bhttp::verb::get, channels_url() + "/" + id + "/dead-letters", {}, "viewer");
    ASSERT_EQ(letters.status, 200);
    ASSERT_EQ(letters.body.at("items").as_array().size(), 1u);
    const auto& letter = letters.body.at("items").as_array()[0];
    EXPECT_EQ(letter.at("outcome"), "dead");
    EXPECT_EQ(letter.at("attempts"), kMaxDeliveryAttempts);
    EXPECT_EQ(letter.at("text"), "Your question?");
    std::string letter_id(letter.at("id").as_string());
    EXPECT_EQ(call(bhttp::verb::post, channels_url() + "/" + id + "/dead-letters/" + letter_id + "/retry", {}, "viewer")
                  .status,
              403);
    Reply retried = call(bhttp::verb::post, channels_url() + "/" + id + "/dead-letters/" + letter_id + "/retry");
    ASSERT_EQ(retried.status, 200) << json::serialize(retried.body);
    EXPECT_EQ(retried.body.at("status"), "pending");
    ASSERT_TRUE(eventually([&] { return service_->stats().sent == 2; }));
    EXPECT_EQ(telegram_.calls("sendMessage").back().body.at("text"), "Your question?");
    EXPECT_TRUE(call(bhttp::verb::get, channels_url() + "/" + id + "/dead-letters").body.at("items").as_array().empty());
    EXPECT_EQ(call(bhttp::verb::post, channels_url() + "/" + id + "/dead-letters/" + letter_id + "/retry").status, 404);
    // Sent messages are recorded with the platform's message id.
    Reply receipts = call(bhttp::verb::get, channels_url() + "/" + id + "/receipts", {}, "viewer");
    ASSERT_EQ(receipts.status, 200);
    EXPECT_EQ(receipts.body.at("items").as_array().size(), 2u);
    EXPECT_EQ(receipts.body.at("items").as_array()[0].at("status"), "sent");
}

TEST_F(ChannelsTest, OutOfOrderUpdatesAreEachProcessedOnce) {
    std::string id(create("webhook").at("id").as_string());
    std::string secret = secret_of(id);
    ASSERT_EQ(hook(id, text_update(301, "later"), secret).status, 200);
    ASSERT_EQ(hook(id, text_update(300, "earlier"), secret).status, 200);
    ASSERT_EQ(hook(id, text_update(300, "earlier"), secret).status, 200);
    ASSERT_EQ(hook(id, text_update(301, "later"), secret).status, 200);
    EXPECT_TRUE(eventually([&] { return count("SELECT COUNT(*) FROM channel_inbox WHERE status = 'done'") == 2; }));
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_inbox"), 2);
    EXPECT_EQ(service_->stats().duplicates, 2u);
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_identities"), 1);
}

TEST_F(ChannelsTest, TelegramSendsAtMostOneMessagePerSecondToAChat) {
    std::string bot = asio::co_spawn(io_, bots_->create("Chatty", true), asio::use_future).get().id;
    asio::co_spawn(io_, bots_->put_scenario(bot, R"({"format":"parley.scenario/1","name":"c","languages":["en"],
      "sections":[{"name":"main","nodes":[{"id":"start","type":"start","next":"a"},
        {"id":"a","type":"message","text":"one","next":"b"},{"id":"b","type":"message","text":"two","next":"c"},
        {"id":"c","type":"message","text":"three","next":"d"},{"id":"d","type":"input","save_as":"x","next":"a"}]}]})",
                                            {}, ""),
                   asio::use_future)
        .get();
    Reply created = call(bhttp::verb::post, "/api/v1/bots/" + bot + "/channels",
                         json::serialize(json::object{{"kind", "telegram"},
                                                      {"credentials", json::object{{"token", kToken}}},
                                                      {"api_base_url", telegram_.base_url()}}));
    ASSERT_EQ(created.status, 201);
    std::string id(created.body.at("id").as_string());
    ASSERT_EQ(hook(id, text_update(1, "hi"), secret_of(id)).status, 200);
    ASSERT_TRUE(eventually([&] { return telegram_.calls("sendMessage").size() == 3; }));
    auto sends = telegram_.calls("sendMessage");
    EXPECT_EQ(sends[0].body.at("text"), "one");
    EXPECT_EQ(sends[2].body.at("text"), "three");
    EXPECT_GE(sends[1].at - sends[0].at, 900ms);
    EXPECT_GE(sends[2].at - sends[1].at, 900ms);
}

TEST_F(ChannelsTest, PollingReceivesUpdatesAndAcknowledgesTheOffset) {
    telegram_.add_update(json::parse(text_update(500, "hello")).as_object());
    json::object channel = create("polling");
    EXPECT_EQ(channel.at("mode"), "polling");
    EXPECT_EQ(telegram_.calls("deleteWebhook").size(), 1u);
    EXPECT_TRUE(telegram_.calls("setWebhook").empty());
    ASSERT_TRUE(eventually([&] { return telegram_.calls("sendMessage").size() == 1; }));
    EXPECT_EQ(telegram_.calls("sendMessage")[0].body.at("text"), "Hi Olena");
    ASSERT_TRUE(eventually([&] {
        for (const auto& c : telegram_.calls("getUpdates")) {
            if (c.body.at("offset").as_int64() == 501) return true;
        }
        return false;
    }));
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_inbox"), 1);
}

// --- the other platforms ---------------------------------------------------------------------------------------

struct PlatformCall {
    std::string path;
    std::map<std::string, std::string> headers;
    std::string raw;
    json::value body;
    std::string answered_id;  ///< the message id the fake handed out
    std::chrono::steady_clock::time_point at;
};

/// A fake of Viber's, the Graph API's and a custom channel's endpoints: answers success with a fresh message id
/// unless a failure is queued for a path. Thread-safe.
class FakePlatform {
public:
    FakePlatform() : server_([this](const TestRequest& r) { return handle(r); }, 2) {}

    std::string base_url() const { return server_.url("/").substr(0, server_.url("/").size() - 1); }
    std::vector<PlatformCall> calls(std::string_view path_suffix) const {
        std::lock_guard lock(mutex_);
        std::vector<PlatformCall> out;
        for (const auto& c : calls_) {
            if (c.path.size() >= path_suffix.size() &&
                c.path.compare(c.path.size() - path_suffix.size(), path_suffix.size(), path_suffix) == 0) {
                out.push_back(c);
            }
        }
        return out;
    }
    void fail_next(std::string path_suffix, TestResponse response) {
        std::lock_guard lock(mutex_);
        failures_.emplace_back(std::move(path_suffix), std::move(response));
    }

private:
    TestResponse handle(const TestRequest& r) {
        std::lock_guard lock(mutex_);
        PlatformCall call{r.path, r.headers, r.body, {}, {}, std::chrono::steady_clock::now()};
        boost::system::error_code ec;
        call.body = json::parse(r.body, ec);
        for (auto it = failures_.begin(); it != failures_.end(); ++it) {
            if (r.path.size() >= it->first.size() &&
                r.path.compare(r.path.size() - it->first.size(), it->first.size(), it->first) == 0) {
                TestResponse res = it->second;
                failures_.erase(it);
                calls_.push_back(std::move(call));
                return res;
            }
        }
        std::string id = std::to_string(++counter_);
        json::object answer;
        if (r.path.rfind("/pa/", 0) == 0) {
            answer = {{"status", 0}, {"status_message", "ok"}, {"message_token", 5000 + counter_}};
            id = std::to_string(5000 + counter_);
        } else if (r.path.find("/me/messages") != std::string::npos) {
            id = "mid." + id;
            answer = {{"recipient_id", "x"}, {"message_id", id}};
        } else if (r.path.find("/messages") != std::string::npos) {
            id = "wamid." + id;
            answer = {{"messaging_product", "whatsapp"}, {"messages", json::array{json::object{{"id", id}}}}};
        } else {
            id = "ext-" + id;
            answer = {{"message_id", id}};
        }
        call.answered_id = id;
        calls_.push_back(std::move(call));
        return TestResponse{200, {{"Content-Type", "application/json"}}, json::serialize(answer)};
    }

    mutable std::mutex mutex_;
    std::vector<PlatformCall> calls_;
    std::deque<std::pair<std::string, TestResponse>> failures_;
    std::int64_t counter_ = 0;
    outbound::testing::TestServer server_;
};

class PlatformsTest : public ChannelsTest {
protected:
    std::string create_channel(const std::string& kind, json::object credentials, std::string base = {}) {
        Reply r = call(bhttp::verb::post, channels_url(),
                       json::serialize(json::object{{"kind", kind},
                                                    {"credentials", std::move(credentials)},
                                                    {"api_base_url", base.empty() ? platform_.base_url() : base}}));
        EXPECT_EQ(r.status, 201) << json::serialize(r.body);
        EXPECT_EQ(r.body.at("status"), "active") << json::serialize(r.body);
        return std::string(r.body.at("id").as_string());
    }
    Reply signed_hook(const std::string& channel, const std::string& body, const std::string& header,
                      const std::string& value) {
        return request(bhttp::verb::post, "/hooks/" + channel, body, {{header, value}});
    }
    json::array receipts(const std::string& channel, const std::string& query = {}) {
        Reply r = call(bhttp::verb::get, channels_url() + "/" + channel + "/receipts" + query, {}, "viewer");
        EXPECT_EQ(r.status, 200) << json::serialize(r.body);
        return r.body.at("items").as_array();
    }
    json::array dead_letters(const std::string& channel) {
        return call(bhttp::verb::get, channels_url() + "/" + channel + "/dead-letters", {}, "viewer")
            .body.at("items")
            .as_array();
    }
    std::int64_t inbox(const std::string& channel) {
        return count("SELECT COUNT(*) FROM channel_inbox WHERE channel_id = '" + channel + "'");
    }

    FakePlatform platform_;
};

TEST_F(PlatformsTest, ViberConversationWithKeyboardReceiptsAndRetryAfter) {
    std::string id = create_channel("viber", json::object{{"token", "viber-token-1"}});
    auto hooks = platform_.calls("/pa/set_webhook");
    ASSERT_EQ(hooks.size(), 1u);
    EXPECT_EQ(hooks[0].body.at("url"), json::value("https://parley.example/hooks/" + id));
    EXPECT_EQ(hooks[0].headers.at("x-viber-auth-token"), "viber-token-1");
    auto sign = [](const std::string& body) { return hmac_sha256_hex("viber-token-1", body); };
    auto message = [](int token, const std::string& text) {
        return json::serialize(json::object{
            {"event", "message"},
            {"timestamp", 1457764197627},
            {"message_token", token},
            {"sender", json::object{{"id", "vu1"}, {"name", "Olena"}, {"language", "en"}}},
            {"message", json::object{{"type", "text"}, {"text", text}}}});
    };
    const std::string header = "X-Viber-Content-Signature";

    EXPECT_EQ(signed_hook(id, message(1001, "hi"), header, sign("other")).status, 401);
    EXPECT_EQ(signed_hook(id, message(1001, "hi"), header, "").status, 401);
    EXPECT_EQ(signed_hook(id, R"({"event":"message"})", header, sign(R"({"event":"message"})")).status, 400);
    EXPECT_EQ(signed_hook(id, "{oops", header, sign("{oops")).status, 400);
    std::string check = R"({"event":"webhook","timestamp":1,"message_token":1})";
    EXPECT_EQ(signed_hook(id, check, header, sign(check)).status, 200);
    EXPECT_EQ(inbox(id), 0);

    ASSERT_EQ(signed_hook(id, message(1001, "hi"), header, sign(message(1001, "hi"))).status, 200);
    ASSERT_TRUE(eventually([&] { return platform_.calls("/pa/send_message").size() == 1; }));
    PlatformCall first = platform_.calls("/pa/send_message")[0];
    EXPECT_EQ(first.body.at("receiver"), "vu1");
    EXPECT_EQ(first.body.at("text"), "Hi Olena");
    EXPECT_EQ(first.body.at("sender").at("name"), "Support");
    EXPECT_EQ(first.body.at("keyboard").at("Buttons").as_array()[0].at("ActionBody"), "btn:ask");
    EXPECT_EQ(signed_hook(id, message(1001, "hi"), header, sign(message(1001, "hi"))).status, 200);  // redelivery
    EXPECT_EQ(inbox(id), 1);

    // Reports out of order: seen before delivered; the message stays read.
    ASSERT_TRUE(eventually([&] { return receipts(id).size() == 1; }));
    auto report = [&](const std::string& event) {
        return json::serialize(json::object{{"event", event}, {"timestamp", 1457764198000},
                                            {"message_token", std::stoll(first.answered_id)}, {"user_id", "vu1"}});
    };
    ASSERT_EQ(signed_hook(id, report("seen"), header, sign(report("seen"))).status, 200);
    ASSERT_EQ(signed_hook(id, report("delivered"), header, sign(report("delivered"))).status, 200);
    ASSERT_TRUE(eventually([&] {
        auto items = receipts(id);
        return items.size() == 1 && items[0].at("status") == "read" && !items[0].at("delivered_at").is_null();
    }));
    EXPECT_EQ(receipts(id)[0].at("message_id"), json::value(first.answered_id));

    // The keyboard press, then a 429 with Retry-After on the next reply.
    platform_.fail_next("/pa/send_message", TestResponse{429, {{"Retry-After", "1"}}, "{}"});
    ASSERT_EQ(signed_hook(id, message(1002, "btn:ask"), header, sign(message(1002, "btn:ask"))).status, 200);
    ASSERT_TRUE(eventually([&] { return platform_.calls("/pa/send_message").size() == 3; }));
    auto sends = platform_.calls("/pa/send_message");
    EXPECT_EQ(sends[2].body.at("text"), "Your question?");
    EXPECT_GE(sends[2].at - sends[1].at, 950ms);
}

TEST_F(PlatformsTest, WhatsAppHandshakeInteractiveRepliesStatusesAndDeadLetters) {
    std::string id = create_channel("whatsapp", json::object{{"token", "EAAB-token"},
                                                             {"app_secret", "wa-app-secret"},
                                                             {"verify_token", "wa-verify"},
                                                             {"phone_number_id", "106540352242922"}});
    Reply ok = request(bhttp::verb::get,
                       "/hooks/" + id + "?hub.mode=subscribe&hub.verify_token=wa-verify&hub.challenge=1158201444", {},
                       {});
    ASSERT_EQ(ok.status, 200);
    EXPECT_EQ(ok.body, json::value(1158201444));  // the challenge, as text
    EXPECT_EQ(request(bhttp::verb::get, "/hooks/" + id + "?hub.mode=subscribe&hub.verify_token=no&hub.challenge=1", {},
                      {})
                  .status,
              403);
    auto sign = [](const std::string& body) { return "sha256=" + hmac_sha256_hex("wa-app-secret", body); };
    const std::string header = "X-Hub-Signature-256";
    auto message = [](const std::string& wamid, json::object content) {
        json::object m{{"from", "380501234567"}, {"id", wamid}, {"timestamp", "1700000000"}};
        for (auto& kv : content) m[kv.key()] = kv.value();
        return json::serialize(json::object{
            {"object", "whatsapp_business_account"},
            {"entry", json::array{json::object{
                          {"id", "WABA"},
                          {"changes", json::array{json::object{
                                          {"field", "messages"},
                                          {"value", json::object{{"messaging_product", "whatsapp"},
                                                                 {"contacts", json::array{json::object{
                                                                                  {"profile", json::object{{"name", "Olena"}}},
                                                                                  {"wa_id", "380501234567"}}}},
                                                                 {"messages", json::array{m}}}}}}}}}}});
    };
    std::string hi = message("wamid.in1", {{"type", "text"}, {"text", json::object{{"body", "hi"}}}});
    EXPECT_EQ(signed_hook(id, hi, header, "sha256=" + hmac_sha256_hex("wrong", hi)).status, 401);
    std::string bad = R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"x"}]}}]}]})";
    EXPECT_EQ(signed_hook(id, bad, header, sign(bad)).status, 400);
    EXPECT_EQ(inbox(id), 0);

    ASSERT_EQ(signed_hook(id, hi, header, sign(hi)).status, 200);
    ASSERT_TRUE(eventually([&] { return platform_.calls("/106540352242922/messages").size() == 1; }));
    PlatformCall first = platform_.calls("/106540352242922/messages")[0];
    EXPECT_EQ(first.path, "/v21.0/106540352242922/messages");
    EXPECT_EQ(first.headers.at("authorization"), "Bearer EAAB-token");
    EXPECT_EQ(first.body.at("to"), "380501234567");
    EXPECT_EQ(first.body.at("interactive").at("type"), "button");
    EXPECT_EQ(first.body.at("interactive").at("body").at("text"), "Hi Olena");
    EXPECT_EQ(first.body.at("interactive").at("action").at("buttons").as_array()[0].at("reply").at("id"), "ask");

    // Statuses out of order: read, then delivered.
    ASSERT_TRUE(eventually([&] { return receipts(id).size() == 1; }));
    auto status = [&](const std::string& state) {
        return json::serialize(json::object{
            {"object", "whatsapp_business_account"},
            {"entry", json::array{json::object{
                          {"changes", json::array{json::object{
                                          {"field", "messages"},
                                          {"value", json::object{{"statuses", json::array{json::object{
                                                                                  {"id", first.answered_id},
                                                                                  {"status", state},
                                                                                  {"timestamp", "1700000100"},
                                                                                  {"recipient_id", "380501234567"}}}}}}}}}}}}});
    };
    ASSERT_EQ(signed_hook(id, status("read"), header, sign(status("read"))).status, 200);
    ASSERT_EQ(signed_hook(id, status("delivered"), header, sign(status("delivered"))).status, 200);
    ASSERT_TRUE(eventually([&] { return receipts(id)[0].at("status") == "read"; }));

    // A permanent refusal becomes a dead letter; retried, the message goes out.
    platform_.fail_next("/messages", TestResponse{400, {{"Content-Type", "application/json"}},
                                                  R"({"error":{"message":"Message undeliverable","code":131026}})"});
    std::string press = message("wamid.in2", {{"type", "interactive"},
                                              {"interactive", json::object{{"type", "button_reply"},
                                                                           {"button_reply", json::object{{"id", "ask"}, {"title", "Ask"}}}}}});
    ASSERT_EQ(signed_hook(id, press, header, sign(press)).status, 200);
    ASSERT_TRUE(eventually([&] { return dead_letters(id).size() == 1; }));
    json::value letter = dead_letters(id)[0];
    EXPECT_EQ(letter.at("outcome"), "failed");
    EXPECT_NE(std::string(letter.at("last_error").as_string()).find("131026"), std::string::npos);
    EXPECT_EQ(std::string(letter.at("last_error").as_string()).find("EAAB-token"), std::string::npos);
    Reply retried = call(bhttp::verb::post, channels_url() + "/" + id + "/dead-letters/" +
                                                std::string(letter.at("id").as_string()) + "/retry");
    ASSERT_EQ(retried.status, 200);
    ASSERT_TRUE(eventually([&] { return platform_.calls("/106540352242922/messages").size() == 3; }));
    EXPECT_EQ(platform_.calls("/106540352242922/messages")[2].body.at("text").at("body"), "Your question?");
    EXPECT_TRUE(dead_letters(id).empty());
    EXPECT_EQ(call(bhttp::verb::delete_, channels_url() + "/" + id + "/dead-letters/nope").status, 404);
}

TEST_F(PlatformsTest, MessengerQuickRepliesPostbacksAndReadWatermarks) {
    std::string id = create_channel("messenger", json::object{{"token", "PAGE-token"},
                                                              {"app_secret", "fb-app-secret"},
                                                              {"verify_token", "fb-verify"}});
    EXPECT_EQ(request(bhttp::verb::get, "/hooks/" + id + "?hub.mode=subscribe&hub.verify_token=fb-verify&hub.challenge=abc",
                      {}, {})
                  .body,
              json::value("abc"));
    auto sign = [](const std::string& body) { return "sha256=" + hmac_sha256_hex("fb-app-secret", body); };
    const std::string header = "X-Hub-Signature-256";
    auto event = [](json::object item) {
        item["sender"] = json::object{{"id", "PSID1"}};
        item["recipient"] = json::object{{"id", "PAGE"}};
        if (!item.contains("timestamp")) item["timestamp"] = 1700000000000;
        return json::serialize(json::object{
            {"object", "page"},
            {"entry", json::array{json::object{{"id", "PAGE"}, {"time", 1}, {"messaging", json::array{item}}}}}});
    };
    std::string hi = event({{"message", json::object{{"mid", "m.1"}, {"text", "hi"}}}});
    EXPECT_EQ(signed_hook(id, hi, header, "sha256=00").status, 401);
    EXPECT_EQ(signed_hook(id, R"({"object":"page"})", header, sign(R"({"object":"page"})")).status, 400);
    EXPECT_EQ(inbox(id), 0);
    ASSERT_EQ(signed_hook(id, hi, header, sign(hi)).status, 200);
    ASSERT_TRUE(eventually([&] { return platform_.calls("/me/messages").size() == 1; }));
    PlatformCall first = platform_.calls("/me/messages")[0];
    EXPECT_EQ(first.body.at("recipient").at("id"), "PSID1");
    EXPECT_EQ(first.body.at("message").at("quick_replies").as_array()[0].at("payload"), "ask");
    // Our own message echoed back: ignored. A postback (the same payload) moves on.
    std::string echo = event({{"message", json::object{{"mid", "m.echo"}, {"text", "Hi"}, {"is_echo", true}}}});
    ASSERT_EQ(signed_hook(id, echo, header, sign(echo)).status, 200);
    std::string postback = event({{"postback", json::object{{"mid", "m.2"}, {"title", "Ask"}, {"payload", "ask"}}}});
    ASSERT_EQ(signed_hook(id, postback, header, sign(postback)).status, 200);
    ASSERT_TRUE(eventually([&] { return platform_.calls("/me/messages").size() == 2; }));
    EXPECT_EQ(platform_.calls("/me/messages")[1].body.at("message").at("text"), "Your question?");
    // A read watermark marks everything sent before it.
    ASSERT_TRUE(eventually([&] { return receipts(id).size() == 2; }));
    std::int64_t later = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count() + 60'000;
    std::string read = event({{"read", json::object{{"watermark", later}}}});
    ASSERT_EQ(signed_hook(id, read, header, sign(read)).status, 200);
    ASSERT_TRUE(eventually([&] {
        auto items = receipts(id);
        return items.size() == 2 && items[0].at("status") == "read" && items[1].at("status") == "read";
    }));
    EXPECT_EQ(platform_.calls("/me/messages").size(), 2u);

    std::string ig = create_channel("instagram", json::object{{"token", "IG-token"},
                                                              {"app_secret", "ig-app-secret"},
                                                              {"verify_token", "ig-verify"}});
    std::string dm = json::serialize(json::object{
        {"object", "instagram"},
        {"entry", json::array{json::object{
                      {"id", "IGID"},
                      {"messaging", json::array{json::object{{"sender", json::object{{"id", "IGSID"}}},
                                                             {"recipient", json::object{{"id", "IGID"}}},
                                                             {"timestamp", 1},
                                                             {"message", json::object{{"mid", "ig.1"}, {"text", "hey"}}}}}}}}}});
    ASSERT_EQ(signed_hook(ig, dm, header, "sha256=" + hmac_sha256_hex("ig-app-secret", dm)).status, 200);
    ASSERT_TRUE(eventually([&] { return platform_.calls("/me/messages").size() == 3; }));
    EXPECT_EQ(platform_.calls("/me/messages")[2].body.at("recipient").at("id"), "IGSID");
    EXPECT_EQ(platform_.calls("/me/messages")[2].headers.at("authorization"), "Bearer IG-token");
}

TEST_F(PlatformsTest, CustomChannelIsSignedBothWays) {
    const std::string secret = "custom-secret-0123456789";
    Reply missing = call(bhttp::verb::post, channels_url(),
                         json::serialize(json::object{{"kind", "custom"}, {"credentials", json::object{{"secret", secret}}}}));
    EXPECT_EQ(missing.status, 400);
    std::string id = create_channel("custom", json::object{{"secret", secret}}, platform_.base_url() + "/inbox");
    auto sign = [&](const std::string& body) { return "sha256=" + hmac_sha256_hex(secret, body); };
    const std::string header = "X-Parley-Signature";
    std::string batch = R"({"events":[{"id":"e1","user":{"id":"u1","name":"Olena"},"message":{"text":"hi"}},
                                      {"id":"e2","user":{"id":"u2","name":"Ivan"},"message":{"text":"hello"}}]})";
    EXPECT_EQ(signed_hook(id, batch, header, sign(batch + " ")).status, 401);
    EXPECT_EQ(request(bhttp::verb::post, "/hooks/" + id, batch, {}).status, 401);
    std::string bad = R"({"id":"e1","user":{"id":"u1"},"message":{"text":"hi","button":"x"}})";
    EXPECT_EQ(signed_hook(id, bad, header, sign(bad)).status, 400);
    EXPECT_EQ(inbox(id), 0);

    ASSERT_EQ(signed_hook(id, batch, header, sign(batch)).status, 200);
    ASSERT_TRUE(eventually([&] { return platform_.calls("/inbox").size() == 2; }));
    for (const auto& c : platform_.calls("/inbox")) {
        EXPECT_EQ(c.headers.at("x-parley-signature"), sign(c.raw));
        EXPECT_EQ(c.headers.at("x-parley-channel"), id);
        EXPECT_EQ(c.headers.at("x-parley-message-id"), std::string(c.body.at("id").as_string()));
        EXPECT_EQ(c.body.at("buttons").as_array()[0].at("id"), "ask");
    }
    ASSERT_EQ(signed_hook(id, batch, header, sign(batch)).status, 200);  // redelivered: ignored
    EXPECT_EQ(inbox(id), 2);

    // A receipt with the id the endpoint answered.
    ASSERT_TRUE(eventually([&] { return receipts(id).size() == 2; }));
    std::string ext = platform_.calls("/inbox")[0].answered_id;
    std::string receipt = json::serialize(json::object{
        {"id", "r1"}, {"type", "receipt"}, {"receipt", json::object{{"message_ids", json::array{ext}}, {"status", "read"}}}});
    ASSERT_EQ(signed_hook(id, receipt, header, sign(receipt)).status, 200);
    ASSERT_TRUE(eventually([&] {
        for (const auto& r : receipts(id)) {
            if (r.at("message_id") == json::value(ext)) return r.at("status") == "read";
        }
        return false;
    }));

    // 5xx until dead, listed, discarded; a 429 with Retry-After is waited out.
    for (int i = 0; i < kMaxDeliveryAttempts; ++i) platform_.fail_next("/inbox", TestResponse{503, {}, "busy"});
    std::string press = R"({"id":"e3","user":{"id":"u1"},"message":{"button":"ask"}})";
    ASSERT_EQ(signed_hook(id, press, header, sign(press)).status, 200);
    ASSERT_TRUE(eventually([&] { return dead_letters(id).size() == 1; }));
    EXPECT_EQ(dead_letters(id)[0].at("outcome"), "dead");
    std::string letter(dead_letters(id)[0].at("id").as_string());
    EXPECT_EQ(call(bhttp::verb::delete_, channels_url() + "/" + id + "/dead-letters/" + letter).status, 204);
    EXPECT_TRUE(dead_letters(id).empty());
    std::size_t before = platform_.calls("/inbox").size();  // 2 greetings + 5 failed attempts
    platform_.fail_next("/inbox", TestResponse{429, {{"Retry-After", "1"}}, ""});
    std::string next = R"({"id":"e4","user":{"id":"u2"},"message":{"button":"ask"}})";
    ASSERT_EQ(signed_hook(id, next, header, sign(next)).status, 200);
    ASSERT_TRUE(eventually([&] {
        auto calls = platform_.calls("/inbox");
        return calls.size() == before + 2 && !calls.back().answered_id.empty();  // the 429, then the retry
    }));
    EXPECT_EQ(platform_.calls("/inbox").back().body.at("text"), "Your question?");
    auto calls = platform_.calls("/inbox");
    EXPECT_GE(calls.back().at - calls[calls.size() - 2].at, 950ms);
}

}  // namespace
}  // namespace parley::channels

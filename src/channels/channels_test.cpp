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
        asio::io_context io;
        beast::tcp_stream stream(io);
        stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
        stream.expires_after(20s);
        bhttp::request<bhttp::string_body> req{verb, target, 11};
        req.set(bhttp::field::host, "127.0.0.1");
        if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
        if (!secret.empty()) req.set("X-Telegram-Bot-Api-Secret-Token", secret);
        if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        bhttp::write(stream, req);
        beast::flat_buffer buffer;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(stream, buffer, res);
        Reply r;
        r.status = static_cast<int>(res.result_int());
        if (!res.body().empty()) r.body = json::parse(res.body());
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

    // Other kinds are stored (their adapters are future work).
    EXPECT_EQ(post({{"kind", "viber"}, {"credentials", json::object{{"auth_token", "x"}}}}), 201);

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

}  // namespace
}  // namespace parley::channels

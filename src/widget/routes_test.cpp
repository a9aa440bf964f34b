// The widget over real HTTP and real WebSockets: an in-process http::Server on 127.0.0.1:0 with the widget routes,
// a real SQLite store, BotService, DialogService and the registered_users actions; Beast WebSocket clients play the
// visitor's browser. Covers the script, the admin settings API, the public config and its origin check, the
// visitor socket (session, history, acks, idempotent resends, reconnect with `since`, pushes from the dispatcher to
// every tab, identify, params with an alias, limits), uploads and files, and a restart with the same store.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "bots/bots.h"
#include "bots/dialogs.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/metrics.h"
#include "http/http.h"
#include "widget/testing.h"
#include "widget/widget.h"

namespace parley::widget {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

const char* kScenario = R"({"format":"parley.scenario/1","name":"w","languages":["en","uk"],"sections":[
 {"name":"main","nodes":[
  {"id":"start","type":"start","next":"hello"},
  {"id":"hello","type":"message","text":{"en":"Hello {{client.name | default: \"guest\"}}","uk":"Привіт"},
   "buttons":[{"id":"faq","text":"FAQ","next":"faq"}],"no_match":"echo"},
  {"id":"faq","type":"message","text":"We deliver in 2 days","next":"hello"},
  {"id":"echo","type":"message","text":"You said: {{user_input}}","next":"hello"}]},
 {"name":"promo","nodes":[
  {"id":"promo_entry","type":"entry","alias":"promo","next":"promo_say"},
  {"id":"promo_say","type":"message","text":"Order {{order_id}} seen on {{client.site_params.page}}","next":"hello"}]}]})";

const char* kPng = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

using testing::MapDirectory;

/// A visitor's browser tab: a WebSocket on its own thread; received frames are kept in order.
class Tab {
public:
    Tab(std::uint16_t port, const std::string& target, const std::string& origin) : ws_(io_) {
        ws_.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        ws_.set_option(websocket::stream_base::decorator([origin](websocket::request_type& r) {
            if (!origin.empty()) r.set(bhttp::field::origin, origin);
        }));
        ws_.next_layer().expires_after(10s);
        ws_.handshake("127.0.0.1", target);
        ws_.next_layer().expires_never();
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
        read();
        thread_ = std::thread([this] { io_.run(); });
    }
    ~Tab() {
        close();
        thread_.join();
    }

    void send(std::string text) {
        asio::post(io_, [this, text = std::move(text)]() mutable {
            out_.push_back(std::move(text));
            if (out_.size() == 1) write();
        });
    }
    void send(const json::object& frame) { send(json::serialize(frame)); }
    void close() {
        asio::post(io_, [this] {
            if (closing_) return;
            closing_ = true;
            ws_.async_close(websocket::close_code::normal, [](beast::error_code) {});
        });
    }

    /// The next frame (after the ones already taken) for which `pred` holds; earlier non-matching ones are skipped.
    std::optional<json::object> next(const std::function<bool(const json::object&)>& pred,
                                     std::chrono::milliseconds limit = 10s) {
        std::unique_lock lock(mutex_);
        auto until = std::chrono::steady_clock::now() + limit;
        while (true) {
            while (cursor_ < frames_.size()) {
                const json::object& f = frames_[cursor_++];
                if (pred(f)) return f;
            }
            if (closed_) return std::nullopt;
            if (cv_.wait_until(lock, until) == std::cv_status::timeout && cursor_ >= frames_.size()) return std::nullopt;
        }
    }
    std::optional<json::object> next_type(std::string_view type, std::chrono::milliseconds limit = 10s) {
        return next([type](const json::object& f) { return f.at("type").as_string() == type; }, limit);
    }
    /// Messages received in `messages` frames until one with text containing `needle` arrives; all of them.
    std::vector<json::object> messages_until(std::string_view needle, std::chrono::milliseconds limit = 10s) {
        std::vector<json::object> out;
        bool found = false;
        next(
            [&](const json::object& f) {
                if (f.at("type").as_string() != "messages") return false;
                for (const auto& m : f.at("items").as_array()) {
                    out.push_back(m.as_object());
                    if (std::string_view(m.at("text").as_string()).find(needle) != std::string_view::npos) found = true;
                }
                return found;
            },
            limit);
        if (!found) ADD_FAILURE() << "no message containing '" << needle << "' arrived";
        return out;
    }
    /// Every message received so far.
    std::vector<json::object> all_messages() {
        std::lock_guard lock(mutex_);
        std::vector<json::object> out;
        for (const auto& f : frames_) {
            if (f.at("type").as_string() != "messages") continue;
            for (const auto& m : f.at("items").as_array()) out.push_back(m.as_object());
        }
        return out;
    }
    bool closed_by_server(std::chrono::milliseconds limit = 10s) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, limit, [this] { return closed_; });
    }

private:
    void read() {
        ws_.async_read(buffer_, [this](beast::error_code ec, std::size_t) {
            std::lock_guard lock(mutex_);
            if (ec) {
                closed_ = true;
                cv_.notify_all();
                return;
            }
            frames_.push_back(json::parse(beast::buffers_to_string(buffer_.data())).as_object());
            buffer_.consume(buffer_.size());
            cv_.notify_all();
            asio::post(io_, [this] { read(); });
        });
    }
    void write() {
        ws_.async_write(asio::buffer(out_.front()), [this](beast::error_code ec, std::size_t) {
            out_.pop_front();
            if (!ec && !out_.empty()) write();
        });
    }

    asio::io_context io_;
    websocket::stream<beast::tcp_stream> ws_;
    beast::flat_buffer buffer_;
    std::deque<std::string> out_;
    bool closing_ = false;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<json::object> frames_;
    std::size_t cursor_ = 0;
    bool closed_ = false;
};

struct Reply {
    int status = 0;
    json::value body;
    std::string raw;
    std::map<std::string, std::string> headers;
};

class WidgetRoutesTest : public ::testing::Test {
protected:
    WidgetRoutesTest() : guard_(asio::make_work_guard(io_)) {
        dir_ = std::filesystem::temp_directory_path() / ("parley-widget-" + core::random_hex(8));
        std::filesystem::create_directories(dir_);
        store::StoreOptions options;
        options.path = (dir_ / "parley.db").string();
        options.durable = false;
        auto all = clients::migrations();
        for (auto& m : bots::migrations()) all.push_back(m);
        for (auto& m : migrations()) all.push_back(m);
        store_ = store::Store::open_sqlite(options, all);
        actions::register_builtin_actions(registry_);
        clients::register_actions(registry_, *store_, clock_);
        bots_ = std::make_unique<bots::BotService>(*store_, clock_, registry_);
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        key_.fill(9);
        for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
        bot_id_ = asio::co_spawn(io_, bots_->create("Support", true), asio::use_future).get().id;
        asio::co_spawn(io_, bots_->put_scenario(bot_id_, kScenario, {}, ""), asio::use_future).get();
        channels_.put(WidgetChannel{"wch1", bot_id_, false});
        channels_.put(WidgetChannel{"wch_off", bot_id_, true});
        channels_.put(WidgetChannel{"wch_other", "another-bot", false});
        options_.dispatch_idle_ms = 20;
        options_.max_upload_bytes = 64 * 1024;
        start_service();
        auto editor = std::make_shared<core::Principal>();
        editor->user_id = "editor";
        editor->permissions = {"channels.view", "channels.edit"};
        auto viewer = std::make_shared<core::Principal>();
        viewer->user_id = "viewer";
        viewer->permissions = {"channels.view"};
        tokens_["editor"] = editor;
        tokens_["viewer"] = viewer;
        register_routes(router_, *service_);
        start_server();
    }

    ~WidgetRoutesTest() override {
        stop_server();
        stop_service();
        guard_.reset();
        io_.stop();
        for (auto& t : threads_) t.join();
        store_->close();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    void start_service() {
        service_ = std::make_unique<WidgetService>(*store_, clock_, channels_, *dialogs_, registry_, nullptr, key_,
                                                   options_);
        service_->start(io_.get_executor());
    }
    void stop_service() {
        if (!service_) return;
        service_->stop();
        service_->wait_stopped();
        service_.reset();
    }
    void start_server() {
        server_ = std::make_unique<http::Server>(io_, config_, router_, metrics_, [this](const http::Request& req)
                                                     -> std::optional<std::shared_ptr<const core::Principal>> {
            std::string auth(req.header("authorization"));
            if (auth.rfind("Bearer ", 0) != 0) return std::nullopt;
            auto it = tokens_.find(auth.substr(7));
            if (it == tokens_.end()) return std::nullopt;
            return it->second;
        });
        port_ = server_->start("127.0.0.1", 0);
    }
    void stop_server() {
        if (!server_) return;
        std::promise<void> stopped;
        server_->stop([&] { stopped.set_value(); });
        stopped.get_future().wait();
        server_.reset();
    }

    Reply call(bhttp::verb verb, const std::string& target, const std::string& body = {},
               const std::string& token = "editor", std::vector<std::pair<std::string, std::string>> headers = {}) {
        asio::io_context io;
        beast::tcp_stream stream(io);
        stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
        stream.expires_after(20s);
        bhttp::request<bhttp::string_body> req{verb, target, 11};
        req.set(bhttp::field::host, "127.0.0.1");
        if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
        bool typed = false;
        for (const auto& [name, value] : headers) {
            req.set(name, value);
            typed = typed || name == "Content-Type";
        }
        if (!body.empty() && !typed) req.set(bhttp::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        bhttp::write(stream, req);
        beast::flat_buffer buffer;
        bhttp::response_parser<bhttp::string_body> parser;
        parser.body_limit(16 * 1024 * 1024);
        bhttp::read(stream, buffer, parser);
        auto& res = parser.get();
        Reply r;
        r.status = static_cast<int>(res.result_int());
        r.raw = res.body();
        for (const auto& h : res) r.headers[std::string(h.name_string())] = std::string(h.value());
        boost::system::error_code ec;
        if (!res.body().empty()) r.body = json::parse(res.body(), ec);
        if (ec) r.body = nullptr;
        return r;
    }
    std::string code_of(const Reply& r) {
        if (!r.body.is_object() || !r.body.as_object().contains("error")) return "";
        return std::string(r.body.at("error").at("code").as_string());
    }
    std::unique_ptr<Tab> tab(const std::string& channel = "wch1", const std::string& query = {},
                             const std::string& origin = "https://shop.example.com") {
        return std::make_unique<Tab>(port_, "/widget/" + channel + "/ws" + query, origin);
    }
    /// A fresh visitor: connects, returns the tab and its token (after `ready`).
    std::pair<std::unique_ptr<Tab>, std::string> visitor(const std::string& query = {}) {
        auto t = tab("wch1", query);
        auto session = t->next_type("session");
        EXPECT_TRUE(session);
        std::string token = session && session->contains("token") ? std::string(session->at("token").as_string()) : "";
        EXPECT_TRUE(t->next_type("ready"));
        return {std::move(t), token};
    }
    static std::function<bool(const json::object&)> ack_of(std::string id) {
        return [id](const json::object& f) {
            return (f.at("type").as_string() == "ack" || f.at("type").as_string() == "error") && f.contains("id") &&
                   f.at("id").as_string() == id;
        };
    }
    std::int64_t count(const std::string& sql, store::Params params = {}) {
        return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql, params)->integer(0); });
    }
    std::string text(const std::string& sql, store::Params params = {}) {
        return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql, params)->text(0); });
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
    static json::object msg(std::string id, std::string text) {
        return json::object{{"type", "message"}, {"id", std::move(id)}, {"text", std::move(text)}};
    }

    std::filesystem::path dir_;
    core::SystemClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    auth::SecretKey key_{};
    MapDirectory channels_;
    WidgetOptions options_;
    std::unique_ptr<WidgetService> service_;
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

using WidgetTest = WidgetRoutesTest;

TEST_F(WidgetTest, ServesTheScriptWithAnEtag) {
    Reply r = call(bhttp::verb::get, "/widget.js", {}, "");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["Content-Type"], "application/javascript; charset=utf-8");
    EXPECT_EQ(r.raw, std::string(widget_script()));
    EXPECT_NE(r.raw.find("attachShadow"), std::string::npos);
    EXPECT_EQ(r.headers["ETag"], widget_script_etag());
    Reply again = call(bhttp::verb::get, "/widget.js", {}, "", {{"If-None-Match", widget_script_etag()}});
    EXPECT_EQ(again.status, 304);
    EXPECT_TRUE(again.raw.empty());
}

TEST_F(WidgetTest, AdminSettingsApi) {
    std::string url = "/api/v1/bots/" + bot_id_ + "/channels/wch1/widget";
    Reply d = call(bhttp::verb::get, url, {}, "viewer");
    ASSERT_EQ(d.status, 200);
    EXPECT_EQ(d.body.at("title"), "Chat with us");
    EXPECT_EQ(d.body.at("allowed_domains"), json::array{});

    std::string body = R"({"title":"Shop help","colors":{"primary":"#ff0000"},"position":{"side":"left","offset_x":8},
                          "allowed_domains":["shop.example.com","*.example.org"],"language":"en"})";
    Reply put = call(bhttp::verb::put, url, body);
    ASSERT_EQ(put.status, 200) << put.raw;
    EXPECT_EQ(put.body.at("colors").at("primary"), "#ff0000");
    EXPECT_EQ(put.body.at("colors").at("background"), "#ffffff");
    Reply got = call(bhttp::verb::get, url, {}, "viewer");
    EXPECT_EQ(got.body, put.body);

    EXPECT_EQ(call(bhttp::verb::put, url, body, "viewer").status, 403);
    EXPECT_EQ(call(bhttp::verb::put, url, body, "").status, 401);
    Reply bad = call(bhttp::verb::put, url, R"({"colors":{"primary":"red"}})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.body.at("error").at("details").at(0).at("field"), "colors.primary");
    EXPECT_EQ(call(bhttp::verb::get, url, {}, "viewer").body, put.body);  // nothing half-written
    EXPECT_EQ(call(bhttp::verb::put, url, "[1]").status, 400);
    EXPECT_EQ(call(bhttp::verb::put, url, "{\"title\":\"" + std::string(kMaxSettingsBytes, 'x') + "\"}").status, 413);
    Reply missing = call(bhttp::verb::get, "/api/v1/bots/" + bot_id_ + "/channels/nope/widget");
    EXPECT_EQ(missing.status, 404);
    EXPECT_EQ(code_of(missing), "channel_not_found");
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/bots/" + bot_id_ + "/channels/wch_other/widget").status, 404);
}

TEST_F(WidgetTest, PublicConfigChecksTheOrigin) {
    Reply open = call(bhttp::verb::get, "/widget/wch1/config", {}, "", {{"Origin", "https://anywhere.test"}});
    ASSERT_EQ(open.status, 200);
    EXPECT_EQ(open.headers["Access-Control-Allow-Origin"], "https://anywhere.test");
    EXPECT_EQ(open.body.at("ws_path"), "/widget/wch1/ws");
    EXPECT_FALSE(open.body.as_object().contains("allowed_domains"));
    EXPECT_EQ(open.body.at("limits").at("max_upload_bytes"), kMaxUploadBytes);

    ASSERT_EQ(call(bhttp::verb::put, "/api/v1/bots/" + bot_id_ + "/channels/wch1/widget",
                   R"({"allowed_domains":["shop.example.com"]})")
                  .status,
              200);
    Reply ok = call(bhttp::verb::get, "/widget/wch1/config", {}, "", {{"Origin", "https://shop.example.com"}});
    EXPECT_EQ(ok.status, 200);
    Reply by_referer = call(bhttp::verb::get, "/widget/wch1/config", {}, "", {{"Referer", "https://shop.example.com/p"}});
    EXPECT_EQ(by_referer.status, 200);
    Reply refused = call(bhttp::verb::get, "/widget/wch1/config", {}, "", {{"Origin", "https://evil.test"}});
    EXPECT_EQ(refused.status, 403);
    EXPECT_EQ(code_of(refused), "origin_not_allowed");
    EXPECT_EQ(refused.headers["Access-Control-Allow-Origin"], "https://evil.test");  // the page can read why
    EXPECT_EQ(call(bhttp::verb::get, "/widget/wch1/config", {}, "").status, 403);     // no origin at all

    // The socket is refused the same way.
    auto t = tab("wch1", {}, "https://evil.test");
    auto err = t->next_type("error");
    ASSERT_TRUE(err);
    EXPECT_EQ(err->at("code"), "origin_not_allowed");
    EXPECT_TRUE(t->closed_by_server());
    EXPECT_EQ(count("SELECT COUNT(*) FROM widget_visitors"), 0);

    EXPECT_EQ(code_of(call(bhttp::verb::get, "/widget/wch_off/config", {}, "")), "channel_not_found");
    EXPECT_EQ(code_of(call(bhttp::verb::get, "/widget/nope/config", {}, "")), "channel_not_found");
}

TEST_F(WidgetTest, ChatAcksResendsAndHistory) {
    auto [t, token] = visitor("?lang=uk");
    ASSERT_EQ(token.rfind("v1.", 0), 0u);
    EXPECT_EQ(count("SELECT COUNT(*) FROM widget_visitors WHERE language = 'uk'"), 1);
    // Token hashes only are stored.
    EXPECT_EQ(count("SELECT COUNT(*) FROM widget_visitors WHERE token_hash = ?", {token}), 0);

    t->send(R"({"type":"start","id":"s1"})");
    ASSERT_TRUE(t->next(ack_of("s1")));
    auto greeting = t->messages_until("Привіт");
    ASSERT_FALSE(greeting.empty());
    EXPECT_EQ(greeting.back().at("from"), "bot");
    EXPECT_EQ(greeting.back().at("buttons").at(0).at("id"), "faq");

    t->send(msg("c1", "where is my parcel"));
    auto ack = t->next(ack_of("c1"));
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->at("type"), "ack");
    EXPECT_FALSE(ack->contains("duplicate"));
    auto turn = t->messages_until("You said: where is my parcel");
    ASSERT_GE(turn.size(), 2u);
    EXPECT_EQ(turn.front().at("from"), "client");
    EXPECT_EQ(turn.front().at("id"), "c1");  // the echo names the client's id
    std::int64_t client_msgs = count("SELECT COUNT(*) FROM messages WHERE sender = 'client'");

    // The same frame again (a resend after a lost ack): acknowledged as a duplicate, nothing runs twice.
    t->send(msg("c1", "where is my parcel"));
    auto dup = t->next(ack_of("c1"));
    ASSERT_TRUE(dup);
    EXPECT_EQ(dup->at("duplicate"), true);
    EXPECT_EQ(count("SELECT COUNT(*) FROM messages WHERE sender = 'client'"), client_msgs);

    t->send(R"({"type":"button","id":"b1","button":"faq"})");
    ASSERT_TRUE(t->next(ack_of("b1")));
    t->messages_until("We deliver in 2 days");
    std::vector<json::object> seen = t->all_messages();
    std::int64_t last = seen.back().at("n").as_int64();
    t.reset();

    // A reload: the whole history, in order, once.
    auto [again, none] = visitor("?token=" + token);
    EXPECT_TRUE(none.empty());  // the known visitor gets no new token
    std::vector<json::object> history = again->all_messages();
    ASSERT_EQ(history.size(), static_cast<std::size_t>(last));
    for (std::size_t i = 0; i < history.size(); ++i) EXPECT_EQ(history[i].at("n").as_int64(), std::int64_t(i + 1));
    again.reset();

    // A reconnect with `since`: only what is newer (nothing here).
    auto [resumed, none2] = visitor("?token=" + token + "&since=" + std::to_string(last));
    EXPECT_TRUE(resumed->all_messages().empty());
    resumed->send(R"({"type":"ping"})");
    EXPECT_TRUE(resumed->next_type("pong"));

    // An unknown token is a new visitor, not an error.
    auto [stranger, other_token] = visitor("?token=v1.unknown");
    EXPECT_FALSE(other_token.empty());
    EXPECT_NE(other_token, token);
}

TEST_F(WidgetTest, DispatcherPushesToEveryTabAndRecordsDelivery) {
    auto [a, token] = visitor();
    a->send(R"({"type":"start","id":"s1"})");
    a->messages_until("Hello guest");
    auto [b, none] = visitor("?token=" + token);  // a second tab of the same visitor: history before `ready`
    EXPECT_EQ(b->all_messages().back().at("text"), "Hello guest");
    std::string dialog = text("SELECT dialog_id FROM widget_visitors");
    ASSERT_FALSE(dialog.empty());

    auto post = [&](std::string text) {
        return asio::co_spawn(io_, dialogs_->post(dialog, "operator", std::move(text), false), asio::use_future)
            .get()
            ->n;
    };
    std::int64_t n = post("Anna here, how can I help?");
    auto pa = a->messages_until("Anna here");
    auto pb = b->messages_until("Anna here");
    EXPECT_EQ(pa.back().at("from"), "operator");
    EXPECT_EQ(pb.back().at("n").as_int64(), n);
    EXPECT_TRUE(eventually([&] {
        return text("SELECT delivery FROM messages WHERE dialog_id = ? AND n = ?", {dialog, n}) == "delivered";
    }));
    EXPECT_EQ(count("SELECT COUNT(*) FROM messages WHERE dialog_id = ? AND delivery = 'pending'", {dialog}), 0);

    // Seen: bot and operator messages become `read`.
    a->send(json::object{{"type", "seen"}, {"n", n}});
    EXPECT_TRUE(eventually(
        [&] { return text("SELECT delivery FROM messages WHERE dialog_id = ? AND n = ?", {dialog, n}) == "read"; }));

    // Nobody online: stored as sent, and the next connect with `since` gets it exactly once.
    a.reset();
    b.reset();
    std::int64_t later = post("Are you still there?");
    EXPECT_TRUE(eventually(
        [&] { return text("SELECT delivery FROM messages WHERE dialog_id = ? AND n = ?", {dialog, later}) == "sent"; }));
    auto [c, none2] = visitor("?token=" + token + "&since=" + std::to_string(n));
    auto got = c->all_messages();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].at("n").as_int64(), later);
    EXPECT_GE(service_->stats().delivered, 1u);
    EXPECT_GE(service_->stats().stored_for_later, 1u);
}

TEST_F(WidgetTest, IdentifyAndParamsReachTheScenario) {
    auto [t, token] = visitor();
    t->send(R"({"type":"identify","id":"i1","name":"Olena","email":"olena@example.com","external_id":"u-42"})");
    ASSERT_EQ(t->next(ack_of("i1"))->at("type"), "ack");
    std::string client = text("SELECT client_id FROM widget_visitors");
    EXPECT_EQ(text("SELECT name FROM clients WHERE id = ?", {client}), "Olena");
    EXPECT_EQ(text("SELECT email FROM clients WHERE id = ?", {client}), "olena@example.com");

    // The dialog exists (identify made it) but never started: `start` still runs the start node.
    t->send(R"({"type":"start","id":"s1"})");
    auto hello = t->messages_until("Hello Olena");
    EXPECT_EQ(hello.back().at("text"), "Hello Olena");

    t->send(R"({"type":"params","id":"p1","params":{"page":"/pricing"}})");
    ASSERT_EQ(t->next(ack_of("p1"))->at("type"), "ack");
    t->send(R"({"type":"params","id":"p2","params":{"order_id":"A-7"},"alias":"promo"})");
    ASSERT_EQ(t->next(ack_of("p2"))->at("type"), "ack");
    auto promo = t->messages_until("Order A-7");
    EXPECT_EQ(promo.back().at("text"), "Hello Olena");
    bool said = false;
    for (const auto& m : promo) said = said || m.at("text") == "Order A-7 seen on /pricing";
    EXPECT_TRUE(said);
    EXPECT_EQ(json::parse(text("SELECT params FROM widget_visitors")),
              json::parse(R"({"page":"/pricing","order_id":"A-7"})"));

    t->send(R"({"type":"params","id":"p3","params":{},"alias":"nope"})");
    auto err = t->next(ack_of("p3"));
    EXPECT_EQ(err->at("code"), "alias_not_found");
    t->send(R"({"type":"identify","id":"i2","language":"english"})");
    EXPECT_EQ(t->next(ack_of("i2"))->at("type"), "error");
}

TEST_F(WidgetTest, BadFramesAreAnsweredAndLimitsHold) {
    auto [t, token] = visitor();
    t->send("not json");
    EXPECT_EQ(t->next_type("error")->at("code"), "invalid_json");
    t->send(R"({"type":"launch"})");
    EXPECT_EQ(t->next_type("error")->at("code"), "unknown_type");
    t->send(R"({"type":"message","id":"bad id!","text":"x"})");
    EXPECT_EQ(t->next_type("error")->at("code"), "invalid_id");
    t->send(R"({"type":"message","id":"m1","text":")" + std::string(kMaxTextBytes + 1, 'a') + "\"}");
    EXPECT_EQ(t->next_type("error")->at("code"), "too_large");
    EXPECT_EQ(count("SELECT COUNT(*) FROM messages"), 0);  // nothing stored for refused frames
    t->send(R"({"type":"ping"})");
    EXPECT_TRUE(t->next_type("pong"));  // the socket survived

    // More sockets than allowed for one visitor: the extra one is refused.
    std::vector<std::unique_ptr<Tab>> tabs;
    for (std::size_t i = 1; i < options_.max_sockets_per_visitor; ++i) tabs.push_back(visitor("?token=" + token).first);
    auto extra = tab("wch1", "?token=" + token);
    EXPECT_EQ(extra->next_type("error")->at("code"), "too_many_sockets");
    EXPECT_TRUE(extra->closed_by_server());

    // A frame larger than the limit closes the socket.
    t->send(std::string(kMaxFrameBytes + 10, ' '));
    EXPECT_EQ(t->next_type("error")->at("code"), "frame_too_large");
    EXPECT_TRUE(t->closed_by_server());

    auto gone = tab("nope");
    EXPECT_EQ(gone->next_type("error")->at("code"), "channel_not_found");
    auto off = tab("wch_off");
    EXPECT_EQ(off->next_type("error")->at("code"), "channel_not_found");
}

TEST_F(WidgetTest, FrameRateLimit) {
    auto [t, token] = visitor();
    for (int i = 0; i < 40; ++i) t->send(json::object{{"type", "typing"}});
    auto limited = t->next([](const json::object& f) { return f.at("type") == "error"; });
    ASSERT_TRUE(limited);
    EXPECT_EQ(limited->at("code"), "rate_limited");
    EXPECT_GT(service_->stats().rejected_frames, 0u);
}

TEST_F(WidgetTest, UploadsBecomeMessagesAndFilesAreServed) {
    auto [t, token] = visitor();
    std::string png(kPng, 16);
    png += std::string(100, 'x');
    std::string url = "/widget/wch1/upload?token=" + token + "&name=" + "shot%201.png";
    Reply up = call(bhttp::verb::post, url, png, "", {{"Content-Type", "image/png"}, {"Origin", "https://shop.test"}});
    ASSERT_EQ(up.status, 201) << up.raw;
    EXPECT_EQ(up.body.at("name"), "shot 1.png");
    EXPECT_EQ(up.body.at("size"), png.size());
    EXPECT_EQ(up.headers["Access-Control-Allow-Origin"], "https://shop.test");
    std::string file_url(up.body.at("url").as_string());
    EXPECT_EQ(file_url.rfind("/widget/files/", 0), 0u);
    bool linked = false;
    for (const auto& m : t->messages_until("[file] shot 1.png")) {
        std::string_view text = m.at("text").as_string();
        linked = linked || (m.at("from") == "client" && text.find(file_url) != std::string_view::npos);
    }
    EXPECT_TRUE(linked);

    Reply file = call(bhttp::verb::get, file_url, {}, "");
    ASSERT_EQ(file.status, 200);
    EXPECT_EQ(file.raw, png);
    EXPECT_EQ(file.headers["Content-Type"], "image/png");
    EXPECT_EQ(file.headers["X-Content-Type-Options"], "nosniff");
    EXPECT_EQ(call(bhttp::verb::get, "/widget/files/0123456789abcdef0123456789abcdef/x", {}, "").status, 404);
    EXPECT_EQ(call(bhttp::verb::get, "/widget/files/..%2F..%2Fetc/passwd", {}, "").status, 404);

    Reply pre = call(bhttp::verb::options, "/widget/wch1/upload", {}, "", {{"Origin", "https://shop.test"}});
    EXPECT_EQ(pre.status, 204);
    EXPECT_EQ(pre.headers["Access-Control-Allow-Methods"], "POST");

    std::int64_t files = count("SELECT COUNT(*) FROM widget_files");
    auto refused = [&](const std::string& body, const std::string& type, const std::string& tok) {
        return call(bhttp::verb::post, "/widget/wch1/upload?token=" + tok + "&name=a", body, "",
                    {{"Content-Type", type}});
    };
    EXPECT_EQ(code_of(refused("<html><script>x</script>", "image/png", token)), "type_mismatch");
    EXPECT_EQ(code_of(refused("#!/bin/sh", "application/x-sh", token)), "unsupported_type");
    EXPECT_EQ(refused(png, "image/png", "v1.wrong").status, 401);
    EXPECT_EQ(refused("", "text/plain", token).status, 400);
    Reply big = refused(std::string(options_.max_upload_bytes + 1, 'a'), "text/plain", token);
    EXPECT_EQ(big.status, 413);
    EXPECT_EQ(count("SELECT COUNT(*) FROM widget_files"), files);
}

TEST_F(WidgetTest, MessagesSurviveARestartOfTheService) {
    auto [t, token] = visitor();
    t->send(msg("c1", "first"));
    ASSERT_TRUE(t->next(ack_of("c1")));
    t->messages_until("Hello guest");  // a first message starts the dialog
    std::int64_t before = count("SELECT COUNT(*) FROM messages");
    t.reset();

    stop_server();
    stop_service();
    start_service();
    http::Router fresh;
    router_ = std::move(fresh);
    register_routes(router_, *service_);
    start_server();

    auto [again, none] = visitor("?token=" + token);
    EXPECT_EQ(again->all_messages().size(), static_cast<std::size_t>(before));
    again->send(msg("c1", "first"));  // the client never saw the ack: resend after the restart
    EXPECT_EQ(again->next(ack_of("c1"))->at("duplicate"), true);
    EXPECT_EQ(count("SELECT COUNT(*) FROM messages"), before);
    again.reset();
}

}  // namespace
}  // namespace parley::widget

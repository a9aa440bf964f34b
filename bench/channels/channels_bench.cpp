// channels_bench: the channel runtime's figures (issue 6).
//
//   channels_bench [--seconds S] [--connections C] [--rate R] [--chat-rate Q] [--server-threads T]
//
// 1. Webhook ingest: C keep-alive HTTP connections post webhooks to POST /hooks/{id} of an in-process http::Server
//    for S seconds each, Telegram (secret token) then the custom channel (HMAC-SHA256 verified); every answered
//    200 is an inbox row committed durably (SQLite WAL, synchronous=FULL, group commit) before the answer →
//    durable inbound messages/s. Inbound processing is off in this phase (ChannelOptions::process_inbound), so
//    the figure is the ingest path alone; the rows are counted in the store afterwards.
//    Each phase also prints the store's group commits (fsyncs/s, writes per group) and the process's CPU per
//    answered webhook (getrusage; server, store and load generator together): with 64 clients that each wait for
//    their commit, the figure is bound by commit latency, not CPU; --connections 256 shows the capacity.
// 2. Outbound rate-limit accuracy: with processing on, 1.6·R·S clients each write once to a custom channel whose
//    bot answers with one message, and one client triggers a scenario that answers with ~1000 messages. The fake
//    endpoint (in-process, answers at once) timestamps each send: the channel's rate over S seconds (after its
//    1-second burst) against R, and the one chat's rate against Q (per-chat bucket).
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <sys/resource.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bots/bots.h"
#include "bots/dialogs.h"
#include "channels/adapter.h"
#include "channels/channels.h"
#include "core/log.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/metrics.h"
#include "http/http.h"
#include "outbound/test_server.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace json = boost::json;
using namespace parley;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr const char* kSecret = "bench-secret-0123456789";
constexpr const char* kToken = "123:ABC";

const char* kEchoScenario = R"({"format":"parley.scenario/1","name":"echo","languages":["en"],"sections":[{"name":"main",
 "nodes":[{"id":"start","type":"start","next":"hi"},{"id":"hi","type":"message","text":"Hi!","next":"ask"},
  {"id":"ask","type":"input","save_as":"q","next":"say"},
  {"id":"say","type":"message","text":"You said {{q}}","next":"ask"}]}]})";
// Loops through message nodes until the step limit: one client turn → ~1000 messages to one chat.
const char* kFloodScenario = R"({"format":"parley.scenario/1","name":"flood","languages":["en"],"sections":[{"name":"main",
 "nodes":[{"id":"start","type":"start","next":"a"},{"id":"a","type":"message","text":"ping","next":"b"},
  {"id":"b","type":"message","text":"pong","next":"a"}]}]})";

struct Options {
    double seconds = 10;
    int connections = 64;
    double rate = 100;
    double chat_rate = 5;
    int server_threads = 2;
};

/// The fake endpoint: timestamps each request by path, answers 200 at once.
class Sink {
public:
    Sink()
        : server_(
              [this](const outbound::testing::TestRequest& r) {
                  auto now = Clock::now();
                  {
                      std::lock_guard lock(mutex_);
                      times_[r.path].push_back(now);
                  }
                  if (r.path.rfind("/bot", 0) == 0) {
                      return outbound::testing::TestResponse{200, {{"Content-Type", "application/json"}},
                                                             R"({"ok":true,"result":true})"};
                  }
                  return outbound::testing::TestResponse{200, {{"Content-Type", "application/json"}}, "{}"};
              },
              2) {}
    std::string url(std::string_view path) const { return server_.url(path); }
    std::vector<Clock::time_point> times(const std::string& path) const {
        std::lock_guard lock(mutex_);
        auto it = times_.find(path);
        return it == times_.end() ? std::vector<Clock::time_point>{} : it->second;
    }

private:
    mutable std::mutex mutex_;
    std::map<std::string, std::vector<Clock::time_point>> times_;
    outbound::testing::TestServer server_;
};

/// One store + bot pipeline + channel service + HTTP server on 127.0.0.1:0.
class Env {
public:
    Env(const Options& o, bool process_inbound) : guard_(asio::make_work_guard(io_)) {
        dir_ = std::filesystem::temp_directory_path() / ("parley-channels-bench-" + core::random_hex(6));
        std::filesystem::create_directories(dir_);
        store::StoreOptions so;
        so.path = (dir_ / "parley.db").string();
        so.durable = true;
        auto all = clients::migrations();
        for (auto& m : bots::migrations()) all.push_back(m);
        for (auto& m : channels::migrations()) all.push_back(m);
        store_ = store::Store::open_sqlite(so, all);
        actions::register_builtin_actions(registry_);
        bots_ = std::make_unique<bots::BotService>(*store_, clock_, registry_);
        bots::DialogOptions dopt;
        dopt.record_runs = false;
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr, dopt);
        outbound::ClientOptions co;
        co.allowlist = [] { return std::optional<json::value>(json::array{"127.0.0.1"}); };
        client_ = std::make_unique<outbound::Client>(co);
        key_.fill(3);
        channels::ChannelOptions copt;
        copt.public_base_url = "https://parley.example";
        copt.process_inbound = process_inbound;
        copt.bot_messages_per_second = o.rate;
        copt.chat_messages_per_second = o.chat_rate;
        copt.dispatch_batch = 500;
        service_ = std::make_unique<channels::ChannelService>(*store_, clock_, *bots_, *dialogs_, *client_, key_, copt);
        channels::register_routes(router_, *service_);
        server_ = std::make_unique<http::Server>(io_, config_, router_, metrics_,
                                                 [](const http::Request&) {
                                                     auto p = std::make_shared<core::Principal>();
                                                     p->user_id = "bench";
                                                     p->permissions = {"channels.view", "channels.edit"};
                                                     return std::optional<std::shared_ptr<const core::Principal>>(p);
                                                 });
        port_ = server_->start("127.0.0.1", 0);
        for (int i = 0; i < o.server_threads; ++i) threads_.emplace_back([this] { io_.run(); });
        service_->start(io_.get_executor());
    }
    ~Env() {
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

    template <typename T>
    T run(asio::awaitable<T> task) {
        return asio::co_spawn(io_, std::move(task), asio::use_future).get();
    }
    std::string bot(const char* scenario) {
        std::string id = run(bots_->create("bench", true)).id;
        run(bots_->put_scenario(id, scenario, {}, ""));
        return id;
    }
    std::string channel(const std::string& bot, const std::string& kind, json::object credentials,
                        const std::string& base) {
        channels::NewChannel in;
        in.kind = kind;
        in.credentials = std::move(credentials);
        in.api_base_url = base;
        return run(service_->create(bot, std::move(in))).id;
    }
    std::string webhook_secret(const std::string& channel) {
        return store::read_value(*store_, [&](store::Tx& tx) {
            return tx.query_one("SELECT webhook_secret FROM channels WHERE id = ?", {channel})->text(0);
        });
    }
    std::int64_t count(const std::string& sql) {
        return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
    }
    std::uint16_t port() const { return port_; }
    store::StoreStats store_stats() const { return store_->stats(); }

private:
    std::filesystem::path dir_;
    core::SystemClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    std::unique_ptr<outbound::Client> client_;
    auth::SecretKey key_{};
    std::unique_ptr<channels::ChannelService> service_;
    http::Router router_;
    core::Config config_;
    core::Metrics metrics_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::unique_ptr<http::Server> server_;
    std::uint16_t port_ = 0;
    std::vector<std::thread> threads_;
};

using MakeRequest = std::function<void(std::int64_t n, bhttp::request<bhttp::string_body>& req)>;

/// Keeps `connections` keep-alive connections busy for `seconds` or until `limit` requests were made; returns
/// {answered 200, other answers}.
std::pair<std::int64_t, std::int64_t> load(std::uint16_t port, int connections, double seconds,
                                           const MakeRequest& make, std::int64_t limit = INT64_MAX) {
    asio::io_context io;
    std::atomic<std::int64_t> next{1}, ok{0}, bad{0};
    auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    for (int c = 0; c < connections; ++c) {
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                beast::tcp_stream stream(co_await asio::this_coro::executor);
                co_await stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                              asio::use_awaitable);
                beast::flat_buffer buffer;
                while (Clock::now() < until) {
                    std::int64_t n = next++;
                    if (n > limit) break;
                    bhttp::request<bhttp::string_body> req{bhttp::verb::post, "/", 11};
                    req.set(bhttp::field::host, "127.0.0.1");
                    req.set(bhttp::field::content_type, "application/json");
                    make(n, req);
                    req.prepare_payload();
                    co_await bhttp::async_write(stream, req, asio::use_awaitable);
                    bhttp::response<bhttp::string_body> res;
                    co_await bhttp::async_read(stream, buffer, res, asio::use_awaitable);
                    ++(res.result_int() == 200 ? ok : bad);
                }
            },
            asio::detached);
    }
    io.run();
    return {ok.load(), bad.load()};
}

/// CPU seconds (user + system) the whole process used so far: server, store and load generator alike.
double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// Prints the store's group commits and the CPU each answered webhook cost during one ingest phase.
void print_costs(const store::StoreStats& before, const store::StoreStats& after, double cpu, std::int64_t ok,
                 double seconds) {
    auto commits = after.commits - before.commits;
    auto txs = after.transactions - before.transactions;
    std::printf("  %llu group commits (%.0f/s, %.1f writes each), %.1f us CPU per message (server + load generator)\n",
                static_cast<unsigned long long>(commits), static_cast<double>(commits) / seconds,
                commits ? static_cast<double>(txs) / static_cast<double>(commits) : 0.0,
                ok ? cpu * 1e6 / static_cast<double>(ok) : 0.0);
}

/// Messages per second between the first send after `skip_s` and the last one.
double measured_rate(const std::vector<Clock::time_point>& times, double skip_s) {
    if (times.size() < 3) return 0;
    auto start = times.front() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(skip_s));
    auto first = std::lower_bound(times.begin(), times.end(), start);
    if (std::distance(first, times.end()) < 3) return 0;
    double span = std::chrono::duration<double>(times.back() - *first).count();
    return static_cast<double>(std::distance(first, times.end()) - 1) / span;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string key = argv[i];
        double value = std::stod(argv[i + 1]);
        if (key == "--seconds") o.seconds = value;
        else if (key == "--connections") o.connections = static_cast<int>(value);
        else if (key == "--rate") o.rate = value;
        else if (key == "--chat-rate") o.chat_rate = value;
        else if (key == "--server-threads") o.server_threads = static_cast<int>(value);
        else {
            std::fprintf(stderr, "usage: channels_bench [--seconds S] [--connections C] [--rate R] [--chat-rate Q] "
                                 "[--server-threads T]\n");
            return 2;
        }
    }
    spdlog::set_level(spdlog::level::warn);
    Sink sink;
    std::printf("channels_bench: %.0f s per phase, %d connections, %d server threads, %u cores\n", o.seconds,
                o.connections, o.server_threads, std::thread::hardware_concurrency());

    // 1. Ingest.
    {
        Env env(o, false);
        std::string bot = env.bot(kEchoScenario);
        std::string tg = env.channel(bot, "telegram", json::object{{"token", kToken}}, sink.url("").substr(0, sink.url("").size() - 1));
        std::string secret = env.webhook_secret(tg);
        auto stats0 = env.store_stats();
        double cpu0 = cpu_seconds();
        auto [tg_ok, tg_bad] = load(env.port(), o.connections, o.seconds, [&](std::int64_t n, auto& req) {
            req.target("/hooks/" + tg);
            req.set("X-Telegram-Bot-Api-Secret-Token", secret);
            req.body() = json::serialize(json::object{
                {"update_id", n},
                {"message", json::object{{"message_id", n},
                                         {"from", json::object{{"id", 1000 + n % 5000}, {"first_name", "Olena"}}},
                                         {"chat", json::object{{"id", 1000 + n % 5000}, {"type", "private"}}},
                                         {"text", "Hello, I have a question about my order"}}}});
        });
        std::int64_t tg_rows = env.count("SELECT COUNT(*) FROM channel_inbox WHERE channel_id = '" + tg + "'");
        std::printf("ingest telegram: %.0f durable inbound messages/s (%lld answered 200, %lld other, %lld inbox rows)\n",
                    static_cast<double>(tg_ok) / o.seconds, static_cast<long long>(tg_ok),
                    static_cast<long long>(tg_bad), static_cast<long long>(tg_rows));
        auto stats1 = env.store_stats();
        print_costs(stats0, stats1, cpu_seconds() - cpu0, tg_ok, o.seconds);

        std::string custom = env.channel(bot, "custom", json::object{{"secret", kSecret}}, sink.url("/ingest"));
        auto stats2 = env.store_stats();
        double cpu2 = cpu_seconds();
        auto [c_ok, c_bad] = load(env.port(), o.connections, o.seconds, [&](std::int64_t n, auto& req) {
            req.target("/hooks/" + custom);
            req.body() = json::serialize(json::object{
                {"id", "evt-" + std::to_string(n)},
                {"user", json::object{{"id", "u" + std::to_string(n % 5000)}, {"name", "Olena"}}},
                {"message", json::object{{"text", "Hello, I have a question about my order"}}}});
            req.set("X-Parley-Signature", "sha256=" + channels::hmac_sha256_hex(kSecret, req.body()));
        });
        std::int64_t c_rows = env.count("SELECT COUNT(*) FROM channel_inbox WHERE channel_id = '" + custom + "'");
        std::printf("ingest custom (HMAC): %.0f durable inbound messages/s (%lld answered 200, %lld other, %lld inbox rows)\n",
                    static_cast<double>(c_ok) / o.seconds, static_cast<long long>(c_ok),
                    static_cast<long long>(c_bad), static_cast<long long>(c_rows));
        print_costs(stats2, env.store_stats(), cpu_seconds() - cpu2, c_ok, o.seconds);
    }

    // 2. Outbound rate-limit accuracy.
    {
        Env env(o, true);
        std::string echo = env.bot(kEchoScenario);
        std::string flood = env.bot(kFloodScenario);
        std::string wide = env.channel(echo, "custom", json::object{{"secret", kSecret}}, sink.url("/wide"));
        std::string chat = env.channel(flood, "custom", json::object{{"secret", kSecret}}, sink.url("/chat"));
        auto hook = [](const std::string& id, const std::string& user, std::int64_t n, auto& req) {
            req.target("/hooks/" + id);
            req.body() = json::serialize(json::object{{"id", "evt-" + std::to_string(n)},
                                                      {"user", json::object{{"id", user}}},
                                                      {"message", json::object{{"text", "hi"}}}});
            req.set("X-Parley-Signature", "sha256=" + channels::hmac_sha256_hex(kSecret, req.body()));
        };
        load(env.port(), 1, 60, [&](std::int64_t n, auto& req) { hook(chat, "flooded", n, req); }, 1);
        std::int64_t clients = static_cast<std::int64_t>(o.rate * o.seconds * 1.6) + 50;
        auto t0 = Clock::now();
        load(env.port(), 8, 600, [&](std::int64_t n, auto& req) { hook(wide, "user-" + std::to_string(n), n, req); },
             clients);
        std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(o.seconds + 1.5)));
        double wide_rate = measured_rate(sink.times("/wide"), 1.0);
        double chat_rate = measured_rate(sink.times("/chat"), 1.0);
        std::printf("outbound channel bucket: %.2f msg/s measured vs %.2f configured (%+.2f %%), %zu sent\n",
                    wide_rate, o.rate, (wide_rate / o.rate - 1) * 100, sink.times("/wide").size());
        std::printf("outbound chat bucket: %.3f msg/s measured vs %.3f configured (%+.2f %%), %zu sent\n", chat_rate,
                    o.chat_rate, (chat_rate / o.chat_rate - 1) * 100, sink.times("/chat").size());
        std::printf("(%lld clients wrote to the wide channel; its outbox kept more than the bucket allows)\n",
                    static_cast<long long>(clients));
    }
    return 0;
}

#include "webhooks/test_util.h"

#include <sodium.h>
#include <unistd.h>

#include "auth/auth.h"

namespace parley::webhooks::testing {

namespace fs = std::filesystem;
namespace json = boost::json;

WebhooksTest::WebhooksTest() : guard_(boost::asio::make_work_guard(io_)) {
    dir_ = fs::temp_directory_path() / ("parley-webhooks-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
    randombytes_buf(key_.data(), key_.size());
    std::vector<store::Migration> migrations = auth::migrations();
    for (auto& m : webhooks::migrations()) migrations.push_back(m);
    store::StoreOptions options;
    options.path = (dir_ / "t.db").string();
    options.durable = false;
    store_ = store::Store::open_sqlite(options, migrations);
    receiver_ = std::make_unique<outbound::testing::TestServer>([this](const outbound::testing::TestRequest& r) {
        std::lock_guard lock(receiver_mutex_);
        requests_.push_back(r);
        if (responder_) return responder_(r);
        return outbound::testing::TestResponse{200, {}, "ok"};
    });
    outbound::ClientOptions client_options;
    client_options.allowlist = [] { return std::optional<json::value>(json::array{"127.0.0.1"}); };
    client_ = std::make_unique<outbound::Client>(client_options);
    admin_.user_id = "admin-1";
    admin_.email = "admin@example.com";
    admin_.name = "Admin";
    thread_ = std::thread([this] { io_.run(); });
    restart();
}

WebhooksTest::~WebhooksTest() {
    stop_service();
    client_->shutdown();
    guard_.reset();
    io_.stop();
    thread_.join();
    receiver_.reset();
    store_->close();
    fs::remove_all(dir_);
}

WebhookOptions WebhooksTest::test_options() {
    WebhookOptions o;
    o.backoff_ms = {1'000, 2'000, 4'000};
    o.jitter = 0;
    o.max_attempts = 3;
    o.timeout_ms = 5'000;
    o.idle_poll_ms = 20;
    return o;
}

void WebhooksTest::stop_service() {
    if (!service_) return;
    service_->stop();
    service_->wait_stopped();
    service_.reset();
}

void WebhooksTest::restart(WebhookOptions options) {
    stop_service();
    service_ = std::make_unique<WebhookService>(*store_, clock_, *client_, key_, std::move(options));
    service_->start(io_.get_executor());
}

std::pair<Subscription, std::string> WebhooksTest::subscribe(std::vector<std::string> events, std::string path) {
    SubscriptionInput in;
    in.url = receiver_->url(path);
    in.events = std::move(events);
    in.enabled = true;
    in.description = "test";
    return run(service_->create(admin_, std::move(in)));
}

void WebhooksTest::publish(const std::string& type, json::object body) {
    std::uint64_t id = next_hub_id_++;
    json::object text{{"id", id}, {"type", type}};
    for (auto& kv : body) text[kv.key()] = kv.value();
    service_->on_event(id, type, json::serialize(text));
}

bool WebhooksTest::wait_for(const std::function<bool()>& done) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return done();
}

std::int64_t WebhooksTest::count(const std::string& sql) {
    return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
}

void WebhooksTest::respond(std::function<outbound::testing::TestResponse(const outbound::testing::TestRequest&)> responder) {
    std::lock_guard lock(receiver_mutex_);
    responder_ = std::move(responder);
}

std::vector<outbound::testing::TestRequest> WebhooksTest::received() {
    std::lock_guard lock(receiver_mutex_);
    return requests_;
}

}  // namespace parley::webhooks::testing

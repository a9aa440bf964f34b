/// Test fixture for webhooks: a real SQLite store in a temp dir, a FakeClock, a real local HTTP receiver
/// (outbound::testing::TestServer on 127.0.0.1:0, allow-listed in the outbound client's SSRF guard) that records
/// every request, and the service running on an io_context thread.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/principal.h"
#include "outbound/outbound.h"
#include "outbound/test_server.h"
#include "store/store.h"
#include "webhooks/webhooks.h"

namespace parley::webhooks::testing {

/// Thread-safety: the test's thread drives it; the service runs on the fixture's io thread; the receiver's
/// handler runs on the TestServer's thread (recorded requests and the responder are guarded by a mutex).
class WebhooksTest : public ::testing::Test {
protected:
    WebhooksTest();
    ~WebhooksTest() override;

    /// Options of the service under test: 1 s, 2 s, 4 s backoff, no jitter, 3 attempts.
    static WebhookOptions test_options();
    /// Stops the running service (if any) and starts a new one over the same store (a "restart").
    void restart(WebhookOptions options = test_options());
    void stop_service();

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        return boost::asio::co_spawn(io_, std::move(task), boost::asio::use_future).get();
    }

    /// Creates a subscription for the receiver's URL; returns (subscription, secret).
    std::pair<Subscription, std::string> subscribe(std::vector<std::string> events = {"*"}, std::string path = "/hook");
    /// Feeds one hub event to the service as the EventHub would (`{"id": N, "type": T, ...body}`).
    void publish(const std::string& type, boost::json::object body);
    /// Waits (up to 10 s) until `done()` holds.
    bool wait_for(const std::function<bool()>& done);
    std::int64_t count(const std::string& sql);

    /// What the receiver answers (default 200 "ok").
    void respond(std::function<outbound::testing::TestResponse(const outbound::testing::TestRequest&)> responder);
    std::vector<outbound::testing::TestRequest> received();

    std::filesystem::path dir_;
    core::FakeClock clock_;
    auth::SecretKey key_{};
    std::unique_ptr<store::Store> store_;
    boost::asio::io_context io_;
    std::unique_ptr<outbound::Client> client_;
    std::unique_ptr<WebhookService> service_;
    core::Principal admin_;
    std::uint64_t next_hub_id_ = 1;

    std::mutex receiver_mutex_;
    std::vector<outbound::testing::TestRequest> requests_;
    std::function<outbound::testing::TestResponse(const outbound::testing::TestRequest&)> responder_;
    std::unique_ptr<outbound::testing::TestServer> receiver_;

private:
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

}  // namespace parley::webhooks::testing

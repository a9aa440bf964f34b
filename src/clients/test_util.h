/// Test fixture for the clients module: a real SQLite store in a temp dir with the clients and auth migrations
/// plus stand-ins for the other modules' tables the directory reads (dialogs, channels, channel_identities, and a
/// table with a unique client_id), a FakeClock, an EventHub, the ClientDirectory, and an io_context thread.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <memory>
#include <thread>

#include "clients/clients.h"
#include "core/clock.h"
#include "core/error.h"
#include "events/events.h"
#include "store/store.h"

namespace parley::clients::testing {

/// Thread-safety: the test's thread drives it; directory coroutines run on the fixture's io thread.
class ClientsTest : public ::testing::Test {
protected:
    ClientsTest();
    ~ClientsTest() override;

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        return boost::asio::co_spawn(io_, std::move(task), boost::asio::use_future).get();
    }
    void run(boost::asio::awaitable<void> task) {
        boost::asio::co_spawn(io_, std::move(task), boost::asio::use_future).get();
    }

    /// create_client in its own write.
    Client make(const std::string& name, const std::string& phone = "", const std::string& email = "",
                json::object fields = {});
    /// A dialog row (the bots module's table) for `client` on `channel`.
    std::string make_dialog(const std::string& client, const std::string& channel);
    std::int64_t count(const std::string& sql, const store::Params& params = {});

    std::filesystem::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    events::EventHub hub_;
    std::unique_ptr<ClientDirectory> directory_;
    boost::asio::io_context io_;
    core::Principal admin_;

private:
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

/// The error a call throws, as {status, code}; {0, ""} when it does not throw.
struct Thrown {
    int status = 0;
    std::string code;
    boost::json::array details;
};
template <typename F>
Thrown thrown(F&& fn) {
    try {
        fn();
    } catch (const core::Error& e) {
        return {e.status(), e.code(), e.details()};
    }
    return {};
}

}  // namespace parley::clients::testing

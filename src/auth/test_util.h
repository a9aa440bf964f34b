/// Test fixture for the auth module: a real SQLite store in a temp dir, a FakeClock, fast argon2 parameters,
/// and an io_context thread that runs service coroutines.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <memory>
#include <thread>

#include "auth/auth.h"
#include "auth/settings.h"
#include "core/clock.h"
#include "store/store.h"

namespace parley::auth::testing {

/// Thread-safety: a test's own thread drives it; service coroutines run on the fixture's io thread.
class AuthTest : public ::testing::Test {
protected:
    AuthTest();
    ~AuthTest() override;

    /// Rebuilds the services with other options (after changing options_).
    void rebuild();

    /// Runs a coroutine on the io thread and waits for its result (or exception).
    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        return boost::asio::co_spawn(io_, std::move(task), boost::asio::use_future).get();
    }

    /// Creates a user directly through the service (as the bootstrap administrator).
    User make_user(const std::string& email, std::vector<std::string> roles,
                   const std::string& password = "correct horse");
    LoginResult login(const std::string& email, const std::string& password = "correct horse",
                      const std::string& ip = "10.0.0.1");
    std::shared_ptr<const core::Principal> principal_of(const std::string& token);
    std::int64_t count(const std::string& sql);

    std::filesystem::path dir_;
    core::FakeClock clock_;
    AuthOptions options_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<SettingsService> settings_;
    std::unique_ptr<AuthService> auth_;
    core::Principal root_;  ///< an administrator principal for service calls
    boost::asio::io_context io_;

private:
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

}  // namespace parley::auth::testing

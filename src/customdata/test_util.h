/// Test fixture for Custom Data: a real SQLite store in a temp dir (with the module's migrations), a FakeClock,
/// the service, and an io_context thread that runs its coroutines.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <memory>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "customdata/customdata.h"
#include "store/store.h"

namespace parley::customdata::testing {

/// Thread-safety: the test's thread drives it; service coroutines run on the fixture's io thread.
class CustomDataTest : public ::testing::Test {
protected:
    CustomDataTest();
    ~CustomDataTest() override;

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        return boost::asio::co_spawn(io_, std::move(task), boost::asio::use_future).get();
    }
    void run(boost::asio::awaitable<void> task) {
        boost::asio::co_spawn(io_, std::move(task), boost::asio::use_future).get();
    }

    /// Creates a model from JSON text.
    Model make_model(const std::string& spec);
    /// Creates a record from JSON text; returns it.
    json::object make_record(const std::string& model, const std::string& values);
    std::int64_t count(const std::string& sql);

    std::filesystem::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<CustomDataService> service_;
    boost::asio::io_context io_;

private:
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

/// The error a coroutine or call throws, as {status, code}; {0, ""} when it does not throw.
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

}  // namespace parley::customdata::testing

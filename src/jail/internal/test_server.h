/// Test-only: a real http::Server on 127.0.0.1:0 with a few routes that fetch() tests call (JSON, echo, slow,
/// redirects to addresses the guard refuses).
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"
#include "http/http.h"

namespace parley::jail::testing {

/// Thread-safety: constructed and destroyed by the test thread; serves on its own io threads.
class TestHttpServer {
public:
    TestHttpServer();
    ~TestHttpServer();
    std::uint16_t port() const { return port_; }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

private:
    boost::asio::io_context io_;
    core::Config config_;
    core::Metrics metrics_;
    http::Router router_;
    std::unique_ptr<http::Server> server_;
    std::uint16_t port_ = 0;
    std::vector<std::thread> threads_;
};

}  // namespace parley::jail::testing

/// A small real HTTP/1.1 server (Boost.Beast) for the outbound client's tests and benchmark: binds 127.0.0.1
/// on port 0 and answers every request through one handler, with optional delays, keep-alive and counters.
/// Test-only: built into parley_outbound_test_server, never into the `parley` binary.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace parley::outbound::testing {

/// What the handler sees of a request.
struct TestRequest {
    std::string method;
    std::string target;  ///< path and query as sent
    std::string path;
    std::string query;   ///< without '?'
    std::map<std::string, std::string> headers;  ///< lower-case names
    std::string body;
};

/// What the server answers. `delay_ms` waits before answering (without blocking the server's threads);
/// `close` closes the connection after the answer; `chunked` sends the body with chunked transfer encoding
/// (no Content-Length).
struct TestResponse {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::int64_t delay_ms = 0;
    bool close = false;
    bool chunked = false;
};

using TestHandler = std::function<TestResponse(const TestRequest&)>;

/// Thread-safety: the handler runs on the server's threads (possibly concurrently with `threads` > 1) and
/// must be thread-safe; the accessors may be called from any thread. The destructor stops and joins.
class TestServer {
public:
    explicit TestServer(TestHandler handler, unsigned threads = 1);
    ~TestServer();
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    std::uint16_t port() const;
    /// `http://127.0.0.1:PORT` + path.
    std::string url(std::string_view path = "/") const;
    /// Requests answered (or being answered) so far.
    std::size_t requests() const;
    /// TCP connections accepted so far.
    std::size_t connections() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace parley::outbound::testing

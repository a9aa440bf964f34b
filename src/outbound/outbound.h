/// Outbound HTTP: the one asynchronous HTTP/1.1 + HTTPS client every request Parley makes to the outside goes
/// through (scenario action `action_send_request`, Action Jail `fetch()`, channel API calls), with the SSRF
/// guard (guard.h) applied to every connection and every redirect hop.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outbound/guard.h"

namespace parley::core {
class Metrics;
}

namespace parley::outbound {

/// Limits the client enforces on every Request (callers such as action_send_request apply tighter ones).
inline constexpr std::int64_t kMaxTimeoutMs = 10 * 60 * 1000;                  ///< 10 minutes
inline constexpr std::size_t kMaxResponseBytesLimit = 64 * 1024 * 1024;      ///< 64 MiB
inline constexpr std::size_t kMaxResponseHeaderBytes = 64 * 1024;            ///< all header lines of one response
inline constexpr int kMaxRedirects = 5;
inline constexpr int kMaxRetries = 3;
inline constexpr std::size_t kMaxUrlLength = 8 * 1024;
inline constexpr std::size_t kMaxRequestBodyBytes = 16 * 1024 * 1024;        ///< 16 MiB

/// One HTTP request. Defaults are those of action_send_request.
struct Request {
    std::string method = "GET";  ///< an HTTP token; GET HEAD POST PUT PATCH DELETE OPTIONS or any other
    std::string url;             ///< absolute http:// or https:// URL
    /// Appended to the URL's query, each name and value percent-encoded (`a b&c` → `a%20b%26c`), in order.
    std::vector<std::pair<std::string, std::string>> query;
    /// Sent as given (names case-insensitive). `host`, `content-length`, `transfer-encoding`, `connection`,
    /// `upgrade`, `te`, `expect` are refused (the client frames requests itself).
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;          ///< bytes; empty → no body (POST sends an empty body)
    std::string content_type;  ///< sent as Content-Type when non-empty and `headers` has none
    std::int64_t timeout_ms = 10'000;  ///< per attempt, from send() (queue wait counts) to the last byte
    std::size_t max_response_bytes = 1024 * 1024;  ///< the (decoded) body; over it → error too_large
    int max_redirects = kMaxRedirects;             ///< 0 → a 3xx is returned as the response
    /// Extra attempts after a connect failure or a 5xx answer, only for idempotent methods (GET HEAD PUT
    /// DELETE OPTIONS; ignored for others), with a short backoff (100, 200, 400 ms).
    int retries = 0;
};

/// Why a request got no HTTP response.
enum class ErrorCode {
    kTimeout,           ///< "timeout"
    kRefusedByGuard,    ///< "refused_by_guard": the SSRF guard refused the address (message names it)
    kTooLarge,          ///< "too_large": body over max_response_bytes or headers over 64 KiB
    kConnectFailed,     ///< "connect_failed"
    kDnsFailed,         ///< "dns_failed"
    kBadUrl,            ///< "bad_url": malformed, not http/https, or a redirect to such a URL
    kTlsError,          ///< "tls_error": handshake or certificate verification failed
    kBadRequest,        ///< "bad_request": invalid method, header, or limits out of range
    kTooManyRedirects,  ///< "too_many_redirects"
    kNetworkError,      ///< "network_error": the connection broke or the server answered something not HTTP
    kOverloaded,        ///< "overloaded": the queue of waiting requests is full
    kCancelled,         ///< "cancelled": the client shut down before the request finished
};

/// snake_case name of an error code.
std::string_view error_code_name(ErrorCode code);

struct Error {
    ErrorCode code;
    std::string message;
};

/// The outcome of one request: an HTTP response (any status, `error` empty), or an error (status 0).
struct Response {
    int status = 0;
    std::map<std::string, std::string> headers;  ///< lower-case names; repeated headers joined with ", "
    std::string body;
    std::optional<Error> error;
    double total_ms = 0;     ///< from send() to completion, including queueing, redirects and retries
    std::string url;         ///< the URL of the last hop (after redirects)
    std::string remote_ip;   ///< the address the last hop connected to
    int attempts = 0;        ///< 1 + retries made
    int redirects = 0;       ///< redirects followed in the last attempt

    bool ok() const { return !error; }
    /// The header's value ("" when absent); `name` in lower case.
    std::string_view header(std::string_view name) const;
};

using ResponseCallback = std::function<void(Response)>;

struct ClientOptions {
    /// Requests transferring at once; more wait in a FIFO queue.
    std::size_t max_concurrent = 256;
    /// Requests waiting beyond max_concurrent; more are answered `overloaded` at once.
    std::size_t max_queued = 10'000;
    /// Connect phase limit of each hop (also bounded by the request's timeout).
    std::int64_t connect_timeout_ms = 10'000;
    /// Where the SSRF guard reads the allow-list (once per request). Empty → nothing is allow-listed.
    AllowlistSource allowlist;
    std::string user_agent = "Parley/0.1";
    /// Counters `parley_outbound_requests_total{outcome}`, histogram `parley_outbound_request_seconds`,
    /// gauges `parley_outbound_active`, `parley_outbound_queued`. Optional; must outlive the client.
    core::Metrics* metrics = nullptr;
    /// Fake DNS answers in curl's CURLOPT_RESOLVE form `host:port:address` (tests of names that resolve to
    /// loopback). The SSRF guard still checks the address.
    std::vector<std::string> resolve_for_test;
};

/// The asynchronous HTTP client: libcurl's multi interface driven by one thread the client owns
/// (curl_multi_poll, woken by curl_multi_wakeup), so no caller ever blocks on network I/O.
///
/// - Connections, DNS answers and TLS sessions are cached and reused across requests (HTTP/1.1 keep-alive).
/// - At most `max_concurrent` requests transfer at once; the rest wait in a FIFO queue of `max_queued`.
/// - Only http and https; redirects are followed by the client itself (up to Request::max_redirects), each hop
///   checked by the SSRF guard: the URL host against the allow-list's names before connecting, and the
///   address actually connected to (CURLOPT_OPENSOCKETFUNCTION for new connections, CURLOPT_PREREQFUNCTION for
///   reused ones) against the address classes and the allow-list's ranges. Credentials (`authorization`,
///   `cookie`, `proxy-authorization`) are dropped when a redirect leaves the original origin. Proxy
///   environment variables are ignored.
///
/// Thread-safety: send() may be called from any thread, also from inside a callback. Callbacks run on the
/// client's thread, one at a time; they must be quick and must not block (post work elsewhere). A callback
/// is called exactly once per send(): on the client's thread, or inline before send() returns when the client
/// is shut down or the queue is full. Ownership: the client owns its thread and every curl handle; the
/// destructor calls shutdown().
class Client {
public:
    explicit Client(ClientOptions options = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// Starts `request`; `done` receives the response or the error.
    void send(Request request, ResponseCallback done);

    /// Stops the thread: requests queued or in flight complete with error `cancelled`; later send() calls
    /// complete inline with `cancelled`. Idempotent; waits for callbacks already running.
    void shutdown();

    /// Requests transferring now / waiting in the queue (for tests and gauges).
    std::size_t active() const;
    std::size_t queued() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Percent-encodes `text` for a URL query or a form body (RFC 3986 unreserved characters stay).
std::string url_encode(std::string_view text);

/// Whether `method` may be retried safely (GET HEAD PUT DELETE OPTIONS).
bool is_idempotent(std::string_view method);

}  // namespace parley::outbound

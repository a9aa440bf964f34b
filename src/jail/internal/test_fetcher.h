/// Test-only Fetchers: a real HTTP/1.1 client with an SSRF guard (getaddrinfo, refuses loopback, private,
/// link-local, CGNAT, multicast, unspecified and IPv6 ULA/link-local addresses, also after each redirect), and a
/// Fetcher that holds requests until the test answers them. Linked into tests and the benchmark only.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jail/sandbox.h"

namespace parley::jail::testing {

/// Whether `ip` (numeric IPv4/IPv6 text) is an address the guard refuses by default.
bool is_refused_address(const std::string& ip);

/// A real client: each request runs on the fetcher's worker threads (never on the caller's), resolves the host,
/// applies the guard to every resolved address, connects, sends, reads at most max_response_bytes and follows up
/// to 5 redirects (each re-checked). Plain http only. `allow` lists "host:port" exceptions (the test server).
/// Thread-safe; the destructor waits for requests in flight.
class GuardedFetcher final : public Fetcher {
public:
    explicit GuardedFetcher(std::set<std::string> allow = {}, unsigned workers = 4);
    ~GuardedFetcher() override;
    void fetch(FetchRequest request, std::function<void(FetchResponse)> done) override;
    std::size_t requests() const;

private:
    FetchResponse perform(const FetchRequest& request) const;
    void worker();

    std::set<std::string> allow_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::pair<FetchRequest, std::function<void(FetchResponse)>>> queue_;
    bool stopping_ = false;
    std::size_t requests_ = 0;
    std::vector<std::thread> threads_;
};

/// Holds every request until the test calls answer_all() (late answers, runs waiting on fetch). Thread-safe.
class HeldFetcher final : public Fetcher {
public:
    void fetch(FetchRequest request, std::function<void(FetchResponse)> done) override;
    std::size_t held() const;
    /// Calls each held callback with `response` (on the calling thread) and forgets them.
    void answer_all(const FetchResponse& response);

private:
    mutable std::mutex mutex_;
    std::vector<std::function<void(FetchResponse)>> held_;
};

}  // namespace parley::jail::testing

// The client's event loop: one thread owns a CURLM multi handle, a CURLSH share (TLS sessions) and a pool of
// easy handles. send() only appends to `incoming_` and wakes the loop; everything else runs on the loop thread.
//
// One Transfer lives from send() to its callback. It moves between: incoming (filled by send) → pending (FIFO,
// waiting for a slot) → running (an easy handle in the multi; redirects restart the hop in the same slot) →
// retry_wait (sleeping the backoff without a slot) → pending again, or → completed (callback queued).
#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "outbound/outbound.h"

namespace parley::outbound {

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::int64_t kRetryBackoffMs[] = {100, 200, 400};
constexpr std::int64_t kMaxPollMs = 1000;
constexpr std::int64_t kQueueSweepMs = 100;

/// Headers the client sets itself; a caller's value would break request framing or the guard's reasoning.
constexpr std::string_view kRefusedHeaders[] = {"host", "content-length", "transfer-encoding", "connection",
                                                 "upgrade", "te", "expect"};
/// Headers dropped when a redirect leaves the origin of the request's URL.
constexpr std::string_view kCredentialHeaders[] = {"authorization", "cookie", "proxy-authorization"};

double ms_between(SteadyClock::time_point from, SteadyClock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

bool is_token_char(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), is_token_char);
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' || text.back() == '\n')) {
        text.remove_suffix(1);
    }
    return text;
}

/// The parts of a URL the client needs, from curl's own parser (so it agrees with what curl connects to:
/// numeric IPv4 forms such as `0x7f.1` come back normalized as `127.0.0.1`).
struct ParsedUrl {
    std::string url;     ///< normalized, with the query appended
    std::string scheme;  ///< lower case
    std::string host;    ///< `example.com`, `127.0.0.1`, `[::1]`
    std::string origin;  ///< scheme://host:port
};

std::optional<ParsedUrl> parse_url(const std::string& text, std::string_view extra_query, std::string& problem) {
    if (text.size() > kMaxUrlLength) {
        problem = fmt::format("the URL is longer than {} characters", kMaxUrlLength);
        return std::nullopt;
    }
    std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> url(curl_url(), curl_url_cleanup);
    if (!url) throw std::bad_alloc();
    if (CURLUcode rc = curl_url_set(url.get(), CURLUPART_URL, text.c_str(), 0); rc != CURLUE_OK) {
        problem = fmt::format("'{}' is not a valid absolute URL ({})", text.substr(0, 200), curl_url_strerror(rc));
        return std::nullopt;
    }
    auto part = [&](CURLUPart which, unsigned flags = 0) -> std::string {
        char* value = nullptr;
        if (curl_url_get(url.get(), which, &value, flags) != CURLUE_OK || value == nullptr) return {};
        std::string out(value);
        curl_free(value);
        return out;
    };
    ParsedUrl out;
    out.scheme = lower(part(CURLUPART_SCHEME));
    if (out.scheme != "http" && out.scheme != "https") {
        problem = fmt::format("only http and https URLs are allowed, not '{}'", out.scheme);
        return std::nullopt;
    }
    out.host = lower(part(CURLUPART_HOST));
    if (out.host.empty()) {
        problem = "the URL has no host";
        return std::nullopt;
    }
    curl_url_set(url.get(), CURLUPART_FRAGMENT, nullptr, 0);  // never sent; the query goes before it
    out.url = part(CURLUPART_URL);
    // Appended here, not with CURLU_APPENDQUERY, which rewrites the percent-encoding to lower case.
    if (!extra_query.empty()) {
        if (out.url.find('?') == std::string::npos) {
            out.url.push_back('?');
        } else if (out.url.back() != '?' && out.url.back() != '&') {
            out.url.push_back('&');
        }
        out.url += extra_query;
    }
    out.origin = fmt::format("{}://{}:{}", out.scheme, out.host, part(CURLUPART_PORT, CURLU_DEFAULT_PORT));
    return out;
}

bool is_tls_error(CURLcode code) {
    switch (code) {
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_USE_SSL_FAILED:
            return true;
        default:
            return false;
    }
}

void init_curl_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("curl_global_init failed");
    });
}

}  // namespace

std::string_view error_code_name(ErrorCode code) {
    switch (code) {
        case ErrorCode::kTimeout: return "timeout";
        case ErrorCode::kRefusedByGuard: return "refused_by_guard";
        case ErrorCode::kTooLarge: return "too_large";
        case ErrorCode::kConnectFailed: return "connect_failed";
        case ErrorCode::kDnsFailed: return "dns_failed";
        case ErrorCode::kBadUrl: return "bad_url";
        case ErrorCode::kTlsError: return "tls_error";
        case ErrorCode::kBadRequest: return "bad_request";
        case ErrorCode::kTooManyRedirects: return "too_many_redirects";
        case ErrorCode::kNetworkError: return "network_error";
        case ErrorCode::kOverloaded: return "overloaded";
        case ErrorCode::kCancelled: return "cancelled";
    }
    return "network_error";
}

std::string_view Response::header(std::string_view name) const {
    auto it = headers.find(std::string(name));
    return it == headers.end() ? std::string_view() : std::string_view(it->second);
}

std::string url_encode(std::string_view text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (unsigned char c : text) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
    return out;
}

bool is_idempotent(std::string_view method) {
    return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" || method == "OPTIONS";
}

/// One request from send() to its callback. Owned by the loop thread once taken from `incoming_`.
struct Transfer {
    Request request;  // as sent by the caller (method upper-cased); retries start again from it
    ResponseCallback done;
    SteadyClock::time_point sent_at;
    SteadyClock::time_point deadline;  // of the current attempt
    int attempt = 1;
    int max_attempts = 1;
    Allowlist allowlist;  // read once per send(), used by every hop and attempt

    // The current hop.
    ParsedUrl first_url;  // the request's URL with its query
    ParsedUrl url;
    std::string method;
    std::string body;
    std::string content_type;
    std::vector<std::pair<std::string, std::string>> headers;  // names as the caller wrote them
    int redirects = 0;
    bool host_allowed = false;
    CURL* easy = nullptr;
    curl_slist* header_list = nullptr;

    // What the current hop received.
    Response response;
    std::size_t header_bytes = 0;
    bool too_large = false;
    bool prereq_refused = false;
    bool allowed_connect = false;        // an address passed the guard and a socket was opened
    std::vector<std::string> refusals;   // the guard's reasons, one per refused address
    char error_buffer[CURL_ERROR_SIZE] = {};

    ~Transfer() {
        if (header_list != nullptr) curl_slist_free_all(header_list);
    }

    void reset_hop() {
        response.status = 0;
        response.headers.clear();
        response.body.clear();
        response.remote_ip.clear();
        header_bytes = 0;
        too_large = false;
        prereq_refused = false;
        allowed_connect = false;
        refusals.clear();
        error_buffer[0] = '\0';
    }
};

struct Client::Impl {
    explicit Impl(ClientOptions o) : options(std::move(o)) {
        init_curl_once();
        multi = curl_multi_init();
        share = curl_share_init();
        if (multi == nullptr || share == nullptr) throw std::runtime_error("cannot create curl handles");
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(std::max<std::size_t>(options.max_concurrent, 8)));
        for (const auto& entry : options.resolve_for_test) resolve = curl_slist_append(resolve, entry.c_str());
        if (options.metrics != nullptr) {
            auto& m = *options.metrics;
            latency = &m.histogram("parley_outbound_request_seconds",
                                   "Outbound HTTP requests from send() to completion, seconds");
            active_gauge = &m.gauge("parley_outbound_active", "Outbound HTTP requests transferring now");
            queued_gauge = &m.gauge("parley_outbound_queued", "Outbound HTTP requests waiting for a slot");
        }
        thread = std::thread([this] { run(); });
    }

    ~Impl() {
        for (CURL* easy : idle) curl_easy_cleanup(easy);
        curl_multi_cleanup(multi);
        curl_share_cleanup(share);
        if (resolve != nullptr) curl_slist_free_all(resolve);
    }

    // ---- any thread ----

    void send(Request request, ResponseCallback done) {
        auto transfer = std::make_unique<Transfer>();
        transfer->sent_at = SteadyClock::now();
        transfer->request = std::move(request);
        transfer->done = std::move(done);
        std::optional<Error> refused;
        {
            std::lock_guard lock(mutex);
            if (stopping) {
                refused = Error{ErrorCode::kCancelled, "the outbound HTTP client has shut down"};
            } else if (queued_count.load() >= options.max_queued) {
                refused = Error{ErrorCode::kOverloaded,
                                fmt::format("{} outbound requests are already waiting", options.max_queued)};
            } else {
                queued_count.fetch_add(1);
                incoming.push_back(std::move(transfer));
            }
        }
        if (!refused) {
            curl_multi_wakeup(multi);
            return;
        }
        count_outcome(std::string(error_code_name(refused->code)));
        Response response;
        response.error = std::move(refused);
        response.total_ms = ms_between(transfer->sent_at, SteadyClock::now());
        transfer->done(std::move(response));
    }

    void shutdown() {
        {
            std::lock_guard lock(mutex);
            stopping = true;
        }
        curl_multi_wakeup(multi);
        std::lock_guard lock(join_mutex);  // two threads calling shutdown() must not join at once
        if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
    }

    // ---- the loop thread ----

    void run() {
        while (true) {
            std::vector<std::unique_ptr<Transfer>> fresh;
            {
                std::lock_guard lock(mutex);
                if (stopping) break;
                fresh.swap(incoming);
            }
            for (auto& t : fresh) accept(std::move(t));
            const auto now = SteadyClock::now();
            promote_due_retries(now);
            sweep_expired_queue(now);
            start_pending();
            int still_running = 0;
            curl_multi_perform(multi, &still_running);
            drain_finished();
            start_pending();
            update_gauges();
            deliver_completed();
            curl_multi_poll(multi, nullptr, 0, static_cast<int>(poll_timeout_ms()), nullptr);
        }
        cancel_everything();
        deliver_completed();
        update_gauges();
    }

    /// A new request: read the allow-list, validate, and queue it. Invalid requests complete at once.
    void accept(std::unique_ptr<Transfer> t) {
        t->deadline = t->sent_at + std::chrono::milliseconds(std::clamp<std::int64_t>(t->request.timeout_ms, 1, kMaxTimeoutMs));
        std::optional<Error> problem;
        try {
            problem = prepare(*t);
        } catch (const std::exception& e) {
            problem = Error{ErrorCode::kNetworkError, fmt::format("cannot prepare the request: {}", e.what())};
        }
        if (problem) {
            queued_count.fetch_sub(1);
            finish(std::move(t), std::move(problem));
            return;
        }
        pending.push_back(std::move(t));
    }

    /// Validates the request and sets up its first hop; an Error when it cannot be sent.
    std::optional<Error> prepare(Transfer& t) {
        Request& r = t.request;
        for (auto& c : r.method) {
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
        }
        if (!is_token(r.method) || r.method.size() > 32) {
            return Error{ErrorCode::kBadRequest, fmt::format("'{}' is not an HTTP method", r.method.substr(0, 40))};
        }
        if (r.timeout_ms < 1 || r.timeout_ms > kMaxTimeoutMs) {
            return Error{ErrorCode::kBadRequest, fmt::format("timeout_ms must be 1..{}", kMaxTimeoutMs)};
        }
        if (r.max_response_bytes < 1 || r.max_response_bytes > kMaxResponseBytesLimit) {
            return Error{ErrorCode::kBadRequest,
                         fmt::format("max_response_bytes must be 1..{}", kMaxResponseBytesLimit)};
        }
        if (r.max_redirects < 0 || r.max_redirects > kMaxRedirects) {
            return Error{ErrorCode::kBadRequest, fmt::format("max_redirects must be 0..{}", kMaxRedirects)};
        }
        if (r.retries < 0 || r.retries > kMaxRetries) {
            return Error{ErrorCode::kBadRequest, fmt::format("retries must be 0..{}", kMaxRetries)};
        }
        if (r.body.size() > kMaxRequestBodyBytes) {
            return Error{ErrorCode::kBadRequest, fmt::format("the body is larger than {} bytes", kMaxRequestBodyBytes)};
        }
        for (auto& [name, value] : r.headers) {
            if (!is_token(name)) return Error{ErrorCode::kBadRequest, fmt::format("'{}' is not a header name", name)};
            if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
                return Error{ErrorCode::kBadRequest,
                             fmt::format("the value of header '{}' contains a line break or NUL", name)};
            }
            const std::string lowered = lower(name);
            for (auto refused : kRefusedHeaders) {
                if (lowered == refused) {
                    return Error{ErrorCode::kBadRequest, fmt::format("header '{}' is set by the client itself", name)};
                }
            }
        }
        if (r.content_type.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
            return Error{ErrorCode::kBadRequest, "the content type contains a line break or NUL"};
        }
        std::string query;
        for (const auto& [name, value] : r.query) {
            if (!query.empty()) query.push_back('&');
            query += url_encode(name);
            query.push_back('=');
            query += url_encode(value);
        }
        std::string problem;
        auto parsed = parse_url(r.url, query, problem);
        if (!parsed) return Error{ErrorCode::kBadUrl, std::move(problem)};
        t.first_url = std::move(*parsed);
        t.max_attempts = is_idempotent(r.method) ? 1 + r.retries : 1;
        t.allowlist = current_allowlist();
        restart_from_request(t);
        return std::nullopt;
    }

    /// The allow-list now. A source that fails (a settings read error) gives an empty list: the guard fails
    /// closed, refusing non-public addresses, and logs why.
    Allowlist current_allowlist() const {
        if (!options.allowlist) return {};
        try {
            auto value = options.allowlist();
            return value ? Allowlist::parse(*value).allowlist : Allowlist{};
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::warn, "outbound_allowlist_unreadable",
                            fmt::format(R"("error":{})", core::json_quote(e.what())));
            return {};
        }
    }

    /// Resets the hop to the request as the caller sent it (first attempt and every retry).
    static void restart_from_request(Transfer& t) {
        t.url = t.first_url;
        t.method = t.request.method;
        t.body = t.request.body;
        t.content_type = t.request.content_type;
        t.headers = t.request.headers;
        t.redirects = 0;
    }

    void promote_due_retries(SteadyClock::time_point now) {
        while (!retry_wait.empty() && retry_wait.begin()->first <= now) {
            auto t = std::move(retry_wait.begin()->second);
            retry_wait.erase(retry_wait.begin());
            t->deadline = now + std::chrono::milliseconds(t->request.timeout_ms);
            queued_count.fetch_add(1);
            pending.push_front(std::move(t));
        }
    }

    /// Requests whose deadline passed while waiting for a slot time out without being sent.
    void sweep_expired_queue(SteadyClock::time_point now) {
        if (pending.empty() || now < next_sweep) return;
        next_sweep = now + std::chrono::milliseconds(kQueueSweepMs);
        for (auto it = pending.begin(); it != pending.end();) {
            if ((*it)->deadline <= now) {
                auto t = std::move(*it);
                it = pending.erase(it);
                queued_count.fetch_sub(1);
                finish_timeout(std::move(t));
            } else {
                ++it;
            }
        }
    }

    void start_pending() {
        while (running.size() < options.max_concurrent && !pending.empty()) {
            auto t = std::move(pending.front());
            pending.pop_front();
            queued_count.fetch_sub(1);
            start_hop(std::move(t));
        }
    }

    void finish_timeout(std::unique_ptr<Transfer> t) {
        const auto timeout = t->request.timeout_ms;
        finish(std::move(t), Error{ErrorCode::kTimeout, fmt::format("no complete answer within {} ms", timeout)});
    }

    /// Configures an easy handle for the transfer's current hop and adds it to the multi handle.
    void start_hop(std::unique_ptr<Transfer> t) {
        const auto now = SteadyClock::now();
        const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(t->deadline - now).count();
        if (remaining <= 0) return finish_timeout(std::move(t));
        t->reset_hop();

        // The guard, before any DNS or connect: an IP literal host is checked now, a name against the list.
        t->host_allowed = t->allowlist.allows_host(t->url.host);
        if (auto literal = parse_ip_literal(t->url.host)) {
            Verdict verdict = check_address(*literal, t->allowlist, t->host_allowed);
            if (!verdict.allowed) return finish(std::move(t), Error{ErrorCode::kRefusedByGuard, verdict.reason});
        }

        CURL* easy = t->easy;
        if (easy == nullptr) easy = take_easy();
        else curl_easy_reset(easy);
        t->easy = easy;
        configure(*t, remaining);
        if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
            return finish(std::move(t), Error{ErrorCode::kNetworkError, "cannot start the transfer"});
        }
        running.emplace(easy, std::move(t));
    }

    CURL* take_easy() {
        if (!idle.empty()) {
            CURL* easy = idle.back();
            idle.pop_back();
            return easy;
        }
        CURL* easy = curl_easy_init();
        if (easy == nullptr) throw std::bad_alloc();
        return easy;
    }

    /// Returns the transfer's easy handle to the pool, reset so it keeps no pointer into the transfer.
    void release_easy(Transfer& t) {
        if (t.easy == nullptr) return;
        curl_easy_reset(t.easy);
        if (idle.size() < options.max_concurrent) {
            idle.push_back(t.easy);
        } else {
            curl_easy_cleanup(t.easy);
        }
        t.easy = nullptr;
    }

    void configure(Transfer& t, std::int64_t remaining_ms) {
        CURL* e = t.easy;
        curl_easy_setopt(e, CURLOPT_URL, t.url.url.c_str());
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROXY, "");  // ignore http_proxy & co: the guard reasons about direct connects
        curl_easy_setopt(e, CURLOPT_SHARE, share);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error_buffer);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(remaining_ms));
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(std::max<std::int64_t>(1, std::min(remaining_ms, options.connect_timeout_ms))));
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(t.request.max_response_bytes));
        curl_easy_setopt(e, CURLOPT_USERAGENT, options.user_agent.c_str());
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &Impl::on_open_socket);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &t);
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &Impl::on_prereq);
        curl_easy_setopt(e, CURLOPT_PREREQDATA, &t);
        if (resolve != nullptr) curl_easy_setopt(e, CURLOPT_RESOLVE, resolve);

        bool has_content_type = false;
        bool has_accept_encoding = false;
        if (t.header_list != nullptr) {
            curl_slist_free_all(t.header_list);
            t.header_list = nullptr;
        }
        auto append = [&t](const std::string& line) {
            curl_slist* next = curl_slist_append(t.header_list, line.c_str());
            if (next == nullptr) throw std::bad_alloc();
            t.header_list = next;
        };
        for (const auto& [name, value] : t.headers) {
            const std::string lowered = lower(name);
            has_content_type = has_content_type || lowered == "content-type";
            has_accept_encoding = has_accept_encoding || lowered == "accept-encoding";
            // curl's syntax for a header with an empty value is "Name;".
            append(value.empty() ? name + ";" : name + ": " + value);
        }
        if (!has_content_type) append(t.content_type.empty() ? "Content-Type:" : "Content-Type: " + t.content_type);
        append("Expect:");
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.header_list);
        // Decoded bodies count against max_response_bytes, so compression bombs stop at the limit.
        if (!has_accept_encoding) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");

        const bool with_body = !t.body.empty() || t.method == "POST" || t.method == "PUT" || t.method == "PATCH";
        if (t.method == "HEAD") {
            curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        } else if (with_body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t.body.size()));
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.body.data());
            if (t.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t.method.c_str());
        } else {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
            if (t.method != "GET") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t.method.c_str());
        }
    }

    // curl callbacks (loop thread, inside curl_multi_perform).

    static size_t on_body(char* data, size_t size, size_t count, void* user) {
        auto& t = *static_cast<Transfer*>(user);
        const size_t n = size * count;
        if (t.response.body.size() + n > t.request.max_response_bytes) {
            t.too_large = true;
            return 0;  // a short write aborts the transfer with CURLE_WRITE_ERROR
        }
        t.response.body.append(data, n);
        return n;
    }

    static size_t on_header(char* data, size_t size, size_t count, void* user) {
        auto& t = *static_cast<Transfer*>(user);
        const size_t n = size * count;
        t.header_bytes += n;
        if (t.header_bytes > kMaxResponseHeaderBytes) {
            t.too_large = true;
            return 0;
        }
        std::string_view line(data, n);
        if (line.starts_with("HTTP/")) {  // a new status line: an interim 1xx answer's headers do not count
            t.response.headers.clear();
            return n;
        }
        auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return n;
        std::string name = lower(trim(line.substr(0, colon)));
        std::string_view value = trim(line.substr(colon + 1));
        auto [it, inserted] = t.response.headers.try_emplace(std::move(name), value);
        if (!inserted) {
            it->second += ", ";
            it->second += value;
        }
        return n;
    }

    static curl_socket_t on_open_socket(void* user, curlsocktype purpose, struct curl_sockaddr* address) {
        auto& t = *static_cast<Transfer*>(user);
        if (purpose == CURLSOCKTYPE_IPCXN) {
            auto ip = ip_from_sockaddr(&address->addr);
            if (!ip) {
                t.refusals.push_back("the connection is not to an IP address");
                return CURL_SOCKET_BAD;
            }
            Verdict verdict = check_address(*ip, t.allowlist, t.host_allowed);
            if (!verdict.allowed) {
                t.refusals.push_back(std::move(verdict.reason));
                return CURL_SOCKET_BAD;
            }
            t.allowed_connect = true;
        }
        return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    }

    /// Runs before each request is sent, on new and reused connections alike: the second check, which also
    /// covers a kept-alive connection whose address was allowed under an allow-list that has changed since.
    static int on_prereq(void* user, char* primary_ip, char*, int, int) {
        auto& t = *static_cast<Transfer*>(user);
        auto ip = parse_ip_literal(primary_ip == nullptr ? "" : primary_ip);
        Verdict verdict = ip ? check_address(*ip, t.allowlist, t.host_allowed)
                             : Verdict{false, "the connection's address is unknown"};
        if (!verdict.allowed) {
            t.prereq_refused = true;
            t.refusals.push_back(std::move(verdict.reason));
            return CURL_PREREQFUNC_ABORT;
        }
        t.response.remote_ip = primary_ip;
        return CURL_PREREQFUNC_OK;
    }

    // Completion.

    void drain_finished() {
        int left = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL* easy = msg->easy_handle;
            const CURLcode result = msg->data.result;
            auto it = running.find(easy);
            if (it == running.end()) continue;
            auto t = std::move(it->second);
            running.erase(it);
            curl_multi_remove_handle(multi, easy);
            on_hop_done(std::move(t), result);
        }
    }

    void on_hop_done(std::unique_ptr<Transfer> t, CURLcode result) {
        if (result != CURLE_OK) return on_attempt_failed(std::move(t), error_for(*t, result));
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        t->response.status = static_cast<int>(status);
        const bool redirect = status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
        if (redirect && t->request.max_redirects > 0) {
            char* location = nullptr;
            curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &location);
            if (location != nullptr) return follow_redirect(std::move(t), static_cast<int>(status), location);
        }
        if (status >= 500 && t->attempt < t->max_attempts) return schedule_retry(std::move(t));
        finish(std::move(t), std::nullopt);
    }

    void follow_redirect(std::unique_ptr<Transfer> t, int status, const std::string& location) {
        if (t->redirects >= t->request.max_redirects) {
            const int max = t->request.max_redirects;
            return finish(std::move(t), Error{ErrorCode::kTooManyRedirects,
                                              fmt::format("more than {} redirects", max)});
        }
        std::string problem;
        auto next = parse_url(location, {}, problem);
        if (!next) return finish(std::move(t), Error{ErrorCode::kBadUrl, "redirect refused: " + problem});
        // Browsers' rules: 303 becomes GET; 301/302 turn a POST into a GET; 307/308 keep method and body.
        if ((status == 303 && t->method != "HEAD") || ((status == 301 || status == 302) && t->method == "POST")) {
            t->method = "GET";
            t->body.clear();
            t->content_type.clear();
            std::erase_if(t->headers, [](const auto& h) { return lower(h.first) == "content-type"; });
        }
        if (next->origin != t->first_url.origin) {
            std::erase_if(t->headers, [](const auto& h) {
                return std::find(std::begin(kCredentialHeaders), std::end(kCredentialHeaders), lower(h.first)) !=
                       std::end(kCredentialHeaders);
            });
        }
        t->url = std::move(*next);
        ++t->redirects;
        start_hop(std::move(t));
    }

    Error error_for(const Transfer& t, CURLcode result) const {
        const std::string detail = t.error_buffer[0] != '\0' ? t.error_buffer : curl_easy_strerror(result);
        auto join_refusals = [&t] {
            std::string out = t.refusals.front();
            for (std::size_t i = 1; i < t.refusals.size(); ++i) out += "; " + t.refusals[i];
            return out;
        };
        if (t.too_large || result == CURLE_FILESIZE_EXCEEDED) {
            if (t.header_bytes > kMaxResponseHeaderBytes) {
                return {ErrorCode::kTooLarge, fmt::format("the response headers exceed {} bytes", kMaxResponseHeaderBytes)};
            }
            return {ErrorCode::kTooLarge,
                    fmt::format("the response body exceeds {} bytes", t.request.max_response_bytes)};
        }
        if (!t.refusals.empty() && (t.prereq_refused || !t.allowed_connect)) {
            return {ErrorCode::kRefusedByGuard, join_refusals()};
        }
        switch (result) {
            case CURLE_OPERATION_TIMEDOUT:
                return {ErrorCode::kTimeout, fmt::format("no complete answer within {} ms", t.request.timeout_ms)};
            case CURLE_COULDNT_RESOLVE_HOST:
                return {ErrorCode::kDnsFailed, fmt::format("cannot resolve '{}': {}", t.url.host, detail)};
            case CURLE_COULDNT_CONNECT:
                return {ErrorCode::kConnectFailed, detail};
            case CURLE_URL_MALFORMAT:
            case CURLE_UNSUPPORTED_PROTOCOL:
                return {ErrorCode::kBadUrl, detail};
            default:
                break;
        }
        if (is_tls_error(result)) return {ErrorCode::kTlsError, detail};
        return {ErrorCode::kNetworkError, detail};
    }

    void on_attempt_failed(std::unique_ptr<Transfer> t, Error error) {
        if (error.code == ErrorCode::kConnectFailed && t->attempt < t->max_attempts) return schedule_retry(std::move(t));
        finish(std::move(t), std::move(error));
    }

    void schedule_retry(std::unique_ptr<Transfer> t) {
        release_easy(*t);
        const auto delay = kRetryBackoffMs[std::min<std::size_t>(static_cast<std::size_t>(t->attempt - 1), 2)];
        ++t->attempt;
        restart_from_request(*t);
        retry_wait.emplace(SteadyClock::now() + std::chrono::milliseconds(delay), std::move(t));
    }

    /// Completes a transfer: the callback is queued and runs after the loop's bookkeeping.
    void finish(std::unique_ptr<Transfer> t, std::optional<Error> error) {
        release_easy(*t);
        Response response = std::move(t->response);
        response.total_ms = ms_between(t->sent_at, SteadyClock::now());
        response.url = t->url.url.empty() ? t->request.url : t->url.url;
        response.attempts = t->attempt;
        response.redirects = t->redirects;
        if (error) {
            response.status = 0;
            response.headers.clear();
            response.body.clear();
            response.error = std::move(error);
        }
        if (latency != nullptr) latency->observe(response.total_ms / 1000.0);
        count_outcome(response.error ? std::string(error_code_name(response.error->code))
                                     : fmt::format("{}xx", response.status / 100));
        completed.emplace_back(std::move(t->done), std::move(response));
    }

    void deliver_completed() {
        auto batch = std::move(completed);
        completed.clear();
        for (auto& [done, response] : batch) {
            try {
                done(std::move(response));
            } catch (const std::exception& e) {
                core::log_event(spdlog::level::err, "outbound_callback_failed",
                                fmt::format(R"("error":{})", core::json_quote(e.what())));
            } catch (...) {
                core::log_event(spdlog::level::err, "outbound_callback_failed");
            }
        }
    }

    void cancel_everything() {
        const Error cancelled{ErrorCode::kCancelled, "the outbound HTTP client shut down before the request finished"};
        for (auto& [easy, t] : running) {
            curl_multi_remove_handle(multi, easy);
            finish(std::move(t), cancelled);
        }
        running.clear();
        for (auto& t : pending) finish(std::move(t), cancelled);
        pending.clear();
        for (auto& [due, t] : retry_wait) finish(std::move(t), cancelled);
        retry_wait.clear();
        std::vector<std::unique_ptr<Transfer>> rest;
        {
            std::lock_guard lock(mutex);
            rest.swap(incoming);
        }
        for (auto& t : rest) finish(std::move(t), cancelled);
        queued_count.store(0);
    }

    std::int64_t poll_timeout_ms() {
        long curl_ms = -1;
        curl_multi_timeout(multi, &curl_ms);
        std::int64_t timeout = curl_ms < 0 ? kMaxPollMs : std::min<std::int64_t>(curl_ms, kMaxPollMs);
        const auto now = SteadyClock::now();
        auto until = [&now](SteadyClock::time_point at) {
            return std::max<std::int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(at - now).count());
        };
        if (!retry_wait.empty()) timeout = std::min(timeout, until(retry_wait.begin()->first));
        if (!pending.empty()) timeout = std::min(timeout, std::max<std::int64_t>(until(next_sweep), 1));
        return timeout;
    }

    void count_outcome(const std::string& outcome) {
        if (options.metrics == nullptr) return;
        options.metrics
            ->counter("parley_outbound_requests_total", "Outbound HTTP requests by outcome (status class or error)",
                      fmt::format("outcome=\"{}\"", outcome))
            .fetch_add(1, std::memory_order_relaxed);
    }

    void update_gauges() {
        running_count.store(running.size());
        if (active_gauge != nullptr) active_gauge->store(static_cast<std::int64_t>(running.size()));
        if (queued_gauge != nullptr) queued_gauge->store(static_cast<std::int64_t>(queued_count.load()));
    }

    ClientOptions options;
    CURLM* multi = nullptr;
    CURLSH* share = nullptr;
    curl_slist* resolve = nullptr;
    core::Histogram* latency = nullptr;
    std::atomic<std::int64_t>* active_gauge = nullptr;
    std::atomic<std::int64_t>* queued_gauge = nullptr;

    std::mutex join_mutex;
    std::mutex mutex;
    std::vector<std::unique_ptr<Transfer>> incoming;  // guarded by mutex
    bool stopping = false;                             // guarded by mutex
    std::atomic<std::size_t> queued_count{0};          // incoming + pending
    std::atomic<std::size_t> running_count{0};

    // Loop thread only.
    std::deque<std::unique_ptr<Transfer>> pending;
    std::unordered_map<CURL*, std::unique_ptr<Transfer>> running;
    std::multimap<SteadyClock::time_point, std::unique_ptr<Transfer>> retry_wait;
    std::vector<CURL*> idle;
    std::vector<std::pair<ResponseCallback, Response>> completed;
    SteadyClock::time_point next_sweep{};

    std::thread thread;  // started by the constructor's body, once every member is ready
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Client::~Client() { shutdown(); }

void Client::send(Request request, ResponseCallback done) { impl_->send(std::move(request), std::move(done)); }

void Client::shutdown() { impl_->shutdown(); }

std::size_t Client::active() const { return impl_->running_count.load(); }

std::size_t Client::queued() const { return impl_->queued_count.load(); }

}  // namespace parley::outbound

// The client end to end against a real HTTP server on 127.0.0.1 (port 0). Loopback is refused by default, so
// every test that reaches the server allow-lists it through a fake InstanceSettings — which exercises the
// allow-list itself.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "auth/settings.h"
#include "core/metrics.h"
#include "outbound/outbound.h"
#include "outbound/test_server.h"

namespace parley::outbound {
namespace {

namespace json = boost::json;
using testing::TestRequest;
using testing::TestResponse;
using testing::TestServer;
using namespace std::chrono_literals;

/// A test double of the settings reader: an in-memory map. Thread-safe.
class FakeSettings final : public auth::InstanceSettings {
public:
    std::optional<json::value> get(std::string_view key) const override {
        std::lock_guard lock(mutex_);
        auto it = values_.find(std::string(key));
        if (it == values_.end()) return std::nullopt;
        return it->second;
    }
    void set(const std::string& key, json::value value) {
        std::lock_guard lock(mutex_);
        values_[key] = std::move(value);
    }
    void set_allowlist(std::string_view json_text) { set("outbound_allowlist", json::parse(json_text)); }

private:
    mutable std::mutex mutex_;
    std::map<std::string, json::value> values_;
};

/// Waits for one callback.
Response fetch(Client& client, Request request) {
    std::promise<Response> promise;
    auto future = promise.get_future();
    client.send(std::move(request), [&promise](Response r) { promise.set_value(std::move(r)); });
    if (future.wait_for(30s) != std::future_status::ready) {
        ADD_FAILURE() << "no callback within 30 s";
        return {};
    }
    return future.get();
}

Request get(std::string url) {
    Request r;
    r.url = std::move(url);
    return r;
}

std::string code_of(const Response& r) { return r.error ? std::string(error_code_name(r.error->code)) : "ok"; }

bool mentions(const Response& r, std::string_view text) {
    return r.error && r.error->message.find(text) != std::string::npos;
}

class ClientTest : public ::testing::Test {
protected:
    ClientTest() {
        server_ = std::make_unique<TestServer>([this](const TestRequest& r) { return handle(r); }, 2);
        settings_.set_allowlist(R"(["127.0.0.1"])");
        client_ = make_client();
    }

    std::unique_ptr<Client> make_client(ClientOptions options = {}) {
        options.allowlist = allowlist_from_settings(settings_);
        return std::make_unique<Client>(std::move(options));
    }

    std::string url(std::string_view path) const { return server_->url(path); }
    std::string port() const { return std::to_string(server_->port()); }

    void redirect(const std::string& path, int status, std::string location) {
        std::lock_guard lock(mutex_);
        redirects_[path] = {status, std::move(location)};
    }

    TestResponse handle(const TestRequest& r) {
        if (r.path == "/echo") {
            json::object headers;
            for (const auto& [name, value] : r.headers) headers[name] = value;
            json::object body{{"method", r.method}, {"target", r.target}, {"query", r.query}, {"body", r.body},
                              {"headers", headers}};
            return {200, {{"Content-Type", "application/json"}}, json::serialize(body)};
        }
        if (r.path.starts_with("/status/")) return {std::stoi(r.path.substr(8)), {}, "status"};
        if (r.path.starts_with("/delay/")) return {200, {}, "slow", std::stoll(r.path.substr(7))};
        if (r.path == "/flaky") {
            return ++flaky_hits_ <= flaky_failures_.load() ? TestResponse{503, {}, "busy"} : TestResponse{200, {}, "ok"};
        }
        if (r.path.starts_with("/big/")) return {200, {}, std::string(std::stoul(r.path.substr(5)), 'x')};
        if (r.path.starts_with("/bigchunked/")) {
            TestResponse out{200, {}, std::string(std::stoul(r.path.substr(12)), 'y')};
            out.chunked = true;
            return out;
        }
        if (r.path == "/bigheaders") {  // 80 KB of header lines in total
            TestResponse out{200, {}, "ok"};
            for (int i = 0; i < 10; ++i) out.headers.emplace_back("X-Huge-" + std::to_string(i), std::string(8000, 'h'));
            return out;
        }
        if (r.path == "/headers") {
            return {200, {{"X-Mixed-Case", "Value"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}}, "ok"};
        }
        std::lock_guard lock(mutex_);
        if (auto it = redirects_.find(r.path); it != redirects_.end()) {
            return {it->second.first, {{"Location", it->second.second}}, ""};
        }
        return {404, {}, "not found"};
    }

    FakeSettings settings_;
    std::unique_ptr<TestServer> server_;
    std::unique_ptr<Client> client_;
    std::atomic<int> flaky_hits_{0};
    std::atomic<int> flaky_failures_{0};
    std::mutex mutex_;
    std::map<std::string, std::pair<int, std::string>> redirects_;  // guarded by mutex_
};

json::object echo(const Response& r) {
    EXPECT_EQ(r.status, 200) << code_of(r) << (r.error ? r.error->message : "");
    if (r.status != 200) return {};
    return json::parse(r.body).as_object();
}

TEST_F(ClientTest, GetAppendsTheQueryPercentEncodedAndInOrder) {
    Request r = get(url("/echo?pre=1"));
    r.query = {{"q", "a b&c=d"}, {"x", "1"}, {"q", "ü/?#"}};
    auto body = echo(fetch(*client_, r));
    EXPECT_EQ(body["method"], "GET");
    EXPECT_EQ(body["target"], "/echo?pre=1&q=a%20b%26c%3Dd&x=1&q=%C3%BC%2F%3F%23");

    Request fragment = get(url("/echo#section"));
    fragment.query = {{"x", "1"}};
    EXPECT_EQ(echo(fetch(*client_, fragment))["target"], "/echo?x=1");
    EXPECT_EQ(echo(fetch(*client_, get(url("/echo?kept=%3D%c3"))))["target"], "/echo?kept=%3D%c3");
}

TEST_F(ClientTest, SendsBodiesWithTheirContentTypeForEveryMethod) {
    Request post = get(url("/echo"));
    post.method = "post";
    post.body = R"({"a":1})";
    post.content_type = "application/json";
    auto body = echo(fetch(*client_, post));
    EXPECT_EQ(body["method"], "POST");
    EXPECT_EQ(body["body"], R"({"a":1})");
    EXPECT_EQ(body["headers"].at("content-type"), "application/json");
    EXPECT_FALSE(body["headers"].as_object().contains("expect"));

    Request form = post;
    form.body = "a=1&b=x%20y";
    form.content_type = "application/x-www-form-urlencoded";
    body = echo(fetch(*client_, form));
    EXPECT_EQ(body["body"], "a=1&b=x%20y");
    EXPECT_EQ(body["headers"].at("content-type"), "application/x-www-form-urlencoded");

    Request raw = post;
    raw.body = "plain words";
    raw.content_type.clear();
    body = echo(fetch(*client_, raw));
    EXPECT_EQ(body["body"], "plain words");
    EXPECT_FALSE(body["headers"].as_object().contains("content-type"));  // curl's form default is removed

    for (const char* method : {"PUT", "PATCH", "DELETE", "OPTIONS"}) {
        Request m = post;
        m.method = method;
        body = echo(fetch(*client_, m));
        EXPECT_EQ(body["method"], method);
        EXPECT_EQ(body["body"], R"({"a":1})");
    }
    Request empty_put = get(url("/echo"));
    empty_put.method = "PUT";
    body = echo(fetch(*client_, empty_put));
    EXPECT_EQ(body["method"], "PUT");
    EXPECT_EQ(body["headers"].at("content-length"), "0");

    Request del = get(url("/echo"));
    del.method = "DELETE";
    EXPECT_EQ(echo(fetch(*client_, del))["method"], "DELETE");

    Request head = get(url("/echo"));
    head.method = "HEAD";
    Response h = fetch(*client_, head);
    EXPECT_EQ(h.status, 200);
    EXPECT_TRUE(h.body.empty());
}

TEST_F(ClientTest, SendsHeadersAndLowerCasesResponseHeaderNames) {
    Request r = get(url("/echo"));
    r.headers = {{"X-Token", "abc"}, {"Accept", "application/json"}, {"X-Empty", ""}};
    auto body = echo(fetch(*client_, r));
    const auto& headers = body["headers"].as_object();
    EXPECT_EQ(headers.at("x-token"), "abc");
    EXPECT_EQ(headers.at("accept"), "application/json");
    EXPECT_EQ(headers.at("x-empty"), "");
    EXPECT_EQ(headers.at("user-agent"), "Parley/0.1");

    Request ua = get(url("/echo"));
    ua.headers = {{"User-Agent", "custom/1"}};
    EXPECT_EQ(echo(fetch(*client_, ua))["headers"].at("user-agent"), "custom/1");

    Response h = fetch(*client_, get(url("/headers")));
    EXPECT_EQ(h.header("x-mixed-case"), "Value");
    EXPECT_EQ(h.header("set-cookie"), "a=1, b=2");
    EXPECT_EQ(h.header("content-length"), "2");
    EXPECT_EQ(h.remote_ip, "127.0.0.1");
    EXPECT_EQ(h.attempts, 1);
}

TEST_F(ClientTest, RefusesBadRequestsWithoutSendingThem) {
    struct Case {
        Request request;
        const char* code;
    };
    auto with = [this](auto change) {
        Request r = get(url("/echo"));
        change(r);
        return r;
    };
    const Case cases[] = {
        {get(""), "bad_url"},
        {get("not a url"), "bad_url"},
        {get("/relative/path"), "bad_url"},
        {get("ftp://127.0.0.1/file"), "bad_url"},
        {get("file:///etc/passwd"), "bad_url"},
        {get("gopher://127.0.0.1:70/"), "bad_url"},
        {get("http://"), "bad_url"},
        {get("http://127.0.0.1:" + port() + "/" + std::string(kMaxUrlLength, 'a')), "bad_url"},
        {with([](Request& r) { r.method = "GE T"; }), "bad_request"},
        {with([](Request& r) { r.method = ""; }), "bad_request"},
        {with([](Request& r) { r.headers = {{"X-A", "b\r\nX-Evil: 1"}}; }), "bad_request"},
        {with([](Request& r) { r.headers = {{"X A", "b"}}; }), "bad_request"},
        {with([](Request& r) { r.headers = {{"Content-Length", "5"}}; }), "bad_request"},
        {with([](Request& r) { r.headers = {{"Host", "other"}}; }), "bad_request"},
        {with([](Request& r) { r.headers = {{"transfer-encoding", "chunked"}}; }), "bad_request"},
        {with([](Request& r) { r.content_type = "a\nb"; }), "bad_request"},
        {with([](Request& r) { r.timeout_ms = 0; }), "bad_request"},
        {with([](Request& r) { r.timeout_ms = kMaxTimeoutMs + 1; }), "bad_request"},
        {with([](Request& r) { r.max_response_bytes = 0; }), "bad_request"},
        {with([](Request& r) { r.max_response_bytes = kMaxResponseBytesLimit + 1; }), "bad_request"},
        {with([](Request& r) { r.max_redirects = 6; }), "bad_request"},
        {with([](Request& r) { r.retries = 4; }), "bad_request"},
        {with([](Request& r) { r.retries = -1; }), "bad_request"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.request.url.substr(0, 60) + " " + c.request.method);
        Response r = fetch(*client_, c.request);
        EXPECT_EQ(code_of(r), c.code);
        EXPECT_EQ(r.status, 0);
    }
    EXPECT_EQ(server_->requests(), 0u);
}

TEST_F(ClientTest, TimesOutSlowAnswers) {
    Request r = get(url("/delay/3000"));
    r.timeout_ms = 200;
    Response slow = fetch(*client_, r);
    EXPECT_EQ(code_of(slow), "timeout");
    EXPECT_TRUE(mentions(slow, "200 ms"));
    EXPECT_LT(slow.total_ms, 2500);
}

TEST_F(ClientTest, TimeWaitingInTheQueueCountsTowardTheTimeout) {
    ClientOptions options;
    options.max_concurrent = 1;
    auto client = make_client(options);
    std::promise<Response> first;
    Request slow = get(url("/delay/1500"));
    client->send(slow, [&first](Response r) { first.set_value(std::move(r)); });
    Request quick = get(url("/echo"));
    quick.timeout_ms = 200;
    Response queued = fetch(*client, quick);
    EXPECT_EQ(code_of(queued), "timeout");
    EXPECT_LT(queued.total_ms, 1400);  // answered from the queue, before the slot freed
    EXPECT_EQ(first.get_future().get().status, 200);
    EXPECT_EQ(server_->requests(), 1u);
}

TEST_F(ClientTest, RetriesIdempotentRequestsOn5xxWithBackoff) {
    flaky_failures_ = 2;
    Request r = get(url("/flaky"));
    r.retries = 3;
    Response ok = fetch(*client_, r);
    EXPECT_EQ(ok.status, 200);
    EXPECT_EQ(ok.attempts, 3);
    EXPECT_EQ(flaky_hits_.load(), 3);
    EXPECT_GE(ok.total_ms, 250);  // 100 + 200 ms of backoff

    flaky_hits_ = 0;
    flaky_failures_ = 10;
    r.retries = 1;
    Response exhausted = fetch(*client_, r);
    EXPECT_EQ(exhausted.status, 503);
    EXPECT_EQ(exhausted.attempts, 2);
    EXPECT_EQ(flaky_hits_.load(), 2);

    flaky_hits_ = 0;
    Request post = r;
    post.method = "POST";
    post.retries = 3;
    Response once = fetch(*client_, post);
    EXPECT_EQ(once.status, 503);
    EXPECT_EQ(once.attempts, 1);
    EXPECT_EQ(flaky_hits_.load(), 1);

    flaky_hits_ = 0;
    Response not_found = fetch(*client_, [&] {
        Request g = get(url("/status/404"));
        g.retries = 3;
        return g;
    }());
    EXPECT_EQ(not_found.status, 404);
    EXPECT_EQ(not_found.attempts, 1);
}

TEST_F(ClientTest, RetriesConnectFailures) {
    std::string closed;
    {
        TestServer gone([](const TestRequest&) { return TestResponse{}; });
        closed = gone.url("/");
    }
    Request r = get(closed);
    r.retries = 2;
    Response failed = fetch(*client_, r);
    EXPECT_EQ(code_of(failed), "connect_failed");
    EXPECT_EQ(failed.attempts, 3);
    EXPECT_GE(failed.total_ms, 250);
}

TEST_F(ClientTest, FollowsRedirectsWithBrowserMethodRules) {
    redirect("/r302", 302, "/echo");
    Response followed = fetch(*client_, get(url("/r302")));
    EXPECT_EQ(followed.status, 200);
    EXPECT_EQ(followed.redirects, 1);
    EXPECT_EQ(followed.url, url("/echo"));

    Request post = get(url("/r303"));
    post.method = "POST";
    post.body = "payload";
    post.content_type = "text/plain";
    redirect("/r303", 303, url("/echo"));
    auto body = echo(fetch(*client_, post));
    EXPECT_EQ(body["method"], "GET");
    EXPECT_EQ(body["body"], "");
    EXPECT_FALSE(body["headers"].as_object().contains("content-type"));

    redirect("/r307", 307, "/echo?kept=1");
    post.url = url("/r307");
    body = echo(fetch(*client_, post));
    EXPECT_EQ(body["method"], "POST");
    EXPECT_EQ(body["body"], "payload");
    EXPECT_EQ(body["query"], "kept=1");

    Request no_follow = get(url("/r302"));
    no_follow.max_redirects = 0;
    Response raw = fetch(*client_, no_follow);
    EXPECT_EQ(raw.status, 302);
    EXPECT_EQ(raw.header("location"), "/echo");
}

TEST_F(ClientTest, StopsRedirectLoopsAndOddTargets) {
    redirect("/loop", 302, "/loop");
    Response loop = fetch(*client_, get(url("/loop")));
    EXPECT_EQ(code_of(loop), "too_many_redirects");
    EXPECT_EQ(server_->requests(), 6u);  // the request and 5 redirects

    redirect("/to-ftp", 302, "ftp://127.0.0.1/x");
    EXPECT_EQ(code_of(fetch(*client_, get(url("/to-ftp")))), "bad_url");
    redirect("/to-file", 301, "file:///etc/passwd");
    EXPECT_EQ(code_of(fetch(*client_, get(url("/to-file")))), "bad_url");
}

TEST_F(ClientTest, RefusesRedirectsToForbiddenAddresses) {
    struct Case {
        std::string location;
        const char* named;
    };
    const Case cases[] = {
        {"http://127.0.0.2:" + port() + "/echo", "127.0.0.2"},
        {"http://2130706434:" + port() + "/echo", "127.0.0.2"},
        {"http://169.254.169.254/latest/meta-data/", "169.254.169.254"},
        {"http://[::1]:" + port() + "/echo", "::1"},
        {"http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1"},
        {"http://192.168.1.1/admin", "192.168.1.1"},
        {"http://100.64.0.1/", "100.64.0.1"},
        {"http://0.0.0.0:" + port() + "/", "0.0.0.0"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.location);
        redirect("/bounce", 302, c.location);
        Response r = fetch(*client_, get(url("/bounce")));
        EXPECT_EQ(code_of(r), "refused_by_guard");
        EXPECT_TRUE(mentions(r, c.named)) << (r.error ? r.error->message : "");
    }
    EXPECT_EQ(server_->requests(), std::size(cases));  // only the first hops reached the server

    // Another notation of an allow-listed address is the same address.
    redirect("/bounce", 302, "http://0x7f.1:" + port() + "/echo");
    EXPECT_EQ(fetch(*client_, get(url("/bounce"))).status, 200);
}

TEST_F(ClientTest, HostNameEntriesCoverOnlyTheirHostNotRedirectTargets) {
    settings_.set_allowlist(R"(["localhost"])");
    redirect("/to-ip", 302, url("/echo"));
    Response by_name = fetch(*client_, get("http://localhost:" + port() + "/echo"));
    EXPECT_EQ(by_name.status, 200);
    Response hop = fetch(*client_, get("http://localhost:" + port() + "/to-ip"));
    EXPECT_EQ(code_of(hop), "refused_by_guard");
    EXPECT_TRUE(mentions(hop, "127.0.0.1"));
}

TEST_F(ClientTest, DropsCredentialsWhenARedirectLeavesTheOrigin) {
    TestServer other([](const TestRequest& r) {
        json::object headers;
        for (const auto& [name, value] : r.headers) headers[name] = value;
        return TestResponse{200, {}, json::serialize(headers)};
    });
    redirect("/away", 302, other.url("/"));
    redirect("/home", 302, "/echo");
    Request r = get(url("/away"));
    r.headers = {{"Authorization", "Bearer secret"}, {"Cookie", "s=1"}, {"X-Keep", "yes"}};
    Response away = fetch(*client_, r);
    ASSERT_EQ(away.status, 200);
    auto seen = json::parse(away.body).as_object();
    EXPECT_FALSE(seen.contains("authorization"));
    EXPECT_FALSE(seen.contains("cookie"));
    EXPECT_EQ(seen["x-keep"], "yes");

    r.url = url("/home");
    auto same = echo(fetch(*client_, r));
    EXPECT_EQ(same["headers"].at("authorization"), "Bearer secret");
}

TEST_F(ClientTest, RefusesNamesThatResolveToLoopback) {
    settings_.set_allowlist("[]");
    Response local = fetch(*client_, get("http://localhost:" + port() + "/echo"));
    EXPECT_EQ(code_of(local), "refused_by_guard");
    EXPECT_TRUE(mentions(local, "127.0.0.1") || mentions(local, "::1")) << local.error->message;

    ClientOptions options;
    options.resolve_for_test = {"evil.test:" + port() + ":127.0.0.1", "meta.test:80:169.254.169.254"};
    auto client = make_client(options);
    Response evil = fetch(*client, get("http://evil.test:" + port() + "/echo"));
    EXPECT_EQ(code_of(evil), "refused_by_guard");
    EXPECT_TRUE(mentions(evil, "127.0.0.1 is a loopback address"));
    Response meta = fetch(*client, get("http://meta.test/latest/meta-data/"));
    EXPECT_EQ(code_of(meta), "refused_by_guard");
    EXPECT_TRUE(mentions(meta, "169.254.169.254 is a link-local address"));
    EXPECT_EQ(server_->requests(), 0u);

    for (const char* list : {R"(["evil.test"])", R"(["*.test"])", R"(["127.0.0.0/8"])", R"(["EVIL.test."])"}) {
        SCOPED_TRACE(list);
        settings_.set_allowlist(list);
        EXPECT_EQ(fetch(*client, get("http://evil.test:" + port() + "/echo")).status, 200);
    }
    settings_.set_allowlist(R"(["other.test", "10.0.0.0/8"])");
    EXPECT_EQ(code_of(fetch(*client, get("http://evil.test:" + port() + "/echo"))), "refused_by_guard");
}

TEST_F(ClientTest, RefusesEveryNotationOfLoopbackWithoutConnecting) {
    settings_.set_allowlist("[]");
    for (const std::string host : {"127.0.0.1", "2130706433", "0x7f.1", "0x7f000001", "0177.0.0.1", "127.1",
                                   "017700000001", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::1]", "0",
                                   "[::]", "[::127.0.0.1]", "[64:ff9b::7f00:1]"}) {
        SCOPED_TRACE(host);
        Response r = fetch(*client_, get("http://" + host + ":" + port() + "/echo"));
        EXPECT_EQ(code_of(r), "refused_by_guard");
    }
    EXPECT_EQ(server_->requests(), 0u);
    EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(ClientTest, RechecksAKeptAliveConnectionWhenTheAllowListChanges) {
    ClientOptions options;
    options.resolve_for_test = {"api.test:" + port() + ":127.0.0.1"};
    auto client = make_client(options);
    settings_.set_allowlist(R"(["api.test"])");
    EXPECT_EQ(fetch(*client, get("http://api.test:" + port() + "/echo")).status, 200);
    settings_.set_allowlist("[]");
    Response refused = fetch(*client, get("http://api.test:" + port() + "/echo"));
    EXPECT_EQ(code_of(refused), "refused_by_guard");
    EXPECT_TRUE(mentions(refused, "127.0.0.1"));
    EXPECT_EQ(server_->requests(), 1u);
    EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(ClientTest, EnforcesTheResponseSizeLimit) {
    Request r = get(url("/big/1000"));
    r.max_response_bytes = 1000;
    EXPECT_EQ(fetch(*client_, r).body.size(), 1000u);
    r.url = url("/big/1001");
    Response declared = fetch(*client_, r);  // Content-Length over the limit
    EXPECT_EQ(code_of(declared), "too_large");
    EXPECT_TRUE(mentions(declared, "1000 bytes"));
    EXPECT_TRUE(declared.body.empty());
    r.url = url("/bigchunked/5000");  // no Content-Length: stopped while streaming
    EXPECT_EQ(code_of(fetch(*client_, r)), "too_large");
    r.url = url("/bigchunked/1000");
    EXPECT_EQ(fetch(*client_, r).body, std::string(1000, 'y'));
    Response headers = fetch(*client_, get(url("/bigheaders")));
    EXPECT_EQ(code_of(headers), "too_large") << headers.error->message;
    EXPECT_TRUE(mentions(headers, "headers"));
}

TEST_F(ClientTest, FailsClearlyOnUnresolvableNames) {
    Request r = get("http://parley-outbound-test.invalid/");
    r.timeout_ms = 5000;
    Response failed = fetch(*client_, r);
    EXPECT_EQ(code_of(failed), "dns_failed");
    EXPECT_TRUE(mentions(failed, "parley-outbound-test.invalid"));
}

TEST_F(ClientTest, ReportsTlsFailures) {
    Request r = get("https://127.0.0.1:" + port() + "/echo");  // the server speaks plain HTTP
    Response failed = fetch(*client_, r);
    EXPECT_EQ(code_of(failed), "tls_error");
}

TEST_F(ClientTest, FailsClosedWhenTheAllowListCannotBeRead) {
    ClientOptions options;
    options.allowlist = []() -> std::optional<json::value> { throw std::runtime_error("database is locked"); };
    Client client(options);
    EXPECT_EQ(code_of(fetch(client, get(url("/echo")))), "refused_by_guard");
    EXPECT_EQ(server_->requests(), 0u);
}

TEST_F(ClientTest, Serves500ConcurrentRequestsOverReusedConnections) {
    ClientOptions options;
    options.max_concurrent = 64;
    auto client = make_client(options);
    constexpr int kRequests = 500;
    std::mutex mutex;
    std::condition_variable cv;
    int done = 0;
    std::map<int, int> statuses;
    std::atomic<int> mismatched{0};
    for (int i = 0; i < kRequests; ++i) {
        Request r = get(url("/echo"));
        r.query = {{"i", std::to_string(i)}};
        client->send(r, [&, i](Response response) {
            if (response.status == 200 && json::parse(response.body).at("query") != json::value("i=" + std::to_string(i))) {
                ++mismatched;
            }
            std::lock_guard lock(mutex);
            ++statuses[response.status];
            if (++done == kRequests) cv.notify_one();
        });
    }
    std::unique_lock lock(mutex);
    ASSERT_TRUE(cv.wait_for(lock, 60s, [&] { return done == kRequests; }));
    EXPECT_EQ(statuses[200], kRequests);
    EXPECT_EQ(mismatched.load(), 0);
    EXPECT_EQ(server_->requests(), static_cast<std::size_t>(kRequests));
    EXPECT_LE(server_->connections(), 64u + 8u);
}

TEST_F(ClientTest, ShutdownCancelsRequestsInFlightAndQueued) {
    ClientOptions options;
    options.max_concurrent = 10;
    auto client = make_client(options);
    constexpr int kRequests = 25;
    std::mutex mutex;
    std::vector<std::string> codes;
    for (int i = 0; i < kRequests; ++i) {
        client->send(get(url("/delay/20000")), [&](Response r) {
            std::lock_guard lock(mutex);
            codes.push_back(code_of(r));
        });
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (client->active() < 10 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(client->active(), 10u);
    EXPECT_EQ(client->queued(), 15u);
    const auto started = std::chrono::steady_clock::now();
    client->shutdown();
    EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
    {
        std::lock_guard lock(mutex);
        ASSERT_EQ(codes.size(), static_cast<std::size_t>(kRequests));
        for (const auto& code : codes) EXPECT_EQ(code, "cancelled");
    }
    bool inline_answer = false;
    client->send(get(url("/echo")), [&](Response r) { inline_answer = code_of(r) == "cancelled"; });
    EXPECT_TRUE(inline_answer);
    client->shutdown();  // idempotent
}

TEST_F(ClientTest, AnswersOverloadedWhenTheQueueIsFull) {
    ClientOptions options;
    options.max_concurrent = 1;
    options.max_queued = 2;
    auto client = make_client(options);
    std::atomic<int> answered{0};
    client->send(get(url("/delay/300")), [&](Response) { ++answered; });
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (client->active() < 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    client->send(get(url("/echo")), [&](Response) { ++answered; });
    client->send(get(url("/echo")), [&](Response) { ++answered; });
    std::string third;
    client->send(get(url("/echo")), [&](Response r) { third = code_of(r); });
    EXPECT_EQ(third, "overloaded");
    client->shutdown();
    EXPECT_EQ(answered.load(), 3);
}

TEST_F(ClientTest, CallbacksMaySendAgain) {
    std::promise<int> chain_end;
    std::function<void(int)> step = [&](int n) {
        client_->send(get(url("/echo")), [&, n](Response r) {
            if (n == 3 || r.status != 200) {
                chain_end.set_value(n);
            } else {
                step(n + 1);
            }
        });
    };
    step(1);
    auto future = chain_end.get_future();
    ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(future.get(), 3);
}

TEST_F(ClientTest, CountsOutcomesInMetrics) {
    core::Metrics metrics;
    ClientOptions options;
    options.metrics = &metrics;
    auto client = make_client(options);
    fetch(*client, get(url("/echo")));
    fetch(*client, get(url("/status/404")));
    fetch(*client, get("http://10.0.0.1/"));
    const std::string text = metrics.render();
    EXPECT_NE(text.find(R"(parley_outbound_requests_total{outcome="2xx"} 1)"), std::string::npos) << text;
    EXPECT_NE(text.find(R"(parley_outbound_requests_total{outcome="4xx"} 1)"), std::string::npos);
    EXPECT_NE(text.find(R"(parley_outbound_requests_total{outcome="refused_by_guard"} 1)"), std::string::npos);
    EXPECT_NE(text.find("parley_outbound_request_seconds_count 3"), std::string::npos);
}

}  // namespace
}  // namespace parley::outbound

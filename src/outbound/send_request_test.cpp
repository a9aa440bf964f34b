// action_send_request through the ActionRegistry against a real HTTP server on 127.0.0.1: params to request,
// response to state, events and error codes.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <future>
#include <map>
#include <mutex>

#include "actions/actions.h"
#include "auth/settings.h"
#include "outbound/send_request.h"
#include "outbound/test_server.h"

namespace parley::outbound {
namespace {

namespace json = boost::json;
using testing::TestRequest;
using testing::TestResponse;
using testing::TestServer;
using namespace std::chrono_literals;

class FakeSettings final : public auth::InstanceSettings {
public:
    std::optional<json::value> get(std::string_view key) const override {
        std::lock_guard lock(mutex_);
        if (key != "outbound_allowlist") return std::nullopt;
        return allowlist_;
    }
    void set_allowlist(std::string_view text) {
        std::lock_guard lock(mutex_);
        allowlist_ = json::parse(text);
    }

private:
    mutable std::mutex mutex_;
    json::value allowlist_ = json::array{};
};

class SendRequestTest : public ::testing::Test {
protected:
    SendRequestTest() {
        settings_.set_allowlist(R"(["127.0.0.1"])");
        ClientOptions options;
        options.allowlist = allowlist_from_settings(settings_);
        client_ = std::make_unique<Client>(std::move(options));
        registry_.add(make_send_request_action(*client_));
        server_ = std::make_unique<TestServer>([this](const TestRequest& r) { return handle(r); });
    }

    TestResponse handle(const TestRequest& r) {
        ++hits_;
        if (r.path == "/echo") {
            json::object headers;
            for (const auto& [name, value] : r.headers) headers[name] = value;
            return {200,
                    {{"Content-Type", "application/json; charset=utf-8"}, {"X-Server", "test"}},
                    json::serialize(json::object{{"method", r.method},
                                                 {"query", r.query},
                                                 {"body", r.body},
                                                 {"headers", headers}})};
        }
        if (r.path == "/text") return {200, {{"Content-Type", "text/plain"}}, "hello"};
        if (r.path == "/badjson") return {200, {{"Content-Type", "application/json"}}, "{not json"};
        if (r.path == "/problem") return {422, {{"Content-Type", "application/problem+json"}}, R"({"title":"no"})"};
        if (r.path == "/binary") return {200, {{"Content-Type", "application/octet-stream"}}, std::string("a\xff\xfe b", 5)};
        if (r.path == "/flaky") return hits_ <= 2 ? TestResponse{500, {}, "oops"} : TestResponse{200, {}, "ok"};
        if (r.path == "/slow") return {200, {}, "late", 2000};
        if (r.path == "/big") return {200, {}, std::string(2048, 'z')};
        if (r.path == "/moved") return {302, {{"Location", "/text"}}, ""};
        return {404, {{"Content-Type", "application/json"}}, R"({"error":"missing"})"};
    }

    actions::ActionResult run(json::object params) {
        actions::ActionCall call;
        call.action = "action_send_request";
        call.params = std::move(params);
        std::promise<actions::ActionResult> promise;
        auto future = promise.get_future();
        registry_.run(std::move(call), [&promise](actions::ActionResult r) { promise.set_value(std::move(r)); });
        if (future.wait_for(30s) != std::future_status::ready) {
            ADD_FAILURE() << "the action did not answer";
            return {};
        }
        return future.get();
    }

    std::string url(std::string_view path) const { return server_->url(path); }

    FakeSettings settings_;
    std::unique_ptr<Client> client_;
    actions::ActionRegistry registry_;
    std::atomic<int> hits_{0};
    std::unique_ptr<TestServer> server_;
};

TEST_F(SendRequestTest, DeclaresItsEventsAndSchema) {
    auto action = registry_.find("action_send_request");
    ASSERT_TRUE(action);
    EXPECT_EQ(action->events(), (std::vector<std::string>{"success", "error"}));
    EXPECT_EQ(action->params_schema().at("required"), json::array{"url"});
    EXPECT_TRUE(action->params_schema().at("properties").as_object().contains("body_type"));
}

TEST_F(SendRequestTest, GetWithQueryAndHeadersSavesTheParsedResponse) {
    auto result = run({{"url", url("/echo")},
                       {"query", {{"q", "a b"}, {"n", 5}, {"flag", true}, {"skip", nullptr}, {"tag", {"x", "y"}}}},
                       {"headers", {{"X-Token", "t1"}, {"X-Num", 7}}}});
    EXPECT_EQ(result.event, "success");
    EXPECT_FALSE(result.error);
    const auto& saved = result.state.at("response").as_object();
    EXPECT_EQ(saved.at("status"), 200);
    EXPECT_EQ(saved.at("headers").at("x-server"), "test");
    const auto& body = saved.at("body").as_object();  // parsed, not a string
    EXPECT_EQ(body.at("method"), "GET");
    EXPECT_EQ(body.at("query"), "q=a%20b&n=5&flag=true&tag=x&tag=y");
    EXPECT_EQ(body.at("headers").at("x-token"), "t1");
    EXPECT_EQ(body.at("headers").at("x-num"), "7");
    EXPECT_EQ(saved.size(), 3u);
}

TEST_F(SendRequestTest, BodiesAsJsonFormAndRaw) {
    auto json_result = run({{"method", "post"}, {"url", url("/echo")}, {"body", {{"order", 42}, {"items", {1, 2}}}}});
    ASSERT_EQ(json_result.event, "success");
    auto body = json_result.state.at("response").at("body").as_object();
    EXPECT_EQ(body.at("method"), "POST");
    EXPECT_EQ(json::parse(body.at("body").as_string()), json::parse(R"({"order":42,"items":[1,2]})"));
    EXPECT_EQ(body.at("headers").at("content-type"), "application/json");

    auto array_result = run({{"method", "PUT"}, {"url", url("/echo")}, {"body", {1, "two"}}});
    EXPECT_EQ(array_result.state.at("response").at("body").at("body"), R"([1,"two"])");

    auto form = run({{"method", "POST"},
                     {"url", url("/echo")},
                     {"body_type", "form"},
                     {"body", {{"name", "Olena K"}, {"n", 3}, {"ok", false}, {"nested", {{"a", 1}}}, {"none", nullptr}}}});
    body = form.state.at("response").at("body").as_object();
    EXPECT_EQ(body.at("body"), "name=Olena%20K&n=3&ok=false&nested=%7B%22a%22%3A1%7D&none=");
    EXPECT_EQ(body.at("headers").at("content-type"), "application/x-www-form-urlencoded");

    auto raw = run({{"method", "POST"}, {"url", url("/echo")}, {"body", "<xml/>"},
                    {"headers", {{"Content-Type", "application/xml"}}}});
    body = raw.state.at("response").at("body").as_object();
    EXPECT_EQ(body.at("body"), "<xml/>");
    EXPECT_EQ(body.at("headers").at("content-type"), "application/xml");

    auto plain = run({{"method", "POST"}, {"url", url("/echo")}, {"body", "words"}});
    EXPECT_EQ(plain.state.at("response").at("body").at("headers").at("content-type"), "text/plain; charset=utf-8");

    // A rendered template that produced JSON text, sent as JSON.
    auto json_text = run({{"method", "POST"}, {"url", url("/echo")}, {"body", R"({"a":1})"}, {"body_type", "json"}});
    body = json_text.state.at("response").at("body").as_object();
    EXPECT_EQ(body.at("body"), R"({"a":1})");
    EXPECT_EQ(body.at("headers").at("content-type"), "application/json");
}

TEST_F(SendRequestTest, NonJsonBodiesAreStrings) {
    auto text = run({{"url", url("/text")}});
    EXPECT_EQ(text.state.at("response").at("body"), "hello");
    auto bad = run({{"url", url("/badjson")}});
    EXPECT_EQ(bad.event, "success");
    EXPECT_EQ(bad.state.at("response").at("body"), "{not json");
    auto binary = run({{"url", url("/binary")}});
    EXPECT_EQ(binary.state.at("response").at("body"), "a\xef\xbf\xbd\xef\xbf\xbd b");
}

TEST_F(SendRequestTest, HttpErrorsAnswerErrorAndStillSaveTheResponse) {
    auto missing = run({{"url", url("/nothing")}, {"save_as", "api"}});
    EXPECT_EQ(missing.event, "error");
    ASSERT_TRUE(missing.error);
    EXPECT_EQ(missing.error->code, "http_error");
    EXPECT_NE(missing.error->message.find("404"), std::string::npos);
    EXPECT_FALSE(missing.state.contains("response"));
    EXPECT_EQ(missing.state.at("api").at("status"), 404);
    EXPECT_EQ(missing.state.at("api").at("body").at("error"), "missing");

    auto problem = run({{"url", url("/problem")}});
    EXPECT_EQ(problem.event, "error");
    EXPECT_EQ(problem.state.at("response").at("body").at("title"), "no");

    auto redirected = run({{"url", url("/moved")}});
    EXPECT_EQ(redirected.event, "success");
    EXPECT_EQ(redirected.state.at("response").at("body"), "hello");
    auto not_followed = run({{"url", url("/moved")}, {"follow_redirects", false}});
    EXPECT_EQ(not_followed.event, "success");
    EXPECT_EQ(not_followed.state.at("response").at("status"), 302);
}

TEST_F(SendRequestTest, FailuresWithoutAResponseSaveTheError) {
    auto slow = run({{"url", url("/slow")}, {"timeout_ms", "150"}});
    EXPECT_EQ(slow.event, "error");
    ASSERT_TRUE(slow.error);
    EXPECT_EQ(slow.error->code, "timeout");
    const auto& saved = slow.state.at("response").as_object();
    EXPECT_EQ(saved.at("status"), 0);
    EXPECT_TRUE(saved.at("body").is_null());
    EXPECT_EQ(saved.at("error").at("code"), "timeout");

    auto big = run({{"url", url("/big")}, {"max_response_bytes", 1024}});
    EXPECT_EQ(big.error->code, "too_large");
    auto fits = run({{"url", url("/big")}, {"max_response_bytes", 4096}});
    EXPECT_EQ(fits.event, "success");

    auto metadata = run({{"url", "http://169.254.169.254/latest/meta-data/"}});
    EXPECT_EQ(metadata.error->code, "refused_by_guard");
    EXPECT_NE(metadata.error->message.find("169.254.169.254"), std::string::npos);

    settings_.set_allowlist("[]");
    auto loopback = run({{"url", url("/echo")}});
    EXPECT_EQ(loopback.error->code, "refused_by_guard");
    EXPECT_EQ(loopback.state.at("response").at("error").at("code"), "refused_by_guard");
}

TEST_F(SendRequestTest, RetriesIdempotentMethods) {
    auto ok = run({{"url", url("/flaky")}, {"retries", 2}});
    EXPECT_EQ(ok.event, "success");
    EXPECT_EQ(hits_.load(), 3);

    hits_ = 0;
    auto post = run({{"method", "POST"}, {"url", url("/flaky")}, {"retries", 3}});
    EXPECT_EQ(post.event, "error");
    EXPECT_EQ(post.state.at("response").at("status"), 500);
    EXPECT_EQ(hits_.load(), 1);
}

TEST_F(SendRequestTest, BadParamsAnswerBadParamsAndSendNothing) {
    const std::string u = url("/echo");
    const json::object cases[] = {
        {},
        {{"url", ""}},
        {{"url", 5}},
        {{"url", "ftp://127.0.0.1/"}},
        {{"url", "javascript:alert(1)"}},
        {{"url", "127.0.0.1/echo"}},
        {{"url", u}, {"method", "TRACE"}},
        {{"url", u}, {"method", 1}},
        {{"url", u}, {"query", "a=1"}},
        {{"url", u}, {"query", {{"a", {{"b", 1}}}}}},
        {{"url", u}, {"headers", {"X-A"}}},
        {{"url", u}, {"headers", {{"X-A", {{"b", 1}}}}}},
        {{"url", u}, {"body", {{"a", 1}}}, {"body_type", "xml"}},
        {{"url", u}, {"body", {1, 2}}, {"body_type", "form"}},
        {{"url", u}, {"body", {{"a", 1}}}, {"body_type", "raw"}},
        {{"url", u}, {"timeout_ms", 0}},
        {{"url", u}, {"timeout_ms", 60001}},
        {{"url", u}, {"timeout_ms", "soon"}},
        {{"url", u}, {"timeout_ms", 1.5}},
        {{"url", u}, {"retries", 4}},
        {{"url", u}, {"retries", -1}},
        {{"url", u}, {"max_response_bytes", 10 * 1024 * 1024 + 1}},
        {{"url", u}, {"follow_redirects", "yes"}},
        {{"url", u}, {"save_as", ""}},
        {{"url", u}, {"save_as", 3}},
        {{"url", u}, {"timeout", 100}},
    };
    for (const auto& params : cases) {
        SCOPED_TRACE(json::serialize(params));
        auto result = run(params);
        EXPECT_EQ(result.event, "error");
        ASSERT_TRUE(result.error);
        EXPECT_EQ(result.error->code, "bad_params");
        EXPECT_TRUE(result.state.empty());
    }
    EXPECT_EQ(hits_.load(), 0);
    // Header values the client refuses come back as the client's code, still before anything is sent.
    auto injected = run({{"url", u}, {"headers", {{"X-A", "1\r\nX-B: 2"}}}});
    EXPECT_EQ(injected.error->code, "bad_request");
    EXPECT_EQ(hits_.load(), 0);
}

TEST(ResponseBodyValue, ParsesOnlyJsonMediaTypes) {
    EXPECT_EQ(response_body_value("application/json", R"({"a":1})"), json::parse(R"({"a":1})"));
    EXPECT_EQ(response_body_value("Application/JSON ; charset=utf-8", "[1]"), json::parse("[1]"));
    EXPECT_EQ(response_body_value("application/vnd.api+json", "true"), json::value(true));
    EXPECT_EQ(response_body_value("text/json", "3"), json::value(3));
    EXPECT_EQ(response_body_value("text/plain", R"({"a":1})"), json::value(R"({"a":1})"));
    EXPECT_EQ(response_body_value("application/json", ""), json::value(""));
    EXPECT_EQ(response_body_value("application/json", std::string(100, '[') + std::string(100, ']')),
              json::value(std::string(100, '[') + std::string(100, ']')));  // deeper than 64: kept as text
    EXPECT_EQ(response_body_value("application/json", "[1e999]"), json::value("[1e999]"));  // not finite: text
    EXPECT_EQ(response_body_value("", "\xc0\xaf"), json::value("\xef\xbf\xbd\xef\xbf\xbd"));
    EXPECT_EQ(response_body_value("", "\xed\xa0\x80"), json::value("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
    EXPECT_EQ(response_body_value("", "Привіт"), json::value("Привіт"));
}

}  // namespace
}  // namespace parley::outbound

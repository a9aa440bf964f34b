// The provider client against local fake servers: Anthropic Messages (request shape, content blocks, usage),
// retries on 429/5xx honouring retry-after, malformed answers, timeouts; OpenAI-compatible embeddings.
#include "knowledge/providers.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>

#include "outbound/outbound.h"
#include "outbound/test_server.h"

namespace parley::knowledge {
namespace {

using outbound::testing::TestRequest;
using outbound::testing::TestResponse;
using outbound::testing::TestServer;

outbound::ClientOptions loopback_allowed() {
    outbound::ClientOptions options;
    options.allowlist = [] { return std::optional<boost::json::value>(boost::json::array{"127.0.0.1"}); };
    return options;
}

ChatRequest anthropic_request(const TestServer& server) {
    ChatRequest r;
    r.provider = "anthropic";
    r.base_url = server.url("");
    r.api_key = "sk-ant-test";
    r.model = "claude-test";
    r.max_tokens = 300;
    r.timeout_ms = 10'000;
    r.messages = {{"system", "Answer from the passages."}, {"user", "Скільки коштує доставка?"}};
    return r;
}

ChatResult chat(ProviderClient& client, ChatRequest request) {
    std::promise<ChatResult> result;
    client.chat(std::move(request), [&](ChatResult r) { result.set_value(std::move(r)); });
    return result.get_future().get();
}

constexpr const char* kAnthropicAnswer =
    R"({"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Доставка "},)"
    R"({"type":"tool_use","id":"t","name":"x","input":{}},{"type":"text","text":"безкоштовна."}],)"
    R"("stop_reason":"end_turn","usage":{"input_tokens":120,"output_tokens":9,"cache_read_input_tokens":30}})";

TEST(Anthropic, ParsesContentBlocksUsageAndErrors) {
    auto ok = parse_anthropic_response(200, kAnthropicAnswer);
    EXPECT_EQ(ok.error, "");
    EXPECT_EQ(ok.text, "Доставка безкоштовна.");
    ASSERT_TRUE(ok.usage);
    EXPECT_EQ(ok.usage->input_tokens, 150);
    EXPECT_EQ(ok.usage->output_tokens, 9);

    auto err = parse_anthropic_response(429, R"({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}})");
    EXPECT_EQ(err.error, "HTTP 429: slow down (rate_limit_error)");
    EXPECT_NE(parse_anthropic_response(200, R"({"type":"error","error":{"type":"overloaded_error","message":"busy"}})").error, "");
    EXPECT_NE(parse_anthropic_response(200, "<html>").error, "");
    EXPECT_NE(parse_anthropic_response(200, "[]").error, "");
    EXPECT_NE(parse_anthropic_response(200, R"({"content":"text"})").error, "");
    EXPECT_NE(parse_anthropic_response(200, R"({"content":[{"type":"text","text":7}]})").error, "");
    EXPECT_NE(parse_anthropic_response(200, R"({"content":[]})").error, "");
    auto negative = parse_anthropic_response(200, R"({"content":[{"type":"text","text":"a"}],"usage":{"input_tokens":-5}})");
    EXPECT_EQ(negative.text, "a");
    EXPECT_FALSE(negative.usage);
    EXPECT_NE(parse_anthropic_response(500, "").error, "");
}

TEST(Anthropic, BuildsTheMessagesRequest) {
    ChatRequest r;
    r.model = "m";
    r.max_tokens = 77;
    r.temperature = 0.5;
    r.messages = {{"system", "A"}, {"system", "B"}, {"user", "Q"}, {"assistant", "prev"}};
    auto body = boost::json::parse(anthropic_request_body(r)).as_object();
    EXPECT_EQ(body.at("system"), "A\n\nB");
    EXPECT_EQ(body.at("max_tokens"), 77);
    ASSERT_EQ(body.at("messages").as_array().size(), 2u);
    EXPECT_EQ(body.at("messages").as_array()[0].at("role"), "user");
    EXPECT_EQ(body.at("messages").as_array()[1].at("role"), "assistant");
    EXPECT_EQ(anthropic_url("https://api.anthropic.com"), "https://api.anthropic.com/v1/messages");
    EXPECT_EQ(anthropic_url("https://api.anthropic.com/"), "https://api.anthropic.com/v1/messages");
    EXPECT_EQ(anthropic_url("http://proxy/anthropic/v1"), "http://proxy/anthropic/v1/messages");
}

TEST(Anthropic, CallsMessagesWithKeyAndVersion) {
    std::promise<TestRequest> seen;
    TestServer server([&](const TestRequest& req) {
        seen.set_value(req);
        return TestResponse{200, {{"content-type", "application/json"}}, kAnthropicAnswer};
    });
    outbound::Client http(loopback_allowed());
    ProviderClient client(http);
    auto r = chat(client, anthropic_request(server));
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.text, "Доставка безкоштовна.");
    ASSERT_TRUE(r.usage);
    EXPECT_EQ(r.usage->output_tokens, 9);
    auto req = seen.get_future().get();
    EXPECT_EQ(req.path, "/v1/messages");
    EXPECT_EQ(req.headers.at("x-api-key"), "sk-ant-test");
    EXPECT_EQ(req.headers.at("anthropic-version"), kAnthropicVersion);
    EXPECT_EQ(req.headers.count("authorization"), 0u);
    auto body = boost::json::parse(req.body).as_object();
    EXPECT_EQ(body.at("model"), "claude-test");
    EXPECT_EQ(body.at("system"), "Answer from the passages.");
    EXPECT_EQ(body.at("max_tokens"), 300);
    http.shutdown();
}

TEST(Retries, HonoursRetryAfterOn429) {
    std::atomic<int> calls{0};
    TestServer server([&](const TestRequest&) {
        if (calls++ == 0) {
            return TestResponse{429, {{"retry-after", "1"}}, R"({"type":"error","error":{"type":"rate_limit_error","message":"later"}})"};
        }
        return TestResponse{200, {}, kAnthropicAnswer};
    });
    outbound::Client http(loopback_allowed());
    ProviderClient client(http, RetryPolicy{3, 50, 5000});
    auto start = std::chrono::steady_clock::now();
    auto r = chat(client, anthropic_request(server));
    auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(calls.load(), 2);
    EXPECT_GE(waited, std::chrono::milliseconds(950));  // the server's retry-after, not the 50 ms backoff
    http.shutdown();
}

TEST(Retries, RetriesServerErrorsThenGivesUp) {
    std::atomic<int> calls{0};
    TestServer server([&](const TestRequest&) {
        ++calls;
        return TestResponse{503, {}, R"({"error":{"message":"overloaded"}})"};
    });
    outbound::Client http(loopback_allowed());
    ProviderClient client(http, RetryPolicy{3, 10, 5000});
    ChatRequest r;
    r.base_url = server.url("/v1");
    r.model = "m";
    r.messages = {{"user", "q"}};
    auto result = chat(client, r);
    EXPECT_EQ(result.error, "HTTP 503: overloaded");
    EXPECT_EQ(calls.load(), 3);
    http.shutdown();
}

TEST(Retries, DoesNotWaitBeyondTheBudgetOrRetryClientErrors) {
    std::atomic<int> calls{0};
    TestServer server([&](const TestRequest& req) {
        ++calls;
        if (req.path == "/bad/v1/messages") return TestResponse{400, {}, R"({"error":{"message":"bad request"}})"};
        return TestResponse{429, {{"retry-after", "120"}}, "{}"};
    });
    outbound::Client http(loopback_allowed());
    ProviderClient client(http, RetryPolicy{3, 10, 5000});
    auto start = std::chrono::steady_clock::now();
    auto r = chat(client, anthropic_request(server));
    EXPECT_EQ(r.error, "HTTP 429");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    EXPECT_EQ(calls.load(), 1);
    auto bad = anthropic_request(server);
    bad.base_url = server.url("/bad");
    EXPECT_EQ(chat(client, bad).error, "HTTP 400: bad request");
    EXPECT_EQ(calls.load(), 2);
    http.shutdown();
}

TEST(Retries, TimesOut) {
    TestServer server([&](const TestRequest&) { return TestResponse{200, {}, kAnthropicAnswer, 3000}; });
    outbound::Client http(loopback_allowed());
    ProviderClient client(http, RetryPolicy{3, 10, 5000});
    auto request = anthropic_request(server);
    request.timeout_ms = 300;
    auto start = std::chrono::steady_clock::now();
    auto r = chat(client, request);
    EXPECT_NE(r.error.find("timeout"), std::string::npos) << r.error;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
    http.shutdown();
}

TEST(Retries, ParsesRetryAfter) {
    EXPECT_EQ(retry_after_ms("", "3", 0), 3000);
    EXPECT_EQ(retry_after_ms("1500.7", "3", 0), 1500);
    EXPECT_EQ(retry_after_ms("", " 0 ", 0), 0);
    EXPECT_FALSE(retry_after_ms("", "", 0));
    EXPECT_FALSE(retry_after_ms("", "soon", 0));
    EXPECT_FALSE(retry_after_ms("", "-1", 0));
    // Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s.
    EXPECT_EQ(retry_after_ms("", "Sun, 06 Nov 1994 08:49:37 GMT", 784111777000 - 5000), 5000);
    EXPECT_EQ(retry_after_ms("", "Sun, 06 Nov 1994 08:49:37 GMT", 784111777000 + 5000), 0);
}

TEST(OpenAiChat, ReportsUsage) {
    auto r = parse_chat_response(
        200, R"({"choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3}})");
    ASSERT_TRUE(r.usage);
    EXPECT_EQ(r.usage->input_tokens, 12);
    EXPECT_EQ(r.usage->output_tokens, 3);
}

TEST(Embeddings, ParsesVectorsInIndexOrder) {
    auto r = parse_embeddings_response(
        200, R"({"data":[{"index":1,"embedding":[0,1]},{"index":0,"embedding":[1,0.5]}],"usage":{"prompt_tokens":4}})", 2);
    ASSERT_EQ(r.error, "");
    ASSERT_EQ(r.vectors.size(), 2u);
    EXPECT_FLOAT_EQ(r.vectors[0][1], 0.5f);
    EXPECT_FLOAT_EQ(r.vectors[1][1], 1.0f);
    EXPECT_EQ(r.input_tokens, 4);
    EXPECT_NE(parse_embeddings_response(200, R"({"data":[{"embedding":[1]}]})", 2).error, "");        // count
    EXPECT_NE(parse_embeddings_response(200, R"({"data":[{"embedding":[1]},{"embedding":[1,2]}]})", 2).error, "");
    EXPECT_NE(parse_embeddings_response(200, R"({"data":[{"embedding":["x"]}]})", 1).error, "");
    EXPECT_NE(parse_embeddings_response(200, R"({"data":[{"embedding":[]}]})", 1).error, "");
    EXPECT_NE(parse_embeddings_response(200, R"({"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[1]}]})", 2).error, "");
    EXPECT_NE(parse_embeddings_response(200, R"({"data":[{"index":5,"embedding":[1]}]})", 1).error, "");
    EXPECT_NE(parse_embeddings_response(200, R"({"data":[{"embedding":[1e300]}]})", 1).error, "");
    EXPECT_NE(parse_embeddings_response(200, "nope", 1).error, "");
    EXPECT_EQ(parse_embeddings_response(401, R"({"error":{"message":"bad key"}})", 1).error, "HTTP 401: bad key");
}

TEST(Embeddings, CallsTheEmbeddingsEndpoint) {
    std::promise<TestRequest> seen;
    TestServer server([&](const TestRequest& req) {
        seen.set_value(req);
        return TestResponse{200, {}, R"({"data":[{"index":0,"embedding":[0.1,0.2,0.3]}],"usage":{"prompt_tokens":2}})"};
    });
    outbound::Client http(loopback_allowed());
    ProviderClient client(http);
    EmbeddingRequest request;
    request.base_url = server.url("/v1/");
    request.api_key = "sk-e";
    request.model = "emb";
    request.dimensions = 3;
    request.inputs = {"доставка"};
    std::promise<EmbeddingResult> result;
    client.embed(request, [&](EmbeddingResult r) { result.set_value(std::move(r)); });
    auto r = result.get_future().get();
    EXPECT_EQ(r.error, "");
    ASSERT_EQ(r.vectors.size(), 1u);
    EXPECT_EQ(r.vectors[0].size(), 3u);
    auto req = seen.get_future().get();
    EXPECT_EQ(req.path, "/v1/embeddings");
    EXPECT_EQ(req.headers.at("authorization"), "Bearer sk-e");
    auto body = boost::json::parse(req.body).as_object();
    EXPECT_EQ(body.at("input").as_array().size(), 1u);
    EXPECT_EQ(body.at("dimensions"), 3);
    http.shutdown();
}

}  // namespace
}  // namespace parley::knowledge

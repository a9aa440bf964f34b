#include "knowledge/openai.h"

#include <gtest/gtest.h>

#include <future>

#include "outbound/outbound.h"
#include "outbound/test_server.h"

namespace parley::knowledge {
namespace {

TEST(OpenAi, ParsesAnswersAndErrors) {
    EXPECT_EQ(parse_chat_response(200, R"({"choices":[{"message":{"role":"assistant","content":"Hi"}}]})").text, "Hi");
    EXPECT_NE(parse_chat_response(200, R"({"choices":[]})").error, "");
    EXPECT_NE(parse_chat_response(200, "not json").error, "");
    auto e = parse_chat_response(401, R"({"error":{"message":"bad key"}})");
    EXPECT_EQ(e.error, "HTTP 401: bad key");
}

TEST(OpenAi, CallsChatCompletions) {
    std::promise<outbound::testing::TestRequest> seen;
    outbound::testing::TestServer server([&](const outbound::testing::TestRequest& req) {
        seen.set_value(req);
        return outbound::testing::TestResponse{200, {{"content-type", "application/json"}},
                                               R"({"choices":[{"message":{"content":"Доставка безкоштовна."}}]})"};
    });
    outbound::ClientOptions options;
    options.allowlist = [] { return std::optional<boost::json::value>(boost::json::array{"127.0.0.1"}); };
    outbound::Client client(options);
    OpenAiChatClient llm(client);
    ChatRequest request;
    request.base_url = server.url("/v1/");
    request.api_key = "sk-test";
    request.model = "m1";
    request.messages = {{"system", "Be brief."}, {"user", "Скільки коштує доставка?"}};
    std::promise<ChatResult> result;
    llm.chat(request, [&](ChatResult r) { result.set_value(std::move(r)); });
    auto r = result.get_future().get();
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.text, "Доставка безкоштовна.");
    auto req = seen.get_future().get();
    EXPECT_EQ(req.path, "/v1/chat/completions");
    EXPECT_EQ(req.headers.at("authorization"), "Bearer sk-test");
    auto body = boost::json::parse(req.body).as_object();
    EXPECT_EQ(body.at("model"), "m1");
    EXPECT_EQ(body.at("messages").as_array().size(), 2u);
    client.shutdown();
}

}  // namespace
}  // namespace parley::knowledge

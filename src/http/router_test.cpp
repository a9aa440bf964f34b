// Router: literal and {param} segments, literal precedence with backtracking, decoding, 404 vs 405.
#include <gtest/gtest.h>

#include "http/http.h"
#include "http/internal/url.h"

namespace parley::http {
namespace {

Handler noop() {
    return [](Request&) -> boost::asio::awaitable<Response> { co_return Response::text("ok"); };
}

class RouterTest : public ::testing::Test {
protected:
    void SetUp() override {
        router_.add(Method::kGet, "/healthz", Access::open(), noop());
        router_.add(Method::kGet, "/api/v1/bots", Access::signed_in(), noop());
        router_.add(Method::kPost, "/api/v1/bots", Access::signed_in(), noop());
        router_.add(Method::kGet, "/api/v1/bots/{bot}", Access::signed_in(), noop());
        router_.add(Method::kGet, "/api/v1/bots/new", Access::signed_in(), noop());
        router_.add(Method::kPut, "/api/v1/bots/{bot}/scenario", Access::signed_in(), noop());
        router_.add(Method::kPost, "/api/v1/bots/{bot}/preview/{session}/messages", Access::signed_in(), noop());
        router_.add(Method::kGet, "/api/v1/bots/new/settings", Access::signed_in(), noop());
        router_.add(Method::kDelete, "/api/v1/bots/{id}/channels/{channel}", Access::signed_in(), noop());
        router_.websocket("/api/v1/events", Access::signed_in(), [](auto, const Request&) {});
    }
    Router router_;
};

TEST_F(RouterTest, MatchesLiteralRoutes) {
    auto m = router_.match(Method::kGet, "/healthz");
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/healthz");
    EXPECT_TRUE(m.params.empty());
    EXPECT_EQ(router_.routes()[m.route_index].get(), m.route);
}

TEST_F(RouterTest, ExtractsParameters) {
    auto m = router_.match(Method::kPost, "/api/v1/bots/b1/preview/s9/messages");
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/api/v1/bots/{bot}/preview/{session}/messages");
    ASSERT_EQ(m.params.size(), 2u);
    EXPECT_EQ(m.params[0], (std::pair<std::string, std::string>{"bot", "b1"}));
    EXPECT_EQ(m.params[1], (std::pair<std::string, std::string>{"session", "s9"}));
}

TEST_F(RouterTest, ParameterNamesBelongToTheirRoute) {
    auto m = router_.match(Method::kDelete, "/api/v1/bots/7/channels/tg");
    ASSERT_NE(m.route, nullptr);
    ASSERT_EQ(m.params.size(), 2u);
    EXPECT_EQ(m.params[0].first, "id");
    EXPECT_EQ(m.params[1].first, "channel");
}

TEST_F(RouterTest, DecodesParameters) {
    auto m = router_.match(Method::kGet, "/api/v1/bots/a%20b%2Fc%C3%A9");
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/api/v1/bots/{bot}");
    EXPECT_EQ(m.params.at(0).second, "a b/c\xC3\xA9");  // an encoded '/' stays inside the parameter
}

TEST_F(RouterTest, PlusIsNotASpaceInPaths) {
    auto m = router_.match(Method::kGet, "/api/v1/bots/a+b");
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.params.at(0).second, "a+b");
}

TEST_F(RouterTest, LiteralWinsOverParameter) {
    auto m = router_.match(Method::kGet, "/api/v1/bots/new");
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/api/v1/bots/new");
    EXPECT_TRUE(m.params.empty());
}

TEST_F(RouterTest, BacktracksFromLiteralToParameter) {
    // "new" is a literal child, but only "/{bot}/scenario" has a PUT route below it.
    auto m = router_.match(Method::kPut, "/api/v1/bots/new/scenario");
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/api/v1/bots/{bot}/scenario");
    EXPECT_EQ(m.params.at(0).second, "new");
}

TEST_F(RouterTest, UnknownPathIs404) {
    auto m = router_.match(Method::kGet, "/api/v1/nothing");
    EXPECT_EQ(m.route, nullptr);
    EXPECT_FALSE(m.path_known);
    EXPECT_FALSE(router_.match(Method::kGet, "/api/v1/bots/x/unknown").path_known);
    EXPECT_FALSE(router_.match(Method::kGet, "/api/v1/bots//scenario").path_known);  // empty param segment
}

TEST_F(RouterTest, OtherMethodIs405WithAllowedList) {
    auto m = router_.match(Method::kDelete, "/api/v1/bots");
    EXPECT_EQ(m.route, nullptr);
    EXPECT_TRUE(m.path_known);
    EXPECT_EQ(m.allowed, (std::vector<Method>{Method::kGet, Method::kPost, Method::kHead}));
}

TEST_F(RouterTest, AllowUnionsLiteralAndParameterRoutes) {
    auto m = router_.match(Method::kPost, "/api/v1/bots/new");
    EXPECT_EQ(m.route, nullptr);
    EXPECT_TRUE(m.path_known);
    EXPECT_EQ(m.allowed, (std::vector<Method>{Method::kGet, Method::kHead}));
}

TEST_F(RouterTest, HeadFallsBackToGet) {
    auto m = router_.match(Method::kHead, "/healthz");
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->method, Method::kGet);
}

TEST_F(RouterTest, InvalidEncodingMatchesNothing) {
    EXPECT_EQ(router_.match(Method::kGet, "/api/v1/bots/%zz").route, nullptr);
    EXPECT_EQ(router_.match(Method::kGet, "/api/v1/bots/%00").route, nullptr);
    EXPECT_EQ(router_.match(Method::kGet, "/api/v1/bots/%4").route, nullptr);
    EXPECT_EQ(router_.match(Method::kGet, "healthz").route, nullptr);
}

TEST_F(RouterTest, LiteralSegmentsCompareDecoded) {
    EXPECT_NE(router_.match(Method::kGet, "/heal%74hz").route, nullptr);
}

TEST_F(RouterTest, WebSocketRoutesAreGetRoutes) {
    auto m = router_.match(Method::kGet, "/api/v1/events");
    ASSERT_NE(m.route, nullptr);
    EXPECT_TRUE(static_cast<bool>(m.route->websocket));
    EXPECT_FALSE(static_cast<bool>(m.route->handler));
}

TEST_F(RouterTest, DuplicateRouteIsRefused) {
    EXPECT_THROW(router_.add(Method::kGet, "/healthz", Access::open(), noop()), std::invalid_argument);
    EXPECT_THROW(router_.add(Method::kGet, "relative", Access::open(), noop()), std::invalid_argument);
}

TEST_F(RouterTest, EmptyRouterMatchesNothing) {
    Router empty;
    EXPECT_EQ(empty.match(Method::kGet, "/").route, nullptr);
}

TEST(UrlTest, SplitsAndValidatesTargets) {
    auto parts = internal::split_target("/a/b?x=1&y=%20");
    ASSERT_TRUE(parts);
    EXPECT_EQ(parts->path, "/a/b");
    EXPECT_EQ(parts->query, "x=1&y=%20");
    EXPECT_FALSE(internal::split_target("/a%zz"));
    EXPECT_FALSE(internal::split_target("http://host/a"));
    EXPECT_FALSE(internal::split_target("/a b"));
    // Brackets as clients send them in filters are accepted in the query (not in the path).
    auto filter = internal::split_target("/records?filter[kind][eq]=x&sort=-id");
    ASSERT_TRUE(filter);
    EXPECT_EQ(filter->query, "filter[kind][eq]=x&sort=-id");
    EXPECT_FALSE(internal::split_target("/a?x=1#frag"));
    EXPECT_FALSE(internal::split_target("/a?x=\x01"));
    EXPECT_FALSE(internal::split_target("/a[b]"));
}

TEST(UrlTest, ParsesQueryStrings) {
    std::vector<std::pair<std::string, std::string>> query;
    ASSERT_TRUE(internal::parse_query("a=1&b=x+y%21&flag&&filter%5Bkind%5D%5Beq%5D=delivery&e=", query));
    ASSERT_EQ(query.size(), 5u);
    EXPECT_EQ(query[0], (std::pair<std::string, std::string>{"a", "1"}));
    EXPECT_EQ(query[1], (std::pair<std::string, std::string>{"b", "x y!"}));
    EXPECT_EQ(query[2], (std::pair<std::string, std::string>{"flag", ""}));
    EXPECT_EQ(query[3], (std::pair<std::string, std::string>{"filter[kind][eq]", "delivery"}));
    EXPECT_EQ(query[4], (std::pair<std::string, std::string>{"e", ""}));
    query.clear();
    EXPECT_FALSE(internal::parse_query("a=%00", query));
    EXPECT_FALSE(internal::parse_query("a=%G1", query));
}

TEST(ResponseTest, ErrorBodyHasContractShape) {
    auto response = Response::error(404, "not_found", "no \"bot\"", boost::json::array{"x"});
    EXPECT_EQ(response.status, 404);
    EXPECT_EQ(response.content_type, "application/json");
    EXPECT_EQ(response.body, R"({"error":{"code":"not_found","message":"no \"bot\"","details":["x"]}})");
}

TEST(RequestTest, Accessors) {
    Request request;
    request.headers = {{"x-a", "1"}};
    request.query = {{"q", "v"}, {"q", "w"}};
    request.params = {{"bot", "b1"}};
    EXPECT_EQ(request.header("x-a"), "1");
    EXPECT_EQ(request.header("x-b"), "");
    EXPECT_EQ(request.query_param("q"), "v");
    EXPECT_FALSE(request.query_param("z"));
    EXPECT_EQ(request.param("bot"), "b1");
    EXPECT_THROW((void)request.param("nope"), std::out_of_range);
    request.body = R"({"a":1})";
    EXPECT_EQ(request.json().at("a").as_int64(), 1);
    request.body = "[1]";
    EXPECT_ANY_THROW((void)request.json());
    EXPECT_ANY_THROW((void)request.user());
}

}  // namespace
}  // namespace parley::http

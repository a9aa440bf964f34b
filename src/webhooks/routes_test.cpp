// The webhook routes through a real http::Server on 127.0.0.1:0 with a Beast client: the role × route matrix,
// the secret shown only at creation and rotation, validation answers, and ping/redeliver end to end.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <map>

#include "auth/route_test_server.h"
#include "http/http.h"
#include "webhooks/test_util.h"

namespace parley::webhooks {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace json = boost::json;
using auth::testing::HttpResponse;

class WebhookRoutesTest : public testing::WebhooksTest {
protected:
    WebhookRoutesTest() {
        register_routes(router_, *service_);
        server_ = std::make_unique<auth::testing::RouteServer>(io_, router_);
    }
    ~WebhookRoutesTest() override { server_.reset(); }

    HttpResponse call(bhttp::verb verb, const std::string& target, const std::string& body = {},
                      const std::string& who = "administrator") {
        return server_->call(verb, target, body, who);
    }
    static json::value body_of(const HttpResponse& r) { return auth::testing::RouteServer::body_of(r); }
    static std::string error_code(const HttpResponse& r) { return auth::testing::RouteServer::error_code(r); }
    json::object create(const std::string& who = "administrator") {
        auto r = call(bhttp::verb::post, "/api/v1/operator/webhooks",
                      json::serialize(json::object{{"url", receiver_->url("/hook")},
                                                   {"events", json::array{"dialog.closed", "dialog.message"}},
                                                   {"description", "CRM"}}),
                      who);
        EXPECT_EQ(r.result_int(), 201) << r.body();
        return body_of(r).as_object();
    }

    http::Router router_;
    std::unique_ptr<auth::testing::RouteServer> server_;
};

TEST_F(WebhookRoutesTest, RoleMatrix) {
    std::string id(create().at("id").as_string());
    std::string base = "/api/v1/operator/webhooks";
    struct Case {
        bhttp::verb verb;
        std::string target;
        std::string body;
        std::set<std::string> allowed;
    };
    std::set<std::string> viewers{"administrator", "integrator"};
    std::set<std::string> editors{"administrator", "integrator"};
    std::set<std::string> deleters{"administrator"};
    std::vector<Case> cases{
        {bhttp::verb::get, base, "", viewers},
        {bhttp::verb::get, base + "/event-types", "", viewers},
        {bhttp::verb::get, base + "/" + id, "", viewers},
        {bhttp::verb::get, base + "/" + id + "/deliveries", "", viewers},
        {bhttp::verb::get, base + "/" + id + "/deliveries/x", "", viewers},
        {bhttp::verb::post, base, R"({"url": "https://example.com/"})", editors},
        {bhttp::verb::patch, base + "/" + id, R"({"description": "x"})", editors},
        {bhttp::verb::post, base + "/" + id + "/rotate-secret", "", editors},
        {bhttp::verb::post, base + "/" + id + "/ping", "", editors},
        {bhttp::verb::post, base + "/" + id + "/deliveries/x/redeliver", "", editors},
        {bhttp::verb::delete_, base + "/nope", "", deleters},
    };
    for (const auto& c : cases) {
        for (const char* role : {"administrator", "integrator", "supervisor", "operator", "analyst"}) {
            auto r = call(c.verb, c.target, c.body, role);
            if (c.allowed.count(role)) {
                EXPECT_NE(r.result_int(), 403) << role << " " << c.target << " " << r.body();
            } else {
                EXPECT_EQ(r.result_int(), 403) << role << " " << c.target << " " << r.body();
            }
        }
        EXPECT_EQ(call(c.verb, c.target, c.body, "").result_int(), 401) << c.target;
    }
}

TEST_F(WebhookRoutesTest, SecretIsShownOnlyAtCreationAndRotation) {
    json::object created = create();
    std::string id(created.at("id").as_string());
    std::string secret(created.at("secret").as_string());
    EXPECT_EQ(secret.rfind("whsec_", 0), 0u);
    EXPECT_EQ(created.at("events"), (json::array{"dialog.closed", "dialog.message"}));
    EXPECT_EQ(created.at("enabled"), true);
    EXPECT_EQ(created.at("description"), "CRM");
    EXPECT_EQ(created.at("created_by"), "administrator");

    auto one = call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id);
    ASSERT_EQ(one.result_int(), 200);
    EXPECT_FALSE(body_of(one).as_object().contains("secret"));
    EXPECT_EQ(one.body().find(secret.substr(6)), std::string::npos);
    auto list = call(bhttp::verb::get, "/api/v1/operator/webhooks");
    ASSERT_EQ(list.result_int(), 200);
    EXPECT_EQ(body_of(list).at("items").as_array().size(), 1u);
    EXPECT_EQ(list.body().find(secret.substr(6)), std::string::npos);
    EXPECT_EQ(body_of(list).at("next_cursor"), nullptr);
    auto patched = call(bhttp::verb::patch, "/api/v1/operator/webhooks/" + id, R"({"enabled": false})");
    ASSERT_EQ(patched.result_int(), 200);
    EXPECT_EQ(body_of(patched).at("enabled"), false);
    EXPECT_FALSE(body_of(patched).as_object().contains("secret"));

    auto rotated = call(bhttp::verb::post, "/api/v1/operator/webhooks/" + id + "/rotate-secret");
    ASSERT_EQ(rotated.result_int(), 200);
    std::string fresh(body_of(rotated).at("secret").as_string());
    EXPECT_NE(fresh, secret);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id).body().find(fresh.substr(6)), std::string::npos);
}

TEST_F(WebhookRoutesTest, ValidationAnswers) {
    auto post = [&](const std::string& body) { return call(bhttp::verb::post, "/api/v1/operator/webhooks", body); };
    auto r = post(R"({"url": "ftp://example.com/"})");
    EXPECT_EQ(r.result_int(), 400);
    EXPECT_EQ(error_code(r), "invalid_url");
    r = post(R"({"url": "https://example.com/", "events": ["dialog.exploded"]})");
    EXPECT_EQ(r.result_int(), 400);
    EXPECT_EQ(error_code(r), "unknown_event_type");
    r = post(R"({"events": ["*"]})");
    EXPECT_EQ(r.result_int(), 400);
    EXPECT_EQ(error_code(r), "missing_field");
    r = post(R"({"url": "https://example.com/", "secret": "mine"})");
    EXPECT_EQ(error_code(r), "unknown_field");
    r = post("not json");
    EXPECT_EQ(r.result_int(), 400);
    r = post(json::serialize(json::object{{"url", "https://example.com/" + std::string(kMaxUrlBytes, 'a')}}));
    EXPECT_EQ(r.result_int(), 400);
    EXPECT_EQ(error_code(r), "invalid_url");
    EXPECT_EQ(count("SELECT COUNT(*) FROM webhook_subscriptions"), 0);  // nothing half-written

    r = call(bhttp::verb::get, "/api/v1/operator/webhooks/nope");
    EXPECT_EQ(r.result_int(), 404);
    EXPECT_EQ(error_code(r), "webhook_not_found");
    EXPECT_EQ(call(bhttp::verb::patch, "/api/v1/operator/webhooks/nope", R"({"enabled": true})").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/webhooks/nope/ping").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/webhooks/nope/deliveries").result_int(), 404);
    std::string id(create().at("id").as_string());
    r = call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id + "/deliveries?state=sent");
    EXPECT_EQ(r.result_int(), 400);
    r = call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id + "/deliveries?limit=0");
    EXPECT_EQ(error_code(r), "invalid_limit");
    r = call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id + "/deliveries/nope");
    EXPECT_EQ(error_code(r), "delivery_not_found");
    r = call(bhttp::verb::patch, "/api/v1/operator/webhooks/" + id, R"x({"url": "javascript:alert(1)"})x");
    EXPECT_EQ(error_code(r), "invalid_url");
    EXPECT_EQ(body_of(call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id)).at("url"), json::value(receiver_->url("/hook")));
}

TEST_F(WebhookRoutesTest, PingDeliveriesAndRedeliverEndToEnd) {
    json::object created = create();
    std::string id(created.at("id").as_string());
    std::string secret(created.at("secret").as_string());
    auto ping = call(bhttp::verb::post, "/api/v1/operator/webhooks/" + id + "/ping");
    ASSERT_EQ(ping.result_int(), 201) << ping.body();
    std::string delivery(body_of(ping).at("id").as_string());
    EXPECT_EQ(body_of(ping).at("state"), "pending");
    EXPECT_EQ(body_of(ping).at("payload").at("type"), "ping");
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 1; }));

    auto list = call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id + "/deliveries?state=delivered");
    ASSERT_EQ(list.result_int(), 200);
    auto items = body_of(list).at("items").as_array();
    ASSERT_EQ(items.size(), 1u);
    EXPECT_EQ(items[0].at("id"), json::value(delivery));
    EXPECT_EQ(items[0].at("last_status"), 200);
    EXPECT_FALSE(items[0].as_object().contains("payload"));
    auto one = call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id + "/deliveries/" + delivery);
    ASSERT_EQ(one.result_int(), 200);
    EXPECT_EQ(body_of(one).at("payload").at("data").at("subscription_id"), json::value(id));

    auto again = call(bhttp::verb::post, "/api/v1/operator/webhooks/" + id + "/deliveries/" + delivery + "/redeliver");
    ASSERT_EQ(again.result_int(), 200) << again.body();
    ASSERT_TRUE(wait_for([&] { return received().size() == 2; }));
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 1; }));
    auto requests = received();
    EXPECT_EQ(requests[1].headers.at("x-parley-delivery"), delivery);
    EXPECT_EQ(requests[1].body, requests[0].body);

    auto types = call(bhttp::verb::get, "/api/v1/operator/webhooks/event-types");
    EXPECT_EQ(body_of(types).at("items").as_array().size(), event_types().size());

    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/operator/webhooks/" + id).result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/webhooks/" + id).result_int(), 404);
    EXPECT_EQ(count("SELECT COUNT(*) FROM webhook_deliveries"), 0);
}

TEST_F(WebhookRoutesTest, ListPagesWithCursor) {
    for (int i = 0; i < 3; ++i) create();
    auto first = call(bhttp::verb::get, "/api/v1/operator/webhooks?limit=2");
    ASSERT_EQ(first.result_int(), 200);
    auto page = body_of(first).as_object();
    ASSERT_EQ(page.at("items").as_array().size(), 2u);
    std::string cursor(page.at("next_cursor").as_string());
    auto second = call(bhttp::verb::get, "/api/v1/operator/webhooks?limit=2&cursor=" + cursor);
    auto rest = body_of(second).as_object();
    EXPECT_EQ(rest.at("items").as_array().size(), 1u);
    EXPECT_EQ(rest.at("next_cursor"), nullptr);
}

}  // namespace
}  // namespace parley::webhooks

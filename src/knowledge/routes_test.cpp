// The routes through a real http::Server on 127.0.0.1:0 with a Beast client: the CONTRACT shapes, multipart
// uploads, status codes and access.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <future>
#include <thread>

#include "auth/route_test_server.h"
#include "http/http.h"
#include "knowledge/test_util.h"

namespace parley::knowledge {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using auth::testing::HttpResponse;

std::shared_ptr<const core::Principal> principal(std::string role, std::vector<std::string> rights) {
    auto p = std::make_shared<core::Principal>();
    p->user_id = role;
    p->roles = {role};
    for (auto& r : rights) p->permissions.insert("knowledge." + r);
    return p;
}

class RoutesTest : public testing::KnowledgeTest {
protected:
    RoutesTest() {
        register_routes(router_, *service_);
        server_ = std::make_unique<auth::testing::RouteServer>(io_, router_, core::Config{});  // default body limit
        server_->set_principal("admin", principal("administrator", {"view", "edit", "delete"}));
        server_->set_principal("operator", principal("operator", {"view"}));
        server_->set_principal("nobody", principal("analyst", {}));
    }
    ~RoutesTest() override { server_.reset(); }

    HttpResponse call(bhttp::verb verb, const std::string& target, const std::string& body = {},
                      const std::string& who = "admin", const std::string& content_type = "application/json") {
        return server_->call(verb, target, body, who, content_type);
    }
    HttpResponse upload_file(const std::string& target, const std::string& filename, const std::string& content,
                             const std::string& type = "text/plain", const std::string& who = "admin",
                             bhttp::verb verb = bhttp::verb::post) {
        std::string body = "--BOUNDARY42\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename +
                           "\"\r\nContent-Type: " + type + "\r\n\r\n" + content + "\r\n--BOUNDARY42--\r\n";
        return call(verb, target, body, who, "multipart/form-data; boundary=BOUNDARY42");
    }
    static boost::json::value json_of(const HttpResponse& r) { return boost::json::parse(r.body()); }

    http::Router router_;
    std::unique_ptr<auth::testing::RouteServer> server_;
};

const std::string kBases = "/api/v1/knowledge-bases";

TEST_F(RoutesTest, ContractFlow) {
    auto created = call(bhttp::verb::post, kBases, R"({"name": "faq"})");
    ASSERT_EQ(created.result_int(), 201) << created.body();
    std::string kb_id(json_of(created).at("id").as_string());

    auto up = upload_file(kBases + "/faq/documents", "delivery.md",
                          "# Delivery\n\nCourier delivery costs 120 UAH and is free from 5000 UAH.\n");
    ASSERT_EQ(up.result_int(), 201) << up.body();
    auto doc = json_of(up).as_object();
    EXPECT_TRUE(doc.at("id").is_string());
    EXPECT_EQ(doc.at("name"), "delivery.md");
    EXPECT_EQ(doc.at("status"), "queued");
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));

    // {kb} is the id or the name.
    auto list = call(bhttp::verb::get, kBases + "/" + kb_id + "/documents");
    ASSERT_EQ(list.result_int(), 200) << list.body();
    auto items = json_of(list).at("items").as_array();
    ASSERT_EQ(items.size(), 1u);
    EXPECT_EQ(items[0].at("status"), "ready");
    EXPECT_EQ(items[0].at("chunks"), 1);
    EXPECT_TRUE(json_of(list).at("next_cursor").is_null());

    auto search = call(bhttp::verb::post, kBases + "/faq/search", R"({"query": "courier price", "k": 5})");
    ASSERT_EQ(search.result_int(), 200) << search.body();
    auto results = json_of(search).at("results").as_array();
    ASSERT_EQ(results.size(), 1u);
    for (const char* key : {"document", "chunk", "text", "score"}) EXPECT_TRUE(results[0].as_object().contains(key)) << key;
    EXPECT_EQ(results[0].at("document"), doc.at("id"));

    auto agent = call(bhttp::verb::post, "/api/v1/agents",
                      R"({"name": "faq", "prompt": "Help", "knowledge_bases": ["faq"], "model": {}})");
    ASSERT_EQ(agent.result_int(), 201) << agent.body();
    auto ask = call(bhttp::verb::post, "/api/v1/agents/faq/ask", R"({"input": "How much is courier delivery?"})");
    ASSERT_EQ(ask.result_int(), 200) << ask.body();
    auto answer = json_of(ask).as_object();
    EXPECT_EQ(answer.at("answer"), "Courier delivery costs 120 UAH and is free from 5000 UAH.");
    EXPECT_EQ(answer.at("escalate"), false);
    EXPECT_TRUE(answer.at("escalation_reason").is_null());
    ASSERT_EQ(answer.at("sources").as_array().size(), 1u);
    for (const char* key : {"document", "chunk", "text", "score"}) {
        EXPECT_TRUE(answer.at("sources").as_array()[0].as_object().contains(key)) << key;
    }
    auto human = json_of(call(bhttp::verb::post, "/api/v1/agents/faq/ask", R"({"input": "operator please"})"));
    EXPECT_EQ(human.at("escalate"), true);
    EXPECT_EQ(human.at("escalation_reason"), "human_request");

    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/agents").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/agents/faq").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::patch, "/api/v1/agents/faq", R"({"k": 2})").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::delete_, kBases + "/faq").result_int(), 409);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/agents/faq").result_int(), 204);
    std::string doc_path = kBases + "/faq/documents/" + std::string(doc.at("id").as_string());
    EXPECT_EQ(call(bhttp::verb::get, doc_path + "/chunks").result_int(), 200);
    auto reup = upload_file(doc_path, "new.txt", "Replaced text.", "text/plain", "admin", bhttp::verb::put);
    ASSERT_EQ(reup.result_int(), 200) << reup.body();
    EXPECT_EQ(json_of(reup).at("name"), "delivery.md");
    EXPECT_EQ(json_of(reup).at("revision"), 2);
    EXPECT_EQ(call(bhttp::verb::patch, doc_path, R"({"name": "d.md"})").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::delete_, doc_path).result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::delete_, kBases + "/faq").result_int(), 204);
}

TEST_F(RoutesTest, BadUploads) {
    call(bhttp::verb::post, kBases, R"({"name": "kb"})");
    EXPECT_EQ(upload_file(kBases + "/kb/documents", "big.txt", std::string(kMaxDocumentBytes + 1, 'a')).result_int(), 413);
    auto png = upload_file(kBases + "/kb/documents", "a.txt", std::string("\x89PNG\r\n\x1a\n\0\0\0", 11), "text/plain");
    EXPECT_EQ(png.result_int(), 415) << png.body();
    EXPECT_EQ(json_of(png).at("error").at("code"), "unsupported_format");
    EXPECT_EQ(upload_file(kBases + "/kb/documents", "e.txt", "").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::post, kBases + "/kb/documents", "--x\r\nbroken", "admin", "multipart/form-data; boundary=x")
                  .result_int(),
              400);
    EXPECT_EQ(call(bhttp::verb::post, kBases + "/kb/documents", R"({"file": "x"})").result_int(), 400);
    EXPECT_EQ(upload_file(kBases + "/missing/documents", "a.txt", "x").result_int(), 404);
    // A lying type: declared PDF, really text → indexed as text.
    auto lying = upload_file(kBases + "/kb/documents", "fake.pdf", "Plain words here.", "application/pdf");
    ASSERT_EQ(lying.result_int(), 201);
    EXPECT_EQ(json_of(lying).at("format"), "txt");
    // A broken PDF is accepted and fails in the background with its reason.
    auto broken = upload_file(kBases + "/kb/documents", "bad.pdf", "%PDF-1.4 broken", "application/pdf");
    ASSERT_EQ(broken.result_int(), 201);
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));
    auto got = json_of(call(bhttp::verb::get, kBases + "/kb/documents/" + std::string(json_of(broken).at("id").as_string())));
    EXPECT_EQ(got.at("status"), "error");
    EXPECT_TRUE(got.at("error").is_string());
    // Raw bodies with ?name= work for scripts.
    auto raw = call(bhttp::verb::post, kBases + "/kb/documents?name=raw.md", "# T\n\nText.", "admin", "text/markdown");
    ASSERT_EQ(raw.result_int(), 201) << raw.body();
    EXPECT_EQ(json_of(raw).at("name"), "raw.md");
}

TEST_F(RoutesTest, Access) {
    call(bhttp::verb::post, kBases, R"({"name": "kb"})");
    EXPECT_EQ(call(bhttp::verb::get, kBases, "", "").result_int(), 401);
    EXPECT_EQ(call(bhttp::verb::get, kBases, "", "nobody").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, kBases, "", "operator").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, kBases + "/kb/search", R"({"query": "x"})", "operator").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, kBases, R"({"name": "x"})", "operator").result_int(), 403);
    EXPECT_EQ(upload_file(kBases + "/kb/documents", "a.txt", "x", "text/plain", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::delete_, kBases + "/kb", "", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/agents", R"({"name": "a"})", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, kBases + "/nope").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/agents/nope/ask", R"({"input": "x"})").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::post, kBases + "/kb/search", R"({"query": "x", "k": 500})").result_int(), 400);
}

TEST_F(RoutesTest, AgentUsage) {
    call(bhttp::verb::post, kBases, R"({"name": "faq"})");
    upload_file(kBases + "/faq/documents", "d.md", "# Delivery\n\nCourier delivery costs 120 UAH.\n");
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));
    call(bhttp::verb::post, "/api/v1/agents", R"({"name": "faq", "knowledge_bases": ["faq"]})");
    ASSERT_EQ(call(bhttp::verb::post, "/api/v1/agents/faq/ask", R"({"input": "courier delivery price"})").result_int(), 200);
    boost::json::value usage;
    for (int i = 0; i < 200; ++i) {  // the built-in answerer's count is written in the background
        auto r = call(bhttp::verb::get, "/api/v1/agents/faq/usage", "", "operator");
        ASSERT_EQ(r.result_int(), 200) << r.body();
        usage = json_of(r);
        if (usage.at("totals").at("asks") == 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(usage.at("agent"), "faq");
    EXPECT_EQ(usage.at("totals").at("asks"), 1);
    EXPECT_EQ(usage.at("totals").at("provider_calls"), 0);
    EXPECT_EQ(usage.at("totals").at("input_tokens"), 0);
    ASSERT_EQ(usage.at("days").as_array().size(), 1u);
    EXPECT_EQ(usage.at("days").as_array()[0].at("day"), "2023-11-14");
    auto range = json_of(call(bhttp::verb::get, "/api/v1/agents/faq/usage?from=2023-11-15&to=2023-11-20"));
    EXPECT_EQ(range.at("days").as_array().size(), 0u);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/agents/faq/usage?from=yesterday").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/agents/faq/usage?from=2023-11-1500").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/agents/nope/usage").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/agents/faq/usage", "", "nobody").result_int(), 403);
}

}  // namespace
}  // namespace parley::knowledge

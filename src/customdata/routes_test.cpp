// The routes through a real http::Server on 127.0.0.1:0 with a Beast client: status codes, bodies, access.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <future>

#include "auth/permissions.h"
#include "auth/route_test_server.h"
#include "customdata/customdata.h"
#include "customdata/test_util.h"
#include "http/http.h"

namespace parley::customdata {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using auth::testing::HttpResponse;

std::shared_ptr<const core::Principal> principal(std::string role, std::vector<std::string> rights) {
    auto p = std::make_shared<core::Principal>();
    p->user_id = role;
    p->roles = {role};
    for (auto& r : rights) p->permissions.insert("custom_data." + r);
    return p;
}

class RoutesTest : public testing::CustomDataTest {
protected:
    RoutesTest() {
        register_routes(router_, *service_);
        server_ = std::make_unique<auth::testing::RouteServer>(io_, router_);
        server_->set_principal("admin", principal("administrator", {"view", "edit", "delete"}));
        server_->set_principal("integrator", principal("integrator", {"view", "edit", "delete"}));
        server_->set_principal("operator", principal("operator", {"view"}));
        server_->set_principal("supervisor", principal("supervisor", {"view", "edit"}));
    }
    ~RoutesTest() override { server_.reset(); }

    HttpResponse call(bhttp::verb verb, const std::string& target, const std::string& body = {},
                      const std::string& who = "admin", const std::string& content_type = "application/json") {
        // Brackets are sent percent-encoded (filter%5Bkind%5D%5Beq%5D), as URL libraries do.
        std::string encoded;
        for (char c : target) {
            if (c == '[') encoded += "%5B";
            else if (c == ']') encoded += "%5D";
            else encoded += c;
        }
        return server_->call(verb, encoded, body, who, content_type);
    }
    static boost::json::value json_of(const HttpResponse& r) { return boost::json::parse(r.body()); }

    http::Router router_;
    std::unique_ptr<auth::testing::RouteServer> server_;
};

const std::string kBase = "/api/v1/custom-data/models";

TEST_F(RoutesTest, ContractFlow) {
    auto created = call(bhttp::verb::post, kBase,
                        R"({"name": "complaints", "fields": [{"name": "text", "type": "text", "required": true},
                            {"name": "kind", "type": "select", "options": ["delivery", "quality"]},
                            {"name": "amount", "type": "number"}]})");
    ASSERT_EQ(created.result_int(), 201) << created.body();
    EXPECT_EQ(json_of(created).at("name"), "complaints");

    auto rec = call(bhttp::verb::post, kBase + "/complaints/records", R"({"text": "Late", "kind": "delivery", "amount": 3})");
    ASSERT_EQ(rec.result_int(), 201) << rec.body();
    auto record = json_of(rec).as_object();
    EXPECT_EQ(record.at("text"), "Late");
    EXPECT_EQ(record.at("kind"), "delivery");
    EXPECT_TRUE(record.at("id").is_string());
    EXPECT_TRUE(record.contains("created_at"));
    EXPECT_TRUE(record.contains("updated_at"));
    std::string id(record.at("id").as_string());

    EXPECT_EQ(call(bhttp::verb::get, kBase + "/complaints/records/" + id).result_int(), 200);
    auto patched = call(bhttp::verb::patch, kBase + "/complaints/records/" + id, R"({"kind": "quality"})");
    ASSERT_EQ(patched.result_int(), 200) << patched.body();
    EXPECT_EQ(json_of(patched).at("kind"), "quality");

    for (int i = 0; i < 3; ++i) {
        call(bhttp::verb::post, kBase + "/complaints/records",
             "{\"text\": \"more " + std::to_string(i) + "\", \"kind\": \"delivery\", \"amount\": " + std::to_string(i) + "}");
    }
    auto page = call(bhttp::verb::get, kBase + "/complaints/records?filter%5Bkind%5D%5Beq%5D=delivery&sort=-amount&limit=2");
    ASSERT_EQ(page.result_int(), 200) << page.body();
    auto body = json_of(page).as_object();
    ASSERT_EQ(body.at("items").as_array().size(), 2u);
    EXPECT_EQ(body.at("items").as_array()[0].at("amount"), 2);
    ASSERT_TRUE(body.at("next_cursor").is_string());
    auto next = call(bhttp::verb::get, kBase + "/complaints/records?filter[kind][eq]=delivery&sort=-amount&limit=2&cursor=" +
                                           std::string(body.at("next_cursor").as_string()));
    auto next_body = json_of(next).as_object();
    ASSERT_EQ(next_body.at("items").as_array().size(), 1u);
    EXPECT_TRUE(next_body.at("next_cursor").is_null());
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/complaints/records?filter[amount][in]=0,2")).at("items").as_array().size(),
              2u);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/complaints/records?q=mor")).at("items").as_array().size(), 3u);

    auto imported = call(bhttp::verb::post, kBase + "/complaints/import", "text,kind\r\nfrom csv,delivery\r\n", "admin",
                         "text/csv");
    ASSERT_EQ(imported.result_int(), 200) << imported.body();
    EXPECT_EQ(json_of(imported).at("imported"), 1);
    EXPECT_TRUE(json_of(imported).at("errors").as_array().empty());
    EXPECT_EQ(json_of(imported).at("index_pending"), 0);  // a small import is indexed before it answers
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/complaints/records?q=csv")).at("items").as_array().size(), 1u);
    EXPECT_TRUE(json_of(call(bhttp::verb::get, kBase + "/complaints")).at("index_pending").is_int64());

    auto failed = call(bhttp::verb::post, kBase + "/complaints/import", "text,kind\nok,delivery\nbad,nope\n", "admin",
                       "text/csv");
    EXPECT_EQ(failed.result_int(), 422);
    auto fb = json_of(failed).as_object();
    EXPECT_EQ(fb.at("imported"), 0);
    EXPECT_EQ(fb.at("errors").as_array()[0].at("row"), 2);
    EXPECT_EQ(fb.at("errors").as_array()[0].at("field"), "kind");
    EXPECT_EQ(fb.at("error").at("code"), "import_failed");

    auto skipped = call(bhttp::verb::post, kBase + "/complaints/import?mode=skip_bad_rows",
                        "text,kind\nok,delivery\nbad,nope\n", "admin", "text/csv");
    ASSERT_EQ(skipped.result_int(), 200);
    EXPECT_EQ(json_of(skipped).at("imported"), 1);
    EXPECT_EQ(json_of(skipped).at("errors").as_array().size(), 1u);

    auto semicolons = call(bhttp::verb::post, kBase + "/complaints/import?delimiter=%3B&map%5B%D0%9E%D0%BF%D0%B8%D1%81%5D=text",
                           "Опис;kind\n=1+2;quality\n", "admin", "text/csv");
    ASSERT_EQ(semicolons.result_int(), 200) << semicolons.body();

    auto exported = call(bhttp::verb::get, kBase + "/complaints/export?filter[kind][eq]=quality");
    ASSERT_EQ(exported.result_int(), 200);
    EXPECT_EQ(exported[bhttp::field::content_type], "text/csv; charset=utf-8");
    EXPECT_EQ(exported.body().substr(0, exported.body().find("\r\n")), "id,text,kind,amount,created_at,updated_at");
    EXPECT_NE(exported.body().find(",'=1+2,quality,"), std::string::npos);
    EXPECT_EQ(std::count(exported.body().begin(), exported.body().end(), '\n'), 3);

    EXPECT_EQ(call(bhttp::verb::delete_, kBase + "/complaints/records/" + id).result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/complaints/records/" + id).result_int(), 404);
}

TEST_F(RoutesTest, BadInputGetsClearErrors) {
    call(bhttp::verb::post, kBase, R"({"name": "faq", "fields": [{"name": "q", "type": "text", "unique": true}]})");
    auto expect = [&](const HttpResponse& r, int status, const std::string& code) {
        EXPECT_EQ(r.result_int(), status) << r.body();
        if (r.result_int() >= 400) {
            EXPECT_EQ(std::string(json_of(r).at("error").at("code").as_string()), code) << r.body();
        }
    };
    expect(call(bhttp::verb::post, kBase, "{not json"), 400, "invalid_json");
    expect(call(bhttp::verb::post, kBase, R"({"name": "x", "fields": [{"name": "a", "type": "colour"}]})"), 422,
           "invalid_model");
    expect(call(bhttp::verb::post, kBase, R"({"name": "faq"})"), 409, "model_exists");
    expect(call(bhttp::verb::get, kBase + "/nope/records"), 404, "model_not_found");
    expect(call(bhttp::verb::post, kBase + "/faq/records", R"({"q": 5})"), 422, "invalid_record");
    expect(call(bhttp::verb::post, kBase + "/faq/records", R"({"zzz": "x"})"), 422, "invalid_record");
    expect(call(bhttp::verb::post, kBase + "/faq/records", R"({"q": "same"})"), 201, "");
    expect(call(bhttp::verb::post, kBase + "/faq/records", R"({"q": "same"})"), 409, "duplicate_value");
    expect(call(bhttp::verb::get, kBase + "/faq/records?filter[q][between]=1"), 400, "invalid_filter");
    expect(call(bhttp::verb::get, kBase + "/faq/records?filter[nope][eq]=1"), 400, "invalid_filter");
    expect(call(bhttp::verb::get, kBase + "/faq/records?sort=-nope"), 400, "invalid_sort");
    expect(call(bhttp::verb::get, kBase + "/faq/records?cursor=garbage"), 400, "invalid_cursor");
    expect(call(bhttp::verb::get, kBase + "/faq/records?limit=1000"), 400, "invalid_limit");
    expect(call(bhttp::verb::post, kBase + "/faq/import", "", "admin", "text/csv"), 400, "empty_file");
    expect(call(bhttp::verb::post, kBase + "/faq/import", "nope\nx\n", "admin", "text/csv"), 400, "invalid_header");
    expect(call(bhttp::verb::post, kBase + "/faq/import?mode=maybe", "q\nx\n", "admin", "text/csv"), 400, "invalid_query");
    expect(call(bhttp::verb::post, kBase + "/faq/import", "q\n\"unterminated\n", "admin", "text/csv"), 422, "import_failed");
    expect(call(bhttp::verb::post, kBase + "/faq/import", std::string(2 << 20, 'x'), "admin", "text/csv"), 413,
           "too_large");
    expect(call(bhttp::verb::delete_, kBase + "/faq/fields/q"), 409, "field_has_data");
    expect(call(bhttp::verb::delete_, kBase + "/faq/fields/q?force=true"), 204, "");
}

TEST_F(RoutesTest, PermissionsAndPerModelAccessLists) {
    call(bhttp::verb::post, kBase,
         R"({"name": "vip", "fields": [{"name": "t", "type": "text"}],
             "access": {"view": ["supervisor"], "import": ["integrator"], "export": ["integrator"]}})");
    call(bhttp::verb::post, kBase, R"({"name": "open", "fields": [{"name": "t", "type": "text"}]})");
    EXPECT_EQ(call(bhttp::verb::get, kBase, "", "").result_int(), 401);
    // The module permission: operators only view.
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/open/records", "", "operator").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, kBase + "/open/records", R"({"t": "x"})", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::post, kBase, R"({"name": "mine"})", "operator").result_int(), 403);
    // The model's access list narrows further; administrators always pass.
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/vip/records", "", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/vip/records", "", "supervisor").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/vip/records", "", "admin").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, kBase + "/vip/import", "t\nx\n", "supervisor", "text/csv").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::post, kBase + "/vip/import", "t\nx\n", "integrator", "text/csv").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/vip/export", "", "supervisor").result_int(), 403);
    auto models = json_of(call(bhttp::verb::get, kBase, "", "operator")).at("items").as_array();
    ASSERT_EQ(models.size(), 1u);
    EXPECT_EQ(models[0].at("name"), "open");
    // Every route states a custom_data permission.
    for (const auto& route : router_.routes()) {
        EXPECT_EQ(route->access.kind, http::Access::Kind::kPermission) << route->pattern;
        EXPECT_EQ(route->access.module, std::string(auth::kModuleCustomData)) << route->pattern;
    }
}

TEST_F(RoutesTest, ModelAndFieldEditing) {
    call(bhttp::verb::post, kBase, R"({"name": "shops", "fields": [{"name": "city", "type": "text"}]})");
    call(bhttp::verb::post, kBase + "/shops/records", R"({"city": "Львів"})");
    auto added = call(bhttp::verb::post, kBase + "/shops/fields", R"({"name": "open", "type": "boolean", "default": true})");
    ASSERT_EQ(added.result_int(), 201) << added.body();
    auto renamed = call(bhttp::verb::patch, kBase + "/shops/fields/city", R"({"name": "town", "label": "Town"})");
    ASSERT_EQ(renamed.result_int(), 200) << renamed.body();
    auto rec = json_of(call(bhttp::verb::get, kBase + "/shops/records/1"));
    EXPECT_EQ(rec.at("town"), "Львів");
    EXPECT_EQ(rec.at("open"), true);
    auto model = call(bhttp::verb::patch, kBase + "/shops", R"({"label": "Shops", "display": {"list": {"columns": ["town"]}}})");
    ASSERT_EQ(model.result_int(), 200) << model.body();
    EXPECT_EQ(json_of(model).at("display").at("list").at("columns").as_array()[0], "town");
    EXPECT_EQ(call(bhttp::verb::patch, kBase + "/shops", R"({"fields": []})").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::patch, kBase + "/shops/fields/nope", R"({"label": "x"})").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::delete_, kBase + "/shops", "", "supervisor").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::delete_, kBase + "/shops").result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/shops").result_int(), 404);
}

}  // namespace
}  // namespace parley::customdata

// The routes through a real http::Server on 127.0.0.1:0 with a Beast client: statuses, bodies, permissions.
#include <gtest/gtest.h>

#include <concepts>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <future>
#include <set>
#include <map>

#include "clients/clients.h"
#include "auth/route_test_server.h"
#include "clients/test_util.h"
#include "http/http.h"

// Lets EXPECT_EQ compare a JSON value with a std::string id (found by argument-dependent lookup).
namespace boost::json {
template <typename S>
    requires std::same_as<S, std::string>
bool operator==(const value& v, const S& s) {
    return v.is_string() && v.get_string() == s;
}
}  // namespace boost::json

namespace parley::clients {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using auth::testing::HttpResponse;

std::shared_ptr<const core::Principal> principal(std::string id, std::vector<std::string> rights) {
    auto p = std::make_shared<core::Principal>();
    p->user_id = id;
    p->email = id + "@example.com";
    for (auto& r : rights) p->permissions.insert("clients." + r);
    return p;
}

class ClientRoutesTest : public testing::ClientsTest {
protected:
    ClientRoutesTest() {
        register_routes(router_, *directory_);
        auto config = auth::testing::RouteServer::default_config();
        config.max_body_bytes = 4 << 20;
        server_ = std::make_unique<auth::testing::RouteServer>(io_, router_, config);
        server_->set_principal("admin", principal("admin", {"view", "edit", "delete"}));
        server_->set_principal("viewer", principal("viewer", {"view"}));
        server_->set_principal("editor", principal("editor", {"view", "edit"}));
        server_->set_principal("nobody", principal("nobody", {}));
    }
    ~ClientRoutesTest() override { server_.reset(); }

    HttpResponse call(bhttp::verb verb, const std::string& target, const std::string& body = {},
                      const std::string& who = "admin", const std::string& content_type = "application/json") {
        std::string encoded;
        for (char c : target) {
            if (c == '[') encoded += "%5B";
            else if (c == ']') encoded += "%5D";
            else if (c == ' ') encoded += "%20";
            else if (c == '+') encoded += "%2B";
            else encoded += c;
        }
        return server_->call(verb, encoded, body, who, content_type);
    }
    static json::value json_of(const HttpResponse& r) { return json::parse(r.body()); }
    static std::string code_of(const HttpResponse& r) {
        return std::string(json::parse(r.body()).at("error").at("code").as_string());
    }

    http::Router router_;
    std::unique_ptr<auth::testing::RouteServer> server_;
};

const std::string kBase = "/api/v1/clients";

TEST_F(ClientRoutesTest, PermissionsPerRoute) {
    EXPECT_EQ(call(bhttp::verb::get, kBase, "", "").result_int(), 401);
    EXPECT_EQ(call(bhttp::verb::get, kBase, "", "nobody").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, kBase, "", "viewer").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, kBase, R"({"name": "x"})", "viewer").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::post, kBase + "/fields", R"({"name": "x", "type": "text"})", "viewer").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/export", "", "viewer").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, kBase + "/search-by-file", "380501112233", "viewer", "text/plain").result_int(), 200);
    auto created = call(bhttp::verb::post, kBase, R"({"name": "x"})", "editor");
    ASSERT_EQ(created.result_int(), 201);
    std::string id(json_of(created).at("id").as_string());
    auto forbidden = call(bhttp::verb::delete_, kBase + "/" + id, "", "editor");
    EXPECT_EQ(forbidden.result_int(), 403);
    EXPECT_NE(forbidden.body().find("clients.delete"), std::string::npos);
    EXPECT_EQ(call(bhttp::verb::delete_, kBase + "/" + id).result_int(), 200);
}

TEST_F(ClientRoutesTest, CardLifecycleOverHttp) {
    auto field = call(bhttp::verb::post, kBase + "/fields", R"({"name": "tier", "type": "select", "options": ["gold", "silver"]})");
    ASSERT_EQ(field.result_int(), 201) << field.body();
    auto created = call(bhttp::verb::post, kBase,
                        R"({"name": "Olena", "phone": "+380 50 111 22 33", "language": "uk", "fields": {"tier": "gold"}})");
    ASSERT_EQ(created.result_int(), 201) << created.body();
    auto card = json_of(created).as_object();
    std::string id(card.at("id").as_string());
    EXPECT_EQ(card.at("tier"), "gold");
    EXPECT_TRUE(card.contains("first_seen_at"));
    EXPECT_TRUE(card.at("channels").is_array());

    // The same phone again: the existing card, 200.
    auto again = call(bhttp::verb::post, kBase, R"({"phone": "380501112233", "email": "olena@example.com"})");
    EXPECT_EQ(again.result_int(), 200);
    EXPECT_EQ(json_of(again).at("id"), id);
    EXPECT_EQ(json_of(again).at("email"), "olena@example.com");

    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase, R"({"phone": "abc"})")), "invalid_phone");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase, R"({"colour": "red"})")), "unknown_field");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase, R"({"name": 5})")), "wrong_type");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase, R"({"fields": {"tier": "bronze"}})")), "invalid_client");
    EXPECT_EQ(call(bhttp::verb::post, kBase, "{not json").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "?limit=1").result_int(), 200);  // nothing else was created
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/count")).at("count").as_int64(), 1);

    auto patched = call(bhttp::verb::patch, kBase + "/" + id, R"({"name": "Olena P.", "fields": {"tier": "silver"}})");
    ASSERT_EQ(patched.result_int(), 200) << patched.body();
    EXPECT_EQ(json_of(patched).at("name"), "Olena P.");
    auto got = call(bhttp::verb::get, kBase + "/" + id);
    EXPECT_EQ(json_of(got).at("tier"), "silver");
    EXPECT_EQ(json_of(got).at("fields").at("tier"), "silver");
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/nobody").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::patch, kBase + "/nobody", R"({"name": "x"})").result_int(), 404);
}

TEST_F(ClientRoutesTest, ListFiltersSortsAndPages) {
    for (int i = 0; i < 12; ++i) {
        call(bhttp::verb::post, kBase,
             fmt::format(R"({{"name": "Client {:02}", "phone": "+38050000{:04}", "language": "{}"}})", i, i, i % 3 ? "uk" : "en"));
        clock_.advance_ms(1000);
    }
    auto en = call(bhttp::verb::get, kBase + "?filter[language][eq]=en");
    ASSERT_EQ(en.result_int(), 200) << en.body();
    EXPECT_EQ(json_of(en).at("items").as_array().size(), 4u);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "?filter[language]=uk&q=client 1")).at("items").as_array().size(), 2u);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "?filter[phone]=+380 50 000 0003")).at("items").as_array().size(), 1u);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/count?filter[name][in]=Client 01,Client 02")).at("count").as_int64(), 2);

    std::set<std::string> seen;
    std::string cursor;
    for (int page = 0; page < 10; ++page) {
        auto r = call(bhttp::verb::get, kBase + "?sort=name&limit=5" + (cursor.empty() ? "" : "&cursor=" + cursor));
        ASSERT_EQ(r.result_int(), 200) << r.body();
        auto body = json_of(r);
        for (const auto& item : body.at("items").as_array()) seen.insert(std::string(item.at("id").as_string()));
        if (body.at("next_cursor").is_null()) break;
        cursor = std::string(body.at("next_cursor").as_string());
    }
    EXPECT_EQ(seen.size(), 12u);

    auto q = call(bhttp::verb::post, kBase + "/query",
                  R"({"filter": {"match": "any", "conditions": [{"field": "name", "value": "Client 00"},
                                                                {"field": "name", "value": "Client 11"}]}, "limit": 10})");
    ASSERT_EQ(q.result_int(), 200) << q.body();
    EXPECT_EQ(json_of(q).at("items").as_array().size(), 2u);

    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "?colour=red")), "invalid_query");
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "?filter[name][like]=x")), "invalid_filter");
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "?filter[name")), "invalid_filter");
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "?sort=phone")), "invalid_sort");
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "?sort=name&cursor=zz")), "invalid_cursor");
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "?limit=0")), "invalid_limit");
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "?segment=nope")), "unknown_segment");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/query", R"({"filter": {"conditions": [{"op": "eq"}]}})")),
              "invalid_filter");
}

TEST_F(ClientRoutesTest, MergeOverHttpIsIdempotent) {
    std::string a(json_of(call(bhttp::verb::post, kBase, R"({"name": "A", "email": "a@example.com"})")).at("id").as_string());
    std::string b(json_of(call(bhttp::verb::post, kBase, R"({"name": "B"})")).at("id").as_string());
    make_dialog(b, "web");
    auto merged = call(bhttp::verb::post, kBase + "/" + a + "/merge", json::serialize(json::object{{"client_ids", json::array{b}}}));
    ASSERT_EQ(merged.result_int(), 200) << merged.body();
    EXPECT_EQ(json_of(merged).at("merged"), json::array{b});
    EXPECT_EQ(json_of(merged).at("moved").at("dialogs").as_int64(), 1);
    auto again = call(bhttp::verb::post, kBase + "/" + a + "/merge", json::serialize(json::object{{"client_ids", json::array{b}}}));
    ASSERT_EQ(again.result_int(), 200);
    EXPECT_EQ(json_of(again).at("already_merged"), json::array{b});
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/" + b)).at("id"), a);  // the old id resolves
    auto audit = call(bhttp::verb::get, kBase + "/merges?client_id=" + a);
    ASSERT_EQ(audit.result_int(), 200);
    ASSERT_EQ(json_of(audit).at("items").as_array().size(), 1u);
    EXPECT_EQ(json_of(audit).at("items").as_array()[0].at("actor_email"), "admin@example.com");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/" + a + "/merge", R"({"client_ids": ["nope"]})")), "client_not_found");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/" + a + "/merge", R"({})")), "missing_field");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/" + a + "/merge", R"({"client_ids": [1]})")), "wrong_type");
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "/merges?cursor=bad")), "invalid_cursor");
    auto channels = call(bhttp::verb::get, kBase + "/" + a + "/channels");
    ASSERT_EQ(channels.result_int(), 200);
    EXPECT_EQ(json_of(channels).at("items").as_array()[0].at("channel"), "web");
}

TEST_F(ClientRoutesTest, SegmentsTopicsAndSubscriptionsOverHttp) {
    std::string a(json_of(call(bhttp::verb::post, kBase, R"({"name": "A", "language": "en"})")).at("id").as_string());
    call(bhttp::verb::post, kBase, R"({"name": "B", "language": "uk"})");
    auto seg = call(bhttp::verb::post, kBase + "/segments",
                    R"({"name": "english", "title": "English speakers", "filter": {"conditions": [{"field": "language", "value": "en"}]}})");
    ASSERT_EQ(seg.result_int(), 201) << seg.body();
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/segments/english/count")).at("count").as_int64(), 1);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/segments/english")).at("count").as_int64(), 1);
    auto members = call(bhttp::verb::get, kBase + "/segments/english/clients");
    ASSERT_EQ(members.result_int(), 200);
    EXPECT_EQ(json_of(members).at("items").as_array()[0].at("id"), a);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "?segment=english")).at("items").as_array().size(), 1u);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/segments")).at("items").as_array().size(), 1u);
    EXPECT_EQ(call(bhttp::verb::patch, kBase + "/segments/english", R"({"title": "EN"})").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/segments/nope/clients").result_int(), 404);
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/segments", R"({"name": "english", "filter": {}})")), "segment_exists");

    ASSERT_EQ(call(bhttp::verb::post, kBase + "/topics", R"({"name": "news", "title": "News"})").result_int(), 201);
    auto sub = call(bhttp::verb::put, kBase + "/" + a + "/subscriptions/news");
    ASSERT_EQ(sub.result_int(), 200) << sub.body();
    EXPECT_EQ(json_of(sub).at("status"), "subscribed");
    auto subscribers = call(bhttp::verb::get, kBase + "/topics/news/subscribers");
    ASSERT_EQ(subscribers.result_int(), 200);
    EXPECT_EQ(json_of(subscribers).at("items").as_array().size(), 1u);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/" + a + "/subscriptions")).at("items").as_array().size(), 1u);
    EXPECT_EQ(json_of(call(bhttp::verb::delete_, kBase + "/" + a + "/subscriptions/news")).at("status"), "unsubscribed");
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/topics/news/subscribers")).at("items").as_array().size(), 0u);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/topics/news").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::patch, kBase + "/topics/news", R"({"active": "yes"})").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::put, kBase + "/" + a + "/subscriptions/nope").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::delete_, kBase + "/topics/news").result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::delete_, kBase + "/segments/english").result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::get, kBase + "/topics/news").result_int(), 404);
}

TEST_F(ClientRoutesTest, ExportIsCsvWithFormulaCellsEscaped) {
    call(bhttp::verb::post, kBase, R"({"name": "=cmd|' /C calc'!A0", "phone": "+380501112233"})");
    call(bhttp::verb::post, kBase, R"({"name": "Ivan", "language": "en"})");
    auto r = call(bhttp::verb::get, kBase + "/export?bom=true");
    ASSERT_EQ(r.result_int(), 200) << r.body();
    EXPECT_EQ(r[bhttp::field::content_type], "text/csv; charset=utf-8");
    EXPECT_NE(std::string(r["Content-Disposition"]).find("clients.csv"), std::string::npos);
    EXPECT_EQ(r.body().substr(0, 3), "\xEF\xBB\xBF");
    EXPECT_NE(r.body().find("'=cmd|' /C calc'!A0"), std::string::npos);
    EXPECT_EQ(r.body().find(",=cmd"), std::string::npos);
    auto only = call(bhttp::verb::get, kBase + "/export?filter[language]=en&delimiter=tab");
    EXPECT_NE(only.body().find("Ivan\t"), std::string::npos);
    EXPECT_EQ(only.body().find("cmd"), std::string::npos);
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "/export?delimiter=x")), "invalid_query");
    EXPECT_EQ(code_of(call(bhttp::verb::get, kBase + "/export?bom=maybe")), "invalid_query");
}

TEST_F(ClientRoutesTest, SearchByFileRawAndMultipart) {
    std::string a(json_of(call(bhttp::verb::post, kBase, R"({"name": "A", "phone": "+380501112233"})")).at("id").as_string());
    auto raw = call(bhttp::verb::post, kBase + "/search-by-file?by=phone", "phone\n380501112233\n12\n\"bad\n380999999999\n", "admin",
                    "text/csv");
    ASSERT_EQ(raw.result_int(), 200) << raw.body();
    auto body = json_of(raw);
    EXPECT_EQ(body.at("lines").as_int64(), 4);
    EXPECT_EQ(body.at("matched_count").as_int64(), 1);
    EXPECT_EQ(body.at("unmatched_count").as_int64(), 3);
    EXPECT_EQ(body.at("clients").as_array()[0].at("id"), a);
    EXPECT_EQ(body.at("unmatched").as_array()[0].at("reason"), "invalid_value");
    EXPECT_EQ(body.at("unmatched").as_array()[1].at("reason"), "malformed_line");
    EXPECT_EQ(body.at("unmatched").as_array()[2].at("reason"), "not_found");

    std::string multipart =
        "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ids.txt\"\r\n\r\n" + a +
        "\r\n--b0undary--\r\n";
    auto mp = call(bhttp::verb::post, kBase + "/search-by-file", multipart, "admin", "multipart/form-data; boundary=b0undary");
    ASSERT_EQ(mp.result_int(), 200) << mp.body();
    EXPECT_EQ(json_of(mp).at("matched_count").as_int64(), 1);

    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/search-by-file?by=colour", "x", "admin", "text/plain")), "invalid_query");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/search-by-file", "", "admin", "text/plain")), "empty_file");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/search-by-file", std::string("\xFF\xFE" "1\0", 4), "admin", "text/plain")),
              "unsupported_encoding");
    EXPECT_EQ(code_of(call(bhttp::verb::post, kBase + "/search-by-file", "junk", "admin", "multipart/form-data; boundary=zz")),
              "invalid_multipart");
}

TEST_F(ClientRoutesTest, FieldRoutes) {
    ASSERT_EQ(call(bhttp::verb::post, kBase + "/fields", R"({"name": "age", "type": "number", "label": "Age"})").result_int(), 201);
    EXPECT_EQ(call(bhttp::verb::post, kBase + "/fields", R"({"name": "age", "type": "number"})").result_int(), 409);
    EXPECT_EQ(json_of(call(bhttp::verb::get, kBase + "/fields")).at("items").as_array().size(), 1u);
    auto patched = call(bhttp::verb::patch, kBase + "/fields/age", R"({"label": "Years", "indexed": true})");
    ASSERT_EQ(patched.result_int(), 200) << patched.body();
    EXPECT_EQ(json_of(patched).at("label"), "Years");
    EXPECT_EQ(call(bhttp::verb::patch, kBase + "/fields/nope", R"({"label": "x"})").result_int(), 404);
    auto removed = call(bhttp::verb::delete_, kBase + "/fields/age?purge=true");
    ASSERT_EQ(removed.result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::delete_, kBase + "/fields/age").result_int(), 404);
}

}  // namespace
}  // namespace parley::clients

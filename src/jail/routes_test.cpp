// JailService and the /api/v1/jail routes over real HTTP (http::Server on 127.0.0.1:0, a real SQLite store in a
// temp dir, real SpiderMonkey runs), plus the scenario ActionRegistry wiring.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "auth/auth.h"
#include "auth/permissions.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/metrics.h"
#include "jail/jail.h"

namespace parley::jail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct Reply {
    int status = 0;
    json::value body;
};

std::shared_ptr<core::Principal> principal(std::string id, std::set<std::string> permissions) {
    auto p = std::make_shared<core::Principal>();
    p->user_id = id;
    p->email = id + "@example.com";
    for (auto& perm : permissions) p->permissions.insert(perm);
    return p;
}

class JailApiTest : public ::testing::Test {
protected:
    JailApiTest() : guard_(asio::make_work_guard(io_)) {
        dir_ = std::filesystem::temp_directory_path() / ("parley-jail-" + core::random_hex(8));
        std::filesystem::create_directories(dir_);
        store::StoreOptions options;
        options.path = (dir_ / "parley.db").string();
        options.durable = false;
        options.readers = 2;
        auto all = auth::migrations();
        for (auto& m : migrations()) all.push_back(m);
        store_ = store::Store::open_sqlite(options, all);
        JailOptions jail;
        jail.threads = 2;
        jail.defaults = Limits{2'000, 500, 32, 64, 3};
        sandbox_ = std::make_unique<Sandbox>(jail, nullptr);
        actions::register_builtin_actions(registry_);
        service_ = std::make_unique<JailService>(*store_, clock_, *sandbox_, &registry_,
                                                 [] { return json::object{{"crm_url", "https://crm.example"}}; });
        register_routes(router_, *service_);
        tokens_["editor"] = principal("editor", {"jail.view", "jail.edit", "jail.delete"});
        tokens_["viewer"] = principal("viewer", {"jail.view"});
        tokens_["other"] = principal("other", {"bots.view"});
        server_ = std::make_unique<http::Server>(io_, config_, router_, metrics_, [this](const http::Request& req)
                                                     -> std::optional<std::shared_ptr<const core::Principal>> {
            std::string auth(req.header("authorization"));
            if (auth.rfind("Bearer ", 0) != 0) return std::nullopt;
            auto it = tokens_.find(auth.substr(7));
            if (it == tokens_.end()) return std::nullopt;
            return it->second;
        });
        port_ = server_->start("127.0.0.1", 0);
        for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
    }

    ~JailApiTest() override {
        std::promise<void> stopped;
        server_->stop([&] { stopped.set_value(); });
        stopped.get_future().wait();
        guard_.reset();
        io_.stop();
        for (auto& t : threads_) t.join();
        server_.reset();
        service_.reset();
        sandbox_.reset();
        store_->close();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    Reply call(bhttp::verb verb, const std::string& target, const std::string& body = {},
               const std::string& token = "editor") {
        asio::io_context io;
        beast::tcp_stream stream(io);
        stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
        stream.expires_after(20s);
        bhttp::request<bhttp::string_body> req{verb, target, 11};
        req.set(bhttp::field::host, "127.0.0.1");
        if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
        if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        bhttp::write(stream, req);
        beast::flat_buffer buffer;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(stream, buffer, res);
        Reply r;
        r.status = static_cast<int>(res.result_int());
        if (!res.body().empty()) r.body = json::parse(res.body());
        return r;
    }
    Reply post(const std::string& target, const json::value& body, const std::string& token = "editor") {
        return call(bhttp::verb::post, target, json::serialize(body), token);
    }
    Reply put(const std::string& target, const json::value& body, const std::string& token = "editor") {
        return call(bhttp::verb::put, target, json::serialize(body), token);
    }
    Reply get(const std::string& target, const std::string& token = "editor") {
        return call(bhttp::verb::get, target, {}, token);
    }

    json::object check_order(std::string name = "check_order") {
        return json::object{
            {"name", name},
            {"code", "async function main(ctx) {\n  console.log('order', ctx.params.order_id);\n"
                     "  if (ctx.params.order_id === 'A-1') return {event: 'found', state: {status: 'shipped'}};\n"
                     "  return {event: 'not_found'};\n}"},
            {"params", json::object{{"order_id", json::object{{"type", "string"}, {"required", true}}},
                                    {"lang", json::object{{"type", "string"}, {"default", "uk"}}}}},
            {"events", json::array{"found", "not_found"}},
            {"description", "Looks an order up in the CRM"},
            {"tags", json::array{"crm", "orders"}}};
    }

    std::int64_t count(const std::string& sql) {
        return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
    }

    std::filesystem::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<Sandbox> sandbox_;
    actions::ActionRegistry registry_;
    std::unique_ptr<JailService> service_;
    http::Router router_;
    core::Config config_;
    core::Metrics metrics_;
    std::map<std::string, std::shared_ptr<core::Principal>> tokens_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::unique_ptr<http::Server> server_;
    std::uint16_t port_ = 0;
    std::vector<std::thread> threads_;
};

TEST_F(JailApiTest, PermissionMatrix) {
    using http::Method;
    const std::map<std::pair<Method, std::string>, std::string> expected = {
        {{Method::kPost, "/api/v1/jail/actions"}, "edit"},
        {{Method::kGet, "/api/v1/jail/actions"}, "view"},
        {{Method::kGet, "/api/v1/jail/actions/{name}"}, "view"},
        {{Method::kPut, "/api/v1/jail/actions/{name}"}, "edit"},
        {{Method::kDelete, "/api/v1/jail/actions/{name}"}, "delete"},
        {{Method::kPost, "/api/v1/jail/actions/{name}/test"}, "edit"},
        {{Method::kPost, "/api/v1/jail/actions/{name}/clone"}, "edit"},
        {{Method::kPost, "/api/v1/jail/actions/{name}/enable"}, "edit"},
        {{Method::kPost, "/api/v1/jail/actions/{name}/disable"}, "edit"},
        {{Method::kGet, "/api/v1/jail/actions/{name}/versions"}, "view"},
        {{Method::kGet, "/api/v1/jail/actions/{name}/versions/{version}"}, "view"},
        {{Method::kPost, "/api/v1/jail/actions/{name}/versions/{version}/restore"}, "edit"},
    };
    ASSERT_EQ(router_.routes().size(), expected.size());
    for (const auto& route : router_.routes()) {
        auto it = expected.find({route->method, route->pattern});
        ASSERT_NE(it, expected.end()) << route->pattern;
        EXPECT_EQ(route->access.kind, http::Access::Kind::kPermission);
        EXPECT_EQ(route->access.module, "jail");
        EXPECT_EQ(core::action_name(route->access.action), it->second) << route->pattern;
    }
    EXPECT_EQ(get("/api/v1/jail/actions", "").status, 401);
    EXPECT_EQ(get("/api/v1/jail/actions", "other").status, 403);
    EXPECT_EQ(get("/api/v1/jail/actions", "viewer").status, 200);
    EXPECT_EQ(post("/api/v1/jail/actions", check_order(), "viewer").status, 403);
}

TEST_F(JailApiTest, CreateGetListAndValidation) {
    auto r = post("/api/v1/jail/actions", check_order());
    ASSERT_EQ(r.status, 201) << json::serialize(r.body);
    EXPECT_EQ(r.body.at("name"), "check_order");
    EXPECT_EQ(r.body.at("version"), 1);
    EXPECT_EQ(r.body.at("enabled"), true);
    EXPECT_EQ(r.body.at("params_schema").at("required"), json::array{"order_id"});
    EXPECT_EQ(r.body.at("limits").at("cpu_ms"), 500);

    EXPECT_EQ(post("/api/v1/jail/actions", check_order()).status, 409);
    auto bad_name = check_order("Check-Order");
    EXPECT_EQ(post("/api/v1/jail/actions", bad_name).status, 400);
    auto unknown = check_order("x1");
    unknown["colour"] = "red";
    EXPECT_EQ(post("/api/v1/jail/actions", unknown).status, 400);
    auto bad_events = check_order("x2");
    bad_events["events"] = json::array{"Found!"};
    EXPECT_EQ(post("/api/v1/jail/actions", bad_events).status, 400);
    auto bad_params = check_order("x3");
    bad_params["params"] = json::object{{"id", json::object{{"type", "uuid"}}}};
    EXPECT_EQ(post("/api/v1/jail/actions", bad_params).status, 400);
    auto big_limit = check_order("x4");
    big_limit["limits"] = json::object{{"memory_mb", 100000}};
    auto limit_reply = post("/api/v1/jail/actions", big_limit);
    EXPECT_EQ(limit_reply.status, 400);
    EXPECT_EQ(limit_reply.body.at("error").at("code"), "limit_out_of_range");
    auto huge = check_order("x5");
    huge["code"] = std::string(300 * 1024, ' ') + "function main() {}";
    EXPECT_EQ(post("/api/v1/jail/actions", huge).status, 413);
    EXPECT_EQ(post("/api/v1/jail/actions", json::object{{"name", "set"}, {"code", "function main() {}"}}).status, 409)
        << "built-in action names are taken";

    auto broken = check_order("broken");
    broken["code"] = "function main(ctx) {\n  return {event: 'x'};\n  let = ;\n}";
    auto compile = post("/api/v1/jail/actions", broken);
    EXPECT_EQ(compile.status, 422);
    EXPECT_EQ(compile.body.at("error").at("code"), "compile_error");
    EXPECT_NE(std::string(compile.body.at("error").at("message").as_string()).find("line 3"), std::string::npos);
    EXPECT_EQ(compile.body.at("error").at("details").at(0).at("line"), 3);
    EXPECT_EQ(count("SELECT COUNT(*) FROM jail_actions"), 1) << "nothing half-written";

    auto one = get("/api/v1/jail/actions/check_order");
    ASSERT_EQ(one.status, 200);
    EXPECT_NE(std::string(one.body.at("code").as_string()).find("console.log"), std::string::npos);
    EXPECT_EQ(get("/api/v1/jail/actions/nope").status, 404);
    EXPECT_EQ(get("/api/v1/jail/actions/NOPE%2F..").status, 404);

    for (const char* name : {"send_sms", "crm_lookup", "crm_update"}) {
        auto body = check_order(name);
        body["tags"] = json::array{std::string(name).rfind("crm", 0) == 0 ? "crm" : "sms"};
        ASSERT_EQ(post("/api/v1/jail/actions", body).status, 201);
    }
    auto page = get("/api/v1/jail/actions?limit=2");
    ASSERT_EQ(page.status, 200);
    ASSERT_EQ(page.body.at("items").as_array().size(), 2u);
    EXPECT_EQ(page.body.at("items").at(0).at("name"), "check_order");
    EXPECT_FALSE(page.body.at("items").at(0).as_object().contains("code"));
    std::string cursor(page.body.at("next_cursor").as_string());
    auto page2 = get("/api/v1/jail/actions?limit=2&cursor=" + cursor);
    ASSERT_EQ(page2.body.at("items").as_array().size(), 2u);
    EXPECT_EQ(page2.body.at("next_cursor"), nullptr);
    EXPECT_EQ(get("/api/v1/jail/actions?tag=crm").body.at("items").as_array().size(), 3u);  // check_order too
    EXPECT_EQ(get("/api/v1/jail/actions?q=LOOKUP").body.at("items").as_array().size(), 1u);
    EXPECT_EQ(get("/api/v1/jail/actions?q=order").body.at("items").as_array().size(), 4u);  // description
    EXPECT_EQ(get("/api/v1/jail/actions?q=%25").body.at("items").as_array().size(), 0u);
    EXPECT_EQ(get("/api/v1/jail/actions?cursor=..%2F").status, 400);
    EXPECT_EQ(get("/api/v1/jail/actions?limit=0").status, 400);
}

TEST_F(JailApiTest, EditingAddsVersionsThatCanBeRestored) {
    ASSERT_EQ(post("/api/v1/jail/actions", check_order()).status, 201);
    auto r = put("/api/v1/jail/actions/check_order",
                 json::object{{"code", "function main() { return {event: 'v2'}; }"}, {"note", "simpler"}});
    ASSERT_EQ(r.status, 200) << json::serialize(r.body);
    EXPECT_EQ(r.body.at("version"), 2);
    EXPECT_EQ(r.body.at("events"), (json::array{"found", "not_found"})) << "unchanged fields stay";
    r = put("/api/v1/jail/actions/check_order", json::object{{"description", "only metadata"}});
    EXPECT_EQ(r.body.at("version"), 3) << "each change is a new version";

    auto broken = put("/api/v1/jail/actions/check_order", json::object{{"code", "function main( {"}});
    EXPECT_EQ(broken.status, 422);
    EXPECT_EQ(broken.body.at("error").at("details").at(0).at("line"), 1);
    EXPECT_EQ(put("/api/v1/jail/actions/missing", json::object{{"code", "function main() {}"}}).status, 404);
    EXPECT_EQ(put("/api/v1/jail/actions/check_order", json::object{{"name", "renamed"}}).status, 400);

    auto versions = get("/api/v1/jail/actions/check_order/versions");
    ASSERT_EQ(versions.status, 200);
    ASSERT_EQ(versions.body.at("items").as_array().size(), 3u);
    EXPECT_EQ(versions.body.at("items").at(0).at("version"), 3);
    EXPECT_EQ(versions.body.at("items").at(1).at("note"), "simpler");
    EXPECT_EQ(versions.body.at("items").at(1).at("author"), "editor");
    auto v1 = get("/api/v1/jail/actions/check_order/versions/1");
    ASSERT_EQ(v1.status, 200);
    EXPECT_NE(std::string(v1.body.at("code").as_string()).find("not_found"), std::string::npos);
    EXPECT_EQ(get("/api/v1/jail/actions/check_order/versions/9").status, 404);
    EXPECT_EQ(get("/api/v1/jail/actions/check_order/versions/x").status, 404);

    auto restored = post("/api/v1/jail/actions/check_order/versions/1/restore", json::object{});
    ASSERT_EQ(restored.status, 200);
    EXPECT_EQ(restored.body.at("version"), 4);
    auto run = post("/api/v1/jail/actions/check_order/test", json::object{{"params", json::object{{"order_id", "A-1"}}}});
    EXPECT_EQ(run.body.at("event"), "found") << "the restored code runs";
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'jail_action.%'"), 4);
}

TEST_F(JailApiTest, TestEndpointRunsAndReportsFailures) {
    ASSERT_EQ(post("/api/v1/jail/actions", check_order()).status, 201);
    auto r = post("/api/v1/jail/actions/check_order/test",
                  json::object{{"params", json::object{{"order_id", "A-1"}}}, {"state", json::object{{"x", 1}}}});
    ASSERT_EQ(r.status, 200) << json::serialize(r.body);
    EXPECT_EQ(r.body.at("event"), "found");
    EXPECT_EQ(r.body.at("state"), (json::object{{"status", "shipped"}}));
    EXPECT_EQ(r.body.at("logs"), (json::array{"order A-1"}));
    EXPECT_TRUE(r.body.at("ms").is_double());
    EXPECT_FALSE(r.body.as_object().contains("error"));

    auto loop = check_order("spin");
    loop["code"] = "function main() { for (;;) {} }";
    loop["limits"] = json::object{{"cpu_ms", 100}};
    ASSERT_EQ(post("/api/v1/jail/actions", loop).status, 201);
    r = post("/api/v1/jail/actions/spin/test", json::object{});
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body.at("event"), "error");
    EXPECT_EQ(r.body.at("error").at("code"), "time_limit");

    auto thrower = check_order("thrower");
    thrower["code"] = "function main(ctx) {\n  ctx.params.missing.deeper = 1;\n}";
    ASSERT_EQ(post("/api/v1/jail/actions", thrower).status, 201);
    r = post("/api/v1/jail/actions/thrower/test", json::object{{"params", json::object{}}});
    EXPECT_EQ(r.body.at("error").at("code"), "js_error");
    EXPECT_NE(std::string(r.body.at("error").at("message").as_string()).find("line 2"), std::string::npos);

    auto fetcher = check_order("fetcher");
    fetcher["code"] = "async function main() { await fetch('http://169.254.169.254/'); return {event: 'x'}; }";
    ASSERT_EQ(post("/api/v1/jail/actions", fetcher).status, 201);
    EXPECT_EQ(post("/api/v1/jail/actions/fetcher/test", json::object{}).body.at("error").at("code"), "fetch_refused");

    auto bad = check_order("bad_result");
    bad["code"] = "function main() { return 'found'; }";
    ASSERT_EQ(post("/api/v1/jail/actions", bad).status, 201);
    EXPECT_EQ(post("/api/v1/jail/actions/bad_result/test", json::object{}).body.at("error").at("code"), "bad_result");

    EXPECT_EQ(post("/api/v1/jail/actions/nope/test", json::object{}).status, 404);
    EXPECT_EQ(post("/api/v1/jail/actions/check_order/test", json::object{{"params", 1}}).status, 400);
    EXPECT_EQ(post("/api/v1/jail/actions/check_order/test", json::object{{"secret", 1}}).status, 400);
}

TEST_F(JailApiTest, RegistryFollowsCreateDisableDeleteAndRunsByName) {
    ASSERT_EQ(post("/api/v1/jail/actions", check_order()).status, 201);
    auto found = registry_.find("check_order");
    ASSERT_TRUE(found);
    EXPECT_EQ(found->events(), (std::vector<std::string>{"found", "not_found", "error"}));
    EXPECT_TRUE(found->params_schema().at("properties").as_object().contains("order_id"));

    auto run = [&](json::object params) {
        std::promise<actions::ActionResult> p;
        actions::ActionCall call;
        call.action = "check_order";
        call.params = std::move(params);
        call.state = json::object{{"seen", 1}};
        call.client = json::object{{"id", "c1"}};
        registry_.run(std::move(call), [&](actions::ActionResult r) { p.set_value(std::move(r)); });
        return p.get_future().get();
    };
    auto result = run(json::object{{"order_id", "A-1"}});
    EXPECT_EQ(result.event, "found");
    EXPECT_EQ(result.state.at("status"), "shipped");
    EXPECT_GT(result.latency_ms, 0);

    ASSERT_EQ(post("/api/v1/jail/actions/check_order/clone", json::object{{"name", "check_order_v2"}}).status, 201);
    EXPECT_EQ(post("/api/v1/jail/actions/check_order/clone", json::object{{"name", "check_order_v2"}}).status, 409);
    EXPECT_TRUE(registry_.find("check_order_v2"));

    auto disabled = post("/api/v1/jail/actions/check_order/disable", json::object{});
    ASSERT_EQ(disabled.status, 200);
    EXPECT_EQ(disabled.body.at("enabled"), false);
    EXPECT_FALSE(registry_.find("check_order"));
    EXPECT_EQ(run(json::object{}).error->code, "unknown_action");
    EXPECT_EQ(get("/api/v1/jail/actions?enabled=false").body.at("items").as_array().size(), 1u);
    ASSERT_EQ(post("/api/v1/jail/actions/check_order/enable", json::object{}).status, 200);
    EXPECT_TRUE(registry_.find("check_order"));

    auto put_v2 = put("/api/v1/jail/actions/check_order",
                      json::object{{"code", "function main() { return {event: 'second'}; }"}});
    ASSERT_EQ(put_v2.status, 200);
    EXPECT_EQ(run(json::object{}).event, "second") << "the registry runs the newest version";

    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/jail/actions/check_order", {}, "viewer").status, 403);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/jail/actions/check_order").status, 204);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/jail/actions/check_order").status, 404);
    EXPECT_FALSE(registry_.find("check_order"));
    EXPECT_EQ(count("SELECT COUNT(*) FROM jail_versions WHERE action = 'check_order'"), 0);

    // A restart: a fresh registry and service load every enabled action from the store.
    ASSERT_EQ(post("/api/v1/jail/actions/check_order_v2/disable", json::object{}).status, 200);
    auto third = check_order("third");
    ASSERT_EQ(post("/api/v1/jail/actions", third).status, 201);
    actions::ActionRegistry fresh;
    JailService restarted(*store_, clock_, *sandbox_, &fresh);
    EXPECT_EQ(restarted.load(), 1u);
    EXPECT_TRUE(fresh.find("third"));
    EXPECT_FALSE(fresh.find("check_order_v2"));
}

TEST_F(JailApiTest, ParamDefaultsAndInstanceSettingsReachTheScript) {
    auto body = check_order("echo_ctx");
    body["code"] = "function main(ctx) { return {event: 'ok', state: {lang: ctx.params.lang, crm: ctx.instanceSettings.crm_url, client: ctx.client.id}}; }";
    ASSERT_EQ(post("/api/v1/jail/actions", body).status, 201);
    auto r = post("/api/v1/jail/actions/echo_ctx/test", json::object{{"client", json::object{{"id", "c-7"}}}});
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body.at("state"), (json::object{{"lang", "uk"}, {"crm", "https://crm.example"}, {"client", "c-7"}}));
}

}  // namespace
}  // namespace parley::jail

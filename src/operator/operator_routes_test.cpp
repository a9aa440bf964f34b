// The operator panel's routes through a real http::Server on 127.0.0.1:0 with a Beast client: the role × route
// matrix of every route, the CONTRACT endpoints unchanged, and the new routes' flow and error answers.
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
#include "auth/route_test_server.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "bots/triggers.h"
#include "clients/clients.h"
#include "http/http.h"
#include "operator/operator.h"

namespace parley::operators {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using auth::testing::HttpResponse;

class OperatorRoutesTest : public ::testing::Test {
protected:
    OperatorRoutesTest() {
        dir_ = fs::temp_directory_path() / ("parley-operator-routes-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        std::vector<store::Migration> migrations = auth::migrations();
        for (auto& m : clients::migrations()) migrations.push_back(m);
        for (auto& m : bots::migrations()) migrations.push_back(m);
        for (auto& m : operators::migrations()) migrations.push_back(m);
        store::StoreOptions options;
        options.path = (dir_ / "t.db").string();
        options.durable = false;
        store_ = store::Store::open_sqlite(options, migrations);
        bots_ = std::make_unique<bots::BotService>(*store_, clock_, registry_);
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        triggers_ = std::make_unique<bots::TriggerService>(*bots_, *dialogs_);
        service_ = std::make_unique<OperatorService>(*store_, clock_, *dialogs_, *triggers_, nullptr);
        register_routes(router_, *service_);
        for (const char* role : {"administrator", "integrator", "supervisor", "operator", "analyst"}) {
            store_->write_sync([role, now = clock_.now_ms()](store::Tx& tx) {
                tx.exec("INSERT INTO auth_users(id, email, name, language, password_hash, active, created_at, updated_at, "
                        "password_changed_at) VALUES (?, ?, ?, 'en', 'x', 1, ?, ?, ?)",
                        {std::string(role), std::string(role) + "@example.com", std::string(role), now, now, now});
            });
        }
        server_ = std::make_unique<auth::testing::RouteServer>(io_, router_);
        thread_ = std::thread([this] { io_.run(); });
        bot_ = asio::co_spawn(io_, bots_->create("Support", true), asio::use_future).get().id;
    }
    ~OperatorRoutesTest() override {
        server_.reset();  // stops gracefully while the io thread still runs
        work_.reset();
        thread_.join();
        store_->close();
        fs::remove_all(dir_);
    }

    HttpResponse call(bhttp::verb verb, const std::string& target, const std::string& body = {},
                      const std::string& who = "operator") {
        return server_->call(verb, target, body, who);
    }
    static json::value body_of(const HttpResponse& r) { return auth::testing::RouteServer::body_of(r); }
    static std::string error_code(const HttpResponse& r) { return auth::testing::RouteServer::error_code(r); }

    /// A dialog handed over by the bot's action; returns its id.
    std::string handed_over(json::object params = {{"auto_connect_operator", true}, {"status", "queue"}}) {
        clients::NewClient client{"Olena", "", "", "uk", {}};
        auto dialog = asio::co_spawn(io_, dialogs_->create(bot_, "telegram", client), asio::use_future).get();
        std::promise<actions::ActionResult> done;
        service_->connect(actions::ActionCall{"operator_panel__connect_to_operator_with_msg", std::move(params), dialog.id, "", {}, {}},
                          [&](actions::ActionResult r) { done.set_value(std::move(r)); });
        done.get_future().get();
        return dialog.id;
    }

    fs::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    std::unique_ptr<bots::TriggerService> triggers_;
    std::unique_ptr<OperatorService> service_;
    http::Router router_;
    asio::io_context io_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{io_.get_executor()};
    std::unique_ptr<auth::testing::RouteServer> server_;
    std::thread thread_;
    std::string bot_;
};

TEST_F(OperatorRoutesTest, RoleByRoutePermissionMatrix) {
    const std::set<std::string> viewers{"administrator", "supervisor", "operator", "analyst"};
    const std::set<std::string> editors{"administrator", "supervisor", "operator"};
    const std::set<std::string> supervisors{"administrator", "supervisor"};
    const std::set<std::string> settings_viewers{"administrator", "supervisor", "integrator"};
    using http::Method;
    const std::string d = "/api/v1/operator/dialogs/{id}";
    const std::map<auth::testing::RouteKey, std::set<std::string>> expected = {
        {{Method::kPut, "/api/v1/operator/status"}, editors},
        {{Method::kGet, "/api/v1/operator/status"}, viewers},
        {{Method::kGet, "/api/v1/operator/signature"}, viewers},
        {{Method::kPut, "/api/v1/operator/signature"}, editors},
        {{Method::kGet, "/api/v1/operator/folders"}, viewers},
        {{Method::kPost, "/api/v1/operator/folders"}, editors},
        {{Method::kPut, "/api/v1/operator/folders/order"}, editors},
        {{Method::kPatch, "/api/v1/operator/folders/{id}"}, editors},
        {{Method::kDelete, "/api/v1/operator/folders/{id}"}, editors},
        {{Method::kGet, "/api/v1/operator/operators"}, supervisors},
        {{Method::kPatch, "/api/v1/operator/operators/{user}"}, supervisors},
        {{Method::kPost, "/api/v1/operator/operators/{user}/reassign"}, supervisors},
        {{Method::kGet, "/api/v1/operator/queues"}, viewers},
        {{Method::kGet, "/api/v1/operator/statuses/{kind}"}, viewers},
        {{Method::kPost, "/api/v1/operator/statuses/{kind}"}, supervisors},
        {{Method::kPatch, "/api/v1/operator/statuses/{kind}/{name}"}, supervisors},
        {{Method::kDelete, "/api/v1/operator/statuses/{kind}/{name}"}, supervisors},
        {{Method::kGet, "/api/v1/operator/skill-groups"}, viewers},
        {{Method::kGet, "/api/v1/operator/skill-groups/{id}"}, viewers},
        {{Method::kPost, "/api/v1/operator/skill-groups"}, supervisors},
        {{Method::kPatch, "/api/v1/operator/skill-groups/{id}"}, supervisors},
        {{Method::kDelete, "/api/v1/operator/skill-groups/{id}"}, supervisors},
        {{Method::kPut, "/api/v1/operator/skill-groups/{id}/members/{user}"}, supervisors},
        {{Method::kDelete, "/api/v1/operator/skill-groups/{id}/members/{user}"}, supervisors},
        {{Method::kGet, "/api/v1/operator/subjects"}, viewers},
        {{Method::kPost, "/api/v1/operator/subjects"}, supervisors},
        {{Method::kPatch, "/api/v1/operator/subjects/{id}"}, supervisors},
        {{Method::kDelete, "/api/v1/operator/subjects/{id}"}, supervisors},
        {{Method::kGet, "/api/v1/operator/segment-rules"}, settings_viewers},
        {{Method::kPost, "/api/v1/operator/segment-rules"}, supervisors},
        {{Method::kPut, "/api/v1/operator/segment-rules/order"}, supervisors},
        {{Method::kPatch, "/api/v1/operator/segment-rules/{id}"}, supervisors},
        {{Method::kDelete, "/api/v1/operator/segment-rules/{id}"}, supervisors},
        {{Method::kGet, "/api/v1/operator/dialogs"}, viewers},
        {{Method::kPost, "/api/v1/operator/dialogs"}, editors},
        {{Method::kGet, d}, viewers},
        {{Method::kPatch, d}, editors},
        {{Method::kGet, d + "/history"}, viewers},
        {{Method::kPost, d + "/take"}, editors},
        {{Method::kPost, d + "/messages"}, editors},
        {{Method::kGet, d + "/messages"}, viewers},
        {{Method::kPost, d + "/transfer"}, editors},
        {{Method::kPost, d + "/tags"}, editors},
        {{Method::kDelete, d + "/tags/{tag}"}, editors},
        {{Method::kGet, d + "/notes"}, viewers},
        {{Method::kPost, d + "/notes"}, editors},
        {{Method::kPost, d + "/read"}, editors},
        {{Method::kGet, d + "/copilot"}, viewers},
        {{Method::kPost, d + "/close"}, editors},
        {{Method::kGet, "/api/v1/operator/quick-replies"}, viewers},
        {{Method::kPost, "/api/v1/operator/quick-replies"}, editors},
        {{Method::kPatch, "/api/v1/operator/quick-replies/{id}"}, editors},
        {{Method::kDelete, "/api/v1/operator/quick-replies/{id}"}, editors},
    };
    auth::testing::expect_role_matrix(router_, expected);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs", "", "").result_int(), 401);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs", "", "integrator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/skill-groups", R"({"name":"x"})").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/operators").result_int(), 403);
}

TEST_F(OperatorRoutesTest, ContractEndpointsKeepTheirShape) {
    auto status = call(bhttp::verb::put, "/api/v1/operator/status", R"({"status":"online","capacity":2})");
    ASSERT_EQ(status.result_int(), 200) << status.body();
    EXPECT_EQ(body_of(status).at("status"), "online");
    EXPECT_EQ(call(bhttp::verb::put, "/api/v1/operator/status", R"({"status":"sleeping"})").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::put, "/api/v1/operator/status", R"({"status":"online","capacity":101})").result_int(), 400);
    std::string id = handed_over();
    auto mine = call(bhttp::verb::get, "/api/v1/operator/dialogs?folder=mine");
    ASSERT_EQ(mine.result_int(), 200);
    EXPECT_EQ(body_of(mine).at("items").as_array().at(0).at("id"), json::value(id));
    EXPECT_TRUE(body_of(mine).at("next_cursor").is_null());
    auto reply = call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/messages", R"({"text":"Hello"})");
    ASSERT_EQ(reply.result_int(), 201) << reply.body();
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/messages", R"({"text":""})").result_int(), 400);
    std::string waiting = handed_over(json::object{});
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs?folder=unassigned").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/dialogs/" + waiting + "/take", "{}").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/close", "{}").result_int(), 200);
    EXPECT_EQ(body_of(call(bhttp::verb::get, "/api/v1/operator/dialogs?folder=closed")).at("items").as_array().size(), 1u);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs?folder=nope").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs?folder=all").result_int(), 403);
}

TEST_F(OperatorRoutesTest, RoutingSettingsAndDialogWorkOverHttp) {
    auto group = call(bhttp::verb::post, "/api/v1/operator/skill-groups",
                      R"({"name":"Billing","policy":"round_robin","members":[{"user_id":"operator","skill_level":3}]})", "supervisor");
    ASSERT_EQ(group.result_int(), 201) << group.body();
    std::string gid(body_of(group).at("id").as_string());
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/skill-groups", R"({"name":"Billing"})", "supervisor").result_int(), 409);
    EXPECT_EQ(call(bhttp::verb::put, "/api/v1/operator/skill-groups/" + gid + "/members/supervisor", R"({"skill_level":11})",
                   "supervisor").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::put, "/api/v1/operator/skill-groups/" + gid + "/members/supervisor", R"({"skill_level":7})",
                   "supervisor").result_int(), 200);
    auto subject = call(bhttp::verb::post, "/api/v1/operator/subjects", R"({"alias":"billing","group_id":")" + gid + R"("})", "supervisor");
    ASSERT_EQ(subject.result_int(), 201) << subject.body();
    auto rule = call(bhttp::verb::post, "/api/v1/operator/segment-rules",
                     R"({"name":"vip","group_id":")" + gid + R"(","condition":{"var":"segment","op":"eq","value":"vip"}})", "supervisor");
    ASSERT_EQ(rule.result_int(), 201) << rule.body();
    auto bad_rule = call(bhttp::verb::post, "/api/v1/operator/segment-rules",
                         R"({"name":"x","group_id":")" + gid + R"(","condition":{"var":"segment","op":"near"}})", "supervisor");
    EXPECT_EQ(bad_rule.result_int(), 422);
    EXPECT_EQ(error_code(bad_rule), "invalid_condition");
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/statuses/dialog", R"({"name":"pending"})", "supervisor").result_int(), 201);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/statuses/operator", R"({"name":"lunch"})", "supervisor").result_int(), 201);

    ASSERT_EQ(call(bhttp::verb::put, "/api/v1/operator/status", R"({"status":"online"})").result_int(), 200);
    std::string id = handed_over({{"auto_connect_operator", true}, {"subject_alias", "billing"}});
    auto card = call(bhttp::verb::get, "/api/v1/operator/dialogs/" + id);
    ASSERT_EQ(card.result_int(), 200) << card.body();
    EXPECT_EQ(body_of(card).at("group_id"), json::value(gid));
    EXPECT_EQ(body_of(card).at("client").at("name"), "Olena");
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs/" + id, "", "analyst").result_int(), 403);

    auto tags = call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/tags", R"({"tags":["refund"]})");
    ASSERT_EQ(tags.result_int(), 200) << tags.body();
    EXPECT_EQ(call(bhttp::verb::patch, "/api/v1/operator/dialogs/" + id, R"({"label":"pending"})").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/notes", R"({"text":"vip"})").result_int(), 201);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/read", "").result_int(), 200);
    auto filtered = call(bhttp::verb::get, "/api/v1/operator/dialogs?folder=mine&tag=refund&label=pending&states=assigned");
    ASSERT_EQ(filtered.result_int(), 200) << filtered.body();
    EXPECT_EQ(body_of(filtered).at("items").as_array().size(), 1u);
    auto unknown = call(bhttp::verb::get, "/api/v1/operator/dialogs?colour=red");
    EXPECT_EQ(unknown.result_int(), 400);
    EXPECT_EQ(error_code(unknown), "invalid_filter");
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/operator/dialogs?created_from=yesterday").result_int(), 400);

    auto folder = call(bhttp::verb::post, "/api/v1/operator/folders", R"({"name":"Refunds","filter":{"tag":"refund"}})");
    ASSERT_EQ(folder.result_int(), 201) << folder.body();
    std::string fid(body_of(folder).at("id").as_string());
    EXPECT_EQ(body_of(call(bhttp::verb::get, "/api/v1/operator/dialogs?folder=" + fid)).at("items").as_array().size(), 1u);
    auto order = call(bhttp::verb::put, "/api/v1/operator/folders/order",
                      R"({"ids":[")" + fid + R"(","mine","queue","unassigned","closed"]})");
    ASSERT_EQ(order.result_int(), 200) << order.body();
    EXPECT_EQ(body_of(order).at("items").as_array().at(0).at("id"), json::value(fid));

    auto sig = call(bhttp::verb::put, "/api/v1/operator/signature", R"({"text":"-- Op"})");
    ASSERT_EQ(sig.result_int(), 200);
    EXPECT_EQ(body_of(sig).at("enabled"), true);
    auto reply = call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/messages",
                      R"({"text":"See attached","attachment":{"url":"https://files.example.com/a.pdf","name":"a.pdf","mime":"application/pdf"}})");
    ASSERT_EQ(reply.result_int(), 201) << reply.body();
    EXPECT_EQ(body_of(reply).at("payload").at("attachment").at("name"), "a.pdf");

    // The supervisor sees the load and reassigns; the operator transfers to a group.
    auto ops = call(bhttp::verb::get, "/api/v1/operator/operators", "", "supervisor");
    ASSERT_EQ(ops.result_int(), 200);
    EXPECT_EQ(body_of(ops).at("items").as_array().at(0).at("active_dialogs"), 1);
    auto patched = call(bhttp::verb::patch, "/api/v1/operator/operators/operator", R"({"capacity":3})", "supervisor");
    ASSERT_EQ(patched.result_int(), 200) << patched.body();
    EXPECT_EQ(body_of(patched).at("capacity"), 3);
    auto moved = call(bhttp::verb::post, "/api/v1/operator/operators/operator/reassign", "{}", "supervisor");
    ASSERT_EQ(moved.result_int(), 200) << moved.body();
    EXPECT_EQ(body_of(moved).at("queued").as_array().size(), 1u);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/transfer", R"({"group_id":")" + gid + R"("})",
                   "supervisor").result_int(), 200);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/dialogs/" + id + "/transfer", R"({})", "supervisor").result_int(), 400);
    auto queues = call(bhttp::verb::get, "/api/v1/operator/queues");
    ASSERT_EQ(queues.result_int(), 200);

    auto history = call(bhttp::verb::get, "/api/v1/operator/dialogs/" + id + "/history", "", "supervisor");
    ASSERT_EQ(history.result_int(), 200) << history.body();
    EXPECT_EQ(body_of(history).at("items").as_array().size(), 1u);
    auto started = call(bhttp::verb::post, "/api/v1/operator/dialogs", R"({"client_id":"nobody","channel":"telegram","text":"hi"})");
    EXPECT_EQ(started.result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/operator/dialogs/" + id + "/tags/refund", "", "supervisor").result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/operator/folders/" + fid).result_int(), 204);
}

}  // namespace
}  // namespace parley::operators

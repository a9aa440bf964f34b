// The ticket routes through a real http::Server on 127.0.0.1:0 with a Beast client: the role × route matrix,
// status codes and bodies of the whole flow, and error answers.
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

#include "auth/route_test_server.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "clients/clients.h"
#include "http/http.h"
#include "operator/operator.h"
#include "operator/tickets.h"

namespace parley::operators {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using auth::testing::HttpResponse;

class TicketRoutesTest : public ::testing::Test {
protected:
    TicketRoutesTest() {
        dir_ = fs::temp_directory_path() / ("parley-ticket-routes-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        std::vector<store::Migration> migrations = clients::migrations();
        for (auto& m : bots::migrations()) migrations.push_back(m);
        for (auto& m : operators::migrations()) migrations.push_back(m);
        for (auto& m : ticket_migrations()) migrations.push_back(m);
        store::StoreOptions options;
        options.path = (dir_ / "t.db").string();
        options.durable = false;
        store_ = store::Store::open_sqlite(options, migrations);
        bots_ = std::make_unique<bots::BotService>(*store_, clock_, registry_);
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        service_ = std::make_unique<TicketService>(*store_, clock_, *dialogs_, nullptr);
        register_ticket_routes(router_, *service_);
        server_ = std::make_unique<auth::testing::RouteServer>(io_, router_);
        thread_ = std::thread([this] { io_.run(); });
    }
    ~TicketRoutesTest() override {
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

    fs::path dir_;
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    std::unique_ptr<TicketService> service_;
    http::Router router_;
    asio::io_context io_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{io_.get_executor()};
    std::unique_ptr<auth::testing::RouteServer> server_;
    std::thread thread_;
};

TEST_F(TicketRoutesTest, RoleByRoutePermissionMatrix) {
    const std::set<std::string> viewers{"administrator", "supervisor", "operator", "analyst"};
    const std::set<std::string> editors{"administrator", "supervisor", "operator"};
    const std::set<std::string> admins{"administrator", "supervisor"};
    using http::Method;
    const std::map<auth::testing::RouteKey, std::set<std::string>> expected = {
        {{Method::kGet, "/api/v1/tickets"}, viewers},
        {{Method::kPost, "/api/v1/tickets"}, editors},
        {{Method::kPost, "/api/v1/operator/dialogs/{id}/ticket"}, editors},
        {{Method::kGet, "/api/v1/tickets/{id}"}, viewers},
        {{Method::kPatch, "/api/v1/tickets/{id}"}, editors},
        {{Method::kDelete, "/api/v1/tickets/{id}"}, admins},
        {{Method::kGet, "/api/v1/tickets/{id}/comments"}, viewers},
        {{Method::kPost, "/api/v1/tickets/{id}/comments"}, editors},
        {{Method::kGet, "/api/v1/tickets/{id}/history"}, viewers},
        {{Method::kGet, "/api/v1/tickets/{id}/sla"}, viewers},
        {{Method::kGet, "/api/v1/tickets/{id}/links"}, viewers},
        {{Method::kPost, "/api/v1/tickets/{id}/links"}, editors},
        {{Method::kDelete, "/api/v1/tickets/{id}/links/{link}"}, editors},
        {{Method::kGet, "/api/v1/tickets/{id}/watchers"}, viewers},
        {{Method::kPut, "/api/v1/tickets/{id}/watchers/{user}"}, editors},
        {{Method::kDelete, "/api/v1/tickets/{id}/watchers/{user}"}, editors},
        {{Method::kGet, "/api/v1/ticket-fields"}, viewers},
        {{Method::kPost, "/api/v1/ticket-fields"}, admins},
        {{Method::kPatch, "/api/v1/ticket-fields/{name}"}, admins},
        {{Method::kDelete, "/api/v1/ticket-fields/{name}"}, admins},
        {{Method::kGet, "/api/v1/ticket-statuses"}, viewers},
        {{Method::kPost, "/api/v1/ticket-statuses"}, admins},
        {{Method::kPatch, "/api/v1/ticket-statuses/{name}"}, admins},
        {{Method::kDelete, "/api/v1/ticket-statuses/{name}"}, admins},
        {{Method::kGet, "/api/v1/sla-policies"}, viewers},
        {{Method::kPut, "/api/v1/sla-policies/{priority}"}, admins},
        {{Method::kDelete, "/api/v1/sla-policies/{priority}"}, admins},
    };
    auth::testing::expect_role_matrix(router_, expected);
    // Through the wire: no credentials → 401, a role without the right → 403.
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/tickets", "", "").result_int(), 401);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/tickets", "", "integrator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/tickets", R"({"title": "x"})", "analyst").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/ticket-fields", R"({"name": "x", "type": "string"})").result_int(), 403);
}

TEST_F(TicketRoutesTest, TicketFlowOverHttp) {
    auto field = call(bhttp::verb::post, "/api/v1/ticket-fields",
                      R"({"name": "order_no", "type": "string", "required": true})", "supervisor");
    ASSERT_EQ(field.result_int(), 201) << field.body();
    auto policy = call(bhttp::verb::put, "/api/v1/sla-policies/urgent", R"({"first_response_minutes": 15})", "supervisor");
    ASSERT_EQ(policy.result_int(), 200) << policy.body();

    auto refused = call(bhttp::verb::post, "/api/v1/tickets", R"({"title": "No order", "fields": {}})");
    ASSERT_EQ(refused.result_int(), 422) << refused.body();
    EXPECT_EQ(error_code(refused), "invalid_fields");
    EXPECT_EQ(body_of(refused).at("error").at("details").as_array()[0].at("field"), "fields.order_no");

    auto created = call(bhttp::verb::post, "/api/v1/tickets",
                        R"({"title": "Refund", "priority": "urgent", "tags": ["refund"], "fields": {"order_no": "17"}})");
    ASSERT_EQ(created.result_int(), 201) << created.body();
    EXPECT_EQ(body_of(created).at("key"), "T-1");
    EXPECT_FALSE(body_of(created).at("sla").at("first_response_due_at").is_null());

    auto got = call(bhttp::verb::get, "/api/v1/tickets/T-1");
    ASSERT_EQ(got.result_int(), 200) << got.body();
    EXPECT_EQ(body_of(got).at("fields").at("order_no"), "17");

    auto patched = call(bhttp::verb::patch, "/api/v1/tickets/T-1", R"({"status": "open", "assignee_id": "operator"})");
    ASSERT_EQ(patched.result_int(), 200) << patched.body();
    EXPECT_EQ(body_of(patched).at("version"), 2);

    auto page = call(bhttp::verb::get, "/api/v1/tickets?status=open&priority=urgent&assignee=me&field.order_no=17&q=ref");
    ASSERT_EQ(page.result_int(), 200) << page.body();
    EXPECT_EQ(body_of(page).at("items").as_array().size(), 1u);
    EXPECT_TRUE(body_of(page).at("next_cursor").is_null());
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/tickets?sort=title").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/tickets?limit=500").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/tickets?colour=red").result_int(), 400);

    auto comment = call(bhttp::verb::post, "/api/v1/tickets/T-1/comments", R"({"kind": "internal", "text": "called"})");
    ASSERT_EQ(comment.result_int(), 201) << comment.body();
    auto comments = call(bhttp::verb::get, "/api/v1/tickets/T-1/comments?kind=internal");
    EXPECT_EQ(body_of(comments).at("items").as_array().size(), 1u);
    auto second = call(bhttp::verb::post, "/api/v1/tickets", R"({"title": "Related", "fields": {"order_no": "18"}})");
    ASSERT_EQ(second.result_int(), 201);
    auto link = call(bhttp::verb::post, "/api/v1/tickets/T-2/links", R"({"kind": "duplicates", "ticket_id": "T-1"})");
    ASSERT_EQ(link.result_int(), 201) << link.body();
    auto links = call(bhttp::verb::get, "/api/v1/tickets/T-1/links");
    EXPECT_EQ(body_of(links).at("items").as_array()[0].at("kind"), "duplicated_by");
    EXPECT_EQ(call(bhttp::verb::put, "/api/v1/tickets/T-1/watchers/supervisor").result_int(), 200);
    EXPECT_EQ(body_of(call(bhttp::verb::get, "/api/v1/tickets/T-1/watchers")).at("items").as_array().size(), 2u);
    auto sla = call(bhttp::verb::get, "/api/v1/tickets/T-1/sla");
    ASSERT_EQ(sla.result_int(), 200);
    EXPECT_FALSE(body_of(sla).at("breached").as_bool());
    auto history = call(bhttp::verb::get, "/api/v1/tickets/T-1/history?limit=2");
    ASSERT_EQ(history.result_int(), 200);
    EXPECT_EQ(body_of(history).at("items").as_array().size(), 2u);
    EXPECT_TRUE(body_of(history).at("next_cursor").is_string());

    // Errors through the wire.
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/tickets/T-404").result_int(), 404);
    EXPECT_EQ(call(bhttp::verb::patch, "/api/v1/tickets/T-1", "{not json").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::patch, "/api/v1/tickets/T-1", R"({"priority": "whenever"})").result_int(), 400);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/tickets", R"({"title": ")" + std::string(300, 'x') + "\"}").result_int(), 413);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/tickets/T-1/comments",
                   R"({"kind": "internal", "text": ")" + std::string(kMaxCommentBytes + 1, 'x') + "\"}")
                  .result_int(),
              413);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/ticket-statuses", R"({"name": "open", "category": "open"})", "supervisor").result_int(),
              409);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/tickets/T-2", "", "operator").result_int(), 403);
    EXPECT_EQ(call(bhttp::verb::delete_, "/api/v1/tickets/T-2", "", "supervisor").result_int(), 204);
    EXPECT_EQ(call(bhttp::verb::get, "/api/v1/tickets/T-2").result_int(), 404);
    EXPECT_EQ(body_of(call(bhttp::verb::get, "/api/v1/tickets/T-1/links")).at("items").as_array().size(), 0u);
}

TEST_F(TicketRoutesTest, TicketFromDialogOverHttp) {
    std::promise<std::pair<std::string, std::string>> made;
    asio::co_spawn(
        io_,
        [this]() -> asio::awaitable<std::pair<std::string, std::string>> {
            auto bot = co_await bots_->create("Support", true);
            clients::NewClient c;
            c.name = "Olena";
            auto dialog = co_await dialogs_->create(bot.id, "preview", c);
            co_return std::make_pair(dialog.id, dialog.client_id);
        }(),
        [&](std::exception_ptr e, std::pair<std::string, std::string> ids) {
            if (e) std::rethrow_exception(e);
            made.set_value(ids);
        });
    auto [dialog, client] = made.get_future().get();
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("INSERT INTO op_dialogs(dialog_id, bot_id, client_id, channel, subject, state, operator_id, created_at) "
                "VALUES (?, 'b', ?, 'preview', 'Late parcel', 'assigned', 'operator', 0)",
                {dialog, client});
    });
    auto created = call(bhttp::verb::post, "/api/v1/operator/dialogs/" + dialog + "/ticket");
    ASSERT_EQ(created.result_int(), 201) << created.body();
    EXPECT_EQ(body_of(created).at("title"), "Late parcel");
    EXPECT_EQ(body_of(created).at("client_id"), json::value(client));
    EXPECT_EQ(body_of(created).at("source").at("dialog_id"), json::value(dialog));
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/operator/dialogs/nope/ticket").result_int(), 404);
    auto listed = call(bhttp::verb::get, "/api/v1/tickets?dialog=" + dialog);
    EXPECT_EQ(body_of(listed).at("items").as_array().size(), 1u);
}

}  // namespace
}  // namespace parley::operators

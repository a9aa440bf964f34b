// Sync sources: folders under the sync root (adds, updates by content hash, removals, symlinks, paths outside
// the root), URLs through the outbound client (local HTTP server, SSRF guard), the schedule, activate /
// deactivate / sync-now, and the routes over real HTTP.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <future>
#include <mutex>

#include "core/metrics.h"
#include "http/http.h"
#include "knowledge/test_util.h"
#include "outbound/outbound.h"
#include "outbound/test_server.h"

namespace parley::knowledge {
namespace {

namespace fs = std::filesystem;
using outbound::testing::TestRequest;
using outbound::testing::TestResponse;
using outbound::testing::TestServer;
using testing::thrown;

/// The fake web site URL sources read: path → (status, body), changed by the tests.
struct Site {
    std::mutex mutex;
    std::map<std::string, std::pair<int, std::string>> pages;

    TestResponse answer(const TestRequest& req) {
        std::lock_guard lock(mutex);
        auto it = pages.find(req.path);
        if (it == pages.end()) return TestResponse{404, {}, "not found"};
        return TestResponse{it->second.first, {{"content-type", "text/markdown"}}, it->second.second};
    }
    void set(const std::string& path, int status, std::string body) {
        std::lock_guard lock(mutex);
        pages[path] = {status, std::move(body)};
    }
};

/// Constructed before the knowledge fixture (and destroyed after it): the site, its server, the outbound
/// client the service fetches with.
struct Network {
    Network()
        : server([this](const TestRequest& req) { return site.answer(req); }),
          http([] {
              outbound::ClientOptions options;
              options.allowlist = [] { return std::optional<boost::json::value>(boost::json::array{"127.0.0.1"}); };
              return options;
          }()),
          guarded() {}
    Site site;
    TestServer server;
    outbound::Client http;     ///< loopback allowed
    outbound::Client guarded;  ///< default SSRF guard: loopback refused
};

KnowledgeOptions sync_options(outbound::Client& http) {
    KnowledgeOptions options;
    options.http = &http;
    options.sync_poll = std::chrono::milliseconds(20);
    return options;
}

void write(const fs::path& path, const std::string& content) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
}

class SyncTest : public Network, public testing::KnowledgeTest {
protected:
    SyncTest() : testing::KnowledgeTest(sync_options(http), true) { make_base(R"({"name": "shop"})"); }
    ~SyncTest() override { service_->stop(); }

    Source create(const std::string& spec) {
        return run(service_->create_source("shop", boost::json::parse(spec).as_object()));
    }
    /// Waits until the source has finished a run after `after` (its last_finished_at) and ingestion is idle.
    Source wait_run(const std::string& id, std::optional<std::int64_t> after) {
        for (int i = 0; i < 1000; ++i) {
            Source s = service_->get_source("shop", id);
            if (s.status.last_finished_at && (!after || *s.status.last_finished_at > *after) && s.status.state == "idle") {
                EXPECT_TRUE(service_->wait_idle(std::chrono::seconds(30)));
                return s;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ADD_FAILURE() << "the source did not sync";
        return service_->get_source("shop", id);
    }
    /// sync-now, then waits for that run (the fake clock moves so the run's time differs).
    Source sync(const std::string& id) {
        auto before = service_->get_source("shop", id).status.last_finished_at;
        clock_.advance_ms(1000);
        run(service_->sync_now("shop", id));
        return wait_run(id, before);
    }
    std::vector<std::string> names() {
        std::vector<std::string> out;
        for (const auto& d : service_->list_documents("shop", "", 100).items) out.push_back(d.name);
        std::sort(out.begin(), out.end());
        return out;
    }
};

TEST_F(SyncTest, FolderAddsUpdatesAndRemovesByContentHash) {
    write(sync_root_ / "docs/delivery.md", "# Delivery\n\nCourier delivery costs 120 UAH.\n");
    write(sync_root_ / "docs/sub/returns.txt", "Returns are accepted within 14 days.\n");
    write(sync_root_ / "docs/.hidden.md", "# Hidden\n\nnever indexed\n");
    write(sync_root_ / "docs/logo.png", std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
    Source src = create(R"({"kind": "folder", "location": "docs", "interval": 3600})");
    EXPECT_EQ(src.location, "docs");
    src = wait_run(src.id, std::nullopt);
    EXPECT_EQ(src.status.last_result, "ok");
    EXPECT_EQ(src.status.added, 2);
    EXPECT_EQ(src.status.skipped, 1);
    ASSERT_EQ(src.status.skipped_files.size(), 1u);
    EXPECT_EQ(src.status.skipped_files[0].at("path"), "logo.png");
    EXPECT_EQ(names(), (std::vector<std::string>{"delivery.md", "sub/returns.txt"}));
    for (const auto& d : service_->list_documents("shop", "", 100).items) {
        EXPECT_EQ(d.status, DocumentStatus::kReady);
        EXPECT_EQ(d.source_id, src.id);
        EXPECT_EQ(d.content_hash.size(), 64u);
    }
    auto hits = service_->search({service_->get_base("shop").id}, "courier delivery", 3);
    ASSERT_FALSE(hits.empty());
    EXPECT_EQ(hits[0].document_name, "delivery.md");

    write(sync_root_ / "docs/delivery.md", "# Delivery\n\nCourier delivery costs 150 UAH.\n");
    fs::remove(sync_root_ / "docs/sub/returns.txt");
    write(sync_root_ / "docs/warranty.md", "# Warranty\n\nTwelve months warranty.\n");
    src = sync(src.id);
    EXPECT_EQ(src.status.last_result, "ok");
    EXPECT_EQ(src.status.updated, 1);
    EXPECT_EQ(src.status.removed, 1);
    EXPECT_EQ(src.status.added, 1);
    EXPECT_EQ(src.status.unchanged, 0);
    EXPECT_EQ(names(), (std::vector<std::string>{"delivery.md", "warranty.md"}));
    hits = service_->search({service_->get_base("shop").id}, "courier delivery", 3);
    ASSERT_FALSE(hits.empty());
    EXPECT_NE(hits[0].text.find("150 UAH"), std::string::npos);
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_chunks WHERE text LIKE '%14 days%'"), 0);

    src = sync(src.id);
    EXPECT_EQ(src.status.unchanged, 2);
    EXPECT_EQ(src.status.added + src.status.updated + src.status.removed, 0);
    auto revision = count("SELECT max(revision) FROM knowledge_documents");
    EXPECT_EQ(revision, 2);  // unchanged files were not re-indexed
}

TEST_F(SyncTest, RefusesLocationsOutsideTheRoot) {
    fs::create_directories(sync_root_ / "ok");
    fs::create_directories(dir_ / "outside");
    fs::create_symlink(dir_ / "outside", sync_root_ / "escape");
    EXPECT_EQ(thrown([&] { create(R"({"kind": "folder", "location": "../outside"})"); }).code, "path_outside_root");
    EXPECT_EQ(thrown([&] { create(R"({"kind": "folder", "location": "ok/../../outside"})"); }).code, "path_outside_root");
    EXPECT_EQ(thrown([&] { create(R"({"kind": "folder", "location": "/etc"})"); }).status, 400);
    EXPECT_EQ(thrown([&] { create(R"({"kind": "folder", "location": "escape"})"); }).code, "path_outside_root");
    EXPECT_EQ(thrown([&] { create(R"({"kind": "folder", "location": "missing"})"); }).status, 422);
    EXPECT_EQ(thrown([&] { create(R"({"kind": "ftp", "location": "x"})"); }).status, 400);
    EXPECT_EQ(thrown([&] { create(R"({"kind": "url", "location": "ftp://example.com/a"})"); }).code, "invalid_location");
    EXPECT_EQ(thrown([&] { create(R"({"kind": "url", "location": "http://user:pw@example.com/a"})"); }).code,
              "invalid_location");
    EXPECT_EQ(thrown([&] { create(R"({"kind": "url", "location": "http://example.com/a b"})"); }).code, "invalid_location");
    EXPECT_EQ(thrown([&] { create(R"({"kind": "folder", "location": "ok", "interval": 10})"); }).status, 400);
    EXPECT_EQ(thrown([&] { create(R"({"kind": "folder", "location": "ok", "extra": 1})"); }).status, 400);
    EXPECT_EQ(thrown([&] { run(service_->create_source("nope", boost::json::parse(R"({"kind": "folder", "location": "ok"})").as_object())); }).status,
              404);
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_sources"), 0);

    // An absolute path inside the root is fine and stored relative to it; the same folder twice is a conflict.
    Source ok = create(R"({"kind": "folder", "location": ")" + (sync_root_ / "ok").string() + R"("})");
    EXPECT_EQ(ok.location, "ok");
    EXPECT_EQ(thrown([&] { create(R"({"kind": "folder", "location": "ok/"})"); }).code, "source_exists");
}

TEST_F(SyncTest, SymlinksLeavingTheRootAreSkipped) {
    write(dir_ / "secret.txt", "the server's secret file\n");
    write(sync_root_ / "shared/faq.md", "# FAQ\n\nPayment by card or cash.\n");
    write(sync_root_ / "docs/intro.md", "# Intro\n\nWelcome to the shop.\n");
    fs::create_symlink(dir_ / "secret.txt", sync_root_ / "docs/secret.txt");
    fs::create_symlink(sync_root_ / "shared/faq.md", sync_root_ / "docs/faq.md");  // inside the root: fine
    fs::create_directory_symlink(dir_, sync_root_ / "docs/up");                    // folders are not followed
    Source src = wait_run(create(R"({"kind": "folder", "location": "docs"})").id, std::nullopt);
    EXPECT_EQ(src.status.last_result, "ok");
    EXPECT_EQ(names(), (std::vector<std::string>{"faq.md", "intro.md"}));
    EXPECT_EQ(src.status.skipped, 2);
    bool reported = false;
    for (const auto& f : src.status.skipped_files) {
        if (f.at("path") == "secret.txt") {
            reported = true;
            EXPECT_EQ(f.at("reason"), "a symlink leads out of the sync root");
        }
    }
    EXPECT_TRUE(reported);
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_chunks WHERE text LIKE '%secret%'"), 0);
}

TEST_F(SyncTest, AMissingFolderIsAnErrorAndRemovesNothing) {
    write(sync_root_ / "docs/a.md", "# A\n\nAlpha text here.\n");
    Source src = wait_run(create(R"({"kind": "folder", "location": "docs"})").id, std::nullopt);
    EXPECT_EQ(src.status.added, 1);
    fs::rename(sync_root_ / "docs", sync_root_ / "gone");
    src = sync(src.id);
    EXPECT_EQ(src.status.last_result, "error");
    ASSERT_TRUE(src.status.last_error);
    EXPECT_NE(src.status.last_error->find("missing"), std::string::npos) << *src.status.last_error;
    EXPECT_EQ(names(), (std::vector<std::string>{"a.md"}));
}

TEST_F(SyncTest, UrlSourcesThroughTheOutboundClient) {
    site.set("/help/faq.md", 200, "# FAQ\n\nWe deliver across Ukraine in two days.\n");
    Source src = create(R"({"kind": "url", "location": ")" + server.url("/help/faq.md") + R"("})");
    src = wait_run(src.id, std::nullopt);
    EXPECT_EQ(src.status.last_result, "ok") << src.status.last_error.value_or("");
    EXPECT_EQ(src.status.added, 1);
    EXPECT_EQ(names(), (std::vector<std::string>{"faq.md"}));

    src = sync(src.id);
    EXPECT_EQ(src.status.unchanged, 1);
    site.set("/help/faq.md", 200, "# FAQ\n\nWe deliver across Ukraine in one day.\n");
    src = sync(src.id);
    EXPECT_EQ(src.status.updated, 1);
    auto hits = service_->search({service_->get_base("shop").id}, "deliver Ukraine", 3);
    ASSERT_FALSE(hits.empty());
    EXPECT_NE(hits[0].text.find("one day"), std::string::npos);

    // The page disappears: an error, and the document stays.
    site.set("/help/faq.md", 404, "gone");
    src = sync(src.id);
    EXPECT_EQ(src.status.last_result, "error");
    EXPECT_EQ(src.status.last_error, "fetching the URL failed: HTTP 404");
    EXPECT_EQ(names(), (std::vector<std::string>{"faq.md"}));
    // Content that is no document format.
    site.set("/help/faq.md", 200, std::string("\0\1\2\3binary", 10));
    src = sync(src.id);
    EXPECT_EQ(src.status.last_result, "error");
}

TEST_F(SyncTest, UrlSourcesPassTheSsrfGuard) {
    restart([&] {
        auto options = sync_options(guarded);
        options.sync_root = sync_root_.string();
        return options;
    }());
    make_base(R"({"name": "guarded"})");
    site.set("/a.md", 200, "# A\n\ntext\n");
    Source src = run(service_->create_source(
        "guarded", boost::json::parse(R"({"kind": "url", "location": ")" + server.url("/a.md") + R"("})").as_object()));
    for (int i = 0; i < 500; ++i) {
        src = service_->get_source("guarded", src.id);
        if (src.status.last_finished_at) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(src.status.last_result, "error");
    ASSERT_TRUE(src.status.last_error);
    EXPECT_NE(src.status.last_error->find("refused_by_guard"), std::string::npos) << *src.status.last_error;
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_documents"), 0);
}

TEST_F(SyncTest, RunsOnItsScheduleWhileActive) {
    write(sync_root_ / "docs/a.md", "# A\n\nAlpha text.\n");
    Source src = create(R"({"kind": "folder", "location": "docs", "interval": 60})");
    src = wait_run(src.id, std::nullopt);
    EXPECT_EQ(src.status.added, 1);
    EXPECT_EQ(src.next_run_at, *src.status.last_run_at + 60'000);

    write(sync_root_ / "docs/b.md", "# B\n\nBeta text.\n");
    auto before = src.status.last_finished_at;
    clock_.advance_ms(61'000);  // due: the scheduler runs it without being asked
    src = wait_run(src.id, before);
    EXPECT_EQ(src.status.added, 1);
    EXPECT_EQ(src.status.unchanged, 1);

    src = run(service_->set_source_active("shop", src.id, false));
    EXPECT_FALSE(src.active);
    write(sync_root_ / "docs/c.md", "# C\n\nGamma text.\n");
    before = src.status.last_finished_at;
    clock_.advance_ms(120'000);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(service_->get_source("shop", src.id).status.last_finished_at, before);  // no run while inactive
    EXPECT_EQ(names().size(), 2u);

    src = run(service_->set_source_active("shop", src.id, true));  // activation syncs at once
    src = wait_run(src.id, before);
    EXPECT_EQ(src.status.added, 1);
    EXPECT_EQ(names().size(), 3u);
}

TEST_F(SyncTest, DeletingASourceDeletesItsDocuments) {
    write(sync_root_ / "docs/a.md", "# A\n\nAlpha text.\n");
    Source src = wait_run(create(R"({"kind": "folder", "location": "docs"})").id, std::nullopt);
    upload("shop", "manual.txt", "Uploaded by hand.\n");
    EXPECT_EQ(names().size(), 2u);
    run(service_->delete_source("shop", src.id));
    EXPECT_EQ(names(), (std::vector<std::string>{"manual.txt"}));
    EXPECT_EQ(thrown([&] { service_->get_source("shop", src.id); }).code, "source_not_found");
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_chunks WHERE text LIKE '%Alpha%'"), 0);
}

class NoSyncRootTest : public testing::KnowledgeTest {};

TEST_F(NoSyncRootTest, FolderSourcesNeedASyncRoot) {
    make_base(R"({"name": "kb"})");
    auto t = thrown([&] {
        run(service_->create_source("kb", boost::json::parse(R"({"kind": "folder", "location": "x"})").as_object()));
    });
    EXPECT_EQ(t.status, 422);
    EXPECT_EQ(t.code, "folder_sync_disabled");
}

// --- routes -------------------------------------------------------------------------------------------------

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

class SyncRoutesTest : public SyncTest {
protected:
    SyncRoutesTest() {
        register_routes(router_, *service_);
        auto admin = std::make_shared<core::Principal>();
        admin->user_id = "admin";
        for (const char* r : {"view", "edit", "delete"}) admin->permissions.insert(std::string("knowledge.") + r);
        auto viewer = std::make_shared<core::Principal>();
        viewer->user_id = "viewer";
        viewer->permissions.insert("knowledge.view");
        principals_["admin"] = admin;
        principals_["viewer"] = viewer;
        server_ = std::make_unique<http::Server>(
            io_, config_, router_, metrics_,
            [this](const http::Request& req) -> std::optional<std::shared_ptr<const core::Principal>> {
                auto h = req.header("authorization");
                if (h.rfind("Bearer ", 0) != 0) return std::nullopt;
                auto it = principals_.find(std::string(h.substr(7)));
                if (it == principals_.end()) return std::nullopt;
                return it->second;
            });
        port_ = server_->start("127.0.0.1", 0);
    }
    ~SyncRoutesTest() override {
        std::promise<void> stopped;
        asio::post(io_, [&] { server_->stop([&] { stopped.set_value(); }); });
        stopped.get_future().wait();
        server_.reset();
    }
    std::pair<int, boost::json::value> call(bhttp::verb verb, const std::string& target, const std::string& body = {},
                                            const std::string& who = "admin") {
        asio::io_context io;
        asio::ip::tcp::socket socket(io);
        socket.connect({asio::ip::make_address("127.0.0.1"), port_});
        bhttp::request<bhttp::string_body> req{verb, target, 11};
        req.set(bhttp::field::host, "127.0.0.1");
        req.set(bhttp::field::authorization, "Bearer " + who);
        if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        bhttp::write(socket, req);
        beast::flat_buffer buffer;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(socket, buffer, res);
        boost::json::value v;
        if (!res.body().empty()) v = boost::json::parse(res.body());
        return {res.result_int(), v};
    }

    http::Router router_;
    core::Config config_;
    core::Metrics metrics_;
    std::map<std::string, std::shared_ptr<const core::Principal>> principals_;
    std::unique_ptr<http::Server> server_;
    std::uint16_t port_ = 0;
};

TEST_F(SyncRoutesTest, ActivateSyncDeactivateAndStatus) {
    const std::string base = "/api/v1/knowledge-bases/shop/sources";
    write(sync_root_ / "kb/a.md", "# A\n\nAlpha text.\n");
    auto [status, created] = call(bhttp::verb::post, base, R"({"kind": "folder", "location": "kb", "active": false})");
    ASSERT_EQ(status, 201) << created;
    std::string id(created.at("id").as_string());
    EXPECT_EQ(created.at("active"), false);
    EXPECT_EQ(created.at("status").at("state"), "idle");
    EXPECT_TRUE(created.at("status").at("last_run_at").is_null());

    auto [s2, synced] = call(bhttp::verb::post, base + "/" + id + "/sync");
    EXPECT_EQ(s2, 202) << synced;
    Source src = wait_run(id, std::nullopt);
    auto [s3, one] = call(bhttp::verb::get, base + "/" + id);
    ASSERT_EQ(s3, 200);
    EXPECT_EQ(one.at("status").at("last_result"), "ok");
    EXPECT_EQ(one.at("status").at("added"), 1);
    EXPECT_EQ(one.at("documents"), 1);
    EXPECT_TRUE(one.at("status").at("last_run_at").is_string());

    clock_.advance_ms(1000);
    auto [s4, activated] = call(bhttp::verb::post, base + "/" + id + "/activate");
    EXPECT_EQ(s4, 200);
    EXPECT_EQ(activated.at("active"), true);
    EXPECT_TRUE(activated.at("next_run_at").is_string());
    wait_run(id, src.status.last_finished_at);
    auto [s5, deactivated] = call(bhttp::verb::post, base + "/" + id + "/deactivate");
    EXPECT_EQ(s5, 200);
    EXPECT_EQ(deactivated.at("active"), false);

    auto [s6, list] = call(bhttp::verb::get, base);
    EXPECT_EQ(s6, 200);
    EXPECT_EQ(list.at("items").as_array().size(), 1u);
    EXPECT_EQ(call(bhttp::verb::patch, base + "/" + id, R"({"interval": 120})").first, 200);
    EXPECT_EQ(call(bhttp::verb::patch, base + "/" + id, R"({"interval": 1})").first, 400);
    EXPECT_EQ(call(bhttp::verb::patch, base + "/" + id, R"({"location": "../.."})").first, 400);
    EXPECT_EQ(call(bhttp::verb::post, base, R"({"kind": "folder", "location": "kb"})", "viewer").first, 403);
    EXPECT_EQ(call(bhttp::verb::post, base + "/NOPE/sync").first, 404);
    EXPECT_EQ(call(bhttp::verb::post, "/api/v1/knowledge-bases/none/sources", R"({"kind": "url", "location": "http://x.org"})").first,
              404);
    EXPECT_EQ(call(bhttp::verb::delete_, base + "/" + id).first, 204);
    EXPECT_EQ(call(bhttp::verb::get, base + "/" + id).first, 404);
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_documents"), 0);
}

}  // namespace
}  // namespace parley::knowledge

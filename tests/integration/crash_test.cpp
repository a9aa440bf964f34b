// Crash consistency: kill -9 the server while many clients write; after a restart every acknowledged write is
// there and the database passes PRAGMA integrity_check.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "harness.h"

namespace parley::testing {
namespace {

std::string integrity_check(const std::string& db_path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return "cannot open";
    sqlite3_stmt* stmt = nullptr;
    std::string result = "no result";
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
        result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return result;
}

TEST(Crash, KillNineLosesNoAcknowledgedWrite) {
    TempDir dir;
    for (int round = 0; round < 3; ++round) {
        std::set<std::string> acknowledged;
        {
            ParleyProcess server(dir.path());
            HttpClient login(server.port());
            ASSERT_EQ(login.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
            std::string token = login.token();
            std::mutex mutex;
            std::atomic<bool> stop{false};
            std::vector<std::thread> writers;
            for (int w = 0; w < 8; ++w) {
                writers.emplace_back([&, w] {
                    HttpClient client(server.port());
                    client.set_token(token);
                    for (int i = 0; !stop; ++i) {
                        std::string key = "crash_r" + std::to_string(round) + "_w" + std::to_string(w) + "_" +
                                          std::to_string(i);
                        try {
                            auto res = client.put("/api/v1/settings/" + key, {{"value", i}});
                            if (res.status == 200) {
                                std::lock_guard lock(mutex);
                                acknowledged.insert(key);
                            }
                        } catch (const std::exception&) {
                            return;  // the server died under us: this write was never acknowledged
                        }
                    }
                });
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(700));
            EXPECT_EQ(server.stop(SIGKILL), 128 + SIGKILL);
            stop = true;
            for (auto& t : writers) t.join();
        }
        ASSERT_GT(acknowledged.size(), 50u) << "the load did not write enough to mean anything";
        EXPECT_EQ(integrity_check(dir.path() + "/parley.db"), "ok");
        ParleyProcess server(dir.path());
        HttpClient client(server.port());
        ASSERT_EQ(client.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
        for (const auto& key : acknowledged) {
            auto res = client.get("/api/v1/settings/" + key);
            ASSERT_EQ(res.status, 200) << key << " was acknowledged but is lost";
        }
        server.stop(SIGTERM);
    }
}

}  // namespace
}  // namespace parley::testing

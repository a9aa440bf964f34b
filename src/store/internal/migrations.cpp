#include "store/internal/migrations.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string>

namespace parley::store::internal {
namespace {

constexpr const char* kCreateTable = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
    module TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL,
    PRIMARY KEY (module, version)
))sql";

[[noreturn]] void refuse(const std::string& message) { throw StoreError(StoreError::Kind::kSchema, message); }

std::vector<const Migration*> sorted_and_checked(const std::vector<Migration>& known) {
    std::vector<const Migration*> out;
    out.reserve(known.size());
    for (const auto& m : known) out.push_back(&m);
    std::sort(out.begin(), out.end(), [](const Migration* a, const Migration* b) {
        return a->module != b->module ? a->module < b->module : a->version < b->version;
    });
    for (std::size_t i = 0; i < out.size(); ++i) {
        const Migration& m = *out[i];
        if (m.module.empty()) refuse("a migration has an empty module name");
        int expected = (i > 0 && out[i - 1]->module == m.module) ? out[i - 1]->version + 1 : 1;
        if (m.version != expected) {
            refuse(fmt::format("migrations of module '{}' must be numbered 1, 2, 3...: expected version {}, got {}",
                               m.module, expected, m.version));
        }
    }
    return out;
}

}  // namespace

void migrate(Connection& writer, const std::vector<Migration>& known, std::int64_t now_ms) {
    auto ordered = sorted_and_checked(known);
    std::map<std::string, int, std::less<>> newest_known;
    for (const auto* m : ordered) newest_known[m->module] = m->version;

    writer.exec_script(kCreateTable);

    std::map<std::string, int, std::less<>> applied;
    for (const auto& row : writer.query("SELECT module, max(version) FROM schema_migrations GROUP BY module", {})) {
        applied[row.text(0)] = static_cast<int>(row.integer(1));
    }
    for (const auto& [module, version] : applied) {
        auto it = newest_known.find(module);
        if (it == newest_known.end()) {
            refuse(
                fmt::format("the database has schema of module '{}' (version {}) that this build does not know; "
                            "it was written by a newer or different build of Parley, refusing to open it",
                            module, version));
        }
        if (version > it->second) {
            refuse(
                fmt::format("the database has module '{}' at schema version {}, but this build knows versions up to "
                            "{}; it was written by a newer Parley, refusing to open it",
                            module, version, it->second));
        }
    }

    for (const auto* m : ordered) {
        auto it = applied.find(m->module);
        if (it != applied.end() && m->version <= it->second) continue;
        writer.begin_immediate();
        try {
            // Another process may have migrated while we waited for the write lock.
            bool done = !writer
                             .query("SELECT 1 FROM schema_migrations WHERE module = ? AND version = ?",
                                    {m->module, std::int64_t{m->version}})
                             .empty();
            if (!done) {
                writer.exec_script(m->sql);
                writer.exec("INSERT INTO schema_migrations(module, version, name, applied_at) VALUES (?, ?, ?, ?)",
                            {m->module, std::int64_t{m->version}, m->name, now_ms});
            }
            writer.commit();
        } catch (const std::exception& e) {
            writer.rollback_quietly();
            refuse(fmt::format("migration {} version {} ('{}') failed: {}", m->module, m->version, m->name, e.what()));
        }
    }
}

}  // namespace parley::store::internal

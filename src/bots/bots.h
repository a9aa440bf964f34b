/// Bots and their scenario documents: the registry of bots, every PUT of a document as a numbered version
/// (author, time, note), restore and diff of versions, and the compiled runtime of each bot's current version,
/// cached for the message pipeline. The pure engine lives in src/scenario; this is the service around it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actions/actions.h"
#include "core/clock.h"
#include "core/principal.h"
#include "scenario/document.h"
#include "scenario/runtime.h"
#include "store/store.h"

namespace parley::bots {

namespace json = boost::json;

inline constexpr std::size_t kMaxBotNameBytes = 200;
inline constexpr std::size_t kMaxVersionNoteBytes = 500;

struct Bot {
    std::string id;
    std::string name;
    bool active = true;
    std::int64_t version = 0;  ///< current scenario version; 0 = no scenario yet
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    json::object to_json() const;
};

struct VersionInfo {
    std::int64_t version = 0;
    std::string author_id;
    std::string author_email;
    std::int64_t created_at = 0;
    std::string note;
    std::int64_t restored_from = 0;  ///< 0 unless the version is a restore of an older one
    std::int64_t warnings = 0;
    json::object to_json() const;
};

/// What a PUT answers.
struct PutResult {
    std::int64_t version = 0;
    json::array warnings;
};

/// A bot's runnable current version.
struct LoadedBot {
    std::string bot_id;
    std::int64_t version = 0;
    bool active = true;
    std::shared_ptr<const scenario::Runtime> runtime;
};

/// Who made a change (recorded with versions).
struct Author {
    std::string id;
    std::string email;
    static Author of(const core::Principal* p) { return p ? Author{p->user_id, p->email} : Author{}; }
};

/// Migrations of module `bots` (bots, versions, dialogs, messages, runs).
std::vector<store::Migration> migrations();

/// The bot registry. Thread-safety: every method may be called from any thread; the runtime cache is guarded by
/// a mutex and entries are immutable shared pointers.
class BotService {
public:
    BotService(store::Store& store, const core::Clock& clock, const actions::ActionRegistry& actions);

    boost::asio::awaitable<Bot> create(std::string name, bool active);
    /// Newest first; `q` matches a substring of the name (case-insensitive for ASCII).
    std::vector<Bot> list(std::optional<std::string> q, std::optional<bool> active, std::optional<std::string> cursor,
                          std::size_t limit, std::optional<std::string>* next_cursor) const;
    /// Throws NotFound `bot_not_found`.
    Bot get(std::string_view id) const;
    boost::asio::awaitable<Bot> update(std::string id, std::optional<std::string> name, std::optional<bool> active);
    /// Deletes the bot and its versions (its dialogs and messages stay as history).
    boost::asio::awaitable<void> remove(std::string id);

    /// Validates (413/400/422 with details) and stores `document` as the next version.
    boost::asio::awaitable<PutResult> put_scenario(std::string bot_id, std::string document, Author author,
                                                   std::string note, std::int64_t restored_from = 0);
    /// The document of `version` (0 = current) as stored; NotFound `no_scenario` / `version_not_found`.
    std::string document(std::string_view bot_id, std::int64_t version = 0) const;
    std::vector<VersionInfo> versions(std::string_view bot_id, std::optional<std::int64_t> before, std::size_t limit,
                                      std::optional<std::int64_t>* next) const;
    /// What changed from version `from` to version `to`: sections and nodes added, removed and changed, and the
    /// changed top-level fields.
    json::object diff(std::string_view bot_id, std::int64_t from, std::int64_t to) const;
    /// Stores the document of `version` again as a new version.
    boost::asio::awaitable<PutResult> restore(std::string bot_id, std::int64_t version, Author author);

    /// Compiles `document` without storing it: `{"valid", "errors", "warnings"}`.
    json::object lint(std::string_view document) const;
    scenario::CompileOptions compile_options() const;

    /// The bot's current version, compiled (cached until the next PUT/restore/update). nullopt when the bot does
    /// not exist; a LoadedBot without runtime when it has no scenario yet.
    std::optional<LoadedBot> load(std::string_view bot_id) const;

    store::Store& store() { return store_; }
    const core::Clock& clock() const { return clock_; }

private:
    void forget(const std::string& bot_id);

    store::Store& store_;
    const core::Clock& clock_;
    const actions::ActionRegistry& actions_;
    mutable std::mutex mutex_;
    mutable std::unordered_map<std::string, LoadedBot> cache_;
    std::uint64_t generation_ = 0;  ///< bumped by every forget(), under mutex_
};

}  // namespace parley::bots

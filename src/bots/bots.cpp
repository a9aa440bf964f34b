#include "bots/bots.h"

#include "bots/triggers.h"

#include <fmt/format.h>

#include <map>
#include <set>

#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "store/async.h"

namespace parley::bots {

namespace {

constexpr const char* kBotColumns = "id, name, active, version, created_at, updated_at";

Bot bot_from_row(const store::Row& row) {
    Bot b;
    b.id = row.text(0);
    b.name = row.text(1);
    b.active = row.integer(2) != 0;
    b.version = row.integer(3);
    b.created_at = row.integer(4);
    b.updated_at = row.integer(5);
    return b;
}

std::string validated_name(std::string name) {
    auto first = name.find_first_not_of(" \t\r\n");
    auto last = name.find_last_not_of(" \t\r\n");
    name = first == std::string::npos ? std::string() : name.substr(first, last - first + 1);
    if (name.empty()) {
        throw core::BadRequest("a bot needs a non-empty 'name'", "invalid_name", json::array{json::object{{"field", "name"}}});
    }
    if (name.size() > kMaxBotNameBytes) {
        throw core::BadRequest(fmt::format("'name' is longer than {} bytes", kMaxBotNameBytes), "invalid_name",
                               json::array{json::object{{"field", "name"}}});
    }
    return name;
}

[[noreturn]] void bot_not_found(std::string_view id) {
    throw core::NotFound(fmt::format("no bot '{}'", id), "bot_not_found");
}

/// Every node of a document by id, with the name of its section.
std::map<std::string, std::pair<std::string, const json::value*>> nodes_of(const json::value& doc) {
    std::map<std::string, std::pair<std::string, const json::value*>> out;
    const auto* sections = doc.is_object() ? doc.as_object().if_contains("sections") : nullptr;
    if (!sections || !sections->is_array()) return out;
    for (const auto& s : sections->get_array()) {
        if (!s.is_object()) continue;
        std::string name;
        if (const auto* n = s.as_object().if_contains("name"); n && n->is_string()) name = n->get_string();
        const auto* nodes = s.as_object().if_contains("nodes");
        if (!nodes || !nodes->is_array()) continue;
        for (const auto& node : nodes->get_array()) {
            if (!node.is_object()) continue;
            const auto* id = node.as_object().if_contains("id");
            if (id && id->is_string()) out[std::string(id->get_string())] = {name, &node};
        }
    }
    return out;
}

std::set<std::string> section_names(const json::value& doc) {
    std::set<std::string> out;
    for (const auto& [id, entry] : nodes_of(doc)) out.insert(entry.first);
    return out;
}

/// A node without the builder-only fields (moving a node on the canvas is not a change of behaviour).
json::value behaviour(const json::value& node) {
    json::object copy = node.as_object();
    copy.erase("position");
    return copy;
}

}  // namespace

json::object Bot::to_json() const {
    return json::object{{"id", id},
                        {"name", name},
                        {"active", active},
                        {"version", version},
                        {"created_at", core::format_time(created_at)},
                        {"updated_at", core::format_time(updated_at)}};
}

json::object VersionInfo::to_json() const {
    json::object out{{"version", version},
                     {"author", json::object{{"id", author_id}, {"email", author_email}}},
                     {"created_at", core::format_time(created_at)},
                     {"note", note},
                     {"warnings", warnings}};
    out["restored_from"] = restored_from ? json::value(restored_from) : json::value(nullptr);
    return out;
}

std::vector<store::Migration> migrations() {
    std::vector<store::Migration> out = {{"bots", 1, "bots, versions, dialogs, messages, runs",
             R"sql(
CREATE TABLE bots (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  active INTEGER NOT NULL DEFAULT 1,
  version INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE bot_versions (
  bot_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  document TEXT NOT NULL,
  author_id TEXT NOT NULL DEFAULT '',
  author_email TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  note TEXT NOT NULL DEFAULT '',
  restored_from INTEGER NOT NULL DEFAULT 0,
  warnings INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (bot_id, version)
) WITHOUT ROWID;
CREATE TABLE dialogs (
  id TEXT PRIMARY KEY,
  bot_id TEXT NOT NULL,
  client_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'bot',
  waiting TEXT NOT NULL DEFAULT 'none',
  state TEXT NOT NULL DEFAULT '',
  last_n INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX dialogs_client ON dialogs(client_id, bot_id);
CREATE INDEX dialogs_action ON dialogs(waiting) WHERE waiting = 'action';
CREATE TABLE messages (
  dialog_id TEXT NOT NULL,
  n INTEGER NOT NULL,
  sender TEXT NOT NULL,
  text TEXT NOT NULL DEFAULT '',
  buttons TEXT,
  payload TEXT,
  external_id TEXT,
  delivery TEXT NOT NULL DEFAULT 'none',
  created_at INTEGER NOT NULL,
  PRIMARY KEY (dialog_id, n)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_external ON messages(dialog_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX messages_outbox ON messages(delivery) WHERE delivery = 'pending';
CREATE TABLE bot_runs (
  id TEXT PRIMARY KEY,
  bot_id TEXT NOT NULL,
  dialog_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  trigger TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ms REAL NOT NULL,
  nodes TEXT NOT NULL,
  actions TEXT NOT NULL,
  changed TEXT NOT NULL,
  waiting TEXT NOT NULL,
  error TEXT
);
CREATE INDEX bot_runs_dialog ON bot_runs(dialog_id, id);
CREATE INDEX bot_runs_bot ON bot_runs(bot_id, id);
)sql"}};
    for (auto& m : trigger_migrations()) out.push_back(m);
    return out;
}

BotService::BotService(store::Store& store, const core::Clock& clock, const actions::ActionRegistry& actions)
    : store_(store), clock_(clock), actions_(actions) {}

boost::asio::awaitable<Bot> BotService::create(std::string name, bool active) {
    Bot bot;
    bot.id = core::new_id();
    bot.name = validated_name(std::move(name));
    bot.active = active;
    bot.created_at = bot.updated_at = clock_.now_ms();
    auto insert = [bot](store::Tx& tx) {
        tx.exec("INSERT INTO bots(id, name, active, version, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)",
                {bot.id, bot.name, static_cast<std::int64_t>(bot.active), bot.created_at, bot.updated_at});
    };
    co_await store::co_write(store_, std::move(insert));
    co_return bot;
}

std::vector<Bot> BotService::list(std::optional<std::string> q, std::optional<bool> active,
                                  std::optional<std::string> cursor, std::size_t limit,
                                  std::optional<std::string>* next_cursor) const {
    std::vector<Bot> out;
    store_.read([&](store::Tx& tx) {
        std::string sql = fmt::format("SELECT {} FROM bots WHERE id < ?", kBotColumns);
        store::Params params{cursor.value_or("~")};
        if (q) {
            sql += " AND instr(lower(name), lower(?)) > 0";
            params.emplace_back(*q);
        }
        if (active) {
            sql += " AND active = ?";
            params.emplace_back(static_cast<std::int64_t>(*active));
        }
        sql += " ORDER BY id DESC LIMIT ?";
        params.emplace_back(static_cast<std::int64_t>(limit + 1));
        for (const auto& row : tx.query(sql, params)) out.push_back(bot_from_row(row));
    });
    if (out.size() > limit) {
        out.resize(limit);
        *next_cursor = out.back().id;
    }
    return out;
}

Bot BotService::get(std::string_view id) const {
    std::optional<Bot> bot;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one(fmt::format("SELECT {} FROM bots WHERE id = ?", kBotColumns), {std::string(id)})) {
            bot = bot_from_row(*row);
        }
    });
    if (!bot) bot_not_found(id);
    return *bot;
}

boost::asio::awaitable<Bot> BotService::update(std::string id, std::optional<std::string> name,
                                               std::optional<bool> active) {
    if (name) name = validated_name(std::move(*name));
    std::int64_t now = clock_.now_ms();
    auto change = [id, name, active, now](store::Tx& tx) -> std::optional<Bot> {
        auto row = tx.query_one(fmt::format("SELECT {} FROM bots WHERE id = ?", kBotColumns), {id});
        if (!row) return std::nullopt;
        Bot bot = bot_from_row(*row);
        if (name) bot.name = *name;
        if (active) bot.active = *active;
        bot.updated_at = now;
        tx.exec("UPDATE bots SET name = ?, active = ?, updated_at = ? WHERE id = ?",
                {bot.name, static_cast<std::int64_t>(bot.active), now, id});
        return bot;
    };
    auto bot = co_await store::co_write(store_, std::move(change));
    if (!bot) bot_not_found(id);
    forget(id);
    co_return *bot;
}

boost::asio::awaitable<void> BotService::remove(std::string id) {
    auto erase = [id](store::Tx& tx) -> bool {
        tx.exec("DELETE FROM bot_versions WHERE bot_id = ?", {id});
        return tx.exec("DELETE FROM bots WHERE id = ?", {id}) > 0;
    };
    bool removed = co_await store::co_write(store_, std::move(erase));
    if (!removed) bot_not_found(id);
    forget(id);
}

scenario::CompileOptions BotService::compile_options() const {
    // The action list is captured per call: Action Jail actions come and go while the server runs.
    thread_local std::vector<actions::ActionInfo> infos;
    infos = actions_.list();
    scenario::CompileOptions options;
    options.actions = &infos;
    return options;
}

boost::asio::awaitable<PutResult> BotService::put_scenario(std::string bot_id, std::string document, Author author,
                                                           std::string note, std::int64_t restored_from) {
    if (note.size() > kMaxVersionNoteBytes) {
        throw core::BadRequest(fmt::format("'note' is longer than {} bytes", kMaxVersionNoteBytes), "invalid_note",
                               json::array{json::object{{"field", "note"}}});
    }
    std::vector<scenario::LintWarning> warnings;
    auto options = compile_options();
    auto compiled = scenario::compile_or_throw(document, options, &warnings);
    // Stored as compact JSON: GET gives back the same JSON value that was PUT.
    std::string stored = json::serialize(compiled->document());
    std::int64_t now = clock_.now_ms();
    auto count = static_cast<std::int64_t>(warnings.size());
    auto insert = [bot_id, stored, author, note, restored_from, now, count](store::Tx& tx) -> std::int64_t {
        auto row = tx.query_one("SELECT version FROM bots WHERE id = ?", {bot_id});
        if (!row) return 0;
        std::int64_t version = row->integer(0) + 1;
        tx.exec("INSERT INTO bot_versions(bot_id, version, document, author_id, author_email, created_at, note, "
                "restored_from, warnings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {bot_id, version, stored, author.id, author.email, now, note, restored_from, count});
        tx.exec("UPDATE bots SET version = ?, updated_at = ? WHERE id = ?", {version, now, bot_id});
        return version;
    };
    std::int64_t version = co_await store::co_write(store_, std::move(insert));
    if (version == 0) bot_not_found(bot_id);
    forget(bot_id);
    co_return PutResult{version, scenario::to_json(warnings)};
}

std::string BotService::document(std::string_view bot_id, std::int64_t version) const {
    std::optional<std::string> doc;
    bool bot_exists = false;
    store_.read([&](store::Tx& tx) {
        auto bot = tx.query_one("SELECT version FROM bots WHERE id = ?", {std::string(bot_id)});
        if (!bot) return;
        bot_exists = true;
        std::int64_t v = version ? version : bot->integer(0);
        if (auto row = tx.query_one("SELECT document FROM bot_versions WHERE bot_id = ? AND version = ?",
                                    {std::string(bot_id), v})) {
            doc = row->text(0);
        }
    });
    if (!bot_exists) bot_not_found(bot_id);
    if (!doc) {
        if (version) throw core::NotFound(fmt::format("bot '{}' has no version {}", bot_id, version), "version_not_found");
        throw core::NotFound(fmt::format("bot '{}' has no scenario yet; PUT one first", bot_id), "no_scenario");
    }
    return *doc;
}

std::vector<VersionInfo> BotService::versions(std::string_view bot_id, std::optional<std::int64_t> before,
                                              std::size_t limit, std::optional<std::int64_t>* next) const {
    std::vector<VersionInfo> out;
    bool exists = false;
    store_.read([&](store::Tx& tx) {
        exists = tx.query_one("SELECT 1 FROM bots WHERE id = ?", {std::string(bot_id)}).has_value();
        if (!exists) return;
        auto rows = tx.query(
            "SELECT version, author_id, author_email, created_at, note, restored_from, warnings FROM bot_versions "
            "WHERE bot_id = ? AND version < ? ORDER BY version DESC LIMIT ?",
            {std::string(bot_id), before.value_or(INT64_MAX), static_cast<std::int64_t>(limit + 1)});
        for (const auto& r : rows) {
            out.push_back(VersionInfo{r.integer(0), r.text(1), r.text(2), r.integer(3), r.text(4), r.integer(5),
                                      r.integer(6)});
        }
    });
    if (!exists) bot_not_found(bot_id);
    if (out.size() > limit) {
        out.resize(limit);
        *next = out.back().version;
    }
    return out;
}

json::object BotService::diff(std::string_view bot_id, std::int64_t from, std::int64_t to) const {
    json::value a = json::parse(document(bot_id, from));
    json::value b = json::parse(document(bot_id, to));
    auto na = nodes_of(a);
    auto nb = nodes_of(b);
    json::array added, removed, changed, moved;
    for (const auto& [id, entry] : nb) {
        auto it = na.find(id);
        if (it == na.end()) {
            added.push_back(json::object{{"id", id}, {"section", entry.first}});
        } else if (behaviour(*it->second.second) != behaviour(*entry.second)) {
            changed.push_back(json::object{{"id", id}, {"section", entry.first}, {"before", *it->second.second},
                                           {"after", *entry.second}});
        } else if (*it->second.second != *entry.second) {
            moved.push_back(json::object{{"id", id}, {"section", entry.first}});
        }
    }
    for (const auto& [id, entry] : na) {
        if (!nb.count(id)) removed.push_back(json::object{{"id", id}, {"section", entry.first}});
    }
    auto sa = section_names(a);
    auto sb = section_names(b);
    json::array sections_added, sections_removed;
    for (const auto& s : sb) {
        if (!sa.count(s)) sections_added.push_back(json::value(s));
    }
    for (const auto& s : sa) {
        if (!sb.count(s)) sections_removed.push_back(json::value(s));
    }
    json::array fields;
    std::set<std::string> keys;
    for (const auto& kv : a.as_object()) keys.insert(std::string(kv.key()));
    for (const auto& kv : b.as_object()) keys.insert(std::string(kv.key()));
    for (const auto& k : keys) {
        if (k == "sections") continue;
        const auto* va = a.as_object().if_contains(k);
        const auto* vb = b.as_object().if_contains(k);
        if (!va || !vb || *va != *vb) {
            fields.push_back(json::object{{"field", k}, {"before", va ? *va : json::value(nullptr)},
                                          {"after", vb ? *vb : json::value(nullptr)}});
        }
    }
    return json::object{{"from", from},
                        {"to", to},
                        {"fields", std::move(fields)},
                        {"sections", json::object{{"added", std::move(sections_added)},
                                                  {"removed", std::move(sections_removed)}}},
                        {"nodes", json::object{{"added", std::move(added)},
                                               {"removed", std::move(removed)},
                                               {"changed", std::move(changed)},
                                               {"moved", std::move(moved)}}}};
}

boost::asio::awaitable<PutResult> BotService::restore(std::string bot_id, std::int64_t version, Author author) {
    std::string doc = document(bot_id, version);
    std::string note = fmt::format("restored version {}", version);
    PutResult result = co_await put_scenario(std::move(bot_id), std::move(doc), std::move(author), std::move(note), version);
    co_return result;
}

json::object BotService::lint(std::string_view document) const {
    auto options = compile_options();
    auto result = scenario::compile_scenario(document, options);
    return json::object{{"valid", result.ok()},
                        {"errors", scenario::to_json(result.errors)},
                        {"warnings", scenario::to_json(result.warnings)}};
}

std::optional<LoadedBot> BotService::load(std::string_view bot_id) const {
    std::uint64_t generation = 0;
    {
        std::lock_guard lock(mutex_);
        if (auto it = cache_.find(std::string(bot_id)); it != cache_.end()) return it->second;
        generation = generation_;
    }
    std::optional<Bot> bot;
    std::string doc;
    store_.read([&](store::Tx& tx) {
        auto row = tx.query_one(fmt::format("SELECT {} FROM bots WHERE id = ?", kBotColumns), {std::string(bot_id)});
        if (!row) return;
        bot = bot_from_row(*row);
        if (bot->version == 0) return;
        if (auto d = tx.query_one("SELECT document FROM bot_versions WHERE bot_id = ? AND version = ?",
                                  {bot->id, bot->version})) {
            doc = d->text(0);
        }
    });
    if (!bot) return std::nullopt;
    LoadedBot loaded{bot->id, bot->version, bot->active, nullptr};
    if (!doc.empty()) {
        // A stored version compiled once; compile again with the same code (the action list does not matter
        // for running).
        auto compiled = scenario::compile_scenario(doc);
        if (compiled.ok()) loaded.runtime = std::make_shared<const scenario::Runtime>(compiled.scenario);
    }
    std::lock_guard lock(mutex_);
    // A change committed while this read ran may already be newer than what was read: cache only when no
    // change was forgotten in between (the next load reads again).
    if (generation == generation_) cache_.try_emplace(loaded.bot_id, loaded);
    return loaded;
}

void BotService::forget(const std::string& bot_id) {
    std::lock_guard lock(mutex_);
    cache_.erase(bot_id);
    ++generation_;
}

}  // namespace parley::bots

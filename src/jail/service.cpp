#include "jail/service.h"

#include <fmt/format.h>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "auth/audit.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "jail/internal/validate.h"
#include "store/async.h"

namespace parley::jail {

namespace {

using internal::ActionDraft;

constexpr const char* kSchema = R"sql(
CREATE TABLE jail_actions (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    enabled INTEGER NOT NULL DEFAULT 1,
    current_version INTEGER NOT NULL,
    limits TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT
);
CREATE TABLE jail_action_tags (
    action TEXT NOT NULL REFERENCES jail_actions(name) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (action, tag)
);
CREATE INDEX jail_action_tags_tag ON jail_action_tags(tag, action);
CREATE TABLE jail_versions (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL REFERENCES jail_actions(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    code TEXT NOT NULL,
    params TEXT NOT NULL,
    events TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    author TEXT,
    author_email TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (action, version)
);
)sql";

constexpr const char* kSelectAction =
    "SELECT a.name, a.description, a.tags, a.enabled, a.current_version, a.limits, a.created_at, a.updated_at, "
    "a.updated_by, v.id, v.code, v.params, v.events FROM jail_actions a "
    "JOIN jail_versions v ON v.action = a.name AND v.version = a.current_version";

std::vector<std::string> strings_of(const std::string& text) {
    std::vector<std::string> out;
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_array()) return out;
    for (const auto& item : v.as_array()) {
        if (item.is_string()) out.emplace_back(item.as_string());
    }
    return out;
}

json::object object_of(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    return (!ec && v.is_object()) ? v.as_object() : json::object{};
}

std::string strings_json(const std::vector<std::string>& items) {
    json::array a;
    for (const auto& s : items) a.emplace_back(s);
    return json::serialize(a);
}

/// Awaits a callback-style operation of the sandbox, resuming on the caller's executor.
template <typename T, typename Start>
auto await_callback(Start start) {
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void(T)>(
        [](auto handler, Start start) {
            auto executor = boost::asio::get_associated_executor(handler);
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            start([shared, executor](T value) {
                boost::asio::post(executor, [shared, value = std::move(value)]() mutable { (*shared)(std::move(value)); });
            });
        },
        boost::asio::use_awaitable, std::move(start));
}

/// A jail action as the scenario runtime sees it: declared params and events, run in the sandbox.
/// Thread-safety: immutable; run() may be called concurrently.
class ScriptAction final : public actions::BasicAction {
public:
    ScriptAction(const JailAction& action, Sandbox& sandbox, SettingsSource settings)
        : BasicAction(action.name, internal::normalize_params(action.params), events_with_error(action.events)),
          sandbox_(sandbox),
          settings_(std::move(settings)),
          script_(std::make_shared<Script>(Script{action.version_id, action.name, action.code})),
          limits_(action.effective_limits),
          version_(action.version) {}

    void run(actions::ActionCall call, actions::ActionDone done) override {
        RunInput input;
        input.script = script_;
        input.params = std::move(call.params);
        internal::apply_param_defaults(params_schema(), input.params);
        input.state = std::move(call.state);
        input.client = std::move(call.client);
        if (settings_) input.instance_settings = settings_();
        input.limits = limits_;
        sandbox_.run(std::move(input), [done = std::move(done), name = name(), version = version_,
                                        dialog = std::move(call.dialog_id)](RunOutput out) {
            actions::ActionResult result;
            if (out.error) {
                result = actions::ActionResult::failure(out.error->code, out.error->message);
            } else {
                result.event = std::move(out.event);
                result.state = std::move(out.state);
            }
            json::object fields{{"action", name}, {"version", version}, {"dialog", dialog}, {"event", result.event},
                                {"ms", out.ms}, {"logs", json::array(out.logs.begin(), out.logs.end())}};
            if (out.error) fields["error"] = out.error->code;
            std::string text = json::serialize(fields);
            core::log_event(out.error ? spdlog::level::warn : spdlog::level::debug, "jail_run",
                            std::string_view(text).substr(1, text.size() - 2));
            done(std::move(result));
        });
    }

private:
    static std::vector<std::string> events_with_error(std::vector<std::string> events) {
        if (std::find(events.begin(), events.end(), "error") == events.end()) events.emplace_back("error");
        return events;
    }

    Sandbox& sandbox_;
    SettingsSource settings_;
    std::shared_ptr<const Script> script_;
    Limits limits_;
    std::int64_t version_;
};

JailAction action_from_row(const store::Row& r, const Limits& defaults) {
    JailAction a;
    a.name = r.text(0);
    a.description = r.text(1);
    a.tags = strings_of(r.text(2));
    a.enabled = r.integer(3) != 0;
    a.version = r.integer(4);
    a.limits = object_of(r.text(5));
    a.effective_limits = internal::effective_limits(internal::limits_from_json(a.limits), defaults);
    a.created_at = r.integer(6);
    a.updated_at = r.integer(7);
    a.updated_by = r.opt_text(8);
    a.version_id = r.text(9);
    a.code = r.text(10);
    a.params = object_of(r.text(11));
    a.events = strings_of(r.text(12));
    return a;
}

std::optional<JailAction> read_action(store::Tx& tx, const std::string& name, const Limits& defaults) {
    auto row = tx.query_one(std::string(kSelectAction) + " WHERE a.name = ?", {name});
    if (!row) return std::nullopt;
    return action_from_row(*row, defaults);
}

core::NotFound not_found(const std::string& name) {
    return core::NotFound(fmt::format("no Action Jail action named '{}'", name), "not_found",
                          json::array{json::object{{"field", "name"}}});
}

void require_name(const std::string& name) {
    if (!internal::is_valid_action_name(name)) throw not_found(name);
}

void write_tags(store::Tx& tx, const std::string& name, const std::vector<std::string>& tags) {
    tx.exec("DELETE FROM jail_action_tags WHERE action = ?", {name});
    for (const auto& tag : tags) tx.exec("INSERT INTO jail_action_tags(action, tag) VALUES (?, ?)", {name, tag});
}

struct VersionData {
    std::string code;
    std::string params;
    std::string events;
};

std::int64_t insert_version(store::Tx& tx, const std::string& name, std::int64_t version, const VersionData& data,
                            const std::string& note, const Actor& actor, std::int64_t now) {
    store::Value author = actor.principal ? store::Value(actor.principal->user_id) : store::Value(nullptr);
    store::Value email = actor.principal ? store::Value(actor.principal->email) : store::Value(nullptr);
    tx.exec("INSERT INTO jail_versions(id, action, version, code, params, events, note, author, author_email, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            {core::new_id(), name, version, data.code, data.params, data.events, note, author, email, now});
    return version;
}

store::Value actor_id(const Actor& actor) {
    return actor.principal ? store::Value(actor.principal->user_id) : store::Value(nullptr);
}

}  // namespace

std::vector<store::Migration> migrations() { return {{"jail", 1, "action jail: actions, tags, versions", kSchema}}; }

JailService::JailService(store::Store& store, const core::Clock& clock, Sandbox& sandbox,
                         actions::ActionRegistry* registry, SettingsSource settings)
    : store_(store), clock_(clock), sandbox_(sandbox), registry_(registry), settings_(std::move(settings)) {}

std::shared_ptr<actions::Action> JailService::make_action(const JailAction& action) const {
    return std::make_shared<ScriptAction>(action, sandbox_, settings_);
}

std::size_t JailService::load() {
    std::vector<JailAction> all;
    const Limits defaults = sandbox_.options().defaults;
    store_.read([&](store::Tx& tx) {
        for (auto& row : tx.query(std::string(kSelectAction) + " WHERE a.enabled = 1 ORDER BY a.name")) {
            all.push_back(action_from_row(row, defaults));
        }
    });
    const std::uint64_t seq = ++write_seq_;
    std::size_t registered = 0;
    for (const auto& action : all) {
        if (registry_ && registry_->find(action.name) && !dynamic_cast<ScriptAction*>(registry_->find(action.name).get())) {
            core::log_event(spdlog::level::warn, "jail_action_shadowed",
                            fmt::format(R"("action":{})", core::json_quote(action.name)));
            continue;
        }
        publish(action.name, seq, action);
        ++registered;
    }
    return registered;
}

void JailService::publish(const std::string& name, std::uint64_t seq, const std::optional<JailAction>& action) {
    std::lock_guard lock(publish_mutex_);
    auto& last = published_[name];
    if (last > seq) return;
    last = seq;
    if (!registry_) return;
    if (action && action->enabled) {
        registry_->add(make_action(*action));
    } else {
        registry_->remove(name);
    }
}

void JailService::check_not_builtin(const std::string& name) const {
    if (!registry_) return;
    auto existing = registry_->find(name);
    if (existing && !dynamic_cast<ScriptAction*>(existing.get())) {
        throw core::Conflict(fmt::format("'{}' is the name of a built-in action", name), "name_taken",
                             json::array{json::object{{"field", "name"}}});
    }
}

boost::asio::awaitable<void> JailService::compile_check(std::string code) {
    auto start = [this, code = std::move(code)](std::function<void(std::optional<CompileError>)> done) mutable {
        sandbox_.check(std::move(code), std::move(done));
    };
    std::optional<CompileError> error = co_await await_callback<std::optional<CompileError>>(std::move(start));
    if (error) {
        throw core::Unprocessable(
            fmt::format("the code does not compile: line {}: {}", error->line, error->message), "compile_error",
            json::array{json::object{
                {"field", "code"}, {"line", error->line}, {"column", error->column}, {"message", error->message}}});
    }
}

boost::asio::awaitable<JailAction> JailService::create(Actor actor, json::object body) {
    ActionDraft d = internal::parse_action_body(body, true, sandbox_.options());
    check_not_builtin(*d.name);
    co_await compile_check(*d.code);
    const std::int64_t now = clock_.now_ms();
    const Limits defaults = sandbox_.options().defaults;
    struct Written {
        std::uint64_t seq = 0;
        JailAction action;
    };
    auto change = [this, d, actor, now, defaults](store::Tx& tx) {
        const std::string& name = *d.name;
        if (tx.query_one("SELECT 1 FROM jail_actions WHERE name = ?", {name})) {
            throw core::Conflict(fmt::format("an action named '{}' already exists", name), "name_taken",
                                 json::array{json::object{{"field", "name"}}});
        }
        const auto tags = d.tags.value_or(std::vector<std::string>{});
        tx.exec("INSERT INTO jail_actions(name, description, tags, enabled, current_version, limits, created_at, "
                "updated_at, updated_by) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)",
                {name, d.description.value_or(""), strings_json(tags), std::int64_t(d.enabled.value_or(true)),
                 json::serialize(internal::limits_to_json(d.limits.value_or(internal::LimitOverrides{}))), now, now,
                 actor_id(actor)});
        write_tags(tx, name, tags);
        insert_version(tx, name, 1,
                       {*d.code, json::serialize(d.params.value_or(json::object{})),
                        strings_json(d.events.value_or(std::vector<std::string>{}))},
                       d.note.value_or(""), actor, now);
        auth::record_audit(tx, now, {actor.principal, "jail_action.create", name, json::object{{"version", 1}}, actor.ip});
        return Written{++write_seq_, *read_action(tx, name, defaults)};
    };
    Written written = co_await store::co_write(store_, std::move(change));
    publish(written.action.name, written.seq, written.action);
    co_return written.action;
}

boost::asio::awaitable<JailAction> JailService::update(Actor actor, std::string name, json::object body) {
    require_name(name);
    ActionDraft d = internal::parse_action_body(body, false, sandbox_.options());
    if (d.name && *d.name != name) {
        throw core::BadRequest("an action cannot be renamed; clone it under the new name", "rename_not_supported",
                               json::array{json::object{{"field", "name"}}});
    }
    if (d.code) co_await compile_check(*d.code);
    const std::int64_t now = clock_.now_ms();
    const Limits defaults = sandbox_.options().defaults;
    struct Written {
        std::uint64_t seq = 0;
        JailAction action;
    };
    auto change = [this, d, actor, now, defaults, name](store::Tx& tx) {
        auto current = read_action(tx, name, defaults);
        if (!current) throw not_found(name);
        const std::int64_t version = current->version + 1;
        VersionData data{d.code.value_or(current->code), json::serialize(d.params.value_or(current->params)),
                         strings_json(d.events.value_or(current->events))};
        insert_version(tx, name, version, data, d.note.value_or(""), actor, now);
        const auto tags = d.tags.value_or(current->tags);
        json::object limits =
            d.limits ? internal::limits_to_json(*d.limits) : current->limits;
        tx.exec("UPDATE jail_actions SET description = ?, tags = ?, enabled = ?, current_version = ?, limits = ?, "
                "updated_at = ?, updated_by = ? WHERE name = ?",
                {d.description.value_or(current->description), strings_json(tags),
                 std::int64_t(d.enabled.value_or(current->enabled)), version, json::serialize(limits), now,
                 actor_id(actor), name});
        if (d.tags) write_tags(tx, name, tags);
        auth::record_audit(tx, now, {actor.principal, "jail_action.update", name,
                                     json::object{{"version", version}, {"code_changed", d.code.has_value()}}, actor.ip});
        return Written{++write_seq_, *read_action(tx, name, defaults)};
    };
    Written written = co_await store::co_write(store_, std::move(change));
    publish(name, written.seq, written.action);
    co_return written.action;
}

boost::asio::awaitable<JailAction> JailService::set_enabled(Actor actor, std::string name, bool enabled) {
    require_name(name);
    const std::int64_t now = clock_.now_ms();
    const Limits defaults = sandbox_.options().defaults;
    struct Written {
        std::uint64_t seq = 0;
        JailAction action;
    };
    auto change = [this, actor, now, defaults, name, enabled](store::Tx& tx) {
        if (tx.exec("UPDATE jail_actions SET enabled = ?, updated_at = ?, updated_by = ? WHERE name = ?",
                    {std::int64_t(enabled), now, actor_id(actor), name}) == 0) {
            throw not_found(name);
        }
        auth::record_audit(tx, now,
                           {actor.principal, enabled ? "jail_action.enable" : "jail_action.disable", name, {}, actor.ip});
        return Written{++write_seq_, *read_action(tx, name, defaults)};
    };
    Written written = co_await store::co_write(store_, std::move(change));
    publish(name, written.seq, written.action);
    co_return written.action;
}

boost::asio::awaitable<JailAction> JailService::restore(Actor actor, std::string name, std::int64_t version) {
    require_name(name);
    const std::int64_t now = clock_.now_ms();
    const Limits defaults = sandbox_.options().defaults;
    struct Written {
        std::uint64_t seq = 0;
        JailAction action;
    };
    auto change = [this, actor, now, defaults, name, version](store::Tx& tx) {
        auto current = read_action(tx, name, defaults);
        if (!current) throw not_found(name);
        auto old = tx.query_one("SELECT code, params, events FROM jail_versions WHERE action = ? AND version = ?",
                                {name, version});
        if (!old) {
            throw core::NotFound(fmt::format("action '{}' has no version {}", name, version), "not_found",
                                 json::array{json::object{{"field", "version"}}});
        }
        const std::int64_t next = current->version + 1;
        insert_version(tx, name, next, {old->text(0), old->text(1), old->text(2)},
                       fmt::format("restored from version {}", version), actor, now);
        tx.exec("UPDATE jail_actions SET current_version = ?, updated_at = ?, updated_by = ? WHERE name = ?",
                {next, now, actor_id(actor), name});
        auth::record_audit(tx, now, {actor.principal, "jail_action.restore", name,
                                     json::object{{"version", next}, {"restored", version}}, actor.ip});
        return Written{++write_seq_, *read_action(tx, name, defaults)};
    };
    Written written = co_await store::co_write(store_, std::move(change));
    publish(name, written.seq, written.action);
    co_return written.action;
}

boost::asio::awaitable<JailAction> JailService::clone(Actor actor, std::string name, std::string new_name) {
    require_name(name);
    if (!internal::is_valid_action_name(new_name)) {
        throw core::BadRequest("'name' must match [a-z0-9_]{1,64}", "invalid_name",
                               json::array{json::object{{"field", "name"}}});
    }
    check_not_builtin(new_name);
    const std::int64_t now = clock_.now_ms();
    const Limits defaults = sandbox_.options().defaults;
    struct Written {
        std::uint64_t seq = 0;
        JailAction action;
    };
    auto change = [this, actor, now, defaults, name, new_name](store::Tx& tx) {
        auto source = read_action(tx, name, defaults);
        if (!source) throw not_found(name);
        if (tx.query_one("SELECT 1 FROM jail_actions WHERE name = ?", {new_name})) {
            throw core::Conflict(fmt::format("an action named '{}' already exists", new_name), "name_taken",
                                 json::array{json::object{{"field", "name"}}});
        }
        tx.exec("INSERT INTO jail_actions(name, description, tags, enabled, current_version, limits, created_at, "
                "updated_at, updated_by) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)",
                {new_name, source->description, strings_json(source->tags), std::int64_t(source->enabled),
                 json::serialize(source->limits), now, now, actor_id(actor)});
        write_tags(tx, new_name, source->tags);
        insert_version(tx, new_name, 1,
                       {source->code, json::serialize(source->params), strings_json(source->events)},
                       fmt::format("cloned from {} version {}", name, source->version), actor, now);
        auth::record_audit(tx, now, {actor.principal, "jail_action.clone", new_name,
                                     json::object{{"source", name}, {"source_version", source->version}}, actor.ip});
        return Written{++write_seq_, *read_action(tx, new_name, defaults)};
    };
    Written written = co_await store::co_write(store_, std::move(change));
    publish(new_name, written.seq, written.action);
    co_return written.action;
}

boost::asio::awaitable<void> JailService::remove(Actor actor, std::string name) {
    require_name(name);
    const std::int64_t now = clock_.now_ms();
    auto change = [this, actor, now, name](store::Tx& tx) {
        if (tx.exec("DELETE FROM jail_actions WHERE name = ?", {name}) == 0) throw not_found(name);
        auth::record_audit(tx, now, {actor.principal, "jail_action.delete", name, {}, actor.ip});
        return ++write_seq_;
    };
    std::uint64_t seq = co_await store::co_write(store_, std::move(change));
    publish(name, seq, std::nullopt);
}

JailAction JailService::get(const std::string& name) const {
    require_name(name);
    const Limits defaults = sandbox_.options().defaults;
    std::optional<JailAction> action;
    store_.read([&](store::Tx& tx) { action = read_action(tx, name, defaults); });
    if (!action) throw not_found(name);
    return *action;
}

ActionPage JailService::list(const ActionQuery& query) const {
    std::string sql = std::string(kSelectAction) + " WHERE 1 = 1";
    store::Params params;
    if (query.cursor) {
        sql += " AND a.name > ?";
        params.emplace_back(*query.cursor);
    }
    if (query.q) {
        std::string pattern = "%";
        for (char c : *query.q) {
            if (c == '%' || c == '_' || c == '\\') pattern.push_back('\\');
            pattern.push_back(c);
        }
        pattern.push_back('%');
        sql += " AND (a.name LIKE ? ESCAPE '\\' OR a.description LIKE ? ESCAPE '\\')";
        params.emplace_back(pattern);
        params.emplace_back(pattern);
    }
    if (query.tag) {
        sql += " AND EXISTS (SELECT 1 FROM jail_action_tags t WHERE t.action = a.name AND t.tag = ?)";
        params.emplace_back(*query.tag);
    }
    if (query.enabled) {
        sql += " AND a.enabled = ?";
        params.emplace_back(std::int64_t(*query.enabled));
    }
    sql += " ORDER BY a.name LIMIT ?";
    params.emplace_back(static_cast<std::int64_t>(query.limit + 1));
    const Limits defaults = sandbox_.options().defaults;
    ActionPage page;
    store_.read([&](store::Tx& tx) {
        for (auto& row : tx.query(sql, params)) page.items.push_back(action_from_row(row, defaults));
    });
    if (page.items.size() > query.limit) {
        page.items.resize(query.limit);
        page.next_cursor = page.items.back().name;
    }
    return page;
}

std::vector<ActionVersion> JailService::versions(const std::string& name) const {
    require_name(name);
    std::vector<ActionVersion> out;
    bool exists = false;
    store_.read([&](store::Tx& tx) {
        exists = tx.query_one("SELECT 1 FROM jail_actions WHERE name = ?", {name}).has_value();
        for (auto& r : tx.query("SELECT version, code, params, events, note, author, author_email, created_at "
                                "FROM jail_versions WHERE action = ? ORDER BY version DESC",
                                {name})) {
            out.push_back(ActionVersion{r.integer(0), r.text(1), object_of(r.text(2)), strings_of(r.text(3)), r.text(4),
                                        r.opt_text(5), r.opt_text(6), r.integer(7)});
        }
    });
    if (!exists) throw not_found(name);
    return out;
}

ActionVersion JailService::version(const std::string& name, std::int64_t version) const {
    for (auto& v : versions(name)) {
        if (v.version == version) return v;
    }
    throw core::NotFound(fmt::format("action '{}' has no version {}", name, version), "not_found",
                         json::array{json::object{{"field", "version"}}});
}

boost::asio::awaitable<RunOutput> JailService::test(std::string name, json::object params, json::object state,
                                                    json::object client) {
    JailAction action = get(name);
    RunInput input;
    input.script = std::make_shared<Script>(Script{action.version_id, action.name, action.code});
    input.params = std::move(params);
    internal::apply_param_defaults(internal::normalize_params(action.params), input.params);
    input.state = std::move(state);
    input.client = std::move(client);
    if (settings_) input.instance_settings = settings_();
    input.limits = action.effective_limits;
    auto start = [this, input = std::move(input)](std::function<void(RunOutput)> done) mutable {
        sandbox_.run(std::move(input), std::move(done));
    };
    RunOutput out = co_await await_callback<RunOutput>(std::move(start));
    co_return out;
}

}  // namespace parley::jail

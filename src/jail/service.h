/// JailService: Action Jail actions as integrators manage them (create, edit with versions, restore, clone,
/// delete, enable/disable, search, test) on top of the store, the Sandbox and the scenario ActionRegistry.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>
#include <functional>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "actions/actions.h"
#include "core/clock.h"
#include "core/principal.h"
#include "jail/sandbox.h"
#include "store/store.h"

namespace parley::jail {

/// One action with its current version.
struct JailAction {
    std::string name;
    std::string description;
    std::vector<std::string> tags;
    bool enabled = true;
    std::int64_t version = 0;
    std::string version_id;  ///< the compiled-script cache key
    std::string code;
    json::object params;     ///< as the integrator wrote it
    std::vector<std::string> events;
    json::object limits;     ///< the overrides the action sets
    Limits effective_limits; ///< overrides over the instance defaults
    std::optional<std::string> updated_by;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
};

/// One stored version (each change of an action adds one).
struct ActionVersion {
    std::int64_t version = 0;
    std::string code;
    json::object params;
    std::vector<std::string> events;
    std::string note;
    std::optional<std::string> author;  ///< user id
    std::optional<std::string> author_email;
    std::int64_t created_at = 0;
};

struct ActionQuery {
    std::optional<std::string> q;    ///< substring of name or description (case-insensitive)
    std::optional<std::string> tag;
    std::optional<bool> enabled;
    std::optional<std::string> cursor;  ///< the last name of the previous page
    std::size_t limit = 50;
};

struct ActionPage {
    std::vector<JailAction> items;
    std::optional<std::string> next_cursor;
};

/// Who makes a change (recorded in versions and the audit log).
struct Actor {
    const core::Principal* principal = nullptr;
    std::string ip;
};

/// ctx.instanceSettings for each run (non-secret instance settings; wired in app). Called on the caller's thread.
using SettingsSource = std::function<json::object()>;

/// The store tables of module "jail": jail_actions, jail_action_tags, jail_versions.
std::vector<store::Migration> migrations();

/// Thread-safety: every method may be called from any thread (HTTP workers). Writes go through store::co_write;
/// compile checks and test runs await the Sandbox (never blocking a worker). The registry always holds the
/// newest enabled version of every action: updates are ordered by a sequence taken inside the write.
class JailService {
public:
    JailService(store::Store& store, const core::Clock& clock, Sandbox& sandbox,
                actions::ActionRegistry* registry = nullptr, SettingsSource settings = {});

    /// Registers every enabled action in the registry (blocking read; call at start before serving).
    /// Returns how many were registered.
    std::size_t load();

    /// Throws BadRequest/TooLarge (bad body), Unprocessable `compile_error` (code does not compile: message and
    /// details name line and column), Conflict (name taken).
    boost::asio::awaitable<JailAction> create(Actor actor, json::object body);
    /// Each update adds a version (body fields absent stay as they are). NotFound, plus create's errors.
    boost::asio::awaitable<JailAction> update(Actor actor, std::string name, json::object body);
    boost::asio::awaitable<JailAction> set_enabled(Actor actor, std::string name, bool enabled);
    /// A new version equal to version `version`.
    boost::asio::awaitable<JailAction> restore(Actor actor, std::string name, std::int64_t version);
    /// A new action `new_name` (version 1) from the current version of `name`, disabled when `name` is.
    boost::asio::awaitable<JailAction> clone(Actor actor, std::string name, std::string new_name);
    boost::asio::awaitable<void> remove(Actor actor, std::string name);

    JailAction get(const std::string& name) const;
    ActionPage list(const ActionQuery& query) const;
    std::vector<ActionVersion> versions(const std::string& name) const;
    ActionVersion version(const std::string& name, std::int64_t version) const;

    /// Runs the current version with `params`, `state`, `client` (enabled or not) and returns the run's output.
    boost::asio::awaitable<RunOutput> test(std::string name, json::object params, json::object state,
                                           json::object client);

    /// The registry entry of an action (what scenario action nodes call).
    std::shared_ptr<actions::Action> make_action(const JailAction& action) const;

    const Sandbox& sandbox() const { return sandbox_; }

private:
    /// Throws Unprocessable `compile_error` naming line and column when `code` does not compile.
    boost::asio::awaitable<void> compile_check(std::string code);
    /// Throws Conflict when `name` belongs to a built-in action in the registry.
    void check_not_builtin(const std::string& name) const;
    /// Applies a committed change to the registry unless a later change of the same name was applied already.
    void publish(const std::string& name, std::uint64_t seq, const std::optional<JailAction>& action);

    store::Store& store_;
    const core::Clock& clock_;
    Sandbox& sandbox_;
    actions::ActionRegistry* registry_;
    SettingsSource settings_;
    std::atomic<std::uint64_t> write_seq_{0};
    std::mutex publish_mutex_;
    std::map<std::string, std::uint64_t> published_;  ///< name → seq of the last registry change applied
};

}  // namespace parley::jail

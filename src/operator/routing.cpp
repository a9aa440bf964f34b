// Operator-panel settings that route dialogs (statuses, skill groups and members, subjects, client-segment rules)
// and the routing operations on top of them (transfer, reassign, the supervisor's views).
#include <fmt/format.h>

#include <set>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "events/events.h"
#include "operator/internal/routing.h"
#include "operator/internal/rows.h"
#include "operator/internal/segment.h"
#include "operator/operator.h"
#include "store/async.h"

namespace parley::operators {

namespace {

using internal::bad_field;
using internal::supervisor;

json::value time_or_null(std::int64_t ms) { return ms ? json::value(core::format_time(ms)) : json::value(nullptr); }
json::value id_or_null(const std::string& id) { return id.empty() ? json::value(nullptr) : json::value(id); }

void require_settings(const core::Principal& who) {
    if (!who.can(auth::kModuleOperatorSettings, core::Action::kEdit)) {
        throw core::Forbidden("changing operator panel settings needs operator_settings.edit", "forbidden");
    }
}

std::string checked_name(const json::object& body, std::string_view key, bool required, std::optional<std::string> fallback = {}) {
    auto value = required ? std::optional<std::string>(std::string(core::required_string(body, key)))
                          : core::optional_string(body, key);
    if (!value) return fallback.value_or("");
    if (value->empty() || value->size() > kMaxNameBytes) {
        bad_field(std::string(key), fmt::format("'{}' is 1 to {} bytes", key, kMaxNameBytes));
    }
    return *value;
}

void check_kind(std::string_view kind) {
    if (kind != "operator" && kind != "dialog") {
        throw core::NotFound(fmt::format("no status kind '{}' (operator, dialog)", kind), "not_found");
    }
}

json::object status_json(const store::Row& r) {
    json::object out{{"name", r.text(0)}, {"title", r.text(1)}, {"builtin", r.integer(3) != 0}, {"position", r.integer(4)}};
    if (r.text(5) == "operator") out["accepts_dialogs"] = r.integer(2) != 0;
    return out;
}

constexpr const char* kStatusColumns = "name, title, accepts_dialogs, builtin, position, kind";

const char* valid_policy(std::string_view p) {
    if (p == "least_busy") return "least_busy";
    if (p == "round_robin") return "round_robin";
    if (p == "by_skill") return "by_skill";
    return nullptr;
}

json::object group_json(store::Tx& tx, const store::Row& r) {
    json::array members;
    for (const auto& m : tx.query("SELECT m.user_id, m.skill_level, coalesce(u.email, ''), coalesce(u.name, '') "
                                  "FROM op_group_members m LEFT JOIN auth_users u ON u.id = m.user_id "
                                  "WHERE m.group_id = ? ORDER BY m.skill_level DESC, m.user_id",
                                  {r.text(0)})) {
        members.push_back(json::object{{"user_id", m.text(0)}, {"skill_level", m.integer(1)}, {"email", m.text(2)},
                                       {"name", m.text(3)}});
    }
    return json::object{{"id", r.text(0)},           {"name", r.text(1)},
                        {"policy", r.text(2)},       {"members", std::move(members)},
                        {"created_at", time_or_null(r.integer(3))}, {"updated_at", time_or_null(r.integer(4))}};
}

constexpr const char* kGroupColumns = "id, name, policy, created_at, updated_at";

void check_skill(std::int64_t level) {
    if (level < kMinSkillLevel || level > kMaxSkillLevel) {
        bad_field("skill_level", fmt::format("'skill_level' is from {} to {}", kMinSkillLevel, kMaxSkillLevel));
    }
}

void require_group(store::Tx& tx, const std::string& id) {
    if (!tx.query_one("SELECT 1 FROM op_skill_groups WHERE id = ?", {id})) {
        throw core::Unprocessable(fmt::format("no skill group '{}'", id), "group_not_found",
                                  json::array{json::object{{"field", "group_id"}}});
    }
}

json::object subject_json(const store::Row& r) {
    return json::object{{"id", r.text(0)}, {"alias", r.text(1)}, {"title", r.text(2)}, {"group_id", id_or_null(r.text(3))},
                        {"updated_at", time_or_null(r.integer(4))}};
}

constexpr const char* kSubjectColumns = "id, alias, title, coalesce(group_id, ''), updated_at";

json::object rule_json(const store::Row& r) {
    return json::object{{"id", r.text(0)},
                        {"position", r.integer(1)},
                        {"name", r.text(2)},
                        {"condition", json::parse(r.text(3))},
                        {"group_id", r.text(4)},
                        {"updated_at", time_or_null(r.integer(5))}};
}

constexpr const char* kRuleColumns = "id, position, name, condition, group_id, updated_at";

/// Parses and validates a rule's condition; returns its canonical text.
std::string checked_condition(const json::value& value) {
    internal::SegmentCondition::parse(value);
    return json::serialize(value);
}

}  // namespace

// ---- Statuses -------------------------------------------------------------------------------------------------

json::array OperatorService::statuses(std::string_view kind) const {
    check_kind(kind);
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_statuses WHERE kind = ? ORDER BY position, name", kStatusColumns),
                                      {std::string(kind)})) {
            out.push_back(status_json(r));
        }
    });
    return out;
}

boost::asio::awaitable<json::object> OperatorService::create_status(const core::Principal& who, std::string kind,
                                                                    json::object body) {
    check_kind(kind);
    require_settings(who);
    core::reject_unknown_fields(body, {"name", "title", "accepts_dialogs"});
    std::string name(core::required_string(body, "name"));
    if (!internal::valid_alias(name, kMaxAliasBytes)) {
        bad_field("name", fmt::format("'name' is 1 to {} of a-z 0-9 _ . -", kMaxAliasBytes));
    }
    std::string title = checked_name(body, "title", false, name);
    bool accepts = core::optional_bool(body, "accepts_dialogs").value_or(false);
    if (kind == "dialog" && body.contains("accepts_dialogs")) bad_field("accepts_dialogs", "dialog statuses do not accept dialogs");
    auto write = [kind, name, title, accepts](store::Tx& tx) {
        auto count = tx.query_one("SELECT count(*), coalesce(max(position), 0) FROM op_statuses WHERE kind = ?", {kind});
        if (static_cast<std::size_t>(count->integer(0)) >= kMaxStatusesPerKind) {
            throw core::Conflict(fmt::format("at most {} {} statuses", kMaxStatusesPerKind, kind), "too_many_statuses");
        }
        if (tx.query_one("SELECT 1 FROM op_statuses WHERE kind = ? AND name = ?", {kind, name})) {
            throw core::Conflict(fmt::format("the status '{}' exists", name), "status_exists");
        }
        tx.exec("INSERT INTO op_statuses(kind, name, title, accepts_dialogs, builtin, position) VALUES (?, ?, ?, ?, 0, ?)",
                {kind, name, title, static_cast<std::int64_t>(accepts), count->integer(1) + 1});
        return status_json(*tx.query_one(fmt::format("SELECT {} FROM op_statuses WHERE kind = ? AND name = ?", kStatusColumns),
                                         {kind, name}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<json::object> OperatorService::update_status(const core::Principal& who, std::string kind,
                                                                    std::string name, json::object body) {
    check_kind(kind);
    require_settings(who);
    core::reject_unknown_fields(body, {"title", "accepts_dialogs", "position"});
    auto title = body.contains("title") ? std::optional<std::string>(checked_name(body, "title", true)) : std::nullopt;
    auto accepts = core::optional_bool(body, "accepts_dialogs");
    auto position = core::optional_int(body, "position");
    if (kind == "dialog" && accepts) bad_field("accepts_dialogs", "dialog statuses do not accept dialogs");
    if (position && (*position < 0 || *position > 10'000)) bad_field("position", "'position' is from 0 to 10000");
    auto write = [kind, name, title, accepts, position](store::Tx& tx) -> std::optional<json::object> {
        auto r = tx.query_one("SELECT builtin FROM op_statuses WHERE kind = ? AND name = ?", {kind, name});
        if (!r) return std::nullopt;
        // online must accept dialogs and offline must not: the built-in meaning of the two ends.
        if (accepts && r->integer(0) && (name == "online" || name == "offline")) {
            throw core::Conflict(fmt::format("whether '{}' accepts dialogs is fixed", name), "builtin_status");
        }
        if (title) tx.exec("UPDATE op_statuses SET title = ? WHERE kind = ? AND name = ?", {*title, kind, name});
        if (accepts) {
            tx.exec("UPDATE op_statuses SET accepts_dialogs = ? WHERE kind = ? AND name = ?",
                    {static_cast<std::int64_t>(*accepts), kind, name});
        }
        if (position) tx.exec("UPDATE op_statuses SET position = ? WHERE kind = ? AND name = ?", {*position, kind, name});
        return status_json(*tx.query_one(fmt::format("SELECT {} FROM op_statuses WHERE kind = ? AND name = ?", kStatusColumns),
                                         {kind, name}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("no {} status '{}'", kind, name), "status_not_found");
    if (kind == "operator") co_await dispatch_queue();  // a status may now accept dialogs
    co_return *out;
}

boost::asio::awaitable<void> OperatorService::delete_status(const core::Principal& who, std::string kind, std::string name) {
    check_kind(kind);
    require_settings(who);
    auto write = [kind, name](store::Tx& tx) -> bool {
        auto r = tx.query_one("SELECT builtin FROM op_statuses WHERE kind = ? AND name = ?", {kind, name});
        if (!r) return false;
        if (r->integer(0)) throw core::Conflict(fmt::format("'{}' is built in", name), "builtin_status");
        bool used = kind == "operator"
                        ? tx.query_one("SELECT 1 FROM op_operators WHERE status = ? LIMIT 1", {name}).has_value()
                        : tx.query_one("SELECT 1 FROM op_dialogs WHERE label = ? AND state <> 'closed' LIMIT 1", {name})
                              .has_value();
        if (used) throw core::Conflict(fmt::format("the status '{}' is in use", name), "status_in_use");
        tx.exec("DELETE FROM op_statuses WHERE kind = ? AND name = ?", {kind, name});
        return true;
    };
    if (!co_await store::co_write(store_, std::move(write))) {
        throw core::NotFound(fmt::format("no {} status '{}'", kind, name), "status_not_found");
    }
}

// ---- Skill groups ---------------------------------------------------------------------------------------------

json::array OperatorService::skill_groups() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_skill_groups ORDER BY name", kGroupColumns))) {
            out.push_back(group_json(tx, r));
        }
    });
    return out;
}

json::object OperatorService::skill_group(std::string_view id) const {
    std::optional<json::object> out;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM op_skill_groups WHERE id = ?", kGroupColumns), {std::string(id)})) {
            out = group_json(tx, *r);
        }
    });
    if (!out) throw core::NotFound(fmt::format("no skill group '{}'", id), "group_not_found");
    return *out;
}

boost::asio::awaitable<json::object> OperatorService::create_skill_group(const core::Principal& who, json::object body) {
    require_settings(who);
    core::reject_unknown_fields(body, {"name", "policy", "members"});
    std::string name = checked_name(body, "name", true);
    std::string policy = core::optional_string(body, "policy").value_or("least_busy");
    if (!valid_policy(policy)) bad_field("policy", "'policy' is least_busy, round_robin or by_skill");
    std::vector<std::pair<std::string, std::int64_t>> members;
    if (const auto* list = core::optional_array(body, "members")) {
        if (list->size() > kMaxGroupMembers) bad_field("members", fmt::format("at most {} members", kMaxGroupMembers));
        std::set<std::string> seen;
        for (const auto& m : *list) {
            if (!m.is_object()) bad_field("members", "each member is {\"user_id\", \"skill_level\"}");
            core::reject_unknown_fields(m.get_object(), {"user_id", "skill_level"});
            std::string user(core::required_string(m.get_object(), "user_id"));
            std::int64_t level = core::optional_int(m.get_object(), "skill_level").value_or(kMinSkillLevel);
            check_skill(level);
            if (!seen.insert(user).second) bad_field("members", fmt::format("'{}' is listed twice", user));
            members.emplace_back(std::move(user), level);
        }
    }
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    auto write = [id, name, policy, members, now](store::Tx& tx) {
        if (static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM op_skill_groups")->integer(0)) >= kMaxSkillGroups) {
            throw core::Conflict(fmt::format("at most {} skill groups", kMaxSkillGroups), "too_many_groups");
        }
        if (tx.query_one("SELECT 1 FROM op_skill_groups WHERE name = ?", {name})) {
            throw core::Conflict(fmt::format("a skill group named '{}' exists", name), "group_exists");
        }
        tx.exec("INSERT INTO op_skill_groups(id, name, policy, rr_last, created_at, updated_at) VALUES (?, ?, ?, '', ?, ?)",
                {id, name, policy, now, now});
        for (const auto& [user, level] : members) {
            if (!tx.query_one("SELECT 1 FROM auth_users WHERE id = ?", {user})) {
                throw core::Unprocessable(fmt::format("no user '{}'", user), "user_not_found",
                                          json::array{json::object{{"field", "members"}, {"user_id", user}}});
            }
            tx.exec("INSERT INTO op_group_members(group_id, user_id, skill_level) VALUES (?, ?, ?)", {id, user, level});
        }
        return group_json(tx, *tx.query_one(fmt::format("SELECT {} FROM op_skill_groups WHERE id = ?", kGroupColumns), {id}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    co_await dispatch_queue();
    co_return out;
}

boost::asio::awaitable<json::object> OperatorService::update_skill_group(const core::Principal& who, std::string id,
                                                                         json::object body) {
    require_settings(who);
    core::reject_unknown_fields(body, {"name", "policy"});
    auto name = body.contains("name") ? std::optional<std::string>(checked_name(body, "name", true)) : std::nullopt;
    auto policy = core::optional_string(body, "policy");
    if (policy && !valid_policy(*policy)) bad_field("policy", "'policy' is least_busy, round_robin or by_skill");
    std::int64_t now = clock_.now_ms();
    auto write = [id, name, policy, now](store::Tx& tx) -> std::optional<json::object> {
        if (!tx.query_one("SELECT 1 FROM op_skill_groups WHERE id = ?", {id})) return std::nullopt;
        if (name && tx.query_one("SELECT 1 FROM op_skill_groups WHERE name = ? AND id <> ?", {*name, id})) {
            throw core::Conflict(fmt::format("a skill group named '{}' exists", *name), "group_exists");
        }
        if (name) tx.exec("UPDATE op_skill_groups SET name = ? WHERE id = ?", {*name, id});
        if (policy) tx.exec("UPDATE op_skill_groups SET policy = ? WHERE id = ?", {*policy, id});
        tx.exec("UPDATE op_skill_groups SET updated_at = ? WHERE id = ?", {now, id});
        return group_json(tx, *tx.query_one(fmt::format("SELECT {} FROM op_skill_groups WHERE id = ?", kGroupColumns), {id}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("no skill group '{}'", id), "group_not_found");
    co_return *out;
}

boost::asio::awaitable<void> OperatorService::delete_skill_group(const core::Principal& who, std::string id) {
    require_settings(who);
    std::int64_t now = clock_.now_ms();
    auto write = [id, now](store::Tx& tx) -> bool {
        if (!tx.query_one("SELECT 1 FROM op_skill_groups WHERE id = ?", {id})) return false;
        if (tx.query_one("SELECT 1 FROM op_subjects WHERE group_id = ? LIMIT 1", {id}) ||
            tx.query_one("SELECT 1 FROM op_segment_rules WHERE group_id = ? LIMIT 1", {id})) {
            throw core::Conflict("subjects or segment rules still route to this group", "group_in_use");
        }
        // Dialogs waiting for the group wait for everyone instead.
        tx.exec("UPDATE op_dialogs SET group_id = NULL, updated_at = ? WHERE group_id = ?", {now, id});
        tx.exec("DELETE FROM op_group_members WHERE group_id = ?", {id});
        tx.exec("DELETE FROM op_skill_groups WHERE id = ?", {id});
        return true;
    };
    if (!co_await store::co_write(store_, std::move(write))) {
        throw core::NotFound(fmt::format("no skill group '{}'", id), "group_not_found");
    }
    co_await dispatch_queue();
}

boost::asio::awaitable<json::object> OperatorService::put_member(const core::Principal& who, std::string group_id,
                                                                 std::string user_id, int skill_level) {
    require_settings(who);
    check_skill(skill_level);
    auto write = [group_id, user_id, skill_level](store::Tx& tx) -> std::optional<json::object> {
        if (!tx.query_one("SELECT 1 FROM op_skill_groups WHERE id = ?", {group_id})) return std::nullopt;
        if (!tx.query_one("SELECT 1 FROM auth_users WHERE id = ?", {user_id})) {
            throw core::NotFound(fmt::format("no user '{}'", user_id), "user_not_found");
        }
        bool exists = tx.query_one("SELECT 1 FROM op_group_members WHERE group_id = ? AND user_id = ?", {group_id, user_id})
                          .has_value();
        if (!exists && static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM op_group_members WHERE group_id = ?",
                                                             {group_id})
                                                    ->integer(0)) >= kMaxGroupMembers) {
            throw core::Conflict(fmt::format("at most {} members in a group", kMaxGroupMembers), "too_many_members");
        }
        tx.exec("INSERT INTO op_group_members(group_id, user_id, skill_level) VALUES (?, ?, ?) "
                "ON CONFLICT(group_id, user_id) DO UPDATE SET skill_level = excluded.skill_level",
                {group_id, user_id, static_cast<std::int64_t>(skill_level)});
        return group_json(tx, *tx.query_one(fmt::format("SELECT {} FROM op_skill_groups WHERE id = ?", kGroupColumns),
                                            {group_id}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("no skill group '{}'", group_id), "group_not_found");
    co_await dispatch_queue();
    co_return *out;
}

boost::asio::awaitable<void> OperatorService::delete_member(const core::Principal& who, std::string group_id,
                                                            std::string user_id) {
    require_settings(who);
    auto write = [group_id, user_id](store::Tx& tx) {
        return tx.exec("DELETE FROM op_group_members WHERE group_id = ? AND user_id = ?", {group_id, user_id}) > 0;
    };
    if (!co_await store::co_write(store_, std::move(write))) {
        throw core::NotFound(fmt::format("'{}' is not a member of skill group '{}'", user_id, group_id), "member_not_found");
    }
}

std::vector<std::string> OperatorService::groups_of(std::string_view user_id) const {
    std::vector<std::string> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT group_id FROM op_group_members WHERE user_id = ? ORDER BY group_id",
                                      {std::string(user_id)})) {
            out.push_back(r.text(0));
        }
    });
    return out;
}

std::vector<std::string> OperatorService::members_of(std::string_view group_id) const {
    std::vector<std::string> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT user_id FROM op_group_members WHERE group_id = ? ORDER BY user_id",
                                      {std::string(group_id)})) {
            out.push_back(r.text(0));
        }
    });
    return out;
}

// ---- Subjects ---------------------------------------------------------------------------------------------------

json::array OperatorService::subjects() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_subjects ORDER BY alias", kSubjectColumns))) {
            out.push_back(subject_json(r));
        }
    });
    return out;
}

boost::asio::awaitable<json::object> OperatorService::create_subject(const core::Principal& who, json::object body) {
    require_settings(who);
    core::reject_unknown_fields(body, {"alias", "title", "group_id"});
    std::string alias(core::required_string(body, "alias"));
    if (!internal::valid_alias(alias, kMaxAliasBytes)) {
        bad_field("alias", fmt::format("'alias' is 1 to {} of a-z 0-9 _ . -", kMaxAliasBytes));
    }
    std::string title = checked_name(body, "title", false, alias);
    auto group = core::optional_string(body, "group_id");
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    auto write = [id, alias, title, group, now](store::Tx& tx) {
        if (static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM op_subjects")->integer(0)) >= kMaxSubjects) {
            throw core::Conflict(fmt::format("at most {} subjects", kMaxSubjects), "too_many_subjects");
        }
        if (tx.query_one("SELECT 1 FROM op_subjects WHERE alias = ?", {alias})) {
            throw core::Conflict(fmt::format("the subject '{}' exists", alias), "subject_exists");
        }
        if (group) require_group(tx, *group);
        tx.exec("INSERT INTO op_subjects(id, alias, title, group_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                {id, alias, title, group ? store::Value(*group) : store::Value(nullptr), now, now});
        return subject_json(*tx.query_one(fmt::format("SELECT {} FROM op_subjects WHERE id = ?", kSubjectColumns), {id}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<json::object> OperatorService::update_subject(const core::Principal& who, std::string id,
                                                                     json::object body) {
    require_settings(who);
    core::reject_unknown_fields(body, {"title", "group_id"});
    auto title = body.contains("title") ? std::optional<std::string>(checked_name(body, "title", true)) : std::nullopt;
    bool set_group = body.contains("group_id");
    std::optional<std::string> group;
    if (set_group && !body.at("group_id").is_null()) group = std::string(core::required_string(body, "group_id"));
    std::int64_t now = clock_.now_ms();
    auto write = [id, title, set_group, group, now](store::Tx& tx) -> std::optional<json::object> {
        if (!tx.query_one("SELECT 1 FROM op_subjects WHERE id = ?", {id})) return std::nullopt;
        if (title) tx.exec("UPDATE op_subjects SET title = ? WHERE id = ?", {*title, id});
        if (set_group) {
            if (group) require_group(tx, *group);
            tx.exec("UPDATE op_subjects SET group_id = ? WHERE id = ?", {group ? store::Value(*group) : store::Value(nullptr), id});
        }
        tx.exec("UPDATE op_subjects SET updated_at = ? WHERE id = ?", {now, id});
        return subject_json(*tx.query_one(fmt::format("SELECT {} FROM op_subjects WHERE id = ?", kSubjectColumns), {id}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("no subject '{}'", id), "subject_not_found");
    co_return *out;
}

boost::asio::awaitable<void> OperatorService::delete_subject(const core::Principal& who, std::string id) {
    require_settings(who);
    auto write = [id](store::Tx& tx) { return tx.exec("DELETE FROM op_subjects WHERE id = ?", {id}) > 0; };
    if (!co_await store::co_write(store_, std::move(write))) {
        throw core::NotFound(fmt::format("no subject '{}'", id), "subject_not_found");
    }
}

// ---- Segment rules ----------------------------------------------------------------------------------------------

json::array OperatorService::segment_rules() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM op_segment_rules ORDER BY position, id", kRuleColumns))) {
            out.push_back(rule_json(r));
        }
    });
    return out;
}

boost::asio::awaitable<json::object> OperatorService::create_segment_rule(const core::Principal& who, json::object body) {
    require_settings(who);
    core::reject_unknown_fields(body, {"name", "condition", "group_id", "position"});
    std::string name = checked_name(body, "name", true);
    if (!body.contains("condition")) bad_field("condition", "'condition' is required");
    std::string condition = checked_condition(body.at("condition"));
    std::string group(core::required_string(body, "group_id"));
    auto position = core::optional_int(body, "position");  // 1-based place; default last
    if (position && (*position < 1 || *position > static_cast<std::int64_t>(kMaxSegmentRules))) {
        bad_field("position", fmt::format("'position' is from 1 to {}", kMaxSegmentRules));
    }
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    auto write = [id, name, condition, group, position, now](store::Tx& tx) {
        auto count = static_cast<std::int64_t>(tx.query_one("SELECT count(*) FROM op_segment_rules")->integer(0));
        if (static_cast<std::size_t>(count) >= kMaxSegmentRules) {
            throw core::Conflict(fmt::format("at most {} segment rules", kMaxSegmentRules), "too_many_rules");
        }
        require_group(tx, group);
        std::int64_t place = std::min(position.value_or(count + 1), count + 1);
        // Renumber 1..n with the new rule at `place`.
        std::int64_t p = 1;
        for (const auto& r : tx.query("SELECT id FROM op_segment_rules ORDER BY position, id")) {
            if (p == place) ++p;
            tx.exec("UPDATE op_segment_rules SET position = ? WHERE id = ?", {p++, r.text(0)});
        }
        tx.exec("INSERT INTO op_segment_rules(id, position, name, condition, group_id, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                {id, place, name, condition, group, now, now});
        return rule_json(*tx.query_one(fmt::format("SELECT {} FROM op_segment_rules WHERE id = ?", kRuleColumns), {id}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<json::object> OperatorService::update_segment_rule(const core::Principal& who, std::string id,
                                                                          json::object body) {
    require_settings(who);
    core::reject_unknown_fields(body, {"name", "condition", "group_id"});
    auto name = body.contains("name") ? std::optional<std::string>(checked_name(body, "name", true)) : std::nullopt;
    std::optional<std::string> condition;
    if (body.contains("condition")) condition = checked_condition(body.at("condition"));
    auto group = core::optional_string(body, "group_id");
    std::int64_t now = clock_.now_ms();
    auto write = [id, name, condition, group, now](store::Tx& tx) -> std::optional<json::object> {
        if (!tx.query_one("SELECT 1 FROM op_segment_rules WHERE id = ?", {id})) return std::nullopt;
        if (group) require_group(tx, *group);
        if (name) tx.exec("UPDATE op_segment_rules SET name = ? WHERE id = ?", {*name, id});
        if (condition) tx.exec("UPDATE op_segment_rules SET condition = ? WHERE id = ?", {*condition, id});
        if (group) tx.exec("UPDATE op_segment_rules SET group_id = ? WHERE id = ?", {*group, id});
        tx.exec("UPDATE op_segment_rules SET updated_at = ? WHERE id = ?", {now, id});
        return rule_json(*tx.query_one(fmt::format("SELECT {} FROM op_segment_rules WHERE id = ?", kRuleColumns), {id}));
    };
    auto out = co_await store::co_write(store_, std::move(write));
    if (!out) throw core::NotFound(fmt::format("no segment rule '{}'", id), "rule_not_found");
    co_return *out;
}

boost::asio::awaitable<void> OperatorService::delete_segment_rule(const core::Principal& who, std::string id) {
    require_settings(who);
    auto write = [id](store::Tx& tx) {
        if (tx.exec("DELETE FROM op_segment_rules WHERE id = ?", {id}) == 0) return false;
        std::int64_t p = 1;
        for (const auto& r : tx.query("SELECT id FROM op_segment_rules ORDER BY position, id")) {
            tx.exec("UPDATE op_segment_rules SET position = ? WHERE id = ?", {p++, r.text(0)});
        }
        return true;
    };
    if (!co_await store::co_write(store_, std::move(write))) {
        throw core::NotFound(fmt::format("no segment rule '{}'", id), "rule_not_found");
    }
}

boost::asio::awaitable<json::array> OperatorService::order_segment_rules(const core::Principal& who,
                                                                         std::vector<std::string> ids) {
    require_settings(who);
    auto write = [ids](store::Tx& tx) {
        std::set<std::string> existing;
        for (const auto& r : tx.query("SELECT id FROM op_segment_rules")) existing.insert(r.text(0));
        std::set<std::string> given(ids.begin(), ids.end());
        if (given.size() != ids.size() || given != existing) {
            bad_field("ids", "'ids' must name every segment rule exactly once");
        }
        std::int64_t p = 1;
        for (const auto& id : ids) tx.exec("UPDATE op_segment_rules SET position = ? WHERE id = ?", {p++, id});
    };
    co_await store::co_write(store_, std::move(write));
    co_return segment_rules();
}

// ---- Supervisor views, transfer, reassign ----------------------------------------------------------------------

json::array OperatorService::operators() const {
    json::array out;
    std::int64_t now = clock_.now_ms();
    store_.read([&](store::Tx& tx) {
        std::unordered_map<std::string, json::array> groups;
        for (const auto& r : tx.query("SELECT m.user_id, g.id, g.name, m.skill_level FROM op_group_members m "
                                      "JOIN op_skill_groups g ON g.id = m.group_id ORDER BY g.name")) {
            groups[r.text(0)].push_back(json::object{{"id", r.text(1)}, {"name", r.text(2)}, {"skill_level", r.integer(3)}});
        }
        for (const auto& r : tx.query(
                 "SELECT o.user_id, o.status, o.capacity, o.active_dialogs, o.updated_at, coalesce(u.email, ''), "
                 "coalesce(u.name, ''), o.status_since, coalesce(s.accepts_dialogs, 0), "
                 "(SELECT count(*) FROM op_dialogs d WHERE d.operator_id = o.user_id AND d.state = 'assigned') "
                 "FROM op_operators o LEFT JOIN auth_users u ON u.id = o.user_id "
                 "LEFT JOIN op_statuses s ON s.kind = 'operator' AND s.name = o.status ORDER BY u.email, o.user_id")) {
            auto it = groups.find(r.text(0));
            std::int64_t since = r.integer(7);
            out.push_back(json::object{{"user_id", r.text(0)},
                                       {"email", r.text(5)},
                                       {"name", r.text(6)},
                                       {"status", r.text(1)},
                                       {"accepts_dialogs", r.integer(8) != 0},
                                       {"status_since", time_or_null(since)},
                                       {"seconds_in_status", since ? (now - since) / 1000 : 0},
                                       {"capacity", r.integer(2)},
                                       {"active_dialogs", r.integer(3)},
                                       {"load", r.integer(2) ? static_cast<double>(r.integer(3)) / static_cast<double>(r.integer(2)) : 0.0},
                                       {"groups", it == groups.end() ? json::array{} : it->second},
                                       {"updated_at", time_or_null(r.integer(4))}});
        }
    });
    return out;
}

json::array OperatorService::queues() const {
    json::array out;
    std::int64_t now = clock_.now_ms();
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(
                 "SELECT coalesce(d.group_id, ''), coalesce(g.name, ''), count(*), min(d.queued_at) FROM op_dialogs d "
                 "LEFT JOIN op_skill_groups g ON g.id = d.group_id WHERE d.state = 'queue' "
                 "GROUP BY coalesce(d.group_id, '') ORDER BY min(d.queued_at)")) {
            out.push_back(json::object{{"group_id", id_or_null(r.text(0))},
                                       {"group_name", r.text(1)},
                                       {"waiting", r.integer(2)},
                                       {"oldest_queued_at", time_or_null(r.integer(3))},
                                       {"longest_wait_seconds", (now - r.integer(3)) / 1000}});
        }
    });
    return out;
}

boost::asio::awaitable<json::object> OperatorService::transfer(const core::Principal& who, std::string dialog_id,
                                                               std::optional<std::string> to_operator,
                                                               std::optional<std::string> to_group, std::string comment) {
    if (to_operator.has_value() == to_group.has_value()) {
        bad_field("target", "give exactly one of 'operator_id' and 'group_id'");
    }
    if (comment.size() > kMaxTransferCommentBytes) {
        throw core::TooLarge(fmt::format("'comment' is longer than {} bytes", kMaxTransferCommentBytes), "too_large",
                             json::array{json::object{{"field", "comment"}}});
    }
    json::object dialog = visible_dialog(who, dialog_id);
    bool mine = dialog.at("operator_id").is_string() && dialog.at("operator_id").as_string() == who.user_id;
    if (!mine && !supervisor(who)) {
        throw core::Forbidden("only the assigned operator or a supervisor transfers a dialog", "not_your_dialog");
    }
    if (dialog.at("status") == "closed") throw core::Conflict("the dialog is closed", "dialog_closed");
    std::int64_t now = clock_.now_ms();
    struct Outcome {
        std::string from;   // the previous operator
        std::string to;     // the new operator, "" when queued
        std::string group;  // the dialog's group afterwards
    };
    std::string note_id = core::new_id();
    auto write = [dialog_id, to_operator, to_group, comment, now, note_id, actor = who.user_id](store::Tx& tx) -> Outcome {
        auto r = tx.query_one("SELECT state, coalesce(operator_id, ''), coalesce(group_id, '') FROM op_dialogs WHERE dialog_id = ?",
                              {dialog_id});
        if (!r) throw core::NotFound(fmt::format("no operator dialog '{}'", dialog_id), "dialog_not_found");
        if (r->text(0) == "closed") throw core::Conflict("the dialog is closed", "dialog_closed");
        Outcome out{r->text(0) == "assigned" ? r->text(1) : std::string(), "", r->text(2)};
        if (to_operator) {
            if (*to_operator == out.from) throw core::Conflict("the dialog is already this operator's", "same_operator");
            auto target = tx.query_one("SELECT o.user_id, coalesce(s.accepts_dialogs, 0) FROM op_operators o "
                                       "LEFT JOIN op_statuses s ON s.kind = 'operator' AND s.name = o.status "
                                       "WHERE o.user_id = ?",
                                       {*to_operator});
            if (!target) {
                if (!tx.query_one("SELECT 1 FROM auth_users WHERE id = ?", {*to_operator})) {
                    throw core::NotFound(fmt::format("no user '{}'", *to_operator), "user_not_found");
                }
                throw core::Conflict("that operator is not accepting dialogs", "operator_unavailable");
            }
            if (!target->integer(1)) throw core::Conflict("that operator is not accepting dialogs", "operator_unavailable");
            if (!internal::has_room(tx, *to_operator)) {
                throw core::Conflict("that operator is at capacity", "operator_at_capacity");
            }
            if (!out.from.empty()) internal::unload(tx, out.from);
            internal::assign(tx, dialog_id, *to_operator, now);
            out.to = *to_operator;
        } else {
            if (!tx.query_one("SELECT 1 FROM op_skill_groups WHERE id = ?", {*to_group})) {
                throw core::NotFound(fmt::format("no skill group '{}'", *to_group), "group_not_found");
            }
            if (!out.from.empty()) internal::unload(tx, out.from);
            // The transferring operator is not a candidate while it waits: they are handing it on.
            tx.exec("UPDATE op_dialogs SET group_id = ?, state = 'queue', operator_id = NULL, queued_at = ?, updated_at = ?, "
                    "avoid_operator = ? WHERE dialog_id = ?",
                    {*to_group, now, now, out.from, dialog_id});
            out.group = *to_group;
            std::string user = internal::pick_operator(tx, *to_group, out.from);
            if (!user.empty()) internal::assign(tx, dialog_id, user, now);
            out.to = user;
        }
        std::string text = comment.empty() ? "" : comment;
        tx.exec("INSERT INTO op_notes(id, dialog_id, author_id, kind, text, created_at) VALUES (?, ?, ?, 'transfer', ?, ?)",
                {note_id, dialog_id, actor,
                 json::serialize(json::object{{"from", id_or_null(out.from)}, {"to", id_or_null(out.to)},
                                              {"group_id", id_or_null(out.group)}, {"comment", text}}),
                 now});
        return out;
    };
    Outcome out = co_await store::co_write(store_, std::move(write));
    json::object event{{"dialog_id", dialog_id},       {"from_operator_id", id_or_null(out.from)},
                       {"operator_id", id_or_null(out.to)}, {"group_id", id_or_null(out.group)},
                       {"status", out.to.empty() ? "queue" : "assigned"}, {"comment", comment},
                       {"by", who.user_id}};
    if (!out.from.empty()) publish("operator.transferred", event, out.from);
    if (!out.to.empty()) {
        publish_dialog_event("operator.transferred", event, out.to);
    } else {
        publish("operator.transferred", event);  // waiting: every operator may see and take it
        publish("operator.queue", json::object{{"dialog_id", dialog_id}, {"group_id", id_or_null(out.group)}});
    }
    if (!out.from.empty()) co_await dispatch_queue();  // the previous operator has room again
    co_return json::object{{"dialog_id", dialog_id},
                           {"status", out.to.empty() ? "queue" : "assigned"},
                           {"operator_id", id_or_null(out.to)},
                           {"group_id", id_or_null(out.group)}};
}

boost::asio::awaitable<json::object> OperatorService::reassign(const core::Principal& who, std::string user_id,
                                                               std::vector<std::string> dialog_ids,
                                                               std::optional<std::string> to_operator) {
    if (!supervisor(who)) throw core::Forbidden("reassigning chats needs operator.delete", "forbidden");
    if (dialog_ids.size() > kMaxReassignDialogs) {
        bad_field("dialog_ids", fmt::format("at most {} dialog ids", kMaxReassignDialogs));
    }
    if (to_operator && *to_operator == user_id) bad_field("to_operator_id", "the dialogs are already this operator's");
    std::int64_t now = clock_.now_ms();
    struct Outcome {
        std::vector<std::string> moved, queued;
    };
    auto write = [user_id, dialog_ids, to_operator, now](store::Tx& tx) -> Outcome {
        std::vector<std::string> ids;
        if (dialog_ids.empty()) {
            for (const auto& r : tx.query("SELECT dialog_id FROM op_dialogs WHERE operator_id = ? AND state = 'assigned' "
                                          "ORDER BY assigned_at, dialog_id",
                                          {user_id})) {
                ids.push_back(r.text(0));
            }
        } else {
            for (const auto& id : dialog_ids) {
                if (!tx.query_one("SELECT 1 FROM op_dialogs WHERE dialog_id = ? AND operator_id = ? AND state = 'assigned'",
                                  {id, user_id})) {
                    throw core::Unprocessable(fmt::format("'{}' is not an open dialog of that operator", id),
                                              "not_operator_dialog", json::array{json::object{{"field", "dialog_ids"}, {"id", id}}});
                }
                ids.push_back(id);
            }
        }
        if (to_operator) {
            auto target = tx.query_one("SELECT coalesce(s.accepts_dialogs, 0) FROM op_operators o LEFT JOIN op_statuses s "
                                       "ON s.kind = 'operator' AND s.name = o.status WHERE o.user_id = ?",
                                       {*to_operator});
            if (!target || !target->integer(0)) {
                throw core::Conflict("that operator is not accepting dialogs", "operator_unavailable");
            }
        }
        Outcome out;
        for (const auto& id : ids) {
            internal::unload(tx, user_id);
            if (to_operator && internal::has_room(tx, *to_operator)) {
                internal::assign(tx, id, *to_operator, now);
                out.moved.push_back(id);
            } else {
                tx.exec("UPDATE op_dialogs SET state = 'queue', operator_id = NULL, updated_at = ?, avoid_operator = ? "
                        "WHERE dialog_id = ?",
                        {now, user_id, id});
                out.queued.push_back(id);
            }
        }
        return out;
    };
    Outcome out = co_await store::co_write(store_, std::move(write));
    json::array moved, queued;
    for (auto& id : out.moved) {
        moved.emplace_back(id);
        json::object event{{"dialog_id", id}, {"from_operator_id", user_id}, {"operator_id", *to_operator},
                           {"status", "assigned"}, {"by", who.user_id}};
        publish("operator.transferred", event, user_id);
        publish_dialog_event("operator.transferred", std::move(event), *to_operator);
    }
    for (auto& id : out.queued) {
        queued.emplace_back(id);
        publish("operator.dialog", json::object{{"dialog_id", id}, {"status", "queue"}, {"from_operator_id", user_id}});
    }
    co_await dispatch_queue();
    co_return json::object{{"moved", std::move(moved)}, {"queued", std::move(queued)}};
}

}  // namespace parley::operators

#include "auth/permissions.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "core/error.h"

namespace parley::auth {
namespace {

constexpr core::Action kActions[] = {core::Action::kView, core::Action::kEdit, core::Action::kDelete};

// Grants of `module`: "v", "ve", "ved" (view, edit, delete).
void grant(PermissionSet& set, std::string_view module, std::string_view rights) {
    for (char r : rights) {
        core::Action action = r == 'v' ? core::Action::kView : r == 'e' ? core::Action::kEdit : core::Action::kDelete;
        set.insert(permission_key(module, action));
    }
}

PermissionSet integrator_defaults() {
    PermissionSet s;
    for (auto m : {kModuleBots, kModuleChannels, kModuleJail, kModuleCustomData, kModuleKnowledge, kModuleBroadcasts,
                   kModuleFiles}) {
        grant(s, m, "ved");
    }
    grant(s, kModuleClients, "ve");
    grant(s, kModuleSettings, "ve");
    grant(s, kModuleOperatorSettings, "v");
    grant(s, kModuleStats, "v");
    return s;
}

PermissionSet supervisor_defaults() {
    PermissionSet s;
    for (auto m : {kModuleOperator, kModuleTickets, kModuleOperatorSettings, kModuleQa}) grant(s, m, "ved");
    grant(s, kModuleClients, "ve");
    grant(s, kModuleBroadcasts, "ve");
    grant(s, kModuleFiles, "ve");
    grant(s, kModuleStats, "v");
    grant(s, kModuleKnowledge, "v");
    grant(s, kModuleUsers, "v");
    return s;
}

PermissionSet operator_defaults() {
    PermissionSet s;
    for (auto m : {kModuleOperator, kModuleTickets, kModuleClients, kModuleFiles}) grant(s, m, "ve");
    grant(s, kModuleKnowledge, "v");
    grant(s, kModuleCustomData, "v");
    return s;
}

PermissionSet analyst_defaults() {
    PermissionSet s;
    for (auto m : {kModuleStats, kModuleQa, kModuleOperator, kModuleTickets, kModuleClients, kModuleBroadcasts,
                   kModuleBots}) {
        grant(s, m, "v");
    }
    return s;
}

}  // namespace

const std::vector<ModuleInfo>& modules() {
    static const std::vector<ModuleInfo> list = {
        {kModuleBots, "Bots and Scenario Builder", "bots, scenarios, versions, translations, preview"},
        {kModuleChannels, "Channels", "channel connections and their credentials"},
        {kModuleJail, "Action Jail", "sandboxed JavaScript actions, their versions and test runs"},
        {kModuleCustomData, "Custom Data", "models, fields, records, CSV import/export"},
        {kModuleClients, "Clients", "registered users (client cards), client fields, segments, subscriptions"},
        {kModuleOperator, "OperatorLine", "dialogs in the operator panel: take, answer, transfer, close"},
        {kModuleTickets, "Tickets", "tickets and links between them"},
        {kModuleOperatorSettings, "Operator panel settings",
         "skill groups, subjects, statuses, timers (TFR, TTC), SLA, quick replies, macros, folders and filters"},
        {kModuleKnowledge, "Fastline Pro", "knowledge bases, documents, AI agents, LLM providers"},
        {kModuleBroadcasts, "Broadcasts", "broadcast templates, audiences, topics, schedules and launches"},
        {kModuleFiles, "Files", "the file manager"},
        {kModuleStats, "Statistics", "dashboards, reports, CSAT, funnels, exports"},
        {kModuleQa, "Quality Assurance", "evaluations, checklists, criteria"},
        {kModuleUsers, "Users", "staff accounts, their roles, manual password-reset links"},
        {kModuleRoles, "Roles", "roles and their access rights"},
        {kModuleSettings, "Instance settings", "instance key/value settings, including write-only secrets"},
        {kModuleAudit, "Audit log", "the log of security-relevant changes"},
    };
    return list;
}

bool is_module(std::string_view name) {
    for (const auto& m : modules()) {
        if (m.name == name) return true;
    }
    return false;
}

std::optional<core::Action> parse_action(std::string_view text) {
    for (auto a : kActions) {
        if (core::action_name(a) == text) return a;
    }
    return std::nullopt;
}

std::string permission_key(std::string_view module, core::Action action) {
    std::string key(module);
    key.push_back('.');
    key.append(core::action_name(action));
    return key;
}

PermissionSet all_permissions() {
    PermissionSet s;
    for (const auto& m : modules()) grant(s, m.name, "ved");
    return s;
}

const std::vector<BuiltinRole>& builtin_roles() {
    static const std::vector<BuiltinRole> list = {
        {kRoleAdministrator, "Users, roles and permissions, bots, instance settings, access recovery",
         all_permissions()},
        {kRoleIntegrator, "Channels, Scenario Builder, Action Jail, Custom Data, Fastline Pro, broadcasts",
         integrator_defaults()},
        {kRoleSupervisor, "Skill groups, subjects, queues, timers, SLA, quality assurance", supervisor_defaults()},
        {kRoleOperator, "Answers dialogs handed over from bots, works tickets", operator_defaults()},
        {kRoleAnalyst, "Statistics, dashboards, CSAT, funnels, exports", analyst_defaults()},
    };
    return list;
}

bool is_builtin_role(std::string_view name) {
    for (const auto& r : builtin_roles()) {
        if (r.name == name) return true;
    }
    return false;
}

bool is_valid_role_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

PermissionSet parse_permissions(const boost::json::value& doc) {
    namespace json = boost::json;
    if (!doc.is_object()) {
        throw core::BadRequest("'permissions' must be an object of module → list of rights", "wrong_type",
                               json::array{json::object{{"field", "permissions"}}});
    }
    PermissionSet out;
    for (const auto& kv : doc.as_object()) {
        std::string_view module(kv.key());
        if (!is_module(module)) {
            throw core::BadRequest(fmt::format("unknown module '{}' (see GET /api/v1/permissions)", module),
                                   "unknown_module", json::array{json::object{{"field", "permissions"}, {"module", module}}});
        }
        if (!kv.value().is_array()) {
            throw core::BadRequest(fmt::format("permissions of '{}' must be a list of rights", module), "wrong_type",
                                   json::array{json::object{{"field", "permissions"}, {"module", module}}});
        }
        for (const auto& item : kv.value().as_array()) {
            std::optional<core::Action> action;
            if (item.is_string()) action = parse_action(std::string_view(item.as_string()));
            if (!action) {
                throw core::BadRequest(
                    fmt::format("unknown right {} for '{}' (rights are view, edit, delete)", json::serialize(item),
                                module),
                    "unknown_action", json::array{json::object{{"field", "permissions"}, {"module", module}}});
            }
            out.insert(permission_key(module, *action));
        }
    }
    return out;
}

boost::json::object permissions_to_json(const PermissionSet& permissions) {
    boost::json::object out;
    for (const auto& m : modules()) {
        boost::json::array rights;
        for (auto a : kActions) {
            if (permissions.count(permission_key(m.name, a))) rights.emplace_back(core::action_name(a));
        }
        if (!rights.empty()) out[m.name] = std::move(rights);
    }
    return out;
}

}  // namespace parley::auth

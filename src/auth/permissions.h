/// The permission model: the fixed list of modules every role grants rights on, the three rights per module
/// (view, edit, delete) and the built-in roles with their default grants. Other modules name their route
/// permissions from `modules()` (e.g. `http::Access::need(auth::kModuleBots, core::Action::kEdit)`).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "core/principal.h"

namespace parley::auth {

// Module names as they appear in permissions ("bots.edit") and in `GET /api/v1/permissions`.
inline constexpr std::string_view kModuleBots = "bots";
inline constexpr std::string_view kModuleChannels = "channels";
inline constexpr std::string_view kModuleJail = "jail";
inline constexpr std::string_view kModuleCustomData = "custom_data";
inline constexpr std::string_view kModuleClients = "clients";
inline constexpr std::string_view kModuleOperator = "operator";
inline constexpr std::string_view kModuleTickets = "tickets";
inline constexpr std::string_view kModuleOperatorSettings = "operator_settings";
inline constexpr std::string_view kModuleKnowledge = "knowledge";
inline constexpr std::string_view kModuleBroadcasts = "broadcasts";
inline constexpr std::string_view kModuleFiles = "files";
inline constexpr std::string_view kModuleStats = "stats";
inline constexpr std::string_view kModuleQa = "qa";
inline constexpr std::string_view kModuleUsers = "users";
inline constexpr std::string_view kModuleRoles = "roles";
inline constexpr std::string_view kModuleSettings = "settings";
inline constexpr std::string_view kModuleAudit = "audit";

/// One module a role can grant rights on.
struct ModuleInfo {
    std::string_view name;
    std::string_view title;        ///< English label for the admin UI
    std::string_view description;  ///< what view/edit/delete cover
};

/// Every module, in admin-UI order. Immutable; thread-safe.
const std::vector<ModuleInfo>& modules();

/// Whether `name` is one of modules().
bool is_module(std::string_view name);

/// Parses "view" / "edit" / "delete".
std::optional<core::Action> parse_action(std::string_view text);

/// A role's grants: the set of "module.action" strings (the same form as core::Principal::permissions).
using PermissionSet = std::set<std::string>;

/// "module.action".
std::string permission_key(std::string_view module, core::Action action);

/// Every permission of every module (the administrator's grants).
PermissionSet all_permissions();

/// Built-in role names.
inline constexpr std::string_view kRoleAdministrator = "administrator";
inline constexpr std::string_view kRoleIntegrator = "integrator";
inline constexpr std::string_view kRoleSupervisor = "supervisor";
inline constexpr std::string_view kRoleOperator = "operator";
inline constexpr std::string_view kRoleAnalyst = "analyst";

struct BuiltinRole {
    std::string_view name;
    std::string_view description;
    PermissionSet defaults;  ///< grants seeded at installation (administrator: always everything)
};

/// The five built-in roles with their default grants (documented in src/auth/README.md).
const std::vector<BuiltinRole>& builtin_roles();

bool is_builtin_role(std::string_view name);

/// Role names: `[a-z0-9_-]{1,64}`.
bool is_valid_role_name(std::string_view name);

/// Parses the API form `{"module": ["view", "edit"], ...}`. Throws core::BadRequest naming the unknown
/// module or right (code `unknown_module` / `unknown_action` / `wrong_type`).
PermissionSet parse_permissions(const boost::json::value& doc);

/// The API form of a set: modules with at least one right, in modules() order, rights in view/edit/delete order.
boost::json::object permissions_to_json(const PermissionSet& permissions);

}  // namespace parley::auth

/// Who is making a request and what they may do: produced by `auth`, checked by `http` on every route.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace parley::core {

/// The three rights a role grants per module (seed: "configure roles and access rights").
enum class Action { kView, kEdit, kDelete };

std::string_view action_name(Action action);

/// A signed-in user (by session or API token). Immutable once built; shared read-only across threads.
struct Principal {
    std::string user_id;
    std::string email;
    std::string name;
    std::string language;
    std::vector<std::string> roles;
    std::string session_id;  ///< the session or API token id
    bool via_api_token = false;
    std::unordered_set<std::string> permissions;  ///< "module.view", "module.edit", "module.delete"

    bool can(std::string_view module, Action action) const {
        std::string key;
        key.reserve(module.size() + 8);
        key.append(module).push_back('.');
        key.append(action_name(action));
        return permissions.count(key) > 0;
    }
    bool has_role(std::string_view role) const {
        for (const auto& r : roles) {
            if (r == role) return true;
        }
        return false;
    }
};

inline std::string_view action_name(Action action) {
    switch (action) {
        case Action::kView: return "view";
        case Action::kEdit: return "edit";
        case Action::kDelete: return "delete";
    }
    return "view";
}

}  // namespace parley::core

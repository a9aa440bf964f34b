/// The audit log of security-relevant changes (users, roles, tokens, settings, passwords, logins). Entries are
/// written inside the same write transaction as the change they describe, so a change and its entry commit
/// together. Other modules may record their own security-relevant changes with record_audit().
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/principal.h"
#include "store/store.h"

namespace parley::auth {

/// One entry to record. `actor` is null for anonymous events (failed logins, reset requests).
struct AuditRecord {
    const core::Principal* actor = nullptr;
    std::string action;  ///< dotted verb: "user.create", "login.failure", "setting.set", ...
    std::string target;  ///< what was acted on: a user id, role name, setting key, e-mail
    boost::json::object details;
    std::string ip;
};

/// Appends an entry inside a write transaction (call only from a store write callback).
void record_audit(store::Tx& tx, std::int64_t now_ms, const AuditRecord& record);

/// One stored entry as the API lists it.
struct AuditEntry {
    std::string id;
    std::int64_t at = 0;
    std::optional<std::string> actor_id;
    std::optional<std::string> actor_email;
    std::string action;
    std::string target;
    boost::json::value details;
    std::string ip;
};

struct AuditQuery {
    std::optional<std::string> actor;   ///< actor user id or e-mail
    std::optional<std::string> action;  ///< exact action, or a prefix ending in '.' ("user.")
    std::optional<std::string> cursor;  ///< the last id of the previous page
    std::size_t limit = 50;
};

struct AuditPage {
    std::vector<AuditEntry> items;
    std::optional<std::string> next_cursor;
};

/// Newest first. Thread-safe (a store read on the caller's thread).
AuditPage list_audit(store::Store& store, const AuditQuery& query);

boost::json::object audit_entry_to_json(const AuditEntry& entry);

}  // namespace parley::auth

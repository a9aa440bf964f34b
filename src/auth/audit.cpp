#include "auth/audit.h"

#include <boost/json.hpp>

#include "core/clock.h"
#include "core/ids.h"

namespace parley::auth {

void record_audit(store::Tx& tx, std::int64_t now_ms, const AuditRecord& record) {
    store::Value actor_id = nullptr;
    store::Value actor_email = nullptr;
    if (record.actor) {
        actor_id = record.actor->user_id;
        actor_email = record.actor->email;
    }
    tx.exec("INSERT INTO audit_log(id, at, actor_id, actor_email, action, target, details, ip) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            {core::new_id(), now_ms, actor_id, actor_email, record.action, record.target,
             boost::json::serialize(record.details), record.ip});
}

AuditPage list_audit(store::Store& store, const AuditQuery& query) {
    std::string sql =
        "SELECT id, at, actor_id, actor_email, action, target, details, ip FROM audit_log WHERE 1 = 1";
    store::Params params;
    if (query.actor) {
        sql += " AND (actor_id = ? OR actor_email = ?)";
        params.emplace_back(*query.actor);
        params.emplace_back(*query.actor);
    }
    if (query.action) {
        if (!query.action->empty() && query.action->back() == '.') {
            sql += " AND substr(action, 1, ?) = ?";
            params.emplace_back(static_cast<std::int64_t>(query.action->size()));
        } else {
            sql += " AND action = ?";
        }
        params.emplace_back(*query.action);
    }
    if (query.cursor) {
        sql += " AND id < ?";
        params.emplace_back(*query.cursor);
    }
    sql += " ORDER BY id DESC LIMIT ?";
    params.emplace_back(static_cast<std::int64_t>(query.limit + 1));

    AuditPage page;
    store.read([&](store::Tx& tx) {
        for (const auto& row : tx.query(sql, params)) {
            AuditEntry e;
            e.id = row.text(0);
            e.at = row.integer(1);
            e.actor_id = row.opt_text(2);
            e.actor_email = row.opt_text(3);
            e.action = row.text(4);
            e.target = row.text(5);
            boost::system::error_code ec;
            e.details = boost::json::parse(row.text(6), ec);
            if (ec) e.details = boost::json::object{};
            e.ip = row.text(7);
            page.items.push_back(std::move(e));
        }
    });
    if (page.items.size() > query.limit) {
        page.items.resize(query.limit);
        page.next_cursor = page.items.back().id;
    }
    return page;
}

boost::json::object audit_entry_to_json(const AuditEntry& entry) {
    boost::json::object out;
    out["id"] = entry.id;
    out["at"] = core::format_time(entry.at);
    out["actor"] = entry.actor_id ? boost::json::value(boost::json::object{{"id", *entry.actor_id},
                                                                            {"email", entry.actor_email.value_or("")}})
                                  : boost::json::value(nullptr);
    out["action"] = entry.action;
    out["target"] = entry.target;
    out["details"] = entry.details;
    out["ip"] = entry.ip;
    return out;
}

}  // namespace parley::auth

#include <fmt/format.h>

#include <chrono>
#include <set>

#include "core/json.h"
#include "core/log.h"
#include "operator/internal/routing.h"
#include "operator/internal/segment.h"
#include "operator/operator.h"

namespace parley::operators::internal {

void ensure_operator(store::Tx& tx, const std::string& user_id, std::int64_t now) {
    tx.exec("INSERT OR IGNORE INTO op_operators(user_id, status, capacity, active_dialogs, last_assigned_at, updated_at, "
            "status_since) VALUES (?, 'offline', ?, 0, 0, ?, ?)",
            {user_id, static_cast<std::int64_t>(kDefaultCapacity), now, now});
}

std::optional<bool> status_accepts(store::Tx& tx, std::string_view status) {
    auto r = tx.query_one("SELECT accepts_dialogs FROM op_statuses WHERE kind = 'operator' AND name = ?",
                          {std::string(status)});
    if (!r) return std::nullopt;
    return r->integer(0) != 0;
}

namespace {

constexpr const char* kFreeOperators =
    "FROM op_operators o JOIN op_statuses s ON s.kind = 'operator' AND s.name = o.status AND s.accepts_dialogs = 1 "
    "WHERE o.active_dialogs < o.capacity";

}  // namespace

std::string pick_operator(store::Tx& tx, const std::string& group_id, const std::string& avoid) {
    if (group_id.empty()) {
        auto row = tx.query_one(fmt::format("SELECT o.user_id {} AND o.user_id <> ? "
                                            "ORDER BY o.active_dialogs, o.last_assigned_at, o.user_id LIMIT 1",
                                            kFreeOperators),
                                {avoid});
        return row ? row->text(0) : std::string();
    }
    auto group = tx.query_one("SELECT policy, rr_last FROM op_skill_groups WHERE id = ?", {group_id});
    if (!group) return {};
    std::string members = fmt::format(
        "SELECT o.user_id {} AND o.user_id <> ? AND o.user_id IN (SELECT user_id FROM op_group_members WHERE group_id = ?)",
        kFreeOperators);
    const std::string& policy = group->text(0);
    if (policy == "round_robin") {
        // The next member after the last one served (by id, wrapping), among those free now.
        auto next = tx.query_one(members + " AND o.user_id > ? ORDER BY o.user_id LIMIT 1", {avoid, group_id, group->text(1)});
        if (!next) next = tx.query_one(members + " ORDER BY o.user_id LIMIT 1", {avoid, group_id});
        if (!next) return {};
        tx.exec("UPDATE op_skill_groups SET rr_last = ? WHERE id = ?", {next->text(0), group_id});
        return next->text(0);
    }
    if (policy == "by_skill") {
        auto row = tx.query_one(
            "SELECT o.user_id FROM op_operators o JOIN op_statuses s ON s.kind = 'operator' AND s.name = o.status "
            "AND s.accepts_dialogs = 1 JOIN op_group_members m ON m.user_id = o.user_id AND m.group_id = ? "
            "WHERE o.active_dialogs < o.capacity AND o.user_id <> ? "
            "ORDER BY m.skill_level DESC, o.active_dialogs, o.last_assigned_at, o.user_id LIMIT 1",
            {group_id, avoid});
        return row ? row->text(0) : std::string();
    }
    auto row = tx.query_one(members + " ORDER BY o.active_dialogs, o.last_assigned_at, o.user_id LIMIT 1", {avoid, group_id});
    return row ? row->text(0) : std::string();
}

bool anyone_available(store::Tx& tx, const std::string& group_id) {
    std::string sql =
        "SELECT 1 FROM op_operators o JOIN op_statuses s ON s.kind = 'operator' AND s.name = o.status "
        "AND s.accepts_dialogs = 1";
    if (group_id.empty()) return tx.query_one(sql + " LIMIT 1").has_value();
    return tx.query_one(sql + " WHERE o.user_id IN (SELECT user_id FROM op_group_members WHERE group_id = ?) LIMIT 1",
                        {group_id})
        .has_value();
}

void assign(store::Tx& tx, const std::string& dialog_id, const std::string& user_id, std::int64_t now) {
    tx.exec("UPDATE op_dialogs SET state = 'assigned', operator_id = ?, assigned_at = ?, updated_at = ?, avoid_operator = '' "
            "WHERE dialog_id = ?",
            {user_id, now, now, dialog_id});
    tx.exec("UPDATE op_operators SET active_dialogs = active_dialogs + 1, last_assigned_at = ? WHERE user_id = ?",
            {now, user_id});
}

void unload(store::Tx& tx, const std::string& user_id) {
    tx.exec("UPDATE op_operators SET active_dialogs = max(active_dialogs - 1, 0) WHERE user_id = ?", {user_id});
}

bool has_room(store::Tx& tx, const std::string& user_id) {
    return tx.query_one("SELECT 1 FROM op_operators WHERE user_id = ? AND active_dialogs < capacity", {user_id})
        .has_value();
}

std::string group_for(store::Tx& tx, std::string_view subject, const json::object& card) {
    for (const auto& r : tx.query("SELECT id, condition, group_id FROM op_segment_rules ORDER BY position, id")) {
        try {
            auto condition = SegmentCondition::parse(json::parse(r.text(1)));
            if (condition.matches(card)) return r.text(2);
        } catch (const std::exception& e) {
            // Stored rules were validated on write; a rule that no longer parses is skipped, not fatal.
            core::log_event(spdlog::level::warn, "operator_segment_rule_skipped",
                            fmt::format(R"("rule":{},"error":{})", core::json_quote(r.text(0)), core::json_quote(e.what())));
        }
    }
    if (!subject.empty()) {
        if (auto s = tx.query_one("SELECT group_id FROM op_subjects WHERE alias = ?", {std::string(subject)})) {
            return s->text(0);
        }
    }
    return {};
}

std::vector<std::pair<std::string, std::string>> dispatch(store::Tx& tx, std::int64_t now) {
    std::vector<std::pair<std::string, std::string>> assigned;
    if (!tx.query_one(fmt::format("SELECT 1 {} LIMIT 1", kFreeOperators))) return assigned;
    std::set<std::pair<std::string, std::string>> blocked;  // (group, avoid) whose first waiting dialog found nobody
    for (const auto& r : tx.query("SELECT dialog_id, coalesce(group_id, ''), avoid_operator FROM op_dialogs "
                                  "WHERE state = 'queue' ORDER BY queued_at, dialog_id LIMIT ?",
                                  {static_cast<std::int64_t>(kQueueScanLimit)})) {
        std::pair<std::string, std::string> key{r.text(1), r.text(2)};
        if (blocked.count(key)) continue;
        std::string user = pick_operator(tx, key.first, key.second);
        if (user.empty()) {
            blocked.insert(key);
            continue;
        }
        assign(tx, r.text(0), user, now);
        assigned.emplace_back(r.text(0), user);
    }
    return assigned;
}

namespace {

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
}

}  // namespace

std::optional<std::int64_t> parse_time(std::string_view s) {
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, ms = 0;
    if (!digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
        !digits(s, 8, 2, d)) {
        return std::nullopt;
    }
    if (y < 1970 || mo < 1 || mo > 12 || d < 1) return std::nullopt;
    std::size_t pos = 10;
    if (s.size() > 10) {
        if (s[10] != 'T' || !digits(s, 11, 2, h) || s.size() < 19 || s[13] != ':' || !digits(s, 14, 2, mi) ||
            s[16] != ':' || !digits(s, 17, 2, sec)) {
            return std::nullopt;
        }
        pos = 19;
        if (pos < s.size() && s[pos] == '.') {
            if (!digits(s, pos + 1, 3, ms)) return std::nullopt;
            pos += 4;
        }
        if (pos + 1 != s.size() || s[pos] != 'Z') return std::nullopt;
        if (h > 23 || mi > 59 || sec > 59) return std::nullopt;
    }
    using namespace std::chrono;
    year_month_day date{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
    if (!date.ok()) return std::nullopt;
    auto days = sys_days(date).time_since_epoch().count();
    return ((static_cast<std::int64_t>(days) * 24 + h) * 60 + mi) * 60'000 + sec * 1000 + ms;
}

bool valid_alias(std::string_view text, std::size_t max) {
    if (text.empty() || text.size() > max) return false;
    for (char c : text) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

}  // namespace parley::operators::internal

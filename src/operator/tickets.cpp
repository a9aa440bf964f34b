#include "operator/tickets.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <set>
#include <tuple>

#include "auth/permissions.h"
#include "bots/dialogs.h"
#include "clients/clients.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "events/events.h"
#include "store/async.h"

namespace parley::operators {

namespace {

constexpr std::array<std::string_view, 4> kPriorities{"low", "normal", "high", "urgent"};
constexpr std::array<std::string_view, 5> kCategories{"new", "open", "pending", "resolved", "closed"};
constexpr std::array<std::string_view, 6> kFieldTypes{"string", "text", "number", "bool", "date", "select"};
constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kMaxIsoTimeMs = 253'402'300'799'999;  ///< 9999-12-31T23:59:59.999Z

constexpr const char* kTicketColumns =
    "t.id, t.number, t.title, t.description, t.subject, t.status, t.priority, t.assignee_id, t.group_id, "
    "t.client_id, t.fields, t.due_at, t.created_by, t.created_at, t.updated_at, t.first_response_at, "
    "t.resolved_at, t.closed_at, t.first_response_due_at, t.resolution_due_at, t.source_dialog_id, "
    "t.source_message_n, t.version, s.category";
enum Col {
    kId, kNumber, kTitle, kDescription, kSubject, kStatus, kPriority, kAssignee, kGroup, kClient, kFields, kDueAt,
    kCreatedBy, kCreatedAt, kUpdatedAt, kFirstResponseAt, kResolvedAt, kClosedAt, kFirstResponseDue, kResolutionDue,
    kSourceDialog, kSourceMessage, kVersion, kCategory
};

json::array field_detail(std::string_view field) { return json::array{json::object{{"field", field}}}; }

[[noreturn]] void bad(std::string_view field, const std::string& message, std::string code = "invalid_field") {
    throw core::BadRequest(message, std::move(code), field_detail(field));
}

[[noreturn]] void too_large(std::string_view field, std::size_t limit, std::string_view unit = "bytes") {
    throw core::TooLarge(fmt::format("'{}' is over the limit of {} {}", field, limit, unit), "too_large",
                         json::array{json::object{{"field", field}, {"limit", limit}}});
}

json::value time_or_null(std::optional<std::int64_t> ms) {
    return ms ? json::value(core::format_time(*ms)) : json::value(nullptr);
}
json::value text_or_null(const store::Row& r, std::size_t i) {
    return r.is_null(i) ? json::value(nullptr) : json::value(r.text(i));
}
store::Value opt_value(const std::optional<std::string>& s) {
    return s ? store::Value(*s) : store::Value(nullptr);
}
// Not inlined: GCC 12 reports a false "maybe-uninitialized" on std::optional<int64_t> when this is inlined into
// the big write lambdas.
[[gnu::noinline]] store::Value opt_value(const std::optional<std::int64_t>& v) {
    return v ? store::Value(*v) : store::Value(nullptr);
}

template <typename T>
std::optional<T> flat(const std::optional<std::optional<T>>& v) {
    return v ? *v : std::optional<T>();
}

std::optional<int> priority_rank(std::string_view name) {
    for (std::size_t i = 0; i < kPriorities.size(); ++i) {
        if (kPriorities[i] == name) return static_cast<int>(i);
    }
    return std::nullopt;
}

bool is_category(std::string_view s) { return std::find(kCategories.begin(), kCategories.end(), s) != kCategories.end(); }
bool done_category(std::string_view c) { return c == "resolved" || c == "closed"; }

/// `[a-z][a-z0-9_]{0,max-1}`: custom field and status names (safe inside a JSON path).
bool is_name(std::string_view s, std::size_t max) {
    if (s.empty() || s.size() > max || s[0] < 'a' || s[0] > 'z') return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

bool has_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
}

std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

/// An id-like value (assignee, group, client, dialog): 1..kMaxIdBytes printable bytes.
std::string id_value(std::string_view field, const json::value& v) {
    if (!v.is_string()) bad(field, fmt::format("'{}' must be a string", field), "wrong_type");
    std::string_view s = v.get_string();
    if (s.empty() || s.size() > kMaxIdBytes || has_control(s)) {
        bad(field, fmt::format("'{}' must be 1 to {} printable bytes", field, kMaxIdBytes));
    }
    return std::string(s);
}

/// Absent → nullopt; null → optional(nullopt); a string → its value.
std::optional<std::optional<std::string>> nullable_id(const json::object& body, std::string_view key) {
    const auto* v = body.if_contains(key);
    if (!v) return std::nullopt;
    if (v->is_null()) return std::optional<std::string>();
    return std::optional<std::string>(id_value(key, *v));
}

std::vector<std::string> string_list(const json::object& body, std::string_view key, std::size_t max_items,
                                     std::size_t max_bytes) {
    const auto* v = body.if_contains(key);
    if (!v->is_array()) bad(key, fmt::format("'{}' must be an array of strings", key), "wrong_type");
    const auto& a = v->get_array();
    if (a.size() > max_items) too_large(key, max_items, "items");
    std::vector<std::string> out;
    for (const auto& item : a) {
        if (!item.is_string()) bad(key, fmt::format("'{}' must be an array of strings", key), "wrong_type");
        std::string_view s = item.get_string();
        if (s.empty() || s.size() > max_bytes || has_control(s) || s.find(',') != std::string_view::npos) {
            bad(key, fmt::format("each of '{}' must be 1 to {} bytes without commas or control characters", key, max_bytes));
        }
        if (std::find(out.begin(), out.end(), s) == out.end()) out.emplace_back(s);
    }
    return out;
}

std::string checked_text(const json::object& body, std::string_view key, std::size_t max, bool non_empty) {
    const auto* v = body.if_contains(key);
    if (!v->is_string()) bad(key, fmt::format("'{}' must be a string", key), "wrong_type");
    std::string_view s = v->get_string();
    if (s.size() > max) too_large(key, max);
    if (non_empty && s.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        bad(key, fmt::format("'{}' must not be empty", key), "empty_field");
    }
    return std::string(s);
}

/// A ticket's writable attributes as sent (create or patch). Unset members are not being changed.
struct Draft {
    std::optional<std::string> title, description, subject, status;
    std::optional<int> priority;
    std::optional<std::optional<std::string>> assignee, group, client;
    std::optional<std::optional<std::int64_t>> due_at;
    std::optional<std::vector<std::string>> tags, dialog_ids, watchers;
    std::optional<json::object> fields;
    std::optional<std::int64_t> version;
};

Draft parse_draft(const json::object& body, bool create) {
    if (create) {
        core::reject_unknown_fields(body, {"title", "description", "subject", "status", "priority", "assignee_id",
                                           "group_id", "client_id", "due_at", "tags", "dialog_ids", "watchers",
                                           "fields"});
    } else {
        core::reject_unknown_fields(body, {"title", "description", "subject", "status", "priority", "assignee_id",
                                           "group_id", "client_id", "due_at", "tags", "dialog_ids", "fields", "version"});
    }
    Draft d;
    if (body.contains("title")) {
        d.title = checked_text(body, "title", kMaxTicketTitleBytes, true);
    } else if (create) {
        bad("title", "'title' is required", "missing_field");
    }
    if (body.contains("description")) d.description = checked_text(body, "description", kMaxTicketDescriptionBytes, false);
    if (body.contains("subject")) d.subject = checked_text(body, "subject", kMaxTicketSubjectBytes, false);
    if (const auto* s = body.if_contains("status")) {
        if (!s->is_string() || !is_name(s->get_string(), 32)) bad("status", "'status' must be a status name");
        d.status = std::string(s->get_string());
    }
    if (const auto* p = body.if_contains("priority")) {
        auto rank = p->is_string() ? priority_rank(p->get_string()) : std::nullopt;
        if (!rank) bad("priority", "'priority' is low, normal, high or urgent", "invalid_priority");
        d.priority = *rank;
    }
    d.assignee = nullable_id(body, "assignee_id");
    d.group = nullable_id(body, "group_id");
    d.client = nullable_id(body, "client_id");
    if (const auto* v = body.if_contains("due_at")) {
        if (v->is_null()) {
            d.due_at = std::optional<std::int64_t>();
        } else {
            auto t = v->is_string() ? parse_iso_time(v->get_string()) : std::nullopt;
            if (!t) bad("due_at", "'due_at' must be an ISO-8601 time such as 2026-11-24T10:00:00Z", "invalid_time");
            d.due_at = t;
        }
    }
    if (body.contains("tags")) d.tags = string_list(body, "tags", kMaxTagsPerTicket, kMaxTagBytes);
    if (body.contains("dialog_ids")) d.dialog_ids = string_list(body, "dialog_ids", kMaxDialogsPerTicket, kMaxIdBytes);
    if (body.contains("watchers")) d.watchers = string_list(body, "watchers", kMaxWatchersPerTicket, kMaxIdBytes);
    if (const auto* f = body.if_contains("fields")) {
        if (!f->is_object()) bad("fields", "'fields' must be an object of field name → value", "wrong_type");
        if (f->get_object().size() > kMaxTicketFields) too_large("fields", kMaxTicketFields, "fields");
        d.fields = f->get_object();
    }
    if (const auto* v = body.if_contains("version")) {
        if (!v->is_int64() || v->get_int64() < 1) bad("version", "'version' must be a positive whole number");
        d.version = v->get_int64();
    }
    return d;
}

/// A custom field definition.
struct FieldDef {
    std::string name;
    std::string type;
    bool required = false;
    std::vector<std::string> options;
};

std::vector<FieldDef> load_fields(store::Tx& tx) {
    std::vector<FieldDef> out;
    for (const auto& r : tx.query("SELECT name, type, required, options FROM tk_fields ORDER BY position, name")) {
        FieldDef f{r.text(0), r.text(1), r.integer(2) != 0, {}};
        const json::value options = json::parse(r.text(3));
        for (const auto& o : options.as_array()) f.options.emplace_back(o.as_string());
        out.push_back(std::move(f));
    }
    return out;
}

bool valid_date(std::string_view s) { return s.size() == 10 && parse_iso_time(s).has_value(); }

/// Checks one value against its definition; returns the reason it is refused, or "".
std::string field_problem(const FieldDef& def, const json::value& v) {
    if (def.type == "string" || def.type == "text") {
        if (!v.is_string()) return "must be a string";
        std::size_t max = def.type == "string" ? kMaxStringFieldBytes : kMaxTextFieldBytes;
        if (v.get_string().size() > max) return fmt::format("is longer than {} bytes", max);
        if (def.required && v.get_string().empty()) return "is required";
        return {};
    }
    if (def.type == "number") {
        if (!v.is_number()) return "must be a number";
        if (v.is_double() && !std::isfinite(v.get_double())) return "must be a finite number";
        return {};
    }
    if (def.type == "bool") return v.is_bool() ? std::string() : "must be true or false";
    if (def.type == "date") return v.is_string() && valid_date(v.get_string()) ? std::string() : "must be a date YYYY-MM-DD";
    // select
    if (!v.is_string()) return "must be one of the options";
    std::string_view s = v.get_string();
    return std::find(def.options.begin(), def.options.end(), s) != def.options.end() ? std::string()
                                                                                    : "must be one of the options";
}

/// Applies `patch` to `current` (null removes) and validates against the definitions; throws Unprocessable
/// listing every problem. `create` also demands every required field.
json::object merge_fields(const std::vector<FieldDef>& defs, json::object current, const json::object& patch, bool create) {
    json::array problems;
    for (const auto& [key, value] : patch) {
        auto def = std::find_if(defs.begin(), defs.end(), [&](const FieldDef& f) { return f.name == key; });
        std::string field = fmt::format("fields.{}", std::string_view(key));
        if (def == defs.end()) {
            problems.push_back(json::object{{"field", field}, {"reason", "no such ticket field"}});
            continue;
        }
        if (value.is_null()) {
            if (def->required) {
                problems.push_back(json::object{{"field", field}, {"reason", "is required"}});
            } else {
                current.erase(key);
            }
            continue;
        }
        if (auto why = field_problem(*def, value); !why.empty()) {
            problems.push_back(json::object{{"field", field}, {"reason", why}});
            continue;
        }
        current[key] = value;
    }
    if (create) {
        for (const auto& def : defs) {
            if (def.required && !current.contains(def.name) && !patch.contains(def.name)) {
                problems.push_back(json::object{{"field", "fields." + def.name}, {"reason", "is required"}});
            }
        }
    }
    if (!problems.empty()) {
        throw core::Unprocessable("some ticket fields are invalid", "invalid_fields", std::move(problems));
    }
    return current;
}

std::string category_of(store::Tx& tx, const std::string& status) {
    auto r = tx.query_one("SELECT category FROM tk_statuses WHERE name = ?", {status});
    if (!r) {
        throw core::Unprocessable(fmt::format("no ticket status '{}'", status), "unknown_status",
                                  json::array{json::object{{"field", "status"}, {"reason", "no such status"}}});
    }
    return r->text(0);
}

/// Due times of an SLA policy for a ticket created at `created` with `priority`.
std::pair<std::optional<std::int64_t>, std::optional<std::int64_t>> sla_due(store::Tx& tx, int priority, std::int64_t created) {
    auto r = tx.query_one("SELECT first_response_minutes, resolution_minutes FROM tk_sla_policies WHERE priority = ?",
                          {std::string(kPriorities[static_cast<std::size_t>(priority)])});
    if (!r) return {};
    std::optional<std::int64_t> first, resolution;
    if (!r->is_null(0)) first = created + r->integer(0) * kMinute;
    if (!r->is_null(1)) resolution = created + r->integer(1) * kMinute;
    return {first, resolution};
}

void log_change(store::Tx& tx, const std::string& ticket, const std::string& actor, std::int64_t now,
                std::string_view field, const json::value& old_value, const json::value& new_value) {
    tx.exec("INSERT INTO tk_history(ticket_id, actor_id, at, field, old_value, new_value) VALUES (?, ?, ?, ?, ?, ?)",
            {ticket, actor, now, std::string(field), json::serialize(old_value), json::serialize(new_value)});
}

json::array tags_of(store::Tx& tx, const std::string& id) {
    json::array out;
    for (const auto& r : tx.query("SELECT tag FROM tk_ticket_tags WHERE ticket_id = ? ORDER BY tag", {id})) out.push_back(json::value(r.text(0)));
    return out;
}
json::array dialogs_of(store::Tx& tx, const std::string& id) {
    json::array out;
    for (const auto& r : tx.query("SELECT dialog_id FROM tk_ticket_dialogs WHERE ticket_id = ? ORDER BY position", {id})) {
        out.push_back(json::value(r.text(0)));
    }
    return out;
}
std::vector<std::string> watchers_of(store::Tx& tx, const std::string& id) {
    std::vector<std::string> out;
    for (const auto& r : tx.query("SELECT user_id FROM tk_watchers WHERE ticket_id = ? ORDER BY created_at, user_id", {id})) {
        out.push_back(r.text(0));
    }
    return out;
}

json::array to_array(const std::vector<std::string>& v) {
    json::array out;
    for (const auto& s : v) out.push_back(json::value(s));
    return out;
}

json::object sla_json(const store::Row& r, std::int64_t now) {
    auto breached = [&](std::size_t due, std::size_t actual) {
        if (r.is_null(due)) return false;
        std::int64_t at = r.is_null(actual) ? now : r.integer(actual);
        return at > r.integer(due);
    };
    bool first = breached(kFirstResponseDue, kFirstResponseAt);
    bool resolution = breached(kResolutionDue, kResolvedAt);
    return json::object{{"first_response_due_at", time_or_null(r.opt_integer(kFirstResponseDue))},
                        {"first_response_at", time_or_null(r.opt_integer(kFirstResponseAt))},
                        {"first_response_breached", first},
                        {"resolution_due_at", time_or_null(r.opt_integer(kResolutionDue))},
                        {"resolved_at", time_or_null(r.opt_integer(kResolvedAt))},
                        {"resolution_breached", resolution},
                        {"breached", first || resolution}};
}

std::string ticket_key(std::int64_t number) { return fmt::format("T-{}", number); }

std::optional<store::Row> ticket_row(store::Tx& tx, const std::string& id) {
    return tx.query_one(fmt::format("SELECT {} FROM tk_tickets t LEFT JOIN tk_statuses s ON s.name = t.status WHERE t.id = ?",
                                    kTicketColumns),
                        {id});
}

/// The ticket's id for `ref` (an id, "T-12" or "12"), or "".
std::string resolve_ref(store::Tx& tx, std::string_view ref) {
    std::string_view digits = ref;
    if (digits.size() > 2 && (digits[0] == 'T' || digits[0] == 't') && digits[1] == '-') digits.remove_prefix(2);
    std::int64_t number = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
    if (ec == std::errc() && end == digits.data() + digits.size() && !digits.empty() && number > 0) {
        if (auto r = tx.query_one("SELECT id FROM tk_tickets WHERE number = ?", {number})) return r->text(0);
        return {};
    }
    if (ref.size() > kMaxIdBytes) return {};
    if (auto r = tx.query_one("SELECT id FROM tk_tickets WHERE id = ?", {std::string(ref)})) return r->text(0);
    return {};
}

[[noreturn]] void ticket_not_found(std::string_view ref) {
    throw core::NotFound(fmt::format("no ticket '{}'", ref.substr(0, kMaxIdBytes)), "ticket_not_found");
}

/// Who is asking, resolved before any transaction (group membership may read the store).
struct Viewer {
    std::string user_id;
    bool supervisor = false;
    std::vector<std::string> groups;
};

bool viewer_sees(store::Tx& tx, const Viewer& v, const std::string& ticket_id) {
    if (v.supervisor) return true;
    auto r = tx.query_one("SELECT assignee_id, group_id FROM tk_tickets WHERE id = ?", {ticket_id});
    if (!r) return false;
    if (r->is_null(0) || r->text(0) == v.user_id) return true;
    if (!r->is_null(1) && std::find(v.groups.begin(), v.groups.end(), r->text(1)) != v.groups.end()) return true;
    return tx.query_one("SELECT 1 FROM tk_watchers WHERE ticket_id = ? AND user_id = ?", {ticket_id, v.user_id}).has_value();
}

/// Visible ticket id for `ref` inside a transaction: NotFound / Forbidden otherwise.
std::string require_visible(store::Tx& tx, const Viewer& v, std::string_view ref) {
    std::string id = resolve_ref(tx, ref);
    if (id.empty()) ticket_not_found(ref);
    if (!viewer_sees(tx, v, id)) throw core::Forbidden("this ticket is assigned to someone else", "not_your_ticket");
    return id;
}

/// Canonical storage of a link kind seen from the ticket that creates it: {stored kind, swap ends}.
std::optional<std::pair<std::string, bool>> canonical_link(std::string_view kind) {
    if (kind == "relates_to") return std::pair<std::string, bool>{"relates_to", false};
    if (kind == "duplicates") return std::pair<std::string, bool>{"duplicates", false};
    if (kind == "duplicated_by") return std::pair<std::string, bool>{"duplicates", true};
    if (kind == "blocks") return std::pair<std::string, bool>{"blocks", false};
    if (kind == "blocked_by") return std::pair<std::string, bool>{"blocks", true};
    if (kind == "parent_of") return std::pair<std::string, bool>{"parent_of", false};
    if (kind == "child_of") return std::pair<std::string, bool>{"parent_of", true};
    return std::nullopt;
}

/// The kind of a stored link as seen from its `to` end.
std::string inverse_kind(std::string_view stored) {
    if (stored == "duplicates") return "duplicated_by";
    if (stored == "blocks") return "blocked_by";
    if (stored == "parent_of") return "child_of";
    return std::string(stored);
}

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

std::optional<std::int64_t> parse_iso_time(std::string_view s) {
    auto digits = [&](std::size_t pos, std::size_t n) -> std::optional<int> {
        if (pos + n > s.size()) return std::nullopt;
        int v = 0;
        for (std::size_t i = pos; i < pos + n; ++i) {
            if (s[i] < '0' || s[i] > '9') return std::nullopt;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    };
    auto year = digits(0, 4);
    if (!year || s.size() < 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
    auto month = digits(5, 2);
    auto day = digits(8, 2);
    if (!month || !day || *year < 1970 || *month < 1 || *month > 12 || *day < 1) return std::nullopt;
    static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (*year % 4 == 0 && *year % 100 != 0) || *year % 400 == 0;
    int max_day = kDays[*month - 1] + (*month == 2 && leap ? 1 : 0);
    if (*day > max_day) return std::nullopt;
    std::int64_t ms = days_from_civil(*year, static_cast<unsigned>(*month), static_cast<unsigned>(*day)) * 86'400'000;
    if (s.size() == 10) return ms;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return std::nullopt;
    auto hour = digits(11, 2);
    if (!hour || s.size() < 16 || s[13] != ':') return std::nullopt;
    auto minute = digits(14, 2);
    if (!minute || *hour > 23 || *minute > 59) return std::nullopt;
    std::size_t pos = 16;
    int second = 0, millis = 0;
    if (pos < s.size() && s[pos] == ':') {
        auto sec = digits(pos + 1, 2);
        if (!sec || *sec > 59) return std::nullopt;
        second = *sec;
        pos += 3;
        if (pos < s.size() && s[pos] == '.') {
            ++pos;
            std::size_t start = pos;
            int scale = 100;
            while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
                if (pos - start >= 9) return std::nullopt;
                millis += (s[pos] - '0') * scale;
                scale /= 10;
                ++pos;
            }
            if (pos == start) return std::nullopt;
        }
    }
    ms += ((*hour * 60 + *minute) * 60 + second) * 1000 + millis;
    if (pos == s.size()) return ms;
    if ((s[pos] == 'Z' || s[pos] == 'z') && pos + 1 == s.size()) return ms;
    if ((s[pos] == '+' || s[pos] == '-') && pos + 6 == s.size() && s[pos + 3] == ':') {
        auto oh = digits(pos + 1, 2);
        auto om = digits(pos + 4, 2);
        if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
        std::int64_t offset = (*oh * 60 + *om) * kMinute;
        ms += s[pos] == '+' ? -offset : offset;
        // An offset may move the instant out of 1970..9999.
        return ms >= 0 && ms <= kMaxIsoTimeMs ? std::optional<std::int64_t>(ms) : std::nullopt;
    }
    return std::nullopt;
}

TicketFilter parse_ticket_filter(const std::vector<std::pair<std::string, std::string>>& query) {
    TicketFilter f;
    std::set<std::string> seen;
    auto fail = [](std::string_view name, const std::string& message) -> void {
        throw core::BadRequest(message, "invalid_query", json::array{json::object{{"field", name}}});
    };
    auto split = [](std::string_view value) {
        std::vector<std::string> out;
        std::size_t start = 0;
        while (start <= value.size()) {
            std::size_t comma = value.find(',', start);
            if (comma == std::string_view::npos) comma = value.size();
            if (comma > start) out.emplace_back(value.substr(start, comma - start));
            start = comma + 1;
        }
        return out;
    };
    auto time_of = [&](std::string_view name, std::string_view value) {
        auto t = parse_iso_time(value);
        if (!t) fail(name, fmt::format("'{}' must be an ISO-8601 time", name));
        return *t;
    };
    for (const auto& [key, value] : query) {
        if (value.size() > 200) fail(key.substr(0, 64), fmt::format("'{}' is longer than 200 bytes", key.substr(0, 64)));
        bool list = key == "status" || key == "priority";
        if (!list && !seen.insert(key).second) fail(key.substr(0, 64), fmt::format("'{}' is given twice", key.substr(0, 64)));
        if (value.empty() && key != "cursor") fail(key.substr(0, 64), fmt::format("'{}' is empty", key.substr(0, 64)));
        if (key == "status") {
            for (auto& s : split(value)) {
                if (!is_name(s, 32)) fail(key, "'status' is a comma-separated list of status names");
                f.statuses.push_back(s);
            }
            if (f.statuses.size() > kMaxCustomStatuses + kCategories.size()) fail(key, "too many statuses");
        } else if (key == "priority") {
            for (auto& p : split(value)) {
                auto rank = priority_rank(p);
                if (!rank) fail(key, "'priority' is a comma-separated list of low, normal, high, urgent");
                f.priorities.push_back(*rank);
            }
            if (f.priorities.size() > 16) fail(key, "too many priorities");
        } else if (key == "assignee" || key == "group" || key == "client" || key == "tag" || key == "dialog") {
            if (value.size() > kMaxIdBytes || has_control(value)) fail(key, fmt::format("'{}' is not a valid id", key));
            (key == "assignee" ? f.assignee : key == "group" ? f.group : key == "client" ? f.client
                                                            : key == "tag" ? f.tag : f.dialog) = value;
        } else if (key.rfind("field.", 0) == 0) {
            std::string name = key.substr(6);
            if (!is_name(name, 64)) fail(key.substr(0, 64), "a field filter is field.<name>=<value>");
            if (f.fields.size() >= 10) fail(key.substr(0, 64), "at most 10 field filters");
            f.fields.emplace_back(std::move(name), value);
        } else if (key == "q") {
            f.text = value;
        } else if (key == "created_from") {
            f.created_from = time_of(key, value);
        } else if (key == "created_to") {
            f.created_to = time_of(key, value);
        } else if (key == "updated_from") {
            f.updated_from = time_of(key, value);
        } else if (key == "updated_to") {
            f.updated_to = time_of(key, value);
        } else if (key == "breached") {
            if (value != "true" && value != "false") fail(key, "'breached' is true or false");
            f.breached = value == "true";
        } else if (key == "sort") {
            std::string_view s = value;
            if (!s.empty() && s[0] == '-') s.remove_prefix(1);
            if (s != "created_at" && s != "updated_at" && s != "priority" && s != "due_at" && s != "number") {
                fail(key, "'sort' is [-]created_at, updated_at, priority, due_at or number");
            }
            f.sort = value;
        } else if (key == "cursor") {
            if (!value.empty()) f.cursor = value;
        } else if (key == "limit") {
            std::size_t n = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || end != value.data() + value.size() || n < 1 || n > 200) {
                fail(key, "'limit' must be a whole number from 1 to 200");
            }
            f.limit = n;
        } else {
            fail(key.substr(0, 64), fmt::format("unknown query parameter '{}'", key.substr(0, 64)));
        }
    }
    if (f.cursor) {
        // "<sort value>.<number>", both non-negative whole numbers.
        std::string_view c = *f.cursor;
        auto dot = c.find('.');
        auto whole = [](std::string_view t) {
            std::int64_t v = 0;
            auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
            return !t.empty() && t[0] != '-' && ec == std::errc() && end == t.data() + t.size();
        };
        if (dot == std::string_view::npos || !whole(c.substr(0, dot)) || !whole(c.substr(dot + 1))) {
            fail("cursor", "'cursor' is not one this list produced");
        }
    }
    return f;
}

std::vector<store::Migration> ticket_migrations() {
    return {{"tickets", 1, "tickets, fields, statuses, SLA policies, links, watchers, comments, history",
             R"sql(
CREATE TABLE tk_counter (id INTEGER PRIMARY KEY CHECK (id = 1), next_number INTEGER NOT NULL);
INSERT INTO tk_counter(id, next_number) VALUES (1, 1);
CREATE TABLE tk_statuses (
  name TEXT PRIMARY KEY,
  label TEXT NOT NULL,
  category TEXT NOT NULL,
  position INTEGER NOT NULL DEFAULT 0,
  builtin INTEGER NOT NULL DEFAULT 0
);
INSERT INTO tk_statuses(name, label, category, position, builtin) VALUES
  ('new', 'New', 'new', 0, 1), ('open', 'Open', 'open', 1, 1), ('pending', 'Pending', 'pending', 2, 1),
  ('resolved', 'Resolved', 'resolved', 3, 1), ('closed', 'Closed', 'closed', 4, 1);
CREATE TABLE tk_fields (
  name TEXT PRIMARY KEY,
  label TEXT NOT NULL,
  type TEXT NOT NULL,
  required INTEGER NOT NULL DEFAULT 0,
  options TEXT NOT NULL DEFAULT '[]',
  position INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE tk_sla_policies (
  priority TEXT PRIMARY KEY,
  first_response_minutes INTEGER,
  resolution_minutes INTEGER,
  updated_at INTEGER NOT NULL
);
CREATE TABLE tk_tickets (
  id TEXT PRIMARY KEY,
  number INTEGER NOT NULL UNIQUE,
  title TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  subject TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  priority INTEGER NOT NULL,
  assignee_id TEXT,
  group_id TEXT,
  client_id TEXT,
  fields TEXT NOT NULL DEFAULT '{}',
  due_at INTEGER,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  first_response_at INTEGER,
  resolved_at INTEGER,
  closed_at INTEGER,
  first_response_due_at INTEGER,
  resolution_due_at INTEGER,
  source_dialog_id TEXT,
  source_message_n INTEGER,
  version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX tk_tickets_updated ON tk_tickets(updated_at, number);
CREATE INDEX tk_tickets_created ON tk_tickets(created_at, number);
CREATE INDEX tk_tickets_priority ON tk_tickets(priority, number);
CREATE INDEX tk_tickets_due ON tk_tickets(COALESCE(due_at, 9223372036854775807), number);
CREATE INDEX tk_tickets_assignee ON tk_tickets(assignee_id, updated_at, number);
CREATE INDEX tk_tickets_status ON tk_tickets(status, updated_at, number);
CREATE INDEX tk_tickets_client ON tk_tickets(client_id);
CREATE TABLE tk_ticket_tags (ticket_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (ticket_id, tag));
CREATE INDEX tk_ticket_tags_tag ON tk_ticket_tags(tag);
CREATE TABLE tk_ticket_dialogs (ticket_id TEXT NOT NULL, dialog_id TEXT NOT NULL, position INTEGER NOT NULL,
  PRIMARY KEY (ticket_id, dialog_id));
CREATE INDEX tk_ticket_dialogs_dialog ON tk_ticket_dialogs(dialog_id);
CREATE TABLE tk_watchers (ticket_id TEXT NOT NULL, user_id TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (ticket_id, user_id));
CREATE INDEX tk_watchers_user ON tk_watchers(user_id);
CREATE TABLE tk_links (
  id TEXT PRIMARY KEY,
  from_id TEXT NOT NULL,
  to_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (from_id, to_id, kind)
);
CREATE INDEX tk_links_to ON tk_links(to_id);
CREATE TABLE tk_comments (
  id TEXT PRIMARY KEY,
  ticket_id TEXT NOT NULL,
  author_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  text TEXT NOT NULL,
  dialog_id TEXT,
  message_n INTEGER,
  created_at INTEGER NOT NULL
);
CREATE INDEX tk_comments_ticket ON tk_comments(ticket_id, id);
CREATE TABLE tk_history (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  ticket_id TEXT NOT NULL,
  actor_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  field TEXT NOT NULL,
  old_value TEXT NOT NULL,
  new_value TEXT NOT NULL
);
CREATE INDEX tk_history_ticket ON tk_history(ticket_id, seq);
)sql"}};
}

TicketService::TicketService(store::Store& store, const core::Clock& clock, bots::DialogService& dialogs,
                             events::EventHub* hub, StaffDirectory staff)
    : store_(store), clock_(clock), dialogs_(dialogs), hub_(hub), staff_(std::move(staff)) {}

namespace {

bool is_supervisor(const core::Principal& who) { return who.can(auth::kModuleTickets, core::Action::kDelete); }

/// Who gets a ticket's events: everyone with tickets.view while it is unassigned; otherwise its assignee, watchers
/// and group members (plus supervisors).
struct Recipients {
    std::vector<std::string> users;
    std::string group;
    bool everyone = false;
};

Viewer viewer_of(const core::Principal& who, const StaffDirectory& staff) {
    Viewer v;
    v.user_id = who.user_id;
    v.supervisor = is_supervisor(who);
    if (!v.supervisor && staff.groups_of) v.groups = staff.groups_of(who.user_id);
    return v;
}

json::array links_in(store::Tx& tx, const std::string& id);

json::object ticket_json(store::Tx& tx, const std::string& id, bool full, std::int64_t now) {
    auto r = ticket_row(tx, id);
    if (!r) ticket_not_found(id);
    json::object out{{"id", r->text(kId)},
                     {"number", r->integer(kNumber)},
                     {"key", ticket_key(r->integer(kNumber))},
                     {"title", r->text(kTitle)},
                     {"description", r->text(kDescription)},
                     {"subject", r->text(kSubject)},
                     {"status", r->text(kStatus)},
                     {"status_category", r->text(kCategory)},
                     {"priority", kPriorities[static_cast<std::size_t>(std::clamp<std::int64_t>(r->integer(kPriority), 0, 3))]},
                     {"assignee_id", text_or_null(*r, kAssignee)},
                     {"group_id", text_or_null(*r, kGroup)},
                     {"client_id", text_or_null(*r, kClient)},
                     {"tags", tags_of(tx, id)},
                     {"dialog_ids", dialogs_of(tx, id)},
                     {"fields", json::parse(r->text(kFields))},
                     {"due_at", time_or_null(r->opt_integer(kDueAt))},
                     {"created_by", r->text(kCreatedBy)},
                     {"created_at", core::format_time(r->integer(kCreatedAt))},
                     {"updated_at", core::format_time(r->integer(kUpdatedAt))},
                     {"closed_at", time_or_null(r->opt_integer(kClosedAt))},
                     {"source", r->is_null(kSourceDialog)
                                    ? json::value(nullptr)
                                    : json::value(json::object{{"dialog_id", r->text(kSourceDialog)},
                                                               {"message_n", r->integer(kSourceMessage)}})},
                     {"version", r->integer(kVersion)},
                     {"sla", sla_json(*r, now)}};
    if (full) {
        out["watchers"] = to_array(watchers_of(tx, id));
        out["links"] = links_in(tx, id);
        out["comments_count"] = tx.query_one("SELECT count(*) FROM tk_comments WHERE ticket_id = ?", {id})->integer(0);
    }
    return out;
}

json::array links_in(store::Tx& tx, const std::string& id) {
    json::array out;
    for (const auto& r : tx.query("SELECT l.id, l.from_id, l.to_id, l.kind, l.created_by, l.created_at, t.number, t.title, "
                                  "t.status FROM tk_links l JOIN tk_tickets t ON t.id = CASE WHEN l.from_id = ? THEN "
                                  "l.to_id ELSE l.from_id END WHERE l.from_id = ? OR l.to_id = ? ORDER BY l.created_at, l.id",
                                  {id, id, id})) {
        bool outgoing = r.text(1) == id;
        out.push_back(json::object{{"id", r.text(0)},
                                   {"kind", outgoing ? r.text(3) : inverse_kind(r.text(3))},
                                   {"ticket", json::object{{"id", outgoing ? r.text(2) : r.text(1)},
                                                           {"number", r.integer(6)},
                                                           {"key", ticket_key(r.integer(6))},
                                                           {"title", r.text(7)},
                                                           {"status", r.text(8)}}},
                                   {"created_by", r.text(4)},
                                   {"created_at", core::format_time(r.integer(5))}});
    }
    return out;
}

Recipients audience_of(store::Tx& tx, const std::string& id) {
    Recipients a;
    auto r = tx.query_one("SELECT assignee_id, group_id FROM tk_tickets WHERE id = ?", {id});
    if (!r) return a;
    if (r->is_null(0)) {
        a.everyone = true;
        return a;
    }
    a.users.push_back(r->text(0));
    if (!r->is_null(1)) a.group = r->text(1);
    for (auto& w : watchers_of(tx, id)) a.users.push_back(std::move(w));
    return a;
}

void publish_to(events::EventHub* hub, const StaffDirectory& staff, const std::string& type, const json::object& body,
                const Recipients& a, const Recipients& b = {}) {
    if (!hub) return;
    std::string module(auth::kModuleTickets);
    if (a.everyone || b.everyone) {
        hub->publish(type, body, events::Audience::permission(module, core::Action::kView));
        return;
    }
    std::set<std::string> users;
    for (const auto* x : {&a, &b}) {
        users.insert(x->users.begin(), x->users.end());
        if (!x->group.empty() && staff.members_of) {
            for (auto& m : staff.members_of(x->group)) users.insert(std::move(m));
        }
    }
    // Supervisors see every ticket; other users only the tickets they are allowed to see.
    hub->publish(type, body, events::Audience::users_or({users.begin(), users.end()}, module, core::Action::kDelete));
}

}  // namespace

void TicketService::check_user(std::string_view field, const std::string& user_id) const {
    if (staff_.user_exists && !staff_.user_exists(user_id)) {
        throw core::Unprocessable(fmt::format("no active user '{}'", user_id), "unknown_user",
                                  json::array{json::object{{"field", field}, {"reason", "no such active user"}}});
    }
}

void TicketService::check_dialogs(const std::vector<std::string>& ids) const {
    for (const auto& id : ids) {
        if (!dialogs_.find(id)) {
            throw core::Unprocessable(fmt::format("no dialog '{}'", id), "unknown_dialog",
                                      json::array{json::object{{"field", "dialog_ids"}, {"reason", "no such dialog"}}});
        }
    }
}

namespace {

void replace_tags(store::Tx& tx, const std::string& id, const std::vector<std::string>& tags) {
    tx.exec("DELETE FROM tk_ticket_tags WHERE ticket_id = ?", {id});
    for (const auto& t : tags) tx.exec("INSERT INTO tk_ticket_tags(ticket_id, tag) VALUES (?, ?)", {id, t});
}
void replace_dialogs(store::Tx& tx, const std::string& id, const std::vector<std::string>& dialogs) {
    tx.exec("DELETE FROM tk_ticket_dialogs WHERE ticket_id = ?", {id});
    std::int64_t position = 0;
    for (const auto& d : dialogs) {
        tx.exec("INSERT INTO tk_ticket_dialogs(ticket_id, dialog_id, position) VALUES (?, ?, ?)", {id, d, position++});
    }
}

void check_client(store::Tx& tx, const std::optional<std::string>& client) {
    if (client && !clients::find_client(tx, *client)) {
        throw core::Unprocessable(fmt::format("no client '{}'", *client), "unknown_client",
                                  json::array{json::object{{"field", "client_id"}, {"reason", "no such client"}}});
    }
}

json::value opt_json(const std::optional<std::string>& s) { return s ? json::value(*s) : json::value(nullptr); }

}  // namespace

boost::asio::awaitable<json::object> TicketService::create(const core::Principal& who, json::object body) {
    co_return co_await insert_ticket(who, std::move(body), std::nullopt, {}, {});
}

boost::asio::awaitable<json::object> TicketService::insert_ticket(
    const core::Principal& who, json::object body, std::optional<std::pair<std::string, std::int64_t>> source,
    std::string client_id, std::string subject) {
    Draft d = parse_draft(body, true);
    if (d.assignee && *d.assignee) check_user("assignee_id", **d.assignee);
    std::vector<std::string> watchers = d.watchers.value_or(std::vector<std::string>{});
    for (const auto& w : watchers) check_user("watchers", w);
    // The author watches what they create (so they keep seeing it once it is assigned to someone else).
    if (std::find(watchers.begin(), watchers.end(), who.user_id) == watchers.end() && watchers.size() < kMaxWatchersPerTicket) {
        watchers.insert(watchers.begin(), who.user_id);
    }
    std::vector<std::string> dialogs = d.dialog_ids.value_or(std::vector<std::string>{});
    if (source && std::find(dialogs.begin(), dialogs.end(), source->first) == dialogs.end()) {
        if (dialogs.size() >= kMaxDialogsPerTicket) too_large("dialog_ids", kMaxDialogsPerTicket, "items");
        dialogs.insert(dialogs.begin(), source->first);
    }
    check_dialogs(dialogs);
    std::optional<std::string> client = flat(d.client);
    if (!client && !client_id.empty()) client = client_id;
    std::string id = core::new_id();
    std::int64_t now = clock_.now_ms();
    std::string actor = who.user_id;
    struct Out {
        json::object ticket;
        Recipients audience;
    };
    auto write = [d, id, now, actor, watchers, dialogs, client, source, subject](store::Tx& tx) -> Out {
        std::string status = d.status.value_or("new");
        std::string category = category_of(tx, status);
        int priority = d.priority.value_or(1);
        check_client(tx, client);
        json::object fields = merge_fields(load_fields(tx), {}, d.fields.value_or(json::object{}), true);
        auto number = tx.query_one("SELECT next_number FROM tk_counter WHERE id = 1")->integer(0);
        tx.exec("UPDATE tk_counter SET next_number = next_number + 1 WHERE id = 1");
        auto [first_due, resolution_due] = sla_due(tx, priority, now);
        std::optional<std::int64_t> done_at = done_category(category) ? std::optional<std::int64_t>(now) : std::nullopt;
        std::optional<std::int64_t> closed_at = category == "closed" ? std::optional<std::int64_t>(now) : std::nullopt;
        tx.exec("INSERT INTO tk_tickets(id, number, title, description, subject, status, priority, assignee_id, group_id, "
                "client_id, fields, due_at, created_by, created_at, updated_at, first_response_at, resolved_at, closed_at, "
                "first_response_due_at, resolution_due_at, source_dialog_id, source_message_n, version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, 1)",
                {id, number, *d.title, d.description.value_or(""), d.subject.value_or(subject), status,
                 static_cast<std::int64_t>(priority), opt_value(flat(d.assignee)),
                 opt_value(flat(d.group)), opt_value(client), json::serialize(fields),
                 opt_value(flat(d.due_at)), actor, now, now, opt_value(done_at), opt_value(closed_at),
                 opt_value(first_due), opt_value(resolution_due),
                 source ? store::Value(source->first) : store::Value(nullptr),
                 source ? store::Value(source->second) : store::Value(nullptr)});
        replace_tags(tx, id, d.tags.value_or(std::vector<std::string>{}));
        replace_dialogs(tx, id, dialogs);
        for (const auto& w : watchers) {
            tx.exec("INSERT OR IGNORE INTO tk_watchers(ticket_id, user_id, created_at) VALUES (?, ?, ?)", {id, w, now});
        }
        log_change(tx, id, actor, now, "created", nullptr, json::value(ticket_key(number)));
        return Out{ticket_json(tx, id, true, now), audience_of(tx, id)};
    };
    Out out = co_await store::co_write(store_, std::move(write));
    publish_to(hub_, staff_, "ticket.created", json::object{{"ticket", out.ticket}}, out.audience);
    co_return out.ticket;
}

boost::asio::awaitable<json::object> TicketService::create_from_dialog(const core::Principal& who, std::string dialog_id,
                                                                       json::object body) {
    if (dialog_id.size() > kMaxIdBytes) throw core::NotFound("no such dialog", "dialog_not_found");
    auto dialog = dialogs_.find(dialog_id);
    if (!dialog) throw core::NotFound(fmt::format("no dialog '{}'", dialog_id), "dialog_not_found");
    // The operator panel's own rule: one's own dialogs and waiting ones; supervisors see all.
    bool supervisor = who.can(auth::kModuleOperator, core::Action::kDelete) || is_supervisor(who);
    std::string subject;
    bool allowed = supervisor;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one("SELECT state, operator_id, subject FROM op_dialogs WHERE dialog_id = ?", {dialog_id})) {
            subject = r->text(2);
            bool waiting = r->text(0) == "queue" || r->text(0) == "unassigned";
            bool mine = !r->is_null(1) && r->text(1) == who.user_id;
            allowed = allowed || waiting || mine;
        }
    });
    if (!allowed) throw core::Forbidden("this dialog is another operator's", "not_your_dialog");
    auto messages = dialogs_.messages(dialog_id, 0, 100'000);
    std::int64_t last_n = messages.empty() ? 0 : messages.back().n;
    if (!body.contains("title")) {
        std::string title = subject;
        if (title.empty()) {
            for (const auto& m : messages) {
                if (m.from == "client" && !m.text.empty()) {
                    title = m.text;
                    break;
                }
            }
        }
        if (title.find_first_not_of(" \t\r\n") == std::string::npos) title = "Dialog " + dialog_id;
        if (title.size() > kMaxTicketTitleBytes) {
            std::size_t cut = kMaxTicketTitleBytes;
            while (cut > 0 && (static_cast<unsigned char>(title[cut]) & 0xC0) == 0x80) --cut;  // keep UTF-8 whole
            title.resize(cut);
        }
        body["title"] = title;
    }
    co_return co_await insert_ticket(who, std::move(body), std::make_pair(dialog_id, last_n), dialog->client_id, subject);
}

std::string TicketService::visible_id(const core::Principal& who, std::string_view ref) const {
    Viewer v = viewer_of(who, staff_);
    std::string id;
    store_.read([&](store::Tx& tx) { id = require_visible(tx, v, ref); });
    return id;
}

json::object TicketService::get(const core::Principal& who, std::string_view ref) const {
    Viewer v = viewer_of(who, staff_);
    json::object out;
    store_.read([&](store::Tx& tx) { out = ticket_json(tx, require_visible(tx, v, ref), true, clock_.now_ms()); });
    return out;
}

boost::asio::awaitable<json::object> TicketService::update(const core::Principal& who, std::string ref, json::object body) {
    Draft d = parse_draft(body, false);
    if (d.assignee && *d.assignee) check_user("assignee_id", **d.assignee);
    if (d.dialog_ids) check_dialogs(*d.dialog_ids);
    Viewer v = viewer_of(who, staff_);
    std::int64_t now = clock_.now_ms();
    struct Out {
        json::object ticket;
        json::array changes;
        Recipients before, after;
    };
    auto write = [d, v, ref, now](store::Tx& tx) -> Out {
        std::string id = require_visible(tx, v, ref);
        auto r = ticket_row(tx, id);
        if (d.version && *d.version != r->integer(kVersion)) {
            throw core::Conflict(fmt::format("the ticket changed meanwhile (version {} now)", r->integer(kVersion)),
                                 "version_conflict", json::array{json::object{{"field", "version"}}});
        }
        Out out;
        out.before = audience_of(tx, id);
        json::array changes;
        auto change = [&](std::string_view field, json::value old_value, json::value new_value) {
            if (old_value == new_value) return false;
            log_change(tx, id, v.user_id, now, field, old_value, new_value);
            changes.push_back(json::value(field));
            return true;
        };
        std::string title = d.title.value_or(r->text(kTitle));
        std::string description = d.description.value_or(r->text(kDescription));
        std::string subject = d.subject.value_or(r->text(kSubject));
        std::string status = d.status.value_or(r->text(kStatus));
        std::string category = d.status ? category_of(tx, status) : r->text(kCategory);
        int priority = d.priority.value_or(static_cast<int>(r->integer(kPriority)));
        auto assignee = d.assignee ? *d.assignee : r->opt_text(kAssignee);
        auto group = d.group ? *d.group : r->opt_text(kGroup);
        auto client = d.client ? *d.client : r->opt_text(kClient);
        if (d.client) check_client(tx, client);
        auto due_at = d.due_at ? *d.due_at : r->opt_integer(kDueAt);
        json::object old_fields = json::parse(r->text(kFields)).as_object();
        json::object fields = d.fields ? merge_fields(load_fields(tx), old_fields, *d.fields, false) : old_fields;

        change("title", json::value(r->text(kTitle)), json::value(title));
        change("description", json::value(r->text(kDescription)), json::value(description));
        change("subject", json::value(r->text(kSubject)), json::value(subject));
        change("status", json::value(r->text(kStatus)), json::value(status));
        auto prio_name = [](std::int64_t p) { return json::value(kPriorities[static_cast<std::size_t>(std::clamp<std::int64_t>(p, 0, 3))]); };
        bool priority_changed = change("priority", prio_name(r->integer(kPriority)), prio_name(priority));
        change("assignee_id", opt_json(r->opt_text(kAssignee)), opt_json(assignee));
        change("group_id", opt_json(r->opt_text(kGroup)), opt_json(group));
        change("client_id", opt_json(r->opt_text(kClient)), opt_json(client));
        change("due_at", time_or_null(r->opt_integer(kDueAt)), time_or_null(due_at));
        for (const auto& [key, value] : fields) {
            const auto* old = old_fields.if_contains(key);
            change(fmt::format("fields.{}", std::string_view(key)), old ? *old : json::value(nullptr), value);
        }
        for (const auto& [key, value] : old_fields) {
            if (!fields.contains(key)) change(fmt::format("fields.{}", std::string_view(key)), value, nullptr);
        }
        if (d.tags) {
            json::array sorted = to_array(*d.tags);
            std::sort(sorted.begin(), sorted.end(), [](const json::value& a, const json::value& b) { return a.as_string() < b.as_string(); });
            if (change("tags", tags_of(tx, id), sorted)) replace_tags(tx, id, *d.tags);
        }
        if (d.dialog_ids && change("dialog_ids", dialogs_of(tx, id), to_array(*d.dialog_ids))) {
            replace_dialogs(tx, id, *d.dialog_ids);
        }
        if (!changes.empty()) {
            // Resolution: entering resolved/closed stamps the time; leaving them (reopening) clears it.
            std::optional<std::int64_t> resolved_at = r->opt_integer(kResolvedAt);
            std::optional<std::int64_t> closed_at = r->opt_integer(kClosedAt);
            if (done_category(category) && !done_category(r->text(kCategory))) resolved_at = now;
            if (!done_category(category)) resolved_at.reset();
            if (category == "closed" && r->text(kCategory) != "closed") closed_at = now;
            if (category != "closed") closed_at.reset();
            std::optional<std::int64_t> first_due = r->opt_integer(kFirstResponseDue);
            std::optional<std::int64_t> resolution_due = r->opt_integer(kResolutionDue);
            if (priority_changed) std::tie(first_due, resolution_due) = sla_due(tx, priority, r->integer(kCreatedAt));
            tx.exec("UPDATE tk_tickets SET title = ?, description = ?, subject = ?, status = ?, priority = ?, "
                    "assignee_id = ?, group_id = ?, client_id = ?, fields = ?, due_at = ?, updated_at = ?, resolved_at = ?, "
                    "closed_at = ?, first_response_due_at = ?, resolution_due_at = ?, version = version + 1 WHERE id = ?",
                    {title, description, subject, status, static_cast<std::int64_t>(priority), opt_value(assignee),
                     opt_value(group), opt_value(client), json::serialize(fields), opt_value(due_at), now,
                     opt_value(resolved_at), opt_value(closed_at), opt_value(first_due), opt_value(resolution_due), id});
        }
        out.changes = std::move(changes);
        out.ticket = ticket_json(tx, id, true, now);
        out.after = audience_of(tx, id);
        return out;
    };
    Out out = co_await store::co_write(store_, std::move(write));
    if (!out.changes.empty()) {
        publish_to(hub_, staff_, "ticket.updated",
                   json::object{{"ticket_id", out.ticket.at("id")}, {"key", out.ticket.at("key")},
                                {"version", out.ticket.at("version")}, {"changes", out.changes}, {"actor_id", who.user_id}},
                   out.before, out.after);
    }
    co_return out.ticket;
}

boost::asio::awaitable<void> TicketService::remove(const core::Principal& who, std::string ref) {
    Viewer v = viewer_of(who, staff_);
    struct Out {
        std::string id, key;
        Recipients audience;
    };
    auto write = [v, ref](store::Tx& tx) -> Out {
        Out out;
        out.id = require_visible(tx, v, ref);
        out.key = ticket_key(tx.query_one("SELECT number FROM tk_tickets WHERE id = ?", {out.id})->integer(0));
        out.audience = audience_of(tx, out.id);
        for (const char* sql : {"DELETE FROM tk_ticket_tags WHERE ticket_id = ?", "DELETE FROM tk_ticket_dialogs WHERE ticket_id = ?",
                                "DELETE FROM tk_watchers WHERE ticket_id = ?", "DELETE FROM tk_comments WHERE ticket_id = ?",
                                "DELETE FROM tk_history WHERE ticket_id = ?", "DELETE FROM tk_tickets WHERE id = ?"}) {
            tx.exec(sql, {out.id});
        }
        tx.exec("DELETE FROM tk_links WHERE from_id = ? OR to_id = ?", {out.id, out.id});
        return out;
    };
    Out out = co_await store::co_write(store_, std::move(write));
    publish_to(hub_, staff_, "ticket.deleted", json::object{{"ticket_id", out.id}, {"key", out.key}, {"actor_id", who.user_id}},
               out.audience);
}

json::array TicketService::list(const core::Principal& who, const TicketFilter& f, std::optional<std::string>* next) const {
    Viewer v = viewer_of(who, staff_);
    std::int64_t now = clock_.now_ms();
    bool descending = !f.sort.empty() && f.sort[0] == '-';
    std::string_view sort = descending ? std::string_view(f.sort).substr(1) : std::string_view(f.sort);
    std::string key = sort == "due_at" ? "COALESCE(t.due_at, 9223372036854775807)" : fmt::format("t.{}", sort);
    std::string where = "1 = 1";
    store::Params params;
    auto in_list = [&](std::string_view column, const auto& values) {
        where += fmt::format(" AND {} IN (", column);
        for (std::size_t i = 0; i < values.size(); ++i) {
            where += i ? ", ?" : "?";
            if constexpr (std::is_same_v<std::decay_t<decltype(values[i])>, int>) {
                params.emplace_back(static_cast<std::int64_t>(values[i]));
            } else {
                params.emplace_back(values[i]);
            }
        }
        where += ")";
    };
    if (!v.supervisor) {
        where += " AND (t.assignee_id IS NULL OR t.assignee_id = ? OR EXISTS (SELECT 1 FROM tk_watchers w WHERE "
                 "w.ticket_id = t.id AND w.user_id = ?)";
        params.emplace_back(v.user_id);
        params.emplace_back(v.user_id);
        if (!v.groups.empty()) {
            where += " OR t.group_id IN (";
            for (std::size_t i = 0; i < v.groups.size(); ++i) {
                where += i ? ", ?" : "?";
                params.emplace_back(v.groups[i]);
            }
            where += ")";
        }
        where += ")";
    }
    if (!f.statuses.empty()) in_list("t.status", f.statuses);
    if (!f.priorities.empty()) in_list("t.priority", f.priorities);
    if (f.assignee) {
        if (*f.assignee == "none") {
            where += " AND t.assignee_id IS NULL";
        } else {
            where += " AND t.assignee_id = ?";
            params.emplace_back(*f.assignee == "me" ? who.user_id : *f.assignee);
        }
    }
    if (f.group) {
        if (*f.group == "none") {
            where += " AND t.group_id IS NULL";
        } else {
            where += " AND t.group_id = ?";
            params.emplace_back(*f.group);
        }
    }
    if (f.client) {
        where += " AND t.client_id = ?";
        params.emplace_back(*f.client);
    }
    if (f.tag) {
        where += " AND EXISTS (SELECT 1 FROM tk_ticket_tags g WHERE g.ticket_id = t.id AND g.tag = ?)";
        params.emplace_back(*f.tag);
    }
    if (f.dialog) {
        where += " AND EXISTS (SELECT 1 FROM tk_ticket_dialogs x WHERE x.ticket_id = t.id AND x.dialog_id = ?)";
        params.emplace_back(*f.dialog);
    }
    if (f.text) {
        where += " AND (instr(lower(t.title), ?) > 0 OR instr(lower(t.description), ?) > 0)";
        params.emplace_back(ascii_lower(*f.text));
        params.emplace_back(ascii_lower(*f.text));
    }
    auto range = [&](std::string_view column, const std::optional<std::int64_t>& from, const std::optional<std::int64_t>& to) {
        if (from) {
            where += fmt::format(" AND {} >= ?", column);
            params.emplace_back(*from);
        }
        if (to) {
            where += fmt::format(" AND {} < ?", column);
            params.emplace_back(*to);
        }
    };
    range("t.created_at", f.created_from, f.created_to);
    range("t.updated_at", f.updated_from, f.updated_to);
    if (f.breached) {
        where += fmt::format(" AND {}((t.first_response_due_at IS NOT NULL AND COALESCE(t.first_response_at, ?) > "
                             "t.first_response_due_at) OR (t.resolution_due_at IS NOT NULL AND COALESCE(t.resolved_at, ?) > "
                             "t.resolution_due_at))",
                             *f.breached ? "" : "NOT ");
        params.emplace_back(now);
        params.emplace_back(now);
    }
    if (f.cursor) {
        auto dot = f.cursor->find('.');
        std::int64_t value = std::stoll(f.cursor->substr(0, dot));
        std::int64_t number = std::stoll(f.cursor->substr(dot + 1));
        const char* op = descending ? "<" : ">";
        where += fmt::format(" AND ({}, t.number) {} (?, ?)", key, op);
        params.insert(params.end(), {value, number});
    }
    json::array out;
    store_.read([&](store::Tx& tx) {
        if (!f.fields.empty()) {
            auto defs = load_fields(tx);
            for (const auto& [name, value] : f.fields) {
                auto def = std::find_if(defs.begin(), defs.end(), [&](const FieldDef& d) { return d.name == name; });
                if (def == defs.end()) {
                    throw core::BadRequest(fmt::format("no ticket field '{}'", name), "invalid_query",
                                           json::array{json::object{{"field", "field." + name}}});
                }
                where += " AND json_extract(t.fields, ?) = ?";
                params.emplace_back(fmt::format("$.{}", name));
                if (def->type == "number") {
                    double number = 0;
                    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
                    if (ec != std::errc() || end != value.data() + value.size()) {
                        throw core::BadRequest(fmt::format("'field.{}' must be a number", name), "invalid_query",
                                               json::array{json::object{{"field", "field." + name}}});
                    }
                    params.emplace_back(number);
                } else if (def->type == "bool") {
                    if (value != "true" && value != "false") {
                        throw core::BadRequest(fmt::format("'field.{}' is true or false", name), "invalid_query",
                                               json::array{json::object{{"field", "field." + name}}});
                    }
                    params.emplace_back(static_cast<std::int64_t>(value == "true"));
                } else {
                    params.emplace_back(value);
                }
            }
        }
        params.emplace_back(static_cast<std::int64_t>(f.limit + 1));
        auto rows = tx.query(fmt::format("SELECT t.id, {0} FROM tk_tickets t WHERE {1} ORDER BY {0} {2}, t.number {2} LIMIT ?",
                                         key, where, descending ? "DESC" : "ASC"),
                             params);
        for (std::size_t i = 0; i < rows.size() && i < f.limit; ++i) out.push_back(ticket_json(tx, rows[i].text(0), false, now));
        if (next && rows.size() > f.limit) {
            const auto& last = out.back().as_object();
            *next = fmt::format("{}.{}", rows[f.limit - 1].integer(1), last.at("number").as_int64());
        }
    });
    return out;
}

boost::asio::awaitable<json::object> TicketService::comment(const core::Principal& who, std::string ref, json::object body) {
    core::reject_unknown_fields(body, {"kind", "text", "dialog_id"});
    std::string kind(core::required_string(body, "kind"));
    if (kind != "public" && kind != "internal") bad("kind", "'kind' is public or internal", "invalid_kind");
    std::string text = checked_text(body, "text", kMaxCommentBytes, true);
    auto wanted_dialog = core::optional_string(body, "dialog_id");
    if (wanted_dialog && kind != "public") bad("dialog_id", "'dialog_id' is for public comments");
    std::string id = visible_id(who, ref);
    std::optional<std::string> dialog;
    std::int64_t count = 0;
    store_.read([&](store::Tx& tx) {
        count = tx.query_one("SELECT count(*) FROM tk_comments WHERE ticket_id = ?", {id})->integer(0);
        auto linked = dialogs_of(tx, id);
        auto src = tx.query_one("SELECT source_dialog_id FROM tk_tickets WHERE id = ?", {id});
        if (wanted_dialog) {
            bool found = std::any_of(linked.begin(), linked.end(), [&](const json::value& d) { return d.as_string() == *wanted_dialog; });
            if (!found) bad("dialog_id", "'dialog_id' must be one of the ticket's dialogs", "unknown_dialog");
            dialog = wanted_dialog;
        } else if (src && !src->is_null(0)) {
            dialog = src->text(0);
        } else if (!linked.empty()) {
            dialog = std::string(linked.front().as_string());
        }
    });
    if (static_cast<std::size_t>(count) >= kMaxCommentsPerTicket) too_large("comments", kMaxCommentsPerTicket, "comments");
    // A public comment is the reply to the client: it goes into the ticket's dialog first, so the comment records
    // the message that carried it.
    std::optional<std::int64_t> message_n;
    if (kind == "public" && dialog) {
        std::string from = "operator";
        std::string copy = text;
        auto message = co_await dialogs_.post(*dialog, std::move(from), std::move(copy), false);
        if (message) message_n = message->n;
    }
    std::string comment_id = core::new_id();
    std::int64_t now = clock_.now_ms();
    std::string actor = who.user_id;
    struct Out {
        json::object comment;
        std::string key;
        Recipients audience;
    };
    std::optional<std::string> via = kind == "public" ? dialog : std::nullopt;
    auto write = [id, comment_id, now, actor, kind, text, via, message_n](store::Tx& tx) -> Out {
        auto r = tx.query_one("SELECT number, first_response_at FROM tk_tickets WHERE id = ?", {id});
        if (!r) ticket_not_found(id);
        // Checked again under the writer: two comments racing for the last slot.
        if (static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM tk_comments WHERE ticket_id = ?", {id})->integer(0)) >=
            kMaxCommentsPerTicket) {
            too_large("comments", kMaxCommentsPerTicket, "comments");
        }
        tx.exec("INSERT INTO tk_comments(id, ticket_id, author_id, kind, text, dialog_id, message_n, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                {comment_id, id, actor, kind, text, opt_value(via), opt_value(message_n), now});
        if (kind == "public" && r->is_null(1)) {
            tx.exec("UPDATE tk_tickets SET first_response_at = ? WHERE id = ?", {now, id});
            log_change(tx, id, actor, now, "first_response_at", nullptr, json::value(core::format_time(now)));
        }
        tx.exec("UPDATE tk_tickets SET updated_at = ? WHERE id = ?", {now, id});
        Out out;
        out.key = ticket_key(r->integer(0));
        out.comment = json::object{{"id", comment_id},
                                   {"ticket_id", id},
                                   {"author_id", actor},
                                   {"kind", kind},
                                   {"text", text},
                                   {"dialog_id", opt_json(via)},
                                   {"message_n", message_n ? json::value(*message_n) : json::value(nullptr)},
                                   {"created_at", core::format_time(now)}};
        out.audience = audience_of(tx, id);
        return out;
    };
    Out out = co_await store::co_write(store_, std::move(write));
    publish_to(hub_, staff_, "ticket.comment", json::object{{"ticket_id", id}, {"key", out.key}, {"comment", out.comment}}, out.audience);
    co_return out.comment;
}

json::array TicketService::comments(const core::Principal& who, std::string_view ref, std::optional<std::string> kind,
                                    std::optional<std::string> cursor, std::size_t limit,
                                    std::optional<std::string>* next) const {
    if (kind && *kind != "public" && *kind != "internal") bad("kind", "'kind' is public or internal", "invalid_query");
    Viewer v = viewer_of(who, staff_);
    json::array out;
    store_.read([&](store::Tx& tx) {
        std::string id = require_visible(tx, v, ref);
        std::string sql = "SELECT id, author_id, kind, text, dialog_id, message_n, created_at FROM tk_comments WHERE ticket_id = ? AND id > ?";
        store::Params params{id, cursor.value_or("")};
        if (kind) {
            sql += " AND kind = ?";
            params.emplace_back(*kind);
        }
        sql += " ORDER BY id LIMIT ?";
        params.emplace_back(static_cast<std::int64_t>(limit + 1));
        auto rows = tx.query(sql, params);
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) {
            const auto& r = rows[i];
            out.push_back(json::object{{"id", r.text(0)},
                                       {"ticket_id", id},
                                       {"author_id", r.text(1)},
                                       {"kind", r.text(2)},
                                       {"text", r.text(3)},
                                       {"dialog_id", text_or_null(r, 4)},
                                       {"message_n", r.is_null(5) ? json::value(nullptr) : json::value(r.integer(5))},
                                       {"created_at", core::format_time(r.integer(6))}});
        }
        if (next && rows.size() > limit) *next = rows[limit - 1].text(0);
    });
    return out;
}

json::array TicketService::history(const core::Principal& who, std::string_view ref, std::optional<std::string> cursor,
                                   std::size_t limit, std::optional<std::string>* next) const {
    std::int64_t before = INT64_MAX;
    if (cursor) {
        auto [end, ec] = std::from_chars(cursor->data(), cursor->data() + cursor->size(), before);
        if (ec != std::errc() || end != cursor->data() + cursor->size() || before < 1) {
            bad("cursor", "'cursor' is not one this list produced", "invalid_query");
        }
    }
    Viewer v = viewer_of(who, staff_);
    json::array out;
    store_.read([&](store::Tx& tx) {
        std::string id = require_visible(tx, v, ref);
        auto rows = tx.query("SELECT seq, actor_id, at, field, old_value, new_value FROM tk_history WHERE ticket_id = ? AND "
                             "seq < ? ORDER BY seq DESC LIMIT ?",
                             {id, before, static_cast<std::int64_t>(limit + 1)});
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) {
            const auto& r = rows[i];
            out.push_back(json::object{{"seq", r.integer(0)},
                                       {"actor_id", r.text(1)},
                                       {"at", core::format_time(r.integer(2))},
                                       {"field", r.text(3)},
                                       {"old", json::parse(r.text(4))},
                                       {"new", json::parse(r.text(5))}});
        }
        if (next && rows.size() > limit) *next = std::to_string(rows[limit - 1].integer(0));
    });
    return out;
}

boost::asio::awaitable<json::object> TicketService::link(const core::Principal& who, std::string ref, json::object body) {
    core::reject_unknown_fields(body, {"kind", "ticket_id"});
    std::string kind(core::required_string(body, "kind"));
    auto canonical = canonical_link(kind);
    if (!canonical) {
        bad("kind", "'kind' is relates_to, duplicates, duplicated_by, blocks, blocked_by, parent_of or child_of", "invalid_kind");
    }
    std::string other_ref(core::required_string(body, "ticket_id"));
    Viewer v = viewer_of(who, staff_);
    std::string link_id = core::new_id();
    std::int64_t now = clock_.now_ms();
    struct Out {
        json::object link;
        Recipients a, b;
        std::string id, other;
    };
    auto write = [v, ref, other_ref, kind, canonical, link_id, now](store::Tx& tx) -> Out {
        std::string id = require_visible(tx, v, ref);
        std::string other = resolve_ref(tx, other_ref);
        if (other.empty()) {
            throw core::Unprocessable(fmt::format("no ticket '{}'", other_ref.substr(0, kMaxIdBytes)), "unknown_ticket",
                                      json::array{json::object{{"field", "ticket_id"}, {"reason", "no such ticket"}}});
        }
        if (!viewer_sees(tx, v, other)) throw core::Forbidden("the other ticket is assigned to someone else", "not_your_ticket");
        if (other == id) bad("ticket_id", "a ticket cannot link to itself", "self_link");
        std::string from = canonical->second ? other : id;
        std::string to = canonical->second ? id : other;
        std::string stored = canonical->first;
        if (stored == "relates_to" && from > to) std::swap(from, to);  // symmetric: one row whichever side asks
        for (const auto& t : {id, other}) {
            auto n = tx.query_one("SELECT count(*) FROM tk_links WHERE from_id = ? OR to_id = ?", {t, t})->integer(0);
            if (static_cast<std::size_t>(n) >= kMaxLinksPerTicket) too_large("links", kMaxLinksPerTicket, "links");
        }
        if (tx.query_one("SELECT 1 FROM tk_links WHERE kind = ? AND from_id = ? AND to_id = ?", {stored, from, to})) {
            throw core::Conflict("these tickets are already linked that way", "link_exists");
        }
        if (stored == "parent_of") {
            if (tx.query_one("SELECT 1 FROM tk_links WHERE kind = 'parent_of' AND to_id = ?", {to})) {
                throw core::Conflict("the child ticket already has a parent", "has_parent");
            }
            // No cycles: the new parent must not descend from the child.
            std::string cursor = from;
            for (std::size_t depth = 0; depth < 1000; ++depth) {
                if (cursor == to) throw core::Conflict("the link would make a ticket its own ancestor", "link_cycle");
                auto up = tx.query_one("SELECT from_id FROM tk_links WHERE kind = 'parent_of' AND to_id = ?", {cursor});
                if (!up) break;
                cursor = up->text(0);
            }
        } else if (tx.query_one("SELECT 1 FROM tk_links WHERE kind = ? AND from_id = ? AND to_id = ?", {stored, to, from})) {
            // A blocks B and B blocks A (or duplicates both ways) contradict each other.
            throw core::Conflict("these tickets are already linked the opposite way", "link_exists");
        }
        tx.exec("INSERT INTO tk_links(id, from_id, to_id, kind, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                {link_id, from, to, stored, v.user_id, now});
        auto number = tx.query_one("SELECT number, title, status FROM tk_tickets WHERE id = ?", {other});
        auto mine = tx.query_one("SELECT number FROM tk_tickets WHERE id = ?", {id});
        log_change(tx, id, v.user_id, now, "links", nullptr,
                   json::object{{"kind", kind}, {"ticket", ticket_key(number->integer(0))}});
        log_change(tx, other, v.user_id, now, "links", nullptr,
                   json::object{{"kind", stored == "relates_to" ? std::string("relates_to") : (from == other ? stored : inverse_kind(stored))},
                                {"ticket", ticket_key(mine->integer(0))}});
        tx.exec("UPDATE tk_tickets SET updated_at = ?, version = version + 1 WHERE id IN (?, ?)", {now, id, other});
        Out out;
        out.link = json::object{{"id", link_id},
                                {"kind", kind},
                                {"ticket", json::object{{"id", other},
                                                        {"number", number->integer(0)},
                                                        {"key", ticket_key(number->integer(0))},
                                                        {"title", number->text(1)},
                                                        {"status", number->text(2)}}},
                                {"created_by", v.user_id},
                                {"created_at", core::format_time(now)}};
        out.a = audience_of(tx, id);
        out.b = audience_of(tx, other);
        out.id = id;
        out.other = other;
        return out;
    };
    Out out = co_await store::co_write(store_, std::move(write));
    publish_to(hub_, staff_, "ticket.updated", json::object{{"ticket_id", out.id}, {"changes", json::array{"links"}}, {"actor_id", who.user_id}}, out.a);
    publish_to(hub_, staff_, "ticket.updated", json::object{{"ticket_id", out.other}, {"changes", json::array{"links"}}, {"actor_id", who.user_id}}, out.b);
    co_return out.link;
}

boost::asio::awaitable<void> TicketService::unlink(const core::Principal& who, std::string ref, std::string link_id) {
    Viewer v = viewer_of(who, staff_);
    std::int64_t now = clock_.now_ms();
    struct End {
        std::string id;
        Recipients audience;
    };
    auto write = [v, ref, link_id, now](store::Tx& tx) -> std::pair<End, End> {
        std::string id = require_visible(tx, v, ref);
        auto l = tx.query_one("SELECT from_id, to_id, kind FROM tk_links WHERE id = ? AND (from_id = ? OR to_id = ?)",
                              {link_id, id, id});
        if (!l) throw core::NotFound(fmt::format("no link '{}' on this ticket", link_id.substr(0, kMaxIdBytes)), "link_not_found");
        tx.exec("DELETE FROM tk_links WHERE id = ?", {link_id});
        for (const auto& [t, o] : {std::pair{l->text(0), l->text(1)}, std::pair{l->text(1), l->text(0)}}) {
            auto other = tx.query_one("SELECT number FROM tk_tickets WHERE id = ?", {o});
            json::object old{{"kind", t == l->text(0) ? l->text(2) : inverse_kind(l->text(2))},
                             {"ticket", other ? json::value(ticket_key(other->integer(0))) : json::value(o)}};
            log_change(tx, t, v.user_id, now, "links", old, nullptr);
        }
        tx.exec("UPDATE tk_tickets SET updated_at = ?, version = version + 1 WHERE id IN (?, ?)", {now, l->text(0), l->text(1)});
        return {End{l->text(0), audience_of(tx, l->text(0))}, End{l->text(1), audience_of(tx, l->text(1))}};
    };
    auto ends = co_await store::co_write(store_, std::move(write));
    for (const auto* end : {&ends.first, &ends.second}) {
        publish_to(hub_, staff_, "ticket.updated",
                   json::object{{"ticket_id", end->id}, {"changes", json::array{"links"}}, {"actor_id", who.user_id}},
                   end->audience);
    }
}

json::array TicketService::links(const core::Principal& who, std::string_view ref) const {
    Viewer v = viewer_of(who, staff_);
    json::array out;
    store_.read([&](store::Tx& tx) { out = links_in(tx, require_visible(tx, v, ref)); });
    return out;
}

boost::asio::awaitable<json::array> TicketService::watch(const core::Principal& who, std::string ref, std::string user_id) {
    if (user_id == "me") user_id = who.user_id;
    if (user_id.empty() || user_id.size() > kMaxIdBytes || has_control(user_id)) bad("user_id", "not a user id");
    if (user_id != who.user_id) check_user("user_id", user_id);
    Viewer v = viewer_of(who, staff_);
    std::int64_t now = clock_.now_ms();
    struct Out {
        json::array watchers;
        Recipients audience;
        std::string id;
        bool added = false;
    };
    auto write = [v, ref, user_id, now](store::Tx& tx) -> Out {
        Out out;
        out.id = require_visible(tx, v, ref);
        auto current = watchers_of(tx, out.id);
        if (std::find(current.begin(), current.end(), user_id) == current.end()) {
            if (current.size() >= kMaxWatchersPerTicket) too_large("watchers", kMaxWatchersPerTicket, "watchers");
            tx.exec("INSERT INTO tk_watchers(ticket_id, user_id, created_at) VALUES (?, ?, ?)", {out.id, user_id, now});
            log_change(tx, out.id, v.user_id, now, "watchers", nullptr, json::value(user_id));
            out.added = true;
        }
        out.watchers = to_array(watchers_of(tx, out.id));
        out.audience = audience_of(tx, out.id);
        return out;
    };
    Out out = co_await store::co_write(store_, std::move(write));
    if (out.added) {
        publish_to(hub_, staff_, "ticket.updated", json::object{{"ticket_id", out.id}, {"changes", json::array{"watchers"}}, {"actor_id", who.user_id}},
                   out.audience);
    }
    co_return out.watchers;
}

boost::asio::awaitable<json::array> TicketService::unwatch(const core::Principal& who, std::string ref, std::string user_id) {
    if (user_id == "me") user_id = who.user_id;
    Viewer v = viewer_of(who, staff_);
    std::int64_t now = clock_.now_ms();
    struct Out {
        json::array watchers;
        Recipients audience;
        std::string id;
        bool removed = false;
    };
    auto write = [v, ref, user_id, now](store::Tx& tx) -> Out {
        Out out;
        out.id = require_visible(tx, v, ref);
        out.audience = audience_of(tx, out.id);
        if (tx.exec("DELETE FROM tk_watchers WHERE ticket_id = ? AND user_id = ?", {out.id, user_id}) > 0) {
            log_change(tx, out.id, v.user_id, now, "watchers", json::value(user_id), nullptr);
            out.removed = true;
        }
        out.watchers = to_array(watchers_of(tx, out.id));
        return out;
    };
    Out out = co_await store::co_write(store_, std::move(write));
    if (out.removed) {
        publish_to(hub_, staff_, "ticket.updated", json::object{{"ticket_id", out.id}, {"changes", json::array{"watchers"}}, {"actor_id", who.user_id}},
                   out.audience);
    }
    co_return out.watchers;
}

json::array TicketService::watchers(const core::Principal& who, std::string_view ref) const {
    Viewer v = viewer_of(who, staff_);
    json::array out;
    store_.read([&](store::Tx& tx) { out = to_array(watchers_of(tx, require_visible(tx, v, ref))); });
    return out;
}

json::object TicketService::sla(const core::Principal& who, std::string_view ref) const {
    Viewer v = viewer_of(who, staff_);
    json::object out;
    std::int64_t now = clock_.now_ms();
    store_.read([&](store::Tx& tx) {
        std::string id = require_visible(tx, v, ref);
        auto r = ticket_row(tx, id);
        out = sla_json(*r, now);
        out["ticket_id"] = id;
        out["priority"] = kPriorities[static_cast<std::size_t>(std::clamp<std::int64_t>(r->integer(kPriority), 0, 3))];
        auto remaining = [&](std::size_t due, std::size_t actual) -> json::value {
            if (r->is_null(due) || !r->is_null(actual)) return nullptr;
            return r->integer(due) - now;
        };
        out["first_response_remaining_ms"] = remaining(kFirstResponseDue, kFirstResponseAt);
        out["resolution_remaining_ms"] = remaining(kResolutionDue, kResolvedAt);
        auto elapsed = [&](std::size_t actual) -> json::value {
            if (r->is_null(actual)) return nullptr;
            return r->integer(actual) - r->integer(kCreatedAt);
        };
        out["first_response_ms"] = elapsed(kFirstResponseAt);
        out["resolution_ms"] = elapsed(kResolvedAt);
        out["now"] = core::format_time(now);
    });
    return out;
}

// ---- Definitions -------------------------------------------------------------------------------------------------

namespace {

json::object field_json(const store::Row& r) {
    return json::object{{"name", r.text(0)},   {"label", r.text(1)},   {"type", r.text(2)},
                        {"required", r.integer(3) != 0}, {"options", json::parse(r.text(4))}, {"position", r.integer(5)},
                        {"created_at", core::format_time(r.integer(6))}, {"updated_at", core::format_time(r.integer(7))}};
}
constexpr const char* kFieldColumns = "name, label, type, required, options, position, created_at, updated_at";

std::string label_of(const json::object& body, std::string_view fallback) {
    if (!body.contains("label")) return std::string(fallback);
    return checked_text(body, "label", kMaxFieldLabelBytes, true);
}

std::int64_t position_of(const json::object& body, std::int64_t fallback) {
    auto p = core::optional_int(body, "position");
    if (p && (*p < 0 || *p > 10'000)) bad("position", "'position' is from 0 to 10000");
    return p.value_or(fallback);
}

json::array options_of(const json::object& body) {
    const auto* v = body.if_contains("options");
    if (!v->is_array()) bad("options", "'options' must be an array of strings", "wrong_type");
    const auto& a = v->get_array();
    if (a.size() > kMaxSelectOptions) too_large("options", kMaxSelectOptions, "options");
    json::array out;
    std::set<std::string_view> seen;
    for (const auto& o : a) {
        if (!o.is_string() || o.get_string().empty() || o.get_string().size() > kMaxSelectOptionBytes) {
            bad("options", fmt::format("each option is a string of 1 to {} bytes", kMaxSelectOptionBytes));
        }
        if (!seen.insert(o.get_string()).second) bad("options", "options must be unique", "duplicate_option");
        out.push_back(o);
    }
    return out;
}

}  // namespace

json::array TicketService::fields() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM tk_fields ORDER BY position, name", kFieldColumns))) {
            out.push_back(field_json(r));
        }
    });
    return out;
}

boost::asio::awaitable<json::object> TicketService::create_field(json::object body) {
    core::reject_unknown_fields(body, {"name", "label", "type", "required", "options", "position"});
    std::string name(core::required_string(body, "name"));
    if (!is_name(name, 64)) bad("name", "'name' is 1 to 64 of a-z, 0-9, _ starting with a letter", "invalid_name");
    std::string type(core::required_string(body, "type"));
    if (std::find(kFieldTypes.begin(), kFieldTypes.end(), type) == kFieldTypes.end()) {
        bad("type", "'type' is string, text, number, bool, date or select", "invalid_type");
    }
    std::string label = label_of(body, name);
    bool required = core::optional_bool(body, "required").value_or(false);
    json::array options;
    if (body.contains("options")) {
        if (type != "select") bad("options", "'options' are for select fields");
        options = options_of(body);
    }
    if (type == "select" && options.empty()) bad("options", "a select field needs at least one option", "missing_field");
    std::int64_t position = position_of(body, 0);
    std::int64_t now = clock_.now_ms();
    auto write = [name, label, type, required, options, position, now](store::Tx& tx) -> json::object {
        if (tx.query_one("SELECT 1 FROM tk_fields WHERE name = ?", {name})) {
            throw core::Conflict(fmt::format("a ticket field '{}' exists", name), "field_exists");
        }
        if (static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM tk_fields")->integer(0)) >= kMaxTicketFields) {
            too_large("fields", kMaxTicketFields, "fields");
        }
        tx.exec("INSERT INTO tk_fields(name, label, type, required, options, position, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                {name, label, type, static_cast<std::int64_t>(required), json::serialize(options), position, now, now});
        return field_json(*tx.query_one(fmt::format("SELECT {} FROM tk_fields WHERE name = ?", kFieldColumns), {name}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<json::object> TicketService::update_field(std::string name, json::object body) {
    if (body.contains("type") || body.contains("name")) {
        throw core::Unprocessable("a field's name and type cannot change: add a new field instead", "immutable_field",
                                  json::array{json::object{{"field", body.contains("type") ? "type" : "name"}}});
    }
    core::reject_unknown_fields(body, {"label", "required", "options", "position"});
    std::optional<std::string> label;
    if (body.contains("label")) label = label_of(body, "");
    auto required = core::optional_bool(body, "required");
    std::optional<json::array> options;
    if (body.contains("options")) options = options_of(body);
    std::optional<std::int64_t> position;
    if (body.contains("position")) position = position_of(body, 0);
    std::int64_t now = clock_.now_ms();
    auto write = [name, label, required, options, position, now](store::Tx& tx) -> json::object {
        auto r = tx.query_one(fmt::format("SELECT {} FROM tk_fields WHERE name = ?", kFieldColumns), {name});
        if (!r) throw core::NotFound(fmt::format("no ticket field '{}'", name.substr(0, 64)), "field_not_found");
        if (options && r->text(2) != "select") bad("options", "'options' are for select fields");
        if (options && options->empty()) bad("options", "a select field needs at least one option", "missing_field");
        tx.exec("UPDATE tk_fields SET label = ?, required = ?, options = ?, position = ?, updated_at = ? WHERE name = ?",
                {label.value_or(r->text(1)), static_cast<std::int64_t>(required.value_or(r->integer(3) != 0)),
                 options ? json::serialize(*options) : r->text(4), position.value_or(r->integer(5)), now, name});
        return field_json(*tx.query_one(fmt::format("SELECT {} FROM tk_fields WHERE name = ?", kFieldColumns), {name}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<void> TicketService::delete_field(std::string name) {
    auto write = [name](store::Tx& tx) {
        if (tx.exec("DELETE FROM tk_fields WHERE name = ?", {name}) == 0) {
            throw core::NotFound(fmt::format("no ticket field '{}'", name.substr(0, 64)), "field_not_found");
        }
        // Values of a deleted field go with it (the name is [a-z0-9_], safe inside the JSON path).
        tx.exec("UPDATE tk_tickets SET fields = json_remove(fields, ?) WHERE json_type(fields, ?) IS NOT NULL",
                {"$." + name, "$." + name});
    };
    co_await store::co_write(store_, std::move(write));
}

namespace {

json::object status_json(const store::Row& r) {
    return json::object{{"name", r.text(0)}, {"label", r.text(1)}, {"category", r.text(2)}, {"position", r.integer(3)},
                        {"builtin", r.integer(4) != 0}};
}

}  // namespace

json::array TicketService::statuses() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT name, label, category, position, builtin FROM tk_statuses ORDER BY position, name")) {
            out.push_back(status_json(r));
        }
    });
    return out;
}

boost::asio::awaitable<json::object> TicketService::create_status(json::object body) {
    core::reject_unknown_fields(body, {"name", "label", "category", "position"});
    std::string name(core::required_string(body, "name"));
    if (!is_name(name, 32)) bad("name", "'name' is 1 to 32 of a-z, 0-9, _ starting with a letter", "invalid_name");
    std::string category(core::required_string(body, "category"));
    if (!is_category(category)) bad("category", "'category' is new, open, pending, resolved or closed", "invalid_category");
    std::string label = label_of(body, name);
    std::int64_t position = position_of(body, 100);
    auto write = [name, label, category, position](store::Tx& tx) -> json::object {
        if (tx.query_one("SELECT 1 FROM tk_statuses WHERE name = ?", {name})) {
            throw core::Conflict(fmt::format("a ticket status '{}' exists", name), "status_exists");
        }
        if (static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM tk_statuses WHERE builtin = 0")->integer(0)) >=
            kMaxCustomStatuses) {
            too_large("statuses", kMaxCustomStatuses, "statuses");
        }
        tx.exec("INSERT INTO tk_statuses(name, label, category, position, builtin) VALUES (?, ?, ?, ?, 0)",
                {name, label, category, position});
        return status_json(*tx.query_one("SELECT name, label, category, position, builtin FROM tk_statuses WHERE name = ?", {name}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<json::object> TicketService::update_status(std::string name, json::object body) {
    core::reject_unknown_fields(body, {"label", "category", "position"});
    std::optional<std::string> label;
    if (body.contains("label")) label = label_of(body, "");
    auto category = core::optional_string(body, "category");
    if (category && !is_category(*category)) bad("category", "'category' is new, open, pending, resolved or closed", "invalid_category");
    std::optional<std::int64_t> position;
    if (body.contains("position")) position = position_of(body, 0);
    auto write = [name, label, category, position](store::Tx& tx) -> json::object {
        auto r = tx.query_one("SELECT name, label, category, position, builtin FROM tk_statuses WHERE name = ?", {name});
        if (!r) throw core::NotFound(fmt::format("no ticket status '{}'", name.substr(0, 64)), "status_not_found");
        if (category && r->integer(4) != 0 && *category != r->text(2)) {
            throw core::Conflict("a built-in status keeps its category", "builtin_status");
        }
        tx.exec("UPDATE tk_statuses SET label = ?, category = ?, position = ? WHERE name = ?",
                {label.value_or(r->text(1)), category.value_or(r->text(2)), position.value_or(r->integer(3)), name});
        return status_json(*tx.query_one("SELECT name, label, category, position, builtin FROM tk_statuses WHERE name = ?", {name}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<void> TicketService::delete_status(std::string name) {
    auto write = [name](store::Tx& tx) {
        auto r = tx.query_one("SELECT builtin FROM tk_statuses WHERE name = ?", {name});
        if (!r) throw core::NotFound(fmt::format("no ticket status '{}'", name.substr(0, 64)), "status_not_found");
        if (r->integer(0) != 0) throw core::Conflict("built-in statuses cannot be deleted", "builtin_status");
        if (tx.query_one("SELECT 1 FROM tk_tickets WHERE status = ? LIMIT 1", {name})) {
            throw core::Conflict("tickets still have this status", "status_in_use");
        }
        tx.exec("DELETE FROM tk_statuses WHERE name = ?", {name});
    };
    co_await store::co_write(store_, std::move(write));
}

namespace {

json::object policy_json(const store::Row& r) {
    return json::object{{"priority", r.text(0)},
                        {"first_response_minutes", r.is_null(1) ? json::value(nullptr) : json::value(r.integer(1))},
                        {"resolution_minutes", r.is_null(2) ? json::value(nullptr) : json::value(r.integer(2))},
                        {"updated_at", core::format_time(r.integer(3))}};
}

}  // namespace

json::array TicketService::sla_policies() const {
    json::array out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT priority, first_response_minutes, resolution_minutes, updated_at FROM tk_sla_policies")) {
            out.push_back(policy_json(r));
        }
    });
    std::sort(out.begin(), out.end(), [](const json::value& a, const json::value& b) {
        return priority_rank(a.at("priority").as_string()) < priority_rank(b.at("priority").as_string());
    });
    return out;
}

boost::asio::awaitable<json::object> TicketService::put_sla_policy(std::string priority, json::object body) {
    if (!priority_rank(priority)) throw core::NotFound("the priority is low, normal, high or urgent", "priority_not_found");
    core::reject_unknown_fields(body, {"first_response_minutes", "resolution_minutes"});
    auto minutes = [&](std::string_view key) -> std::optional<std::int64_t> {
        auto m = core::optional_int(body, key);
        if (m && (*m < 1 || *m > kMaxSlaMinutes)) bad(key, fmt::format("'{}' is from 1 to {}", key, kMaxSlaMinutes));
        return m;
    };
    auto first = minutes("first_response_minutes");
    auto resolution = minutes("resolution_minutes");
    if (!first && !resolution) bad("first_response_minutes", "give first_response_minutes, resolution_minutes or both", "missing_field");
    if (first && resolution && *resolution < *first) {
        throw core::Unprocessable("resolution cannot be due before the first response", "invalid_policy",
                                  json::array{json::object{{"field", "resolution_minutes"}, {"reason", "less than first_response_minutes"}}});
    }
    std::int64_t now = clock_.now_ms();
    auto write = [priority, first, resolution, now](store::Tx& tx) -> json::object {
        tx.exec("INSERT INTO tk_sla_policies(priority, first_response_minutes, resolution_minutes, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(priority) DO UPDATE SET first_response_minutes = excluded.first_response_minutes, "
                "resolution_minutes = excluded.resolution_minutes, updated_at = excluded.updated_at",
                {priority, opt_value(first), opt_value(resolution), now});
        return policy_json(*tx.query_one("SELECT priority, first_response_minutes, resolution_minutes, updated_at FROM "
                                         "tk_sla_policies WHERE priority = ?",
                                         {priority}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

boost::asio::awaitable<void> TicketService::delete_sla_policy(std::string priority) {
    auto write = [priority](store::Tx& tx) {
        if (tx.exec("DELETE FROM tk_sla_policies WHERE priority = ?", {priority}) == 0) {
            throw core::NotFound("no SLA policy for this priority", "policy_not_found");
        }
    };
    co_await store::co_write(store_, std::move(write));
}

}  // namespace parley::operators

#include "operator/internal/filter.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/json.h"
#include "operator/internal/routing.h"
#include "operator/internal/rows.h"

namespace parley::operators {

namespace {

constexpr std::size_t kMaxIdBytes = 64;
constexpr std::size_t kMaxChannelBytes = 64;
constexpr std::size_t kMaxStates = 4;

bool valid_state(std::string_view s) { return s == "unassigned" || s == "queue" || s == "assigned" || s == "closed"; }

std::string checked_text(std::string_view field, std::string_view value, std::size_t max) {
    if (value.empty() || value.size() > max) {
        internal::bad_field(std::string(field), fmt::format("'{}' is 1 to {} bytes", field, max));
    }
    return std::string(value);
}

std::int64_t checked_time(std::string_view field, std::string_view value) {
    auto ms = internal::parse_time(value);
    if (!ms) {
        internal::bad_field(std::string(field),
                            fmt::format("'{}' is an ISO-8601 UTC date or time, e.g. 2026-11-24T10:00:00Z", field));
    }
    return *ms;
}

void add_state(DialogFilter& f, std::string_view s) {
    if (!valid_state(s)) internal::bad_field("states", "each state is unassigned, queue, assigned or closed");
    for (const auto& have : f.states) {
        if (have == s) return;
    }
    if (f.states.size() >= kMaxStates) internal::bad_field("states", "at most 4 states");
    f.states.emplace_back(s);
}

constexpr std::string_view kFilterFields[] = {"states",     "operator_id", "group_id",  "subject",     "tag",
                                              "channel",    "client_id",   "label",     "q",           "created_from",
                                              "created_to", "closed_from", "closed_to", "unread"};

}  // namespace

void DialogFilter::set(std::string_view name, std::string_view value) {
    if (name == "state" || name == "states") {
        std::size_t start = 0;
        while (start <= value.size()) {
            auto comma = value.find(',', start);
            if (comma == std::string_view::npos) comma = value.size();
            add_state(*this, value.substr(start, comma - start));
            start = comma + 1;
        }
    } else if (name == "operator_id") {
        operator_id = checked_text(name, value, kMaxIdBytes);
    } else if (name == "group_id") {
        group_id = checked_text(name, value, kMaxIdBytes);
    } else if (name == "client_id") {
        client_id = checked_text(name, value, kMaxIdBytes);
    } else if (name == "subject" || name == "label") {
        if (!internal::valid_alias(value, kMaxAliasBytes)) {
            internal::bad_field(std::string(name), fmt::format("'{}' is 1 to {} of a-z 0-9 _ . -", name, kMaxAliasBytes));
        }
        (name == "subject" ? subject : label) = std::string(value);
    } else if (name == "tag") {
        tag = checked_text(name, value, kMaxDialogTagBytes);
    } else if (name == "channel") {
        channel = checked_text(name, value, kMaxChannelBytes);
    } else if (name == "q") {
        text = checked_text(name, value, kMaxSearchBytes);
    } else if (name == "created_from") {
        created_from = checked_time(name, value);
    } else if (name == "created_to") {
        created_to = checked_time(name, value);
    } else if (name == "closed_from") {
        closed_from = checked_time(name, value);
    } else if (name == "closed_to") {
        closed_to = checked_time(name, value);
    } else if (name == "unread") {
        if (value != "true" && value != "false") internal::bad_field("unread", "'unread' is true or false");
        unread = value == "true";
    } else {
        internal::bad_field("filter", fmt::format("unknown filter '{}'", name));
    }
}

DialogFilter DialogFilter::from_json(const json::object& body) {
    DialogFilter f;
    for (const auto& [key, value] : body) {
        bool known = false;
        for (auto k : kFilterFields) known = known || k == key;
        if (!known) internal::bad_field("filter", fmt::format("unknown filter field '{}'", std::string_view(key)));
        if (key == "states") {
            if (!value.is_array()) internal::bad_field("states", "'states' is an array of states");
            for (const auto& s : value.get_array()) {
                if (!s.is_string()) internal::bad_field("states", "each state is a string");
                add_state(f, s.get_string());
            }
        } else if (key == "unread") {
            if (!value.is_bool()) internal::bad_field("unread", "'unread' is true or false");
            f.unread = value.get_bool();
        } else {
            if (!value.is_string()) {
                internal::bad_field(std::string(key), fmt::format("'{}' is a string", std::string_view(key)));
            }
            f.set(std::string_view(key), value.get_string());
        }
    }
    return f;
}

json::object DialogFilter::to_json() const {
    json::object out;
    if (!states.empty()) {
        json::array list;
        for (const auto& s : states) list.emplace_back(s);
        out["states"] = std::move(list);
    }
    auto text_field = [&](const char* key, const std::optional<std::string>& v) {
        if (v) out[key] = *v;
    };
    auto time_field = [&](const char* key, const std::optional<std::int64_t>& v) {
        if (v) out[key] = core::format_time(*v);
    };
    text_field("operator_id", operator_id);
    text_field("group_id", group_id);
    text_field("subject", subject);
    text_field("tag", tag);
    text_field("channel", channel);
    text_field("client_id", client_id);
    text_field("label", label);
    text_field("q", text);
    time_field("created_from", created_from);
    time_field("created_to", created_to);
    time_field("closed_from", closed_from);
    time_field("closed_to", closed_to);
    if (unread) out["unread"] = true;
    return out;
}

namespace internal {

void Where::add(std::string fragment, store::Params more) {
    sql += " AND (" + fragment + ")";
    for (auto& p : more) params.push_back(std::move(p));
}

std::vector<std::string> builtin_folders(bool is_supervisor) {
    if (is_supervisor) return {"unassigned", "queue", "mine", "all", "closed"};
    return {"unassigned", "queue", "mine", "closed"};
}

bool is_builtin_folder(std::string_view folder) {
    return folder == "unassigned" || folder == "queue" || folder == "mine" || folder == "all" || folder == "closed";
}

void add_visibility(Where& where, const core::Principal& who) {
    if (supervisor(who)) return;
    where.add("o.state IN ('queue', 'unassigned') OR o.operator_id = ?", {who.user_id});
}

void add_builtin_folder(Where& where, const core::Principal& who, std::string_view folder) {
    if (folder == "mine") {
        where.add("o.state = 'assigned' AND o.operator_id = ?", {who.user_id});
    } else if (folder == "queue" || folder == "unassigned") {
        where.add("o.state = ?", {std::string(folder)});
    } else if (folder == "closed") {
        where.add("o.state = 'closed'");
        if (!supervisor(who)) where.add("o.operator_id = ?", {who.user_id});
    } else if (folder == "all") {
        if (!supervisor(who)) throw core::Forbidden("the folder 'all' is for supervisors", "forbidden");
    } else {
        throw core::BadRequest("'folder' is mine, queue, unassigned, closed, all or the id of one of your folders",
                               "invalid_folder", json::array{json::object{{"field", "folder"}}});
    }
}

void add_filter(Where& where, const DialogFilter& f, const std::string& viewer) {
    if (!f.states.empty()) {
        std::string marks;
        store::Params params;
        for (const auto& s : f.states) {
            marks += marks.empty() ? "?" : ", ?";
            params.emplace_back(s);
        }
        where.add("o.state IN (" + marks + ")", std::move(params));
    }
    if (f.operator_id) where.add("o.operator_id = ?", {*f.operator_id});
    if (f.group_id) {
        if (*f.group_id == "none") {
            where.add("o.group_id IS NULL");
        } else {
            where.add("o.group_id = ?", {*f.group_id});
        }
    }
    if (f.subject) where.add("o.subject = ?", {*f.subject});
    if (f.tag) where.add("EXISTS (SELECT 1 FROM op_dialog_tags t WHERE t.dialog_id = o.dialog_id AND t.tag = ?)", {*f.tag});
    if (f.channel) where.add("o.channel = ?", {*f.channel});
    if (f.client_id) where.add("o.client_id = ?", {*f.client_id});
    if (f.label) where.add("o.label = ?", {*f.label});
    if (f.text) {
        // Case-insensitive for ASCII (SQLite's lower()); other scripts match as written.
        where.add("instr(lower(coalesce(c.name, '')), lower(?)) > 0 OR instr(lower(o.message), lower(?)) > 0 OR "
                  "instr(lower(coalesce(c.phone, '')), lower(?)) > 0 OR instr(lower(coalesce(c.email, '')), lower(?)) > 0 OR "
                  "EXISTS (SELECT 1 FROM messages m WHERE m.dialog_id = o.dialog_id AND instr(lower(m.text), lower(?)) > 0)",
                  {*f.text, *f.text, *f.text, *f.text, *f.text});
    }
    if (f.created_from) where.add("o.created_at >= ?", {*f.created_from});
    if (f.created_to) where.add("o.created_at < ?", {*f.created_to});
    if (f.closed_from) where.add("o.state = 'closed' AND o.closed_at >= ?", {*f.closed_from});
    if (f.closed_to) where.add("o.state = 'closed' AND o.closed_at < ?", {*f.closed_to});
    if (f.unread) {
        where.add("coalesce(d.last_n, 0) > coalesce((SELECT r.last_n FROM op_read_markers r WHERE r.dialog_id = o.dialog_id "
                  "AND r.user_id = ?), 0)",
                  {viewer});
    }
}

}  // namespace internal

}  // namespace parley::operators

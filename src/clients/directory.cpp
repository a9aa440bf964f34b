// ClientDirectory: client cards, client fields, segments, topics and subscriptions, merges, export and file search.
#include <fmt/format.h>

#include <boost/asio/use_awaitable.hpp>

#include <set>

#include "asio/offload.h"
#include "auth/audit.h"
#include "auth/permissions.h"
#include "clients/clients.h"
#include "clients/internal/file_list.h"
#include "clients/internal/filter.h"
#include "clients/internal/ops.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "events/events.h"
#include "store/async.h"

namespace parley::clients {

namespace asio = boost::asio;
using internal::FieldMap;
using internal::Schema;

namespace {

json::array detail(std::string_view field) { return json::array{json::object{{"field", field}}}; }

json::value time_or_null(std::int64_t ms) { return ms ? json::value(core::format_time(ms)) : json::value(nullptr); }

std::string text_field(const json::object& body, std::string_view key, std::size_t max, bool required = false) {
    const json::value* v = body.if_contains(key);
    if (!v || v->is_null()) {
        if (required) throw core::BadRequest(fmt::format("'{}' is required", key), "missing_field", detail(key));
        return {};
    }
    if (!v->is_string()) throw core::BadRequest(fmt::format("'{}' must be text", key), "wrong_type", detail(key));
    if (v->get_string().size() > max) {
        throw core::BadRequest(fmt::format("'{}' is longer than {} bytes", key, max), "too_long", detail(key));
    }
    return std::string(v->get_string());
}

std::optional<bool> bool_field(const json::object& body, std::string_view key) {
    const json::value* v = body.if_contains(key);
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_bool()) throw core::BadRequest(fmt::format("'{}' must be true or false", key), "wrong_type", detail(key));
    return v->get_bool();
}

/// Strict API checks of phone and e-mail (scenarios stay lenient: they store what they get).
void check_contact(const std::string& phone, const std::string& email) {
    if (!phone.empty() && phone_key(phone).empty()) {
        throw core::BadRequest(fmt::format("'{}' is not a phone number (5 to 15 digits)", phone), "invalid_phone",
                               detail("phone"));
    }
    if (!email.empty() && email_key(email).empty()) {
        throw core::BadRequest(fmt::format("'{}' is not an e-mail address", email), "invalid_email", detail("email"));
    }
}

std::string csv_cell(std::string_view cell, bool escape_formula, char delimiter) {
    std::string value;
    if (escape_formula && !cell.empty() &&
        (cell[0] == '=' || cell[0] == '+' || cell[0] == '-' || cell[0] == '@' || cell[0] == '\t' || cell[0] == '\r')) {
        value.push_back('\'');
    }
    value.append(cell);
    bool quote = value.find(delimiter) != std::string::npos || value.find('"') != std::string::npos ||
                 value.find('\n') != std::string::npos || value.find('\r') != std::string::npos ||
                 (!value.empty() && (value.front() == ' ' || value.back() == ' '));
    if (!quote) return value;
    std::string out = "\"";
    for (char c : value) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

/// A brief card (lists): the standard fields, custom fields, first seen and channels.
json::object brief(store::Tx& tx, const Schema& schema, const Client& c) {
    json::object out = c.to_json();
    out["first_seen_at"] = time_or_null(c.created_at);
    out["channels"] = internal::channel_kinds(tx, schema, c.id);
    return out;
}

json::object full_card(store::Tx& tx, const Client& c) {
    Schema schema = internal::probe_schema(tx);
    FieldMap fields = internal::field_map(tx);
    json::object out = brief(tx, schema, c);
    out["fields"] = c.fields;
    out["segments"] = internal::segment_names(tx, schema, fields, c.id);
    json::array subs;
    for (const auto& r : tx.query("SELECT t.name FROM client_subscriptions s JOIN client_topics t ON t.id = s.topic_id "
                                  "WHERE s.client_id = ? AND s.status = 'subscribed' ORDER BY t.name",
                                  {c.id})) {
        subs.emplace_back(r.text(0));
    }
    out["subscriptions"] = std::move(subs);
    return out;
}

Segment segment_from_row(const store::Row& r) {
    Segment s;
    s.id = r.text(0);
    s.name = r.text(1);
    s.title = r.text(2);
    s.description = r.text(3);
    try {
        s.filter = parse_filter(json::parse(r.text(4)));
    } catch (const std::exception&) {
    }
    s.created_at = r.integer(5);
    s.updated_at = r.integer(6);
    return s;
}
constexpr const char* kSegmentColumns = "id, name, title, description, filter, created_at, updated_at";

Topic topic_from_row(const store::Row& r) {
    Topic t;
    t.id = r.text(0);
    t.name = r.text(1);
    t.title = r.text(2);
    t.description = r.text(3);
    t.active = r.integer(4) != 0;
    t.auto_subscribe = r.integer(5) != 0;
    t.created_at = r.integer(6);
    t.updated_at = r.integer(7);
    return t;
}
constexpr const char* kTopicColumns = "id, name, title, description, active, auto_subscribe, created_at, updated_at";

std::optional<Topic> load_topic(store::Tx& tx, std::string_view name) {
    auto r = tx.query_one(fmt::format("SELECT {} FROM client_topics WHERE name = ?", kTopicColumns), {std::string(name)});
    if (!r) return std::nullopt;
    return topic_from_row(*r);
}

Client require_client(store::Tx& tx, std::string_view id) {
    auto c = find_client(tx, id);
    if (!c) throw core::NotFound(fmt::format("no client '{}'", id), "client_not_found");
    return *c;
}

/// Converts every stored value of `field` (text from scenarios: "12" → 12) or refuses the change (422
/// `incompatible_values`, up to 20 client ids) when one does not fit. Runs inside the definition's write.
void convert_existing(store::Tx& tx, const ClientField& field) {
    std::string x = internal::field_expression(field.name, false);
    std::vector<std::pair<std::string, json::object>> changes;
    json::array bad;
    std::size_t bad_count = 0;
    tx.for_each(fmt::format("SELECT id, fields FROM clients WHERE {} IS NOT NULL", x), {}, [&](const store::Row& r) {
        json::object fields;
        try {
            fields = json::parse(r.text(1)).as_object();
        } catch (const std::exception&) {
            return true;
        }
        json::value* v = fields.if_contains(field.name);
        if (!v || v->is_null()) return true;
        json::value before = *v;
        if (internal::check_value(field, *v, true)) {
            if (++bad_count <= 20) bad.push_back(json::object{{"client_id", r.text(0)}, {"value", before}});
            return true;
        }
        if (*v != before) changes.emplace_back(r.text(0), std::move(fields));
        return true;
    });
    if (bad_count) {
        throw core::Unprocessable(fmt::format("{} client(s) hold values that do not fit the field '{}' as defined",
                                              bad_count, field.name),
                                  "incompatible_values", std::move(bad));
    }
    for (const auto& [id, fields] : changes) {
        tx.exec("UPDATE clients SET fields = ? WHERE id = ?", {json::serialize(fields), id});
    }
}

void set_index(store::Tx& tx, const ClientField& field) {
    std::string index = "client_field_" + field.name;
    tx.exec(fmt::format("DROP INDEX IF EXISTS {}", index));
    if (field.indexed) {
        tx.exec(fmt::format("CREATE INDEX {} ON clients({}, id)", index, internal::field_expression(field.name, false)));
    }
}

/// Reads and checks a field definition body; `existing` for PATCH (unchanged keys keep their values).
ClientField parse_field(const json::object& body, const ClientField* existing) {
    core::reject_unknown_fields(body, {"name", "label", "description", "type", "options", "indexed", "position"});
    ClientField f = existing ? *existing : ClientField{};
    if (!existing || body.contains("name")) {
        f.name = text_field(body, "name", 64, !existing);
        if (!internal::valid_field_name(f.name)) {
            throw core::BadRequest("a field name is [a-z][a-z0-9_]{0,63}", "invalid_name", detail("name"));
        }
        if (internal::reserved_field_name(f.name)) {
            throw core::BadRequest(fmt::format("'{}' is a standard client field", f.name), "reserved_name", detail("name"));
        }
    }
    if (body.contains("label")) f.label = text_field(body, "label", kMaxLabelBytes);
    if (body.contains("description")) f.description = text_field(body, "description", kMaxDescriptionBytes);
    if (!existing || body.contains("type")) {
        std::string type = text_field(body, "type", 16, !existing);
        auto t = internal::parse_field_type(type);
        if (!t) throw core::BadRequest("'type' is text, number, boolean, date or select", "invalid_type", detail("type"));
        f.type = *t;
    }
    if (const auto* o = body.if_contains("options"); o && !o->is_null()) {
        if (!o->is_array()) throw core::BadRequest("'options' must be a list of texts", "wrong_type", detail("options"));
        if (o->get_array().size() > kMaxSelectOptions) {
            throw core::BadRequest(fmt::format("at most {} options", kMaxSelectOptions), "too_many_options", detail("options"));
        }
        f.options.clear();
        std::set<std::string> seen;
        for (const auto& item : o->get_array()) {
            if (!item.is_string() || item.get_string().empty() || item.get_string().size() > kMaxLabelBytes) {
                throw core::BadRequest(fmt::format("options are texts of 1 to {} bytes", kMaxLabelBytes), "invalid_options",
                                       detail("options"));
            }
            if (!seen.insert(std::string(item.get_string())).second) {
                throw core::BadRequest(fmt::format("option '{}' is listed twice", std::string_view(item.get_string())),
                                       "invalid_options", detail("options"));
            }
            f.options.emplace_back(item.get_string());
        }
    }
    if (f.type == FieldType::kSelect && f.options.empty()) {
        throw core::BadRequest("a select field needs 'options'", "invalid_options", detail("options"));
    }
    if (f.type != FieldType::kSelect) f.options.clear();
    if (auto i = bool_field(body, "indexed")) f.indexed = *i;
    if (const auto* p = body.if_contains("position"); p && !p->is_null()) {
        if (!p->is_int64() || p->get_int64() < 0 || p->get_int64() > 100000) {
            throw core::BadRequest("'position' is a whole number from 0 to 100000", "wrong_type", detail("position"));
        }
        f.position = p->get_int64();
    }
    return f;
}

void insert_field(store::Tx& tx, const ClientField& f) {
    json::array options;
    for (const auto& o : f.options) options.emplace_back(o);
    tx.exec("INSERT INTO client_fields(name, label, description, type, options, indexed, position, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            {f.name, f.label, f.description, std::string(field_type_name(f.type)), json::serialize(options),
             std::int64_t{f.indexed ? 1 : 0}, f.position, f.created_at, f.updated_at});
}

struct SegmentInput {
    std::string name, title, description;
    ClientFilter filter;
    bool has_name = false, has_title = false, has_description = false, has_filter = false;
};

SegmentInput parse_segment(const json::object& body, bool create) {
    core::reject_unknown_fields(body, {"name", "title", "description", "filter"});
    SegmentInput in;
    if (create || body.contains("name")) {
        in.has_name = true;
        in.name = text_field(body, "name", 64, true);
        if (!internal::valid_slug(in.name)) {
            throw core::BadRequest("a segment name is [a-z0-9][a-z0-9_-]{0,63}", "invalid_name", detail("name"));
        }
    }
    if (body.contains("title")) {
        in.has_title = true;
        in.title = text_field(body, "title", kMaxLabelBytes);
    }
    if (body.contains("description")) {
        in.has_description = true;
        in.description = text_field(body, "description", kMaxDescriptionBytes);
    }
    if (const auto* f = body.if_contains("filter")) {
        in.has_filter = true;
        in.filter = parse_filter(*f);
    } else if (create) {
        throw core::BadRequest("'filter' is required", "missing_field", detail("filter"));
    }
    return in;
}

/// Checks a segment's filter against the current fields (400 for what the list route would refuse).
void check_segment_filter(store::Tx& tx, const ClientFilter& filter) {
    internal::build_where(tx, filter, internal::field_map(tx), internal::probe_schema(tx), 1);
}

}  // namespace

json::object ClientField::to_json() const {
    json::array opts;
    for (const auto& o : options) opts.emplace_back(o);
    json::object out{{"name", name},          {"label", label},       {"description", description},
                     {"type", field_type_name(type)}, {"indexed", indexed}, {"position", position},
                     {"created_at", time_or_null(created_at)}, {"updated_at", time_or_null(updated_at)}};
    if (type == FieldType::kSelect) out["options"] = std::move(opts);
    return out;
}

json::object Segment::to_json() const {
    return json::object{{"id", id},
                        {"name", name},
                        {"title", title},
                        {"description", description},
                        {"filter", filter.to_json()},
                        {"created_at", time_or_null(created_at)},
                        {"updated_at", time_or_null(updated_at)}};
}

json::object Topic::to_json() const {
    return json::object{{"id", id},
                        {"name", name},
                        {"title", title},
                        {"description", description},
                        {"active", active},
                        {"auto_subscribe", auto_subscribe},
                        {"created_at", time_or_null(created_at)},
                        {"updated_at", time_or_null(updated_at)}};
}

json::object FileSearchResult::to_json(const std::vector<json::object>& cards) const {
    json::array m, u, c;
    for (const auto& x : matched) m.push_back(json::object{{"line", x.line}, {"value", x.value}, {"client_id", x.client_id}});
    for (const auto& x : unmatched) u.push_back(json::object{{"line", x.line}, {"value", x.value}, {"reason", x.reason}});
    for (const auto& card : cards) c.push_back(card);
    return json::object{{"lines", lines},
                        {"matched_count", matched.size()},
                        {"unmatched_count", unmatched.size()},
                        {"clients", std::move(c)},
                        {"matched", std::move(m)},
                        {"unmatched", std::move(u)}};
}

ClientDirectory::ClientDirectory(store::Store& store, const core::Clock& clock, events::EventHub* hub)
    : store_(store), clock_(clock), hub_(hub) {}

ClientDirectory::~ClientDirectory() {
    bulk_.stop();
    bulk_.join();
}

void ClientDirectory::publish(const std::string& type, json::object body) {
    if (hub_) hub_->publish(type, std::move(body), events::Audience::permission(std::string(auth::kModuleClients), core::Action::kView));
}

// ---- cards ----

asio::awaitable<std::pair<json::object, bool>> ClientDirectory::create(json::object body, const core::Principal* actor) {
    core::reject_unknown_fields(body, {"name", "phone", "email", "language", "fields"});
    NewClient n;
    n.name = text_field(body, "name", kMaxNameBytes);
    n.phone = text_field(body, "phone", kMaxPhoneBytes);
    n.email = text_field(body, "email", kMaxEmailBytes);
    n.language = text_field(body, "language", 16);
    if (const auto* f = body.if_contains("fields"); f && !f->is_null()) {
        if (!f->is_object()) throw core::BadRequest("'fields' must be an object", "wrong_type", detail("fields"));
        n.fields = f->get_object();
    }
    check_contact(n.phone, n.email);
    validate_new_client(n);
    std::int64_t now = clock_.now_ms();
    std::string actor_id = actor ? actor->user_id : std::string();
    auto write = [n, now](store::Tx& tx) mutable -> std::pair<json::object, bool> {
        FieldMap defs = internal::field_map(tx);
        json::array problems;
        for (auto& kv : n.fields) {
            auto it = defs.find(kv.key());
            if (it == defs.end()) {
                problems.push_back(json::object{{"field", kv.key()}, {"message", "no client field has this name"}});
            } else if (kv.value().is_null()) {
                continue;
            } else if (auto p = internal::check_value(it->second, kv.value(), false)) {
                problems.push_back(json::object{{"field", kv.key()}, {"message", *p}});
            }
        }
        if (!problems.empty()) throw core::Unprocessable("the client has invalid fields", "invalid_client", problems);
        for (auto it = n.fields.begin(); it != n.fields.end();) {
            it = it->value().is_null() ? n.fields.erase(it) : std::next(it);
        }
        auto existing = internal::matching_clients(tx, phone_key(n.phone), email_key(n.email));
        bool matched = !existing.empty() && existing.size() <= kMaxAutoMergeMatches;
        Client c = create_client(tx, n, now);
        return {full_card(tx, c), !matched};
    };
    auto result = co_await store::co_write(store_, std::move(write));
    publish("client.updated", json::object{{"client", result.first}});
    co_return result;
}

std::optional<json::object> ClientDirectory::card(std::string_view id) {
    std::optional<json::object> out;
    store_.read([&](store::Tx& tx) {
        if (auto c = find_client(tx, id)) out = full_card(tx, *c);
    });
    return out;
}

ClientPage ClientDirectory::list(const ClientQuery& query) {
    internal::Sort sort = internal::parse_sort(query.sort);
    ClientPage page;
    store_.read([&](store::Tx& tx) {
        Schema schema = internal::probe_schema(tx);
        FieldMap fields = internal::field_map(tx);
        internal::SqlWhere where = internal::build_where(tx, query.filter, fields, schema);
        std::string sql = fmt::format("SELECT {}, {} FROM clients c WHERE ({})", internal::kClientColumns, sort.column, where.sql);
        if (query.cursor) {
            auto after = internal::after_cursor(sort, *query.cursor);
            sql += " AND " + after.sql;
            for (auto& p : after.params) where.params.push_back(std::move(p));
        }
        const char* dir = sort.desc ? "DESC" : "ASC";
        if (sort.column == "c.id") {
            sql += fmt::format(" ORDER BY c.id {} LIMIT ?", dir);
        } else {
            sql += fmt::format(" ORDER BY {} {}, c.id {} LIMIT ?", sort.column, dir, dir);
        }
        where.params.emplace_back(static_cast<std::int64_t>(query.limit + 1));
        auto rows = tx.query(sql, where.params);
        for (std::size_t i = 0; i < rows.size() && i < query.limit; ++i) {
            page.items.push_back(brief(tx, schema, internal::client_from_row(rows[i])));
        }
        if (rows.size() > query.limit) {
            const auto& last = rows[query.limit - 1];
            std::string key = sort.integer ? std::to_string(last.integer(8)) : last.text(8);
            page.next_cursor = internal::make_cursor(sort, key, last.text(0));
        }
    });
    return page;
}

std::int64_t ClientDirectory::count(const ClientFilter& filter) {
    std::int64_t n = 0;
    store_.read([&](store::Tx& tx) {
        auto where = internal::build_where(tx, filter, internal::field_map(tx), internal::probe_schema(tx));
        n = tx.query_one(fmt::format("SELECT count(*) FROM clients c WHERE {}", where.sql), where.params)->integer(0);
    });
    return n;
}

asio::awaitable<json::object> ClientDirectory::update(std::string id, json::object body, const core::Principal* actor) {
    core::reject_unknown_fields(body, {"name", "phone", "email", "language", "fields"});
    const json::object* custom = nullptr;
    if (const auto* f = body.if_contains("fields"); f && !f->is_null()) {
        if (!f->is_object()) throw core::BadRequest("'fields' must be an object", "wrong_type", detail("fields"));
        custom = &f->get_object();
    }
    std::optional<std::string> name, phone, email, language;
    if (body.contains("name")) name = text_field(body, "name", kMaxNameBytes);
    if (body.contains("phone")) phone = text_field(body, "phone", kMaxPhoneBytes);
    if (body.contains("email")) email = text_field(body, "email", kMaxEmailBytes);
    if (body.contains("language")) language = text_field(body, "language", 16);
    check_contact(phone.value_or(""), email.value_or(""));
    json::object changes = custom ? *custom : json::object{};
    std::int64_t now = clock_.now_ms();
    (void)actor;
    auto write = [id, name, phone, email, language, changes, now](store::Tx& tx) mutable -> std::pair<json::object, std::vector<std::string>> {
        Client c = require_client(tx, id);
        std::string before_id = c.id;
        if (name) c.name = *name;
        if (phone) c.phone = *phone;
        if (email) c.email = *email;
        if (language) c.language = *language;
        FieldMap defs = internal::field_map(tx);
        json::array problems;
        for (auto& kv : changes) {
            if (kv.value().is_null()) {
                c.fields.erase(kv.key());
                continue;
            }
            auto it = defs.find(kv.key());
            if (it == defs.end()) {
                problems.push_back(json::object{{"field", kv.key()}, {"message", "no client field has this name"}});
            } else if (auto p = internal::check_value(it->second, kv.value(), false)) {
                problems.push_back(json::object{{"field", kv.key()}, {"message", *p}});
            } else {
                c.fields[kv.key()] = kv.value();
            }
        }
        if (!problems.empty()) throw core::Unprocessable("the client has invalid fields", "invalid_client", problems);
        NewClient check{c.name, c.phone, c.email, c.language, c.fields};
        validate_new_client(check);
        internal::save_client(tx, c);
        std::vector<std::string> absorbed;
        auto matches = internal::matching_clients(tx, phone_key(c.phone), email_key(c.email));
        std::string survivor = internal::link_by_keys(tx, c.id, now);
        for (const auto& m : matches) {
            if (m != survivor) absorbed.push_back(m);
        }
        return {full_card(tx, *internal::load_client(tx, survivor)), absorbed};
    };
    auto [card, absorbed] = co_await store::co_write(store_, std::move(write));
    if (!absorbed.empty()) {
        json::array ids;
        for (const auto& a : absorbed) ids.emplace_back(a);
        publish("client.merged", json::object{{"client_id", card.at("id")}, {"merged", ids}});
        card["merged"] = std::move(ids);
    }
    publish("client.updated", json::object{{"client", card}});
    co_return card;
}

asio::awaitable<json::object> ClientDirectory::remove(std::string id, const core::Principal* actor) {
    std::int64_t now = clock_.now_ms();
    auto write = [id, now, actor](store::Tx& tx) -> json::object {
        Client c = require_client(tx, id);
        // Dialogs, tickets, widget visitors, ... (any `client_id` column) keep the id: erase instead of delete.
        bool referenced = internal::referenced_elsewhere(tx, c.id);
        tx.exec("DELETE FROM client_subscriptions WHERE client_id = ?", {c.id});
        // Merge snapshots hold the personal data of the absorbed cards: they go with the card.
        tx.exec("DELETE FROM client_merges WHERE resolves_to = ?", {c.id});
        if (referenced) {
            tx.exec("UPDATE clients SET name = '', phone = '', email = '', fields = '{}', phone_key = '', email_key = '' "
                    "WHERE id = ?",
                    {c.id});
        } else {
            tx.exec("DELETE FROM clients WHERE id = ?", {c.id});
        }
        if (actor) {
            auth::AuditRecord record;
            record.actor = actor;
            record.action = referenced ? "client.erase" : "client.delete";
            record.target = c.id;
            auth::record_audit(tx, now, record);
        }
        return json::object{{"id", c.id}, {"deleted", !referenced}, {"erased", referenced}};
    };
    json::object out = co_await store::co_write(store_, std::move(write));
    publish("client.deleted", json::object{{"client_id", out.at("id")}, {"erased", out.at("erased")}});
    co_return out;
}

asio::awaitable<MergeOutcome> ClientDirectory::merge(std::string target, std::vector<std::string> ids,
                                                     const core::Principal* actor) {
    if (ids.empty() || ids.size() > kMaxMergeBatch) {
        throw core::BadRequest(fmt::format("'client_ids' lists 1 to {} clients", kMaxMergeBatch), "invalid_merge",
                               detail("client_ids"));
    }
    for (const auto& id : ids) {
        if (id.empty() || id.size() > 64) throw core::BadRequest("client ids are 1 to 64 bytes", "invalid_merge", detail("client_ids"));
        if (id == target) {
            throw core::BadRequest("a client cannot be merged into itself", "merge_self", detail("client_ids"));
        }
    }
    std::int64_t now = clock_.now_ms();
    std::shared_ptr<const core::Principal> who;
    if (actor) who = std::make_shared<core::Principal>(*actor);
    auto write = [target, ids, now, who](store::Tx& tx) -> MergeOutcome {
        MergeOutcome out;
        Client survivor = require_client(tx, target);
        for (const auto& id : ids) {
            auto c = find_client(tx, id);
            if (!c) throw core::NotFound(fmt::format("no client '{}'", id), "client_not_found", detail("client_ids"));
            if (c->id == survivor.id) {
                out.already.push_back(id);
                continue;
            }
            json::object moved = internal::merge_into(tx, survivor.id, c->id, "manual", who.get(), now);
            for (const auto& kv : moved) {
                std::int64_t prev = out.moved.contains(kv.key()) ? out.moved.at(kv.key()).as_int64() : 0;
                out.moved[kv.key()] = prev + kv.value().as_int64();
            }
            out.merged.push_back(c->id);
        }
        out.client = full_card(tx, *internal::load_client(tx, survivor.id));
        return out;
    };
    MergeOutcome out = co_await store::co_write(store_, std::move(write));
    if (!out.merged.empty()) {
        json::array merged;
        for (const auto& m : out.merged) merged.emplace_back(m);
        publish("client.merged", json::object{{"client_id", out.client.at("id")}, {"merged", std::move(merged)}});
        publish("client.updated", json::object{{"client", out.client}});
    }
    co_return out;
}

ClientPage ClientDirectory::merges(std::optional<std::string> client_id, std::optional<std::string> cursor,
                                   std::size_t limit) {
    ClientPage page;
    store_.read([&](store::Tx& tx) {
        std::string sql = "SELECT id, absorbed_id, survivor_id, resolves_to, reason, actor_id, actor_email, snapshot, "
                          "moved, merged_at FROM client_merges WHERE id < ?";
        store::Params params{cursor.value_or("~")};
        if (client_id) {
            sql += " AND (absorbed_id = ? OR survivor_id = ? OR resolves_to = ?)";
            params.insert(params.end(), {*client_id, *client_id, *client_id});
        }
        sql += " ORDER BY id DESC LIMIT ?";
        params.emplace_back(static_cast<std::int64_t>(limit + 1));
        auto rows = tx.query(sql, params);
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) {
            const auto& r = rows[i];
            json::value snapshot, moved;
            try {
                snapshot = json::parse(r.text(7));
                moved = json::parse(r.text(8));
            } catch (const std::exception&) {
            }
            page.items.push_back(json::object{{"id", r.text(0)},
                                              {"absorbed_id", r.text(1)},
                                              {"survivor_id", r.text(2)},
                                              {"resolves_to", r.text(3)},
                                              {"reason", r.text(4)},
                                              {"actor_id", r.is_null(5) ? json::value(nullptr) : json::value(r.text(5))},
                                              {"actor_email", r.is_null(6) ? json::value(nullptr) : json::value(r.text(6))},
                                              {"absorbed", std::move(snapshot)},
                                              {"moved", std::move(moved)},
                                              {"merged_at", time_or_null(r.integer(9))}});
        }
        if (rows.size() > limit) page.next_cursor = rows[limit - 1].text(0);
    });
    return page;
}

json::array ClientDirectory::channels(std::string_view id) {
    json::array out;
    bool found = false;
    store_.read([&](store::Tx& tx) {
        auto c = find_client(tx, id);
        if (!c) return;
        found = true;
        Schema schema = internal::probe_schema(tx);
        if (!schema.dialogs) return;
        std::string sql = schema.channels
                              ? "SELECT d.channel, count(*), min(d.created_at), max(d.updated_at), ch.kind, ch.bot_id "
                                "FROM dialogs d LEFT JOIN channels ch ON ch.id = d.channel WHERE d.client_id = ? "
                                "GROUP BY d.channel ORDER BY max(d.updated_at) DESC"
                              : "SELECT d.channel, count(*), min(d.created_at), max(d.updated_at), NULL, NULL "
                                "FROM dialogs d WHERE d.client_id = ? GROUP BY d.channel ORDER BY max(d.updated_at) DESC";
        for (const auto& r : tx.query(sql, {c->id})) {
            std::string channel = r.text(0);
            json::object item{{"channel", channel},
                              {"kind", r.is_null(4) ? channel : r.text(4)},
                              {"bot_id", r.is_null(5) ? json::value(nullptr) : json::value(r.text(5))},
                              {"dialogs", r.integer(1)},
                              {"first_seen_at", time_or_null(r.integer(2))},
                              {"last_seen_at", time_or_null(r.integer(3))}};
            json::array identities;
            if (schema.identities) {
                for (const auto& i : tx.query("SELECT ci.external_user, ci.chat_id, ci.created_at FROM channel_identities ci "
                                              "JOIN dialogs d ON d.id = ci.dialog_id WHERE d.client_id = ? AND "
                                              "ci.channel_id = ? ORDER BY ci.created_at",
                                              {c->id, channel})) {
                    identities.push_back(json::object{
                        {"external_user", i.text(0)}, {"chat_id", i.text(1)}, {"since", time_or_null(i.integer(2))}});
                }
            }
            item["identities"] = std::move(identities);
            out.push_back(std::move(item));
        }
    });
    if (!found) throw core::NotFound(fmt::format("no client '{}'", id), "client_not_found");
    return out;
}

// ---- client fields ----

std::vector<ClientField> ClientDirectory::fields() {
    std::vector<ClientField> out;
    store_.read([&](store::Tx& tx) { out = internal::load_fields(tx); });
    return out;
}

asio::awaitable<ClientField> ClientDirectory::create_field(json::object body) {
    ClientField f = parse_field(body, nullptr);
    f.created_at = f.updated_at = clock_.now_ms();
    bool has_position = body.contains("position");
    auto write = [f, has_position](store::Tx& tx) mutable -> ClientField {
        auto n = tx.query_one("SELECT count(*), coalesce(max(position), -1) FROM client_fields");
        if (static_cast<std::size_t>(n->integer(0)) >= kMaxClientFields) {
            throw core::Conflict(fmt::format("at most {} client fields", kMaxClientFields), "too_many_fields");
        }
        if (tx.query_one("SELECT 1 FROM client_fields WHERE name = ?", {f.name})) {
            throw core::Conflict(fmt::format("a client field '{}' exists", f.name), "field_exists", detail("name"));
        }
        if (!has_position) f.position = n->integer(1) + 1;
        convert_existing(tx, f);  // scenario-set values under this name must fit the new type
        insert_field(tx, f);
        set_index(tx, f);
        return f;
    };
    co_return co_await store::co_write(store_, std::move(write));
}

asio::awaitable<ClientField> ClientDirectory::update_field(std::string name, json::object body) {
    if (body.contains("name")) {
        throw core::BadRequest("a field's name cannot change (values are stored under it)", "immutable_field", detail("name"));
    }
    std::int64_t now = clock_.now_ms();
    auto write = [name, body, now](store::Tx& tx) -> ClientField {
        auto row = tx.query_one(fmt::format("SELECT {} FROM client_fields WHERE name = ?", internal::kFieldColumns), {name});
        if (!row) throw core::NotFound(fmt::format("no client field '{}'", name), "field_not_found");
        ClientField before = internal::field_from_row(*row);
        ClientField f = parse_field(body, &before);
        f.updated_at = now;
        if (f.type != before.type || f.options != before.options) convert_existing(tx, f);
        tx.exec("DELETE FROM client_fields WHERE name = ?", {name});
        insert_field(tx, f);
        if (f.indexed != before.indexed) set_index(tx, f);
        return f;
    };
    co_return co_await store::co_write(store_, std::move(write));
}

asio::awaitable<std::int64_t> ClientDirectory::remove_field(std::string name, bool purge) {
    auto write = [name, purge](store::Tx& tx) -> std::int64_t {
        if (tx.exec("DELETE FROM client_fields WHERE name = ?", {name}) == 0) {
            throw core::NotFound(fmt::format("no client field '{}'", name), "field_not_found");
        }
        tx.exec(fmt::format("DROP INDEX IF EXISTS client_field_{}", name));
        if (!purge) return 0;
        std::string x = internal::field_expression(name, false);
        return tx.exec(fmt::format("UPDATE clients SET fields = json_remove(fields, '$.\"{}\"') WHERE {} IS NOT NULL", name, x));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

// ---- segments ----

std::vector<Segment> ClientDirectory::segments() {
    std::vector<Segment> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM client_segments ORDER BY name", kSegmentColumns))) {
            out.push_back(segment_from_row(r));
        }
    });
    return out;
}

std::optional<Segment> ClientDirectory::segment(std::string_view name) {
    std::optional<Segment> out;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM client_segments WHERE name = ?", kSegmentColumns),
                                  {std::string(name)})) {
            out = segment_from_row(*r);
        }
    });
    return out;
}

asio::awaitable<Segment> ClientDirectory::create_segment(json::object body) {
    SegmentInput in = parse_segment(body, true);
    std::int64_t now = clock_.now_ms();
    auto write = [in, now](store::Tx& tx) -> Segment {
        if (static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM client_segments")->integer(0)) >= kMaxSegments) {
            throw core::Conflict(fmt::format("at most {} segments", kMaxSegments), "too_many_segments");
        }
        if (tx.query_one("SELECT 1 FROM client_segments WHERE name = ?", {in.name})) {
            throw core::Conflict(fmt::format("a segment '{}' exists", in.name), "segment_exists", detail("name"));
        }
        check_segment_filter(tx, in.filter);
        Segment s{core::new_id(), in.name, in.title, in.description, in.filter, now, now};
        tx.exec("INSERT INTO client_segments(id, name, title, description, filter, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                {s.id, s.name, s.title, s.description, json::serialize(s.filter.to_json()), now, now});
        return s;
    };
    co_return co_await store::co_write(store_, std::move(write));
}

asio::awaitable<Segment> ClientDirectory::update_segment(std::string name, json::object body) {
    SegmentInput in = parse_segment(body, false);
    std::int64_t now = clock_.now_ms();
    auto write = [name, in, now](store::Tx& tx) -> Segment {
        auto r = tx.query_one(fmt::format("SELECT {} FROM client_segments WHERE name = ?", kSegmentColumns), {name});
        if (!r) throw core::NotFound(fmt::format("no segment '{}'", name), "segment_not_found");
        Segment s = segment_from_row(*r);
        if (in.has_name && in.name != s.name) {
            if (tx.query_one("SELECT 1 FROM client_segments WHERE name = ?", {in.name})) {
                throw core::Conflict(fmt::format("a segment '{}' exists", in.name), "segment_exists", detail("name"));
            }
            s.name = in.name;
        }
        if (in.has_title) s.title = in.title;
        if (in.has_description) s.description = in.description;
        if (in.has_filter) {
            check_segment_filter(tx, in.filter);
            s.filter = in.filter;
        }
        s.updated_at = now;
        tx.exec("UPDATE client_segments SET name = ?, title = ?, description = ?, filter = ?, updated_at = ? WHERE id = ?",
                {s.name, s.title, s.description, json::serialize(s.filter.to_json()), now, s.id});
        return s;
    };
    co_return co_await store::co_write(store_, std::move(write));
}

asio::awaitable<void> ClientDirectory::remove_segment(std::string name) {
    auto write = [name](store::Tx& tx) {
        if (tx.exec("DELETE FROM client_segments WHERE name = ?", {name}) == 0) {
            throw core::NotFound(fmt::format("no segment '{}'", name), "segment_not_found");
        }
    };
    co_await store::co_write(store_, std::move(write));
}

// ---- topics and subscriptions ----

std::vector<Topic> ClientDirectory::topics() {
    std::vector<Topic> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM client_topics ORDER BY name", kTopicColumns))) {
            out.push_back(topic_from_row(r));
        }
    });
    return out;
}

namespace {

struct TopicInput {
    std::optional<std::string> name, title, description;
    std::optional<bool> active, auto_subscribe;
};

TopicInput parse_topic(const json::object& body, bool create) {
    core::reject_unknown_fields(body, {"name", "title", "description", "active", "auto_subscribe"});
    TopicInput in;
    if (create || body.contains("name")) {
        in.name = text_field(body, "name", 64, true);
        if (!internal::valid_slug(*in.name)) {
            throw core::BadRequest("a topic name is [a-z0-9][a-z0-9_-]{0,63}", "invalid_name", detail("name"));
        }
    }
    if (body.contains("title")) in.title = text_field(body, "title", kMaxLabelBytes);
    if (body.contains("description")) in.description = text_field(body, "description", kMaxDescriptionBytes);
    in.active = bool_field(body, "active");
    in.auto_subscribe = bool_field(body, "auto_subscribe");
    return in;
}

}  // namespace

asio::awaitable<Topic> ClientDirectory::create_topic(json::object body) {
    TopicInput in = parse_topic(body, true);
    std::int64_t now = clock_.now_ms();
    auto write = [in, now](store::Tx& tx) -> Topic {
        if (static_cast<std::size_t>(tx.query_one("SELECT count(*) FROM client_topics")->integer(0)) >= kMaxTopics) {
            throw core::Conflict(fmt::format("at most {} topics", kMaxTopics), "too_many_topics");
        }
        if (load_topic(tx, *in.name)) {
            throw core::Conflict(fmt::format("a topic '{}' exists", *in.name), "topic_exists", detail("name"));
        }
        Topic t{core::new_id(), *in.name, in.title.value_or(""), in.description.value_or(""), in.active.value_or(true),
                in.auto_subscribe.value_or(false), now, now};
        tx.exec("INSERT INTO client_topics(id, name, title, description, active, auto_subscribe, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                {t.id, t.name, t.title, t.description, std::int64_t{t.active}, std::int64_t{t.auto_subscribe}, now, now});
        return t;
    };
    co_return co_await store::co_write(store_, std::move(write));
}

asio::awaitable<Topic> ClientDirectory::update_topic(std::string name, json::object body) {
    TopicInput in = parse_topic(body, false);
    std::int64_t now = clock_.now_ms();
    auto write = [name, in, now](store::Tx& tx) -> Topic {
        auto t = load_topic(tx, name);
        if (!t) throw core::NotFound(fmt::format("no topic '{}'", name), "topic_not_found");
        if (in.name && *in.name != t->name) {
            if (load_topic(tx, *in.name)) {
                throw core::Conflict(fmt::format("a topic '{}' exists", *in.name), "topic_exists", detail("name"));
            }
            t->name = *in.name;
        }
        if (in.title) t->title = *in.title;
        if (in.description) t->description = *in.description;
        if (in.active) t->active = *in.active;
        if (in.auto_subscribe) t->auto_subscribe = *in.auto_subscribe;
        t->updated_at = now;
        tx.exec("UPDATE client_topics SET name = ?, title = ?, description = ?, active = ?, auto_subscribe = ?, "
                "updated_at = ? WHERE id = ?",
                {t->name, t->title, t->description, std::int64_t{t->active}, std::int64_t{t->auto_subscribe}, now, t->id});
        return *t;
    };
    co_return co_await store::co_write(store_, std::move(write));
}

asio::awaitable<void> ClientDirectory::remove_topic(std::string name) {
    auto write = [name](store::Tx& tx) {
        auto t = load_topic(tx, name);
        if (!t) throw core::NotFound(fmt::format("no topic '{}'", name), "topic_not_found");
        tx.exec("DELETE FROM client_subscriptions WHERE topic_id = ?", {t->id});
        tx.exec("DELETE FROM client_topics WHERE id = ?", {t->id});
    };
    co_await store::co_write(store_, std::move(write));
}

asio::awaitable<json::object> ClientDirectory::set_subscription(std::string client_id, std::string topic, bool subscribed) {
    std::int64_t now = clock_.now_ms();
    auto write = [client_id, topic, subscribed, now](store::Tx& tx) -> json::object {
        Client c = require_client(tx, client_id);
        auto t = load_topic(tx, topic);
        if (!t) throw core::NotFound(fmt::format("no topic '{}'", topic), "topic_not_found");
        if (subscribed && !t->active) {
            throw core::Conflict(fmt::format("the topic '{}' is inactive", topic), "topic_inactive");
        }
        std::string status = subscribed ? "subscribed" : "unsubscribed";
        tx.exec("INSERT INTO client_subscriptions(topic_id, client_id, status, source, updated_at) VALUES (?, ?, ?, "
                "'manual', ?) ON CONFLICT (topic_id, client_id) DO UPDATE SET status = excluded.status, source = "
                "excluded.source, updated_at = excluded.updated_at",
                {t->id, c.id, status, now});
        return json::object{{"client_id", c.id}, {"topic", t->name}, {"status", status}, {"updated_at", time_or_null(now)}};
    };
    co_return co_await store::co_write(store_, std::move(write));
}

json::array ClientDirectory::subscriptions(std::string_view client_id) {
    json::array out;
    bool found = false;
    store_.read([&](store::Tx& tx) {
        auto c = find_client(tx, client_id);
        if (!c) return;
        found = true;
        for (const auto& r : tx.query("SELECT t.name, t.title, s.status, s.source, s.updated_at FROM client_subscriptions s "
                                      "JOIN client_topics t ON t.id = s.topic_id WHERE s.client_id = ? ORDER BY t.name",
                                      {c->id})) {
            out.push_back(json::object{{"topic", r.text(0)},
                                       {"title", r.text(1)},
                                       {"status", r.text(2)},
                                       {"source", r.text(3)},
                                       {"updated_at", time_or_null(r.integer(4))}});
        }
    });
    if (!found) throw core::NotFound(fmt::format("no client '{}'", client_id), "client_not_found");
    return out;
}

ClientPage ClientDirectory::subscribers(std::string_view topic, std::optional<std::string> cursor, std::size_t limit) {
    ClientPage page;
    bool found = false;
    store_.read([&](store::Tx& tx) {
        auto t = load_topic(tx, topic);
        if (!t) return;
        found = true;
        Schema schema = internal::probe_schema(tx);
        auto rows = tx.query(fmt::format("SELECT {} FROM client_subscriptions s JOIN clients c ON c.id = s.client_id "
                                         "WHERE s.topic_id = ? AND s.status = 'subscribed' AND s.client_id > ? "
                                         "ORDER BY s.client_id LIMIT ?",
                                         internal::kClientColumns),
                             {t->id, cursor.value_or(""), static_cast<std::int64_t>(limit + 1)});
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) {
            page.items.push_back(brief(tx, schema, internal::client_from_row(rows[i])));
        }
        if (rows.size() > limit) page.next_cursor = rows[limit - 1].text(0);
    });
    if (!found) throw core::NotFound(fmt::format("no topic '{}'", topic), "topic_not_found");
    return page;
}

// ---- export and file search ----

void ClientDirectory::export_csv(const ClientFilter& filter, const ExportOptions& options,
                                 const std::function<void(std::string_view)>& sink) {
    constexpr std::size_t kChunk = 64 * 1024;
    const char d = options.delimiter;
    store_.read([&](store::Tx& tx) {
        Schema schema = internal::probe_schema(tx);
        std::vector<ClientField> defs = internal::load_fields(tx);
        FieldMap fields;
        for (const auto& f : defs) fields.emplace(f.name, f);
        auto where = internal::build_where(tx, filter, fields, schema);
        std::string channels_sql = "''";
        if (schema.dialogs) {
            channels_sql = schema.channels
                               ? "(SELECT group_concat(k, ' ') FROM (SELECT DISTINCT coalesce(ch.kind, d.channel) AS k FROM "
                                 "dialogs d LEFT JOIN channels ch ON ch.id = d.channel WHERE d.client_id = c.id ORDER BY 1))"
                               : "(SELECT group_concat(k, ' ') FROM (SELECT DISTINCT d.channel AS k FROM dialogs d WHERE "
                                 "d.client_id = c.id ORDER BY 1))";
        }
        std::string buffer;
        if (options.bom) buffer += "\xEF\xBB\xBF";
        const char* header[] = {"id", "name", "phone", "email", "language", "channels", "first_seen_at", "last_seen_at"};
        for (std::size_t i = 0; i < std::size(header); ++i) {
            if (i) buffer += d;
            buffer += header[i];
        }
        for (const auto& f : defs) {
            buffer += d;
            buffer += csv_cell(f.name, true, d);
        }
        buffer += "\r\n";
        tx.for_each(fmt::format("SELECT {}, {} FROM clients c WHERE {} ORDER BY c.id", internal::kClientColumns,
                                channels_sql, where.sql),
                    where.params, [&](const store::Row& r) {
                        Client c = internal::client_from_row(r);
                        buffer += csv_cell(c.id, true, d);
                        buffer += d;
                        buffer += csv_cell(c.name, true, d);
                        buffer += d;
                        buffer += csv_cell(c.phone, true, d);
                        buffer += d;
                        buffer += csv_cell(c.email, true, d);
                        buffer += d;
                        buffer += csv_cell(c.language, true, d);
                        buffer += d;
                        buffer += csv_cell(r.text(8), true, d);
                        buffer += d;
                        if (c.created_at) internal::append_iso_time(buffer, c.created_at);
                        buffer += d;
                        if (c.last_seen_at) internal::append_iso_time(buffer, c.last_seen_at);
                        for (const auto& f : defs) {
                            buffer += d;
                            const json::value* v = c.fields.if_contains(f.name);
                            if (!v || v->is_null()) continue;
                            if (v->is_string()) {
                                buffer += csv_cell(v->get_string(), true, d);
                            } else if (v->is_bool()) {
                                buffer += v->get_bool() ? "true" : "false";
                            } else if (v->is_number()) {
                                buffer += json::serialize(*v);  // numbers are never formula-escaped
                            } else {
                                buffer += csv_cell(json::serialize(*v), true, d);
                            }
                        }
                        buffer += "\r\n";
                        if (buffer.size() >= kChunk) {
                            sink(buffer);
                            buffer.clear();
                        }
                        return true;
                    });
        if (!buffer.empty()) sink(buffer);
    });
}

asio::awaitable<std::string> ClientDirectory::export_csv_text(ClientFilter filter, ExportOptions options) {
    auto fn = [this, filter, options]() -> std::string {
        std::string out;
        export_csv(filter, options, [&out](std::string_view chunk) {
            if (out.size() + chunk.size() > kMaxExportBytes) {
                throw core::TooLarge(fmt::format("the export is larger than {} MiB: narrow it with filters",
                                                 kMaxExportBytes >> 20),
                                     "export_too_large");
            }
            out.append(chunk);
        });
        return out;
    };
    co_return co_await asio_util::co_offload(bulk_, std::move(fn));
}

FileSearchResult ClientDirectory::search_by_file(std::string_view text, ListKind kind) {
    internal::ParsedList parsed = internal::parse_client_list(text, kind);
    FileSearchResult out;
    out.lines = parsed.lines;
    for (auto& p : parsed.problems) out.unmatched.push_back({p.line, std::move(p.value), std::move(p.reason)});
    store_.read([&](store::Tx& tx) {
        for (const auto& e : parsed.entries) {
            std::vector<std::string> ids;
            if (e.kind == ListKind::kId) {
                if (auto c = find_client(tx, e.key)) ids.push_back(c->id);
            } else {
                const char* sql = e.kind == ListKind::kPhone
                                      ? "SELECT id FROM clients WHERE phone_key = ? ORDER BY created_at, id LIMIT 10"
                                      : "SELECT id FROM clients WHERE email_key = ? ORDER BY created_at, id LIMIT 10";
                for (const auto& r : tx.query(sql, {e.key})) ids.push_back(r.text(0));
            }
            if (ids.empty()) out.unmatched.push_back({e.line, e.value, "not_found"});
            for (auto& id : ids) out.matched.push_back({e.line, e.value, std::move(id)});
        }
    });
    std::sort(out.unmatched.begin(), out.unmatched.end(),
              [](const FileMiss& a, const FileMiss& b) { return a.line < b.line; });
    return out;
}

std::vector<json::object> ClientDirectory::brief_cards(const std::vector<std::string>& ids) {
    std::vector<json::object> out;
    std::set<std::string> seen;
    store_.read([&](store::Tx& tx) {
        for (const auto& id : ids) {
            if (!seen.insert(id).second) continue;
            if (auto c = internal::load_client(tx, id)) {
                out.push_back(json::object{{"id", c->id}, {"name", c->name}, {"phone", c->phone}, {"email", c->email}});
            }
        }
    });
    return out;
}

}  // namespace parley::clients

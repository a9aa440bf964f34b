#include "clients/internal/ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "auth/audit.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"

namespace parley::clients::internal {

Client client_from_row(const store::Row& row) {
    Client c;
    c.id = row.text(0);
    c.name = row.text(1);
    c.phone = row.text(2);
    c.email = row.text(3);
    c.language = row.text(4);
    try {
        auto v = json::parse(row.text(5));
        if (v.is_object()) c.fields = std::move(v.get_object());
    } catch (const std::exception&) {
    }
    c.created_at = row.integer(6);
    c.last_seen_at = row.integer(7);
    return c;
}

std::optional<Client> load_client(store::Tx& tx, std::string_view id) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM clients c WHERE c.id = ?", kClientColumns), {std::string(id)});
    if (!row) return std::nullopt;
    return client_from_row(*row);
}

std::optional<std::string> resolve_merged(store::Tx& tx, std::string_view id) {
    auto row = tx.query_one("SELECT resolves_to FROM client_merges WHERE absorbed_id = ?", {std::string(id)});
    if (!row) return std::nullopt;
    return row->text(0);
}

std::vector<std::string> matching_clients(store::Tx& tx, const std::string& pk, const std::string& ek) {
    struct Hit {
        std::int64_t created;
        std::string id;
    };
    std::vector<Hit> hits;
    auto collect = [&](const char* sql, const std::string& key) {
        if (key.empty()) return;
        for (const auto& r : tx.query(sql, {key, static_cast<std::int64_t>(kMaxAutoMergeMatches + 1)})) {
            bool seen = false;
            for (const auto& h : hits) seen = seen || h.id == r.text(0);
            if (!seen) hits.push_back({r.integer(1), r.text(0)});
        }
    };
    collect("SELECT id, created_at FROM clients WHERE phone_key = ? ORDER BY created_at, id LIMIT ?", pk);
    collect("SELECT id, created_at FROM clients WHERE email_key = ? ORDER BY created_at, id LIMIT ?", ek);
    std::sort(hits.begin(), hits.end(),
              [](const Hit& a, const Hit& b) { return a.created != b.created ? a.created < b.created : a.id < b.id; });
    std::vector<std::string> out;
    for (auto& h : hits) out.push_back(std::move(h.id));
    return out;
}

void save_client(store::Tx& tx, const Client& c) {
    tx.exec("UPDATE clients SET name = ?, phone = ?, email = ?, language = ?, fields = ?, created_at = ?, "
            "last_seen_at = ?, phone_key = ?, email_key = ? WHERE id = ?",
            {c.name, c.phone, c.email, c.language, json::serialize(c.fields), c.created_at, c.last_seen_at,
             phone_key(c.phone), email_key(c.email), c.id});
}

std::string link_by_keys(store::Tx& tx, const std::string& id, std::int64_t now_ms) {
    auto row = tx.query_one("SELECT phone_key, email_key FROM clients WHERE id = ?", {id});
    if (!row) return id;
    std::string pk = row->text(0), ek = row->text(1);
    auto matches = matching_clients(tx, pk, ek);
    if (matches.size() < 2 || matches.size() > kMaxAutoMergeMatches) return id;
    const std::string& survivor = matches.front();
    for (std::size_t i = 1; i < matches.size(); ++i) {
        // The reason names the key that matched this card.
        auto keys = tx.query_one("SELECT phone_key, email_key FROM clients WHERE id = ?", {matches[i]});
        std::string reason = keys && !pk.empty() && keys->text(0) == pk ? "auto_phone" : "auto_email";
        merge_into(tx, survivor, matches[i], reason, nullptr, now_ms);
    }
    // Filling blanks may have brought a key that matches further cards (phone from one, e-mail from another).
    auto again = tx.query_one("SELECT phone_key, email_key FROM clients WHERE id = ?", {survivor});
    if (again && (again->text(0) != pk || again->text(1) != ek)) return link_by_keys(tx, survivor, now_ms);
    return survivor;
}

std::vector<std::string> referencing_tables(store::Tx& tx) {
    std::vector<std::string> out;
    for (const auto& r : tx.query("SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p "
                                  "WHERE m.type = 'table' AND p.name = 'client_id' ORDER BY m.name")) {
        if (r.text(0) != "client_subscriptions") out.push_back(r.text(0));
    }
    return out;
}

namespace {

std::string quote_identifier(const std::string& name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

}  // namespace

bool referenced_elsewhere(store::Tx& tx, const std::string& id) {
    for (const auto& table : referencing_tables(tx)) {
        if (tx.query_one(fmt::format("SELECT 1 FROM {} WHERE client_id = ? LIMIT 1", quote_identifier(table)), {id})) {
            return true;
        }
    }
    return false;
}

json::object merge_into(store::Tx& tx, const std::string& survivor_id, const std::string& absorbed_id,
                        std::string_view reason, const core::Principal* actor, std::int64_t now_ms) {
    auto survivor = load_client(tx, survivor_id);
    auto absorbed = load_client(tx, absorbed_id);
    if (!survivor || !absorbed || survivor_id == absorbed_id) {
        throw core::Conflict("both clients of a merge must exist and differ", "merge_conflict");
    }
    Client s = *survivor;
    const Client& a = *absorbed;
    if (s.name.empty()) s.name = a.name;
    if (s.phone.empty()) s.phone = a.phone;
    if (s.email.empty()) s.email = a.email;
    if (s.language.empty()) s.language = a.language;
    json::object combined = s.fields;
    for (const auto& kv : a.fields) {
        if (!combined.contains(kv.key())) combined[kv.key()] = kv.value();
    }
    // Over the size limit the survivor keeps its own fields; the absorbed card's are kept in the snapshot.
    if (json::serialize(combined).size() <= kMaxFieldsBytes) s.fields = std::move(combined);
    s.created_at = std::min(s.created_at, a.created_at);
    s.last_seen_at = std::max(s.last_seen_at, a.last_seen_at);

    json::object moved;
    for (const auto& table : referencing_tables(tx)) {
        // OR IGNORE: a row that would break another module's unique constraint stays on the absorbed id, which
        // keeps resolving to the survivor.
        std::int64_t n = tx.exec(fmt::format("UPDATE OR IGNORE {} SET client_id = ? WHERE client_id = ?",
                                             quote_identifier(table)),
                                 {survivor_id, absorbed_id});
        if (n > 0) moved[table] = n;
    }
    tx.exec("UPDATE client_subscriptions SET status = a.status, source = a.source, updated_at = a.updated_at "
            "FROM client_subscriptions AS a WHERE client_subscriptions.client_id = ? AND a.client_id = ? AND "
            "a.topic_id = client_subscriptions.topic_id AND a.updated_at > client_subscriptions.updated_at",
            {survivor_id, absorbed_id});
    std::int64_t subs = tx.exec("INSERT OR IGNORE INTO client_subscriptions(topic_id, client_id, status, source, updated_at) "
                                "SELECT topic_id, ?, status, source, updated_at FROM client_subscriptions WHERE client_id = ?",
                                {survivor_id, absorbed_id});
    tx.exec("DELETE FROM client_subscriptions WHERE client_id = ?", {absorbed_id});
    if (subs > 0) moved["client_subscriptions"] = subs;

    json::object snapshot = a.to_json();
    tx.exec("UPDATE client_merges SET resolves_to = ? WHERE resolves_to = ?", {survivor_id, absorbed_id});
    tx.exec("INSERT INTO client_merges(id, absorbed_id, survivor_id, resolves_to, reason, actor_id, actor_email, "
            "snapshot, moved, merged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            {core::new_id(), absorbed_id, survivor_id, survivor_id, std::string(reason),
             actor ? store::Value(actor->user_id) : store::Value(nullptr),
             actor ? store::Value(actor->email) : store::Value(nullptr), json::serialize(snapshot),
             json::serialize(moved), now_ms});
    tx.exec("DELETE FROM clients WHERE id = ?", {absorbed_id});
    save_client(tx, s);
    if (actor) {
        auth::AuditRecord record;
        record.actor = actor;
        record.action = "client.merge";
        record.target = survivor_id;
        record.details = json::object{{"absorbed", absorbed_id}, {"moved", moved}};
        auth::record_audit(tx, now_ms, record);
    }
    return moved;
}

Schema probe_schema(store::Tx& tx) {
    Schema s;
    for (const auto& r : tx.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                                  "('dialogs', 'channels', 'channel_identities')")) {
        if (r.text(0) == "dialogs") s.dialogs = true;
        if (r.text(0) == "channels") s.channels = true;
        if (r.text(0) == "channel_identities") s.identities = true;
    }
    return s;
}

json::array channel_kinds(store::Tx& tx, const Schema& schema, const std::string& client_id) {
    json::array out;
    if (!schema.dialogs) return out;
    const char* sql = schema.channels
                          ? "SELECT DISTINCT coalesce(ch.kind, d.channel) FROM dialogs d LEFT JOIN channels ch ON "
                            "ch.id = d.channel WHERE d.client_id = ? ORDER BY 1"
                          : "SELECT DISTINCT d.channel FROM dialogs d WHERE d.client_id = ? ORDER BY 1";
    for (const auto& r : tx.query(sql, {client_id})) out.emplace_back(r.text(0));
    return out;
}

// ---- client fields ----

std::string_view field_type_name_impl(FieldType t) {
    switch (t) {
        case FieldType::kText: return "text";
        case FieldType::kNumber: return "number";
        case FieldType::kBoolean: return "boolean";
        case FieldType::kDate: return "date";
        case FieldType::kSelect: return "select";
    }
    return "text";
}

std::optional<FieldType> parse_field_type(std::string_view text) {
    for (FieldType t : {FieldType::kText, FieldType::kNumber, FieldType::kBoolean, FieldType::kDate, FieldType::kSelect}) {
        if (field_type_name_impl(t) == text) return t;
    }
    return std::nullopt;
}

ClientField field_from_row(const store::Row& row) {
    ClientField f;
    f.name = row.text(0);
    f.label = row.text(1);
    f.description = row.text(2);
    f.type = parse_field_type(row.text(3)).value_or(FieldType::kText);
    try {
        auto v = json::parse(row.text(4));
        if (v.is_array()) {
            for (const auto& o : v.get_array()) {
                if (o.is_string()) f.options.emplace_back(o.get_string());
            }
        }
    } catch (const std::exception&) {
    }
    f.indexed = row.integer(5) != 0;
    f.position = row.integer(6);
    f.created_at = row.integer(7);
    f.updated_at = row.integer(8);
    return f;
}

std::vector<ClientField> load_fields(store::Tx& tx) {
    std::vector<ClientField> out;
    for (const auto& r : tx.query(fmt::format("SELECT {} FROM client_fields ORDER BY position, name", kFieldColumns))) {
        out.push_back(field_from_row(r));
    }
    return out;
}

FieldMap field_map(store::Tx& tx) {
    FieldMap out;
    for (auto& f : load_fields(tx)) {
        std::string name = f.name;
        out.emplace(std::move(name), std::move(f));
    }
    return out;
}

bool reserved_field_name(std::string_view name) {
    static constexpr std::string_view kReserved[] = {
        "id",      "name",          "phone",    "email",      "language", "created_at", "last_seen_at",
        "first_seen_at", "channels", "channel", "fields", "segments", "segment_names", "subscriptions",
        "topic",   "client_id",     "phone_key", "email_key", "q"};
    for (auto r : kReserved) {
        if (r == name) return true;
    }
    return false;
}

bool valid_field_name(std::string_view name) {
    if (name.empty() || name.size() > 64 || name[0] < 'a' || name[0] > 'z') return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

bool valid_slug(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9'))) return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
    }
    return true;
}

bool valid_date(std::string_view t) {
    if (t.size() != 10 || t[4] != '-' || t[7] != '-') return false;
    auto num = [&](std::size_t pos, std::size_t len, int& out) {
        auto r = std::from_chars(t.data() + pos, t.data() + pos + len, out);
        return r.ec == std::errc() && r.ptr == t.data() + pos + len;
    };
    int y = 0, m = 0, d = 0;
    if (!num(0, 4, y) || !num(5, 2, m) || !num(8, 2, d)) return false;
    if (y < 1 || m < 1 || m > 12 || d < 1) return false;
    static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int max = kDays[m - 1];
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) max = 29;
    return d <= max;
}

std::optional<std::string> check_value(const ClientField& field, json::value& value, bool lenient) {
    switch (field.type) {
        case FieldType::kText:
            if (!value.is_string()) {
                if (!lenient || value.is_object() || value.is_array()) return "must be text";
                value = json::serialize(value);
            }
            if (value.get_string().size() > kMaxFieldTextBytes) {
                return fmt::format("is longer than {} bytes", kMaxFieldTextBytes);
            }
            return std::nullopt;
        case FieldType::kNumber: {
            if (value.is_string() && lenient) {
                std::string text(value.get_string());
                double d = 0;
                auto r = std::from_chars(text.data(), text.data() + text.size(), d);
                if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size()) return "must be a number";
                value = d;
            }
            if (value.is_uint64()) {
                if (value.get_uint64() > static_cast<std::uint64_t>(INT64_MAX)) return "is out of range";
                value = static_cast<std::int64_t>(value.get_uint64());
            }
            if (value.is_double()) {
                double d = value.get_double();
                if (!std::isfinite(d)) return "must be a finite number";
                if (d == std::floor(d) && std::fabs(d) < 9e15) value = static_cast<std::int64_t>(d);
            }
            if (!value.is_int64() && !value.is_double()) return "must be a number";
            return std::nullopt;
        }
        case FieldType::kBoolean:
            if (value.is_string() && lenient) {
                std::string_view t = value.get_string();
                if (t == "true" || t == "1" || t == "yes") value = true;
                else if (t == "false" || t == "0" || t == "no") value = false;
            }
            if (!value.is_bool()) return "must be true or false";
            return std::nullopt;
        case FieldType::kDate:
            if (!value.is_string() || !valid_date(value.get_string())) return "must be a date YYYY-MM-DD";
            return std::nullopt;
        case FieldType::kSelect:
            if (!value.is_string()) return "must be one of the field's options";
            for (const auto& o : field.options) {
                if (o == value.get_string()) return std::nullopt;
            }
            return fmt::format("'{}' is not one of the field's options", std::string_view(value.get_string()));
    }
    return std::nullopt;
}

void append_iso_time(std::string& out, std::int64_t ms) {
    if (ms < 0 || ms >= 253'402'300'800'000) {  // outside years 1970..9999: the general formatter
        out += core::format_time(ms);
        return;
    }
    // Days to civil date (H. Hinnant's algorithm).
    std::int64_t days = ms / 86'400'000;
    std::int64_t rest = ms % 86'400'000;
    days += 719468;
    std::int64_t era = days / 146097;
    auto doe = static_cast<unsigned>(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) ++y;
    auto two = [&out](unsigned v) {
        out.push_back(static_cast<char>('0' + v / 10));
        out.push_back(static_cast<char>('0' + v % 10));
    };
    auto year = static_cast<unsigned>(y);
    two(year / 100);
    two(year % 100);
    out.push_back('-');
    two(m);
    out.push_back('-');
    two(d);
    out.push_back('T');
    auto secs = static_cast<unsigned>(rest / 1000);
    two(secs / 3600);
    out.push_back(':');
    two(secs / 60 % 60);
    out.push_back(':');
    two(secs % 60);
    out.push_back('.');
    auto milli = static_cast<unsigned>(rest % 1000);
    out.push_back(static_cast<char>('0' + milli / 100));
    two(milli % 100);
    out.push_back('Z');
}

std::string field_expression(std::string_view name, bool with_alias) {
    return fmt::format("json_extract({}fields, '$.\"{}\"')", with_alias ? "c." : "", name);
}

}  // namespace parley::clients::internal

namespace parley::clients {
std::string_view field_type_name(FieldType type) { return internal::field_type_name_impl(type); }
}  // namespace parley::clients

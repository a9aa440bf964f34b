#include "clients/internal/filter.h"

#include <fmt/format.h>

#include <charconv>

#include "core/error.h"
#include "core/ids.h"

namespace parley::clients {

std::string_view filter_op_name(FilterOp op) {
    switch (op) {
        case FilterOp::kEq: return "eq";
        case FilterOp::kNe: return "ne";
        case FilterOp::kGt: return "gt";
        case FilterOp::kGte: return "gte";
        case FilterOp::kLt: return "lt";
        case FilterOp::kLte: return "lte";
        case FilterOp::kContains: return "contains";
        case FilterOp::kIn: return "in";
        case FilterOp::kExists: return "exists";
    }
    return "eq";
}

std::optional<FilterOp> parse_filter_op(std::string_view text) {
    for (FilterOp op : {FilterOp::kEq, FilterOp::kNe, FilterOp::kGt, FilterOp::kGte, FilterOp::kLt, FilterOp::kLte,
                        FilterOp::kContains, FilterOp::kIn, FilterOp::kExists}) {
        if (filter_op_name(op) == text) return op;
    }
    return std::nullopt;
}

json::object ClientFilter::to_json() const {
    json::array list;
    for (const auto& c : conditions) {
        list.push_back(json::object{{"field", c.field}, {"op", filter_op_name(c.op)}, {"value", c.value}});
    }
    json::object out{{"match", any ? "any" : "all"}, {"conditions", std::move(list)}};
    if (!q.empty()) out["q"] = q;
    return out;
}

namespace {

json::array field_detail(std::string_view field) { return json::array{json::object{{"field", field}}}; }

[[noreturn]] void bad_filter(std::string_view field, const std::string& message) {
    throw core::BadRequest(message, "invalid_filter", field_detail(field));
}

bool valid_filter_field(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

}  // namespace

ClientFilter parse_filter(const json::value& doc) {
    ClientFilter out;
    if (doc.is_null()) return out;
    if (!doc.is_object()) throw core::BadRequest("'filter' must be an object", "wrong_type", field_detail("filter"));
    const auto& obj = doc.get_object();
    for (const auto& kv : obj) {
        if (kv.key() != "match" && kv.key() != "conditions" && kv.key() != "q") {
            throw core::BadRequest(fmt::format("unknown field 'filter.{}'", std::string_view(kv.key())), "unknown_field",
                                   field_detail(fmt::format("filter.{}", std::string_view(kv.key()))));
        }
    }
    if (const auto* m = obj.if_contains("match"); m && !m->is_null()) {
        if (!m->is_string() || (m->get_string() != "all" && m->get_string() != "any")) {
            throw core::BadRequest("'filter.match' is 'all' or 'any'", "invalid_filter", field_detail("filter.match"));
        }
        out.any = m->get_string() == "any";
    }
    if (const auto* q = obj.if_contains("q"); q && !q->is_null()) {
        if (!q->is_string() || q->get_string().size() > 200) {
            throw core::BadRequest("'filter.q' is text of at most 200 bytes", "invalid_filter", field_detail("filter.q"));
        }
        out.q = std::string(q->get_string());
    }
    if (const auto* list = obj.if_contains("conditions"); list && !list->is_null()) {
        if (!list->is_array()) {
            throw core::BadRequest("'filter.conditions' must be a list", "wrong_type", field_detail("filter.conditions"));
        }
        if (list->get_array().size() > kMaxConditions) {
            throw core::BadRequest(fmt::format("a filter has at most {} conditions", kMaxConditions), "invalid_filter",
                                   field_detail("filter.conditions"));
        }
        for (const auto& item : list->get_array()) {
            if (!item.is_object()) {
                throw core::BadRequest("each condition is {\"field\", \"op\", \"value\"}", "invalid_filter",
                                       field_detail("filter.conditions"));
            }
            const auto& c = item.get_object();
            for (const auto& kv : c) {
                if (kv.key() != "field" && kv.key() != "op" && kv.key() != "value") {
                    throw core::BadRequest(fmt::format("unknown condition key '{}'", std::string_view(kv.key())),
                                           "unknown_field", field_detail("filter.conditions"));
                }
            }
            Condition cond;
            const auto* f = c.if_contains("field");
            if (!f || !f->is_string() || !valid_filter_field(f->get_string())) {
                throw core::BadRequest("a condition needs a 'field' name", "invalid_filter",
                                       field_detail("filter.conditions"));
            }
            cond.field = std::string(f->get_string());
            if (const auto* op = c.if_contains("op"); op && !op->is_null()) {
                auto parsed = op->is_string() ? parse_filter_op(op->get_string()) : std::nullopt;
                if (!parsed) bad_filter(cond.field, "'op' is one of eq ne gt gte lt lte contains in exists");
                cond.op = *parsed;
            }
            if (const auto* v = c.if_contains("value")) cond.value = *v;
            if (cond.value.is_object()) bad_filter(cond.field, "a condition's value is text, a number, a boolean or a list");
            if (cond.value.is_array() && cond.op != FilterOp::kIn) bad_filter(cond.field, "only 'in' takes a list");
            out.conditions.push_back(std::move(cond));
        }
    }
    return out;
}

}  // namespace parley::clients

namespace parley::clients::internal {

namespace {

/// The values of a condition as a list (`in`: the list or a comma-separated text; otherwise one value).
std::vector<json::value> values_of(const Condition& c) {
    std::vector<json::value> out;
    if (c.op == FilterOp::kIn) {
        if (c.value.is_array()) {
            for (const auto& v : c.value.get_array()) out.push_back(v);
        } else if (c.value.is_string()) {
            std::string_view text = c.value.get_string();
            std::size_t start = 0;
            while (start <= text.size()) {
                auto comma = text.find(',', start);
                if (comma == std::string_view::npos) comma = text.size();
                out.emplace_back(text.substr(start, comma - start));
                start = comma + 1;
            }
        } else {
            out.push_back(c.value);
        }
        if (out.empty() || out.size() > kMaxInValues) {
            bad_filter(c.field, fmt::format("'in' takes 1 to {} values", kMaxInValues));
        }
    } else {
        out.push_back(c.value);
    }
    for (const auto& v : out) {
        if (v.is_object() || v.is_array()) bad_filter(c.field, "values are text, numbers or booleans");
    }
    return out;
}

std::string text_of(const json::value& v) {
    if (v.is_string()) return std::string(v.get_string());
    if (v.is_null()) return {};
    return json::serialize(v);
}

bool exists_flag(const Condition& c) {
    if (c.value.is_bool()) return c.value.get_bool();
    std::string t = text_of(c.value);
    if (t.empty() || t == "true" || t == "1") return true;
    if (t == "false" || t == "0") return false;
    bad_filter(c.field, "'exists' takes true or false");
}

std::string placeholders(std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += i ? ", ?" : "?";
    return out;
}

enum class Kind { kText, kInteger, kReal, kBool };

/// Comparison of one scalar expression `x` with typed values.
void compare(SqlWhere& w, const std::string& x, const Condition& c, Kind kind,
             const std::function<store::Value(const json::value&)>& convert) {
    if (c.op == FilterOp::kExists) {
        w.sql = exists_flag(c) ? fmt::format("({0} IS NOT NULL AND {0} <> '')", x) : fmt::format("({0} IS NULL OR {0} = '')", x);
        return;
    }
    if (c.op == FilterOp::kContains) {
        if (kind != Kind::kText) bad_filter(c.field, "'contains' works on text fields");
        std::string t = text_of(c.value);
        if (t.empty()) bad_filter(c.field, "'contains' needs some text");
        w.sql = fmt::format("instr(lower({}), lower(?)) > 0", x);
        w.params.emplace_back(std::move(t));
        return;
    }
    if (kind == Kind::kBool && c.op != FilterOp::kEq && c.op != FilterOp::kNe && c.op != FilterOp::kIn) {
        bad_filter(c.field, "a boolean field takes eq, ne, in or exists");
    }
    auto values = values_of(c);
    if ((c.op == FilterOp::kEq || c.op == FilterOp::kNe) && values.size() == 1 && values[0].is_string() &&
        values[0].get_string().empty()) {
        // eq "" matches a missing value; ne "" any present one.
        w.sql = c.op == FilterOp::kEq ? fmt::format("({0} IS NULL OR {0} = '')", x)
                                      : fmt::format("({0} IS NOT NULL AND {0} <> '')", x);
        return;
    }
    for (const auto& v : values) w.params.push_back(convert(v));
    switch (c.op) {
        case FilterOp::kEq: w.sql = fmt::format("{} = ?", x); break;
        case FilterOp::kNe: w.sql = fmt::format("({0} IS NULL OR {0} <> ?)", x); break;
        case FilterOp::kGt: w.sql = fmt::format("{} > ?", x); break;
        case FilterOp::kGte: w.sql = fmt::format("{} >= ?", x); break;
        case FilterOp::kLt: w.sql = fmt::format("{} < ?", x); break;
        case FilterOp::kLte: w.sql = fmt::format("{} <= ?", x); break;
        case FilterOp::kIn: w.sql = fmt::format("{} IN ({})", x, placeholders(values.size())); break;
        default: break;
    }
}

store::Value as_text(const json::value& v) { return text_of(v); }

std::function<store::Value(const json::value&)> number_converter(const std::string& field) {
    return [field](const json::value& v) -> store::Value {
        if (v.is_int64()) return v.get_int64();
        if (v.is_uint64()) return static_cast<double>(v.get_uint64());
        if (v.is_double()) return v.get_double();
        std::string t = text_of(v);
        double d = 0;
        auto r = std::from_chars(t.data(), t.data() + t.size(), d);
        if (t.empty() || r.ec != std::errc() || r.ptr != t.data() + t.size()) {
            bad_filter(field, fmt::format("'{}' is not a number", t));
        }
        return d;
    };
}

std::function<store::Value(const json::value&)> time_converter(const std::string& field) {
    return [field](const json::value& v) -> store::Value {
        if (v.is_int64()) return v.get_int64();
        auto ms = parse_time_value(text_of(v));
        if (!ms) bad_filter(field, fmt::format("'{}' is not a time (ms, YYYY-MM-DD or ISO 8601 UTC)", text_of(v)));
        return *ms;
    };
}

SqlWhere relation(store::Tx& tx, const Condition& c, const FieldMap& fields, const Schema& schema, int depth) {
    SqlWhere w;
    bool negate = c.op == FilterOp::kNe;
    if (c.op == FilterOp::kExists) {
        bool want = exists_flag(c);
        std::string inner;
        if (c.field == "channel") {
            if (!schema.dialogs) return SqlWhere{want ? "0" : "1", {}};
            inner = "EXISTS (SELECT 1 FROM dialogs d WHERE d.client_id = c.id)";
        } else if (c.field == "topic") {
            inner = "EXISTS (SELECT 1 FROM client_subscriptions s WHERE s.client_id = c.id AND s.status = 'subscribed')";
        } else {
            bad_filter(c.field, "'segment' takes eq, ne or in");
        }
        w.sql = want ? inner : "NOT " + inner;
        return w;
    }
    if (c.op != FilterOp::kEq && c.op != FilterOp::kNe && c.op != FilterOp::kIn) {
        bad_filter(c.field, fmt::format("'{}' takes eq, ne, in or exists", c.field));
    }
    auto values = values_of(c);
    std::vector<std::string> names;
    for (const auto& v : values) {
        std::string t = text_of(v);
        if (t.empty() || t.size() > 200) bad_filter(c.field, fmt::format("'{}' needs a name", c.field));
        names.push_back(std::move(t));
    }
    std::string inner;
    if (c.field == "channel") {
        if (!schema.dialogs) return SqlWhere{negate ? "1" : "0", {}};
        if (schema.channels) {
            inner = fmt::format("EXISTS (SELECT 1 FROM dialogs d LEFT JOIN channels ch ON ch.id = d.channel WHERE "
                                "d.client_id = c.id AND (d.channel IN ({0}) OR ch.kind IN ({0})))",
                                placeholders(names.size()));
            for (const auto& n : names) w.params.emplace_back(n);
        } else {
            inner = fmt::format("EXISTS (SELECT 1 FROM dialogs d WHERE d.client_id = c.id AND d.channel IN ({}))",
                                placeholders(names.size()));
        }
        for (const auto& n : names) w.params.emplace_back(n);
    } else if (c.field == "topic") {
        inner = fmt::format("EXISTS (SELECT 1 FROM client_subscriptions s JOIN client_topics t ON t.id = s.topic_id "
                            "WHERE s.client_id = c.id AND s.status = 'subscribed' AND t.name IN ({}))",
                            placeholders(names.size()));
        for (const auto& n : names) w.params.emplace_back(n);
    } else {  // segment
        if (depth > 0) bad_filter(c.field, "a segment's filter cannot refer to another segment");
        std::vector<std::string> parts;
        for (const auto& n : names) {
            auto row = tx.query_one("SELECT filter FROM client_segments WHERE name = ?", {n});
            if (!row) {
                throw core::BadRequest(fmt::format("no segment '{}'", n), "unknown_segment", field_detail(c.field));
            }
            ClientFilter inner_filter = parse_filter(json::parse(row->text(0)));
            SqlWhere part = build_where(tx, inner_filter, fields, schema, depth + 1);
            parts.push_back("(" + part.sql + ")");
            for (auto& p : part.params) w.params.push_back(std::move(p));
        }
        inner = "(";
        for (std::size_t i = 0; i < parts.size(); ++i) inner += (i ? " OR " : "") + parts[i];
        inner += ")";
    }
    w.sql = negate ? "NOT " + inner : inner;
    return w;
}

SqlWhere condition_sql(store::Tx& tx, const Condition& c, const FieldMap& fields, const Schema& schema, int depth) {
    SqlWhere w;
    const std::string& f = c.field;
    if (f == "channel" || f == "topic" || f == "segment") return relation(tx, c, fields, schema, depth);
    if (f == "id" || f == "name" || f == "language") {
        compare(w, "c." + f, c, Kind::kText, as_text);
    } else if (f == "phone") {
        if (c.op == FilterOp::kContains) {
            std::string digits;
            for (char ch : text_of(c.value)) {
                if (ch >= '0' && ch <= '9') digits.push_back(ch);
            }
            if (digits.empty()) bad_filter(f, "'contains' on a phone needs digits");
            w.sql = "instr(c.phone_key, ?) > 0";
            w.params.emplace_back(std::move(digits));
        } else {
            compare(w, "c.phone_key", c, Kind::kText, [f](const json::value& v) -> store::Value {
                std::string key = phone_key(text_of(v));
                if (key.empty()) bad_filter(f, fmt::format("'{}' is not a phone number", text_of(v)));
                return key;
            });
        }
    } else if (f == "email") {
        compare(w, "c.email_key", c, Kind::kText, [](const json::value& v) -> store::Value {
            std::string t = text_of(v);
            for (char& ch : t) {
                if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
            }
            return t;
        });
    } else if (f == "first_seen_at" || f == "created_at" || f == "last_seen_at") {
        std::string column = f == "last_seen_at" ? "c.last_seen_at" : "c.created_at";
        if (c.op == FilterOp::kExists) bad_filter(f, "every client has first and last seen times");
        compare(w, column, c, Kind::kInteger, time_converter(f));
    } else if (auto it = fields.find(f); it != fields.end()) {
        const ClientField& def = it->second;
        std::string x = field_expression(f);
        switch (def.type) {
            case FieldType::kNumber: compare(w, x, c, Kind::kReal, number_converter(f)); break;
            case FieldType::kBoolean:
                compare(w, x, c, Kind::kBool, [f](const json::value& v) -> store::Value {
                    if (v.is_bool()) return std::int64_t{v.get_bool() ? 1 : 0};
                    std::string t = text_of(v);
                    if (t == "true" || t == "1") return std::int64_t{1};
                    if (t == "false" || t == "0") return std::int64_t{0};
                    bad_filter(f, "a boolean field compares with true or false");
                });
                break;
            case FieldType::kDate:
                compare(w, x, c, Kind::kText, [f](const json::value& v) -> store::Value {
                    std::string t = text_of(v);
                    if (!valid_date(t)) bad_filter(f, fmt::format("'{}' is not a date YYYY-MM-DD", t));
                    return t;
                });
                break;
            case FieldType::kSelect:
                compare(w, x, c, Kind::kText, [&def, f](const json::value& v) -> store::Value {
                    std::string t = text_of(v);
                    for (const auto& o : def.options) {
                        if (o == t) return t;
                    }
                    bad_filter(f, fmt::format("'{}' is not one of the field's options", t));
                });
                break;
            case FieldType::kText: compare(w, x, c, Kind::kText, as_text); break;
        }
    } else {
        // A field no administrator defined (set by scenarios, e.g. `segment`): compared as text.
        compare(w, field_expression(f), c, Kind::kText, as_text);
    }
    return w;
}

}  // namespace

SqlWhere build_where(store::Tx& tx, const ClientFilter& filter, const FieldMap& fields, const Schema& schema, int depth) {
    if (filter.conditions.size() > kMaxConditions) {
        bad_filter("filter", fmt::format("a filter has at most {} conditions", kMaxConditions));
    }
    SqlWhere out;
    std::string joined;
    for (const auto& c : filter.conditions) {
        if (!valid_filter_field(c.field)) bad_filter(c.field, "field names are letters, digits and '_'");
        SqlWhere part = condition_sql(tx, c, fields, schema, depth);
        if (!joined.empty()) joined += filter.any ? " OR " : " AND ";
        joined += "(" + part.sql + ")";
        for (auto& p : part.params) out.params.push_back(std::move(p));
    }
    std::vector<std::string> clauses;
    if (!joined.empty()) clauses.push_back("(" + joined + ")");
    if (!filter.q.empty()) {
        std::string digits;
        for (char ch : filter.q) {
            if (ch >= '0' && ch <= '9') digits.push_back(ch);
        }
        std::string q = "(instr(lower(c.name), lower(?)) > 0 OR instr(c.email_key, lower(?)) > 0";
        out.params.emplace_back(filter.q);
        out.params.emplace_back(filter.q);
        if (digits.size() >= 3) {
            q += " OR instr(c.phone_key, ?) > 0";
            out.params.emplace_back(digits);
        }
        clauses.push_back(q + ")");
    }
    if (clauses.empty()) return out;
    out.sql.clear();
    for (std::size_t i = 0; i < clauses.size(); ++i) out.sql += (i ? " AND " : "") + clauses[i];
    return out;
}

namespace {

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits_at(std::string_view t, std::size_t pos, std::size_t len, int& out) {
    if (pos + len > t.size()) return false;
    for (std::size_t i = pos; i < pos + len; ++i) {
        if (t[i] < '0' || t[i] > '9') return false;
    }
    auto r = std::from_chars(t.data() + pos, t.data() + pos + len, out);
    return r.ec == std::errc();
}

}  // namespace

std::optional<std::int64_t> parse_time_value(std::string_view t) {
    if (t.empty()) return std::nullopt;
    bool all_digits = true;
    for (char ch : t) all_digits = all_digits && ch >= '0' && ch <= '9';
    if (all_digits && t.size() <= 15) {
        std::int64_t ms = 0;
        std::from_chars(t.data(), t.data() + t.size(), ms);
        return ms;
    }
    if (t.size() < 10 || !valid_date(t.substr(0, 10))) return std::nullopt;
    int y = 0, mo = 0, d = 0;
    digits_at(t, 0, 4, y);
    digits_at(t, 5, 2, mo);
    digits_at(t, 8, 2, d);
    std::int64_t ms = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86'400'000;
    if (t.size() == 10) return ms;
    if (t[10] != 'T' && t[10] != ' ') return std::nullopt;
    int h = 0, mi = 0, s = 0, frac = 0;
    if (!digits_at(t, 11, 2, h) || t.size() < 16 || t[13] != ':' || !digits_at(t, 14, 2, mi)) return std::nullopt;
    std::size_t pos = 16;
    if (pos < t.size() && t[pos] == ':') {
        if (!digits_at(t, pos + 1, 2, s)) return std::nullopt;
        pos += 3;
        if (pos < t.size() && t[pos] == '.') {
            if (!digits_at(t, pos + 1, 3, frac)) return std::nullopt;
            pos += 4;
        }
    }
    if (pos != t.size() - 1 || t[pos] != 'Z' || h > 23 || mi > 59 || s > 59) return std::nullopt;
    return ms + ((h * 60 + mi) * 60 + s) * 1000LL + frac;
}

/// Names of the saved segments whose filter the client matches.
json::array segment_names(store::Tx& tx, const Schema& schema, const FieldMap& fields, const std::string& id) {
    json::array out;
    for (const auto& r : tx.query("SELECT name, filter FROM client_segments ORDER BY name")) {
        try {
            ClientFilter filter = parse_filter(json::parse(r.text(1)));
            auto where = internal::build_where(tx, filter, fields, schema, 1);
            where.params.insert(where.params.begin(), id);
            if (tx.query_one(fmt::format("SELECT 1 FROM clients c WHERE c.id = ? AND ({})", where.sql), where.params)) {
                out.emplace_back(r.text(0));
            }
        } catch (const core::Error&) {
            // A segment whose filter no longer fits the fields (a field was removed) matches nobody.
        }
    }
    return out;
}

Sort parse_sort(std::string_view text) {
    Sort s;
    s.name = text.empty() ? "-id" : std::string(text);
    std::string_view key = s.name;
    s.desc = !key.empty() && key[0] == '-';
    if (s.desc) key.remove_prefix(1);
    if (key == "id") {
        s.column = "c.id";
    } else if (key == "name") {
        s.column = "c.name";
    } else if (key == "first_seen_at" || key == "created_at") {
        s.column = "c.created_at";
        s.integer = true;
    } else if (key == "last_seen_at") {
        s.column = "c.last_seen_at";
        s.integer = true;
    } else {
        throw core::BadRequest("'sort' is id, name, first_seen_at or last_seen_at, with '-' for descending",
                               "invalid_sort", field_detail("sort"));
    }
    return s;
}

namespace {

std::string hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : bytes) {
        out.push_back(kDigits[b >> 4]);
        out.push_back(kDigits[b & 15]);
    }
    return out;
}

std::optional<std::string> unhex(std::string_view text) {
    if (text.size() % 2) return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < text.size(); i += 2) {
        int v = 0;
        auto r = std::from_chars(text.data() + i, text.data() + i + 2, v, 16);
        if (r.ec != std::errc() || r.ptr != text.data() + i + 2) return std::nullopt;
        out.push_back(static_cast<char>(v));
    }
    return out;
}

[[noreturn]] void bad_cursor() {
    throw core::BadRequest("'cursor' is not a cursor this listing handed out (same sort)", "invalid_cursor",
                           field_detail("cursor"));
}

}  // namespace

std::string make_cursor(const Sort& sort, const std::string& key, const std::string& id) {
    if (sort.column == "c.id") return id;
    return hex(sort.name + '\x1f' + key + '\x1f' + id);
}

SqlWhere after_cursor(const Sort& sort, std::string_view cursor) {
    SqlWhere w;
    const char* op = sort.desc ? "<" : ">";
    if (sort.column == "c.id") {
        if (cursor.empty() || cursor.size() > 64) bad_cursor();
        w.sql = fmt::format("c.id {} ?", op);
        w.params.emplace_back(std::string(cursor));
        return w;
    }
    auto raw = unhex(cursor);
    if (!raw) bad_cursor();
    auto first = raw->find('\x1f');
    auto second = first == std::string::npos ? std::string::npos : raw->find('\x1f', first + 1);
    if (second == std::string::npos || raw->substr(0, first) != sort.name) bad_cursor();
    std::string key = raw->substr(first + 1, second - first - 1);
    std::string id = raw->substr(second + 1);
    store::Value key_value = key;
    if (sort.integer) {
        std::int64_t v = 0;
        auto r = std::from_chars(key.data(), key.data() + key.size(), v);
        if (key.empty() || r.ec != std::errc() || r.ptr != key.data() + key.size()) bad_cursor();
        key_value = v;
    }
    w.sql = fmt::format("({0} {1} ? OR ({0} = ? AND c.id {1} ?))", sort.column, op);
    w.params = {key_value, key_value, id};
    return w;
}

}  // namespace parley::clients::internal

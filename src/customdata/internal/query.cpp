#include "customdata/internal/query.h"

#include <fmt/format.h>

#include <charconv>

#include "core/error.h"
#include "customdata/csv.h"
#include "customdata/internal/schema.h"
#include "customdata/internal/values.h"

namespace parley::customdata {

namespace {

constexpr std::size_t kMaxCursorBytes = 1024;
constexpr std::size_t kMaxPageLimit = 200;

[[noreturn]] void bad(std::string code, std::string message, std::string_view field) {
    throw core::BadRequest(std::move(message), std::move(code), json::array{json::object{{"field", field}}});
}

std::vector<std::string> split_commas(std::string_view text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        auto comma = text.find(',', start);
        out.emplace_back(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return out;
}

}  // namespace

RecordQuery parse_record_query(const std::vector<std::pair<std::string, std::string>>& params, bool with_limit) {
    RecordQuery q;
    for (const auto& [key, value] : params) {
        std::string_view k(key);
        if (k.rfind("filter[", 0) == 0) {
            // filter[FIELD] or filter[FIELD][OP]
            auto close = k.find(']', 7);
            if (close == std::string_view::npos) bad("invalid_filter", fmt::format("'{}' is not filter[FIELD][OP]", k.substr(0, 80)), key);
            Condition c;
            c.field = std::string(k.substr(7, close - 7));
            std::string_view rest = k.substr(close + 1);
            if (rest.empty()) {
                c.op = FilterOp::kEq;
            } else if (rest.size() > 2 && rest.front() == '[' && rest.back() == ']') {
                auto op = parse_filter_op(rest.substr(1, rest.size() - 2));
                if (!op) {
                    bad("invalid_filter",
                        fmt::format("'{}' is not an operator (eq ne gt gte lt lte contains in)",
                                    rest.substr(1, std::min<std::size_t>(rest.size() - 2, 40))),
                        key);
                }
                c.op = *op;
            } else {
                bad("invalid_filter", fmt::format("'{}' is not filter[FIELD][OP]", k.substr(0, 80)), key);
            }
            if (c.field.empty()) bad("invalid_filter", "a filter names a field: filter[FIELD][OP]=VALUE", key);
            if (c.op == FilterOp::kIn) {
                c.values = split_commas(value);
                if (c.values.size() > kMaxInValues) {
                    bad("invalid_filter", fmt::format("'in' takes at most {} values", kMaxInValues), key);
                }
            } else {
                c.values = {value};
            }
            q.filters.push_back(std::move(c));
            if (q.filters.size() > kMaxFilters) bad("invalid_filter", fmt::format("at most {} filters", kMaxFilters), key);
        } else if (k == "sort") {
            if (value.size() > 80) bad("invalid_sort", "'sort' is too long", "sort");
            q.sort = value;
        } else if (k == "q") {
            if (value.size() > kMaxSearchBytes) {
                bad("invalid_query", fmt::format("'q' is longer than {} bytes", kMaxSearchBytes), "q");
            }
            if (!valid_utf8(value)) bad("invalid_query", "'q' is not valid UTF-8", "q");
            q.q = value;
        } else if (k == "cursor") {
            if (value.size() > kMaxCursorBytes) bad("invalid_cursor", "'cursor' is not a cursor this API handed out", "cursor");
            q.cursor = value;
        } else if (k == "limit" && with_limit) {
            std::size_t n = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || end != value.data() + value.size() || n < 1 || n > kMaxPageLimit) {
                bad("invalid_limit", fmt::format("'limit' must be a whole number from 1 to {}", kMaxPageLimit), "limit");
            }
            q.limit = n;
        }
    }
    return q;
}

namespace internal {

namespace {

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(std::string_view in) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(kB64[(acc >> bits) & 0x3F]);
        }
    }
    if (bits > 0) out.push_back(kB64[(acc << (6 - bits)) & 0x3F]);
    return out;
}

std::optional<std::string> unbase64url(std::string_view in) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        const char* p = std::char_traits<char>::find(kB64, 64, c);
        if (!p) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(p - kB64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    return out;
}

/// The pseudo-fields id / created_at / updated_at as typed fields, for filters and sorts.
struct Column {
    Field field;
    std::string expr;
};

std::optional<Column> column_for(const Model& model, std::string_view name) {
    if (name == "id") {
        Field f;
        f.name = "id";
        f.type = FieldType::kReference;
        return Column{f, "t.rid"};
    }
    if (name == "created_at" || name == "updated_at") {
        Field f;
        f.name = std::string(name);
        f.type = FieldType::kDatetime;
        return Column{f, "t." + std::string(name)};
    }
    if (const Field* f = model.field(name)) return Column{*f, "t." + f->id};
    return std::nullopt;
}

store::Value filter_value(const Column& c, const std::string& text, const std::string& param) {
    store::Value v;
    if (auto error = value_from_text(c.field, text, v)) bad("invalid_filter", fmt::format("{}: {}", param, *error), param);
    return v;
}

std::string like_pattern(std::string_view text) {
    std::string out = "%";
    for (char c : text) {
        if (c == '%' || c == '_' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('%');
    return out;
}

json::value value_json(const store::Value& v) {
    if (auto* i = std::get_if<std::int64_t>(&v)) return *i;
    if (auto* d = std::get_if<double>(&v)) return *d;
    if (auto* s = std::get_if<std::string>(&v)) return json::string(*s);
    return nullptr;
}

}  // namespace

std::optional<std::int64_t> parse_record_id(std::string_view id) {
    if (id.empty() || id.size() > 19) return std::nullopt;
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
    if (ec != std::errc() || end != id.data() + id.size() || v < 1 || id[0] == '+') return std::nullopt;
    return v;
}

std::string fts_expression(std::string_view q) {
    std::vector<std::string> words;
    std::size_t i = 0;
    while (i < q.size() && words.size() < kMaxSearchTerms) {
        while (i < q.size() && (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r')) ++i;
        std::size_t start = i;
        while (i < q.size() && q[i] != ' ' && q[i] != '\t' && q[i] != '\n' && q[i] != '\r') ++i;
        std::string_view word = q.substr(start, i - start);
        bool has_word_char = false;
        for (char c : word) {
            auto u = static_cast<unsigned char>(c);
            if (u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                has_word_char = true;
                break;
            }
        }
        if (has_word_char) words.emplace_back(word);
    }
    // The last word also matches as a prefix (autocomplete) once it has three characters: shorter prefixes match
    // so many terms that FTS5 would merge thousands of lists.
    auto characters = [](const std::string& w) {
        std::size_t n = 0;
        for (char c : w) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
        return n;
    };
    std::string expr;
    for (std::size_t w = 0; w < words.size(); ++w) {
        if (!expr.empty()) expr.push_back(' ');
        expr.push_back('"');
        for (char c : words[w]) {
            if (c == '"') expr.push_back('"');
            expr.push_back(c);
        }
        expr.push_back('"');
        if (w + 1 == words.size() && characters(words[w]) >= 3) expr.push_back('*');
    }
    return expr;
}

SqlQuery build_query(const Model& model, const RecordQuery& query, bool paged) {
    SqlQuery out;
    std::string where;
    auto and_ = [&](const std::string& term) {
        where += where.empty() ? " WHERE " : " AND ";
        where += term;
    };
    std::string from = fmt::format(" FROM {} t", model.table());
    std::string search;
    if (!query.q.empty()) {
        search = fts_expression(query.q);
        if (search.empty() || search_expression(model, "").empty()) out.nothing = true;
    }

    // Sort.
    std::string sort = query.sort;
    bool desc = false;
    if (!sort.empty() && sort[0] == '-') {
        desc = true;
        sort.erase(0, 1);
    }
    std::string key;  // "" = rid
    bool relevance = false;
    if (sort.empty()) {
        // With q and no sort: newest first, which FTS5 answers in rowid order without ranking every match.
        if (desc) bad("invalid_sort", "'sort' names a field: FIELD or -FIELD", "sort");
        if (!search.empty()) desc = true;
    } else if (sort == "relevance") {
        if (query.q.empty()) bad("invalid_sort", "sort=relevance needs q", "sort");
        if (desc) bad("invalid_sort", "relevance sorts best first only", "sort");
        relevance = !search.empty();
    } else if (sort != "id") {
        auto c = column_for(model, sort);
        if (!c) bad("invalid_sort", fmt::format("'{}' is not a field of model '{}'", sort.substr(0, 64), model.name), "sort");
        key = c->expr;
    }
    if (relevance) key = "m.score";
    out.sort_spec = relevance ? "relevance" : (desc ? "-" : "") + (sort.empty() ? std::string("id") : sort);
    out.keyed = !key.empty();

    if (!search.empty() && !out.nothing) {
        if (relevance) {
            from += fmt::format(" JOIN (SELECT rowid AS rid, rank AS score FROM {0} WHERE {0} MATCH ?) m ON m.rid = t.rid",
                                model.fts_table());
        } else {
            and_(fmt::format("t.rid IN (SELECT rowid FROM {0} WHERE {0} MATCH ?)", model.fts_table()));
        }
        out.params.emplace_back(search);
    }

    // Filters.
    for (const auto& c : query.filters) {
        std::string param = fmt::format("filter[{}]", c.field.substr(0, 64));
        auto col = column_for(model, c.field);
        if (!col) bad("invalid_filter", fmt::format("'{}' is not a field of model '{}'", c.field.substr(0, 64), model.name), param);
        const auto type = col->field.type;
        const std::string& text = c.values.empty() ? std::string() : c.values.front();
        switch (c.op) {
            case FilterOp::kEq:
            case FilterOp::kNe: {
                if (type == FieldType::kJson) {
                    store::Value v = filter_value(*col, text, param);
                    and_(fmt::format("{} {} ?", col->expr, c.op == FilterOp::kEq ? "IS" : "IS NOT"));
                    out.params.push_back(std::move(v));
                    break;
                }
                store::Value v = filter_value(*col, text, param);
                if (std::holds_alternative<std::nullptr_t>(v)) {
                    and_(fmt::format("{} {}", col->expr, c.op == FilterOp::kEq ? "IS NULL" : "IS NOT NULL"));
                } else {
                    and_(fmt::format("{} {} ?", col->expr, c.op == FilterOp::kEq ? "=" : "IS NOT"));
                    out.params.push_back(std::move(v));
                }
                break;
            }
            case FilterOp::kGt:
            case FilterOp::kGte:
            case FilterOp::kLt:
            case FilterOp::kLte: {
                if (type == FieldType::kJson || type == FieldType::kBoolean) {
                    bad("invalid_filter", fmt::format("{}: {} fields cannot be compared with gt/gte/lt/lte", param,
                                                      field_type_name(type)), param);
                }
                store::Value v = filter_value(*col, text, param);
                if (std::holds_alternative<std::nullptr_t>(v)) bad("invalid_filter", param + ": needs a value", param);
                const char* op = c.op == FilterOp::kGt ? ">" : c.op == FilterOp::kGte ? ">=" : c.op == FilterOp::kLt ? "<" : "<=";
                and_(fmt::format("{} {} ?", col->expr, op));
                out.params.push_back(std::move(v));
                break;
            }
            case FilterOp::kContains: {
                if (type != FieldType::kText && type != FieldType::kSelect && type != FieldType::kJson) {
                    bad("invalid_filter", fmt::format("{}: 'contains' works on text, select and json fields", param), param);
                }
                if (text.empty()) bad("invalid_filter", param + ": 'contains' needs a value", param);
                and_(fmt::format("{} LIKE ? ESCAPE '\\'", col->expr));
                out.params.emplace_back(like_pattern(text));
                break;
            }
            case FilterOp::kIn: {
                if (type == FieldType::kJson) bad("invalid_filter", param + ": json fields do not take 'in'", param);
                std::string list;
                for (const auto& item : c.values) {
                    store::Value v = filter_value(*col, item, param);
                    if (std::holds_alternative<std::nullptr_t>(v)) bad("invalid_filter", param + ": an 'in' value is empty", param);
                    list += list.empty() ? "?" : ", ?";
                    out.params.push_back(std::move(v));
                }
                and_(fmt::format("{} IN ({})", col->expr, list));
                break;
            }
        }
    }

    // Cursor: keyset continuation after the last row of the previous page.
    const std::string rid = "t.rid";
    if (paged && !query.cursor.empty()) {
        auto raw = unbase64url(query.cursor);
        json::value doc;
        if (raw) {
            boost::system::error_code ec;
            doc = json::parse(*raw, ec);
            if (ec) raw.reset();
        }
        if (!raw || !doc.is_array() || doc.as_array().size() != 3 || !doc.as_array()[0].is_string() ||
            !doc.as_array()[2].is_int64()) {
            bad("invalid_cursor", "'cursor' is not a cursor this API handed out", "cursor");
        }
        const auto& arr = doc.as_array();
        if (std::string_view(arr[0].as_string()) != out.sort_spec) {
            bad("invalid_cursor", "the cursor belongs to another sort order", "cursor");
        }
        std::int64_t last = arr[2].as_int64();
        if (!out.keyed) {
            and_(fmt::format("{} {} ?", rid, desc ? "<" : ">"));
            out.params.emplace_back(last);
        } else {
            store::Value k;
            const auto& kv = arr[1];
            if (kv.is_int64()) k = kv.as_int64();
            else if (kv.is_uint64()) k = static_cast<double>(kv.as_uint64());
            else if (kv.is_double()) k = kv.as_double();
            else if (kv.is_string()) k = std::string(kv.as_string());
            else if (!kv.is_null()) bad("invalid_cursor", "'cursor' is not a cursor this API handed out", "cursor");
            const bool null = std::holds_alternative<std::nullptr_t>(k);
            if (!desc) {
                if (null) {
                    and_(fmt::format("(({0} IS NULL AND {1} > ?) OR {0} IS NOT NULL)", key, rid));
                    out.params.emplace_back(last);
                } else {
                    and_(fmt::format("({0} > ? OR ({0} = ? AND {1} > ?))", key, rid));
                    out.params.push_back(k);
                    out.params.push_back(k);
                    out.params.emplace_back(last);
                }
            } else {
                if (null) {
                    and_(fmt::format("({0} IS NULL AND {1} < ?)", key, rid));
                    out.params.emplace_back(last);
                } else {
                    and_(fmt::format("({0} < ? OR ({0} = ? AND {1} < ?) OR {0} IS NULL)", key, rid));
                    out.params.push_back(k);
                    out.params.push_back(k);
                    out.params.emplace_back(last);
                }
            }
        }
    }

    const char* dir = desc ? "DESC" : "ASC";
    std::string order = out.keyed ? fmt::format(" ORDER BY {} {}, {} {}", key, dir, rid, dir)
                                  : fmt::format(" ORDER BY {} {}", rid, dir);
    out.sql = "SELECT " + select_columns(model) + (out.keyed ? ", " + key : std::string()) + from + where + order;
    if (paged) {
        out.sql += " LIMIT ?";
        out.params.emplace_back(static_cast<std::int64_t>(query.limit + 1));
    }
    return out;
}

std::string cursor_after(const Model& model, const SqlQuery& query, const store::Row& row) {
    json::array doc{json::value(query.sort_spec),
                    query.keyed ? value_json(row[3 + model.fields.size()]) : json::value(nullptr),
                    json::value(row.integer(0))};
    return base64url(json::serialize(doc));
}

}  // namespace internal
}  // namespace parley::customdata

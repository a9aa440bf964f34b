#include "operator/internal/segment.h"

#include <fmt/format.h>

#include <charconv>
#include <optional>

#include "core/error.h"

namespace parley::operators::internal {

namespace json = boost::json;

namespace {

[[noreturn]] void invalid(const std::string& path, const std::string& message) {
    throw core::Unprocessable(fmt::format("condition {}: {}", path.empty() ? "(root)" : path, message),
                              "invalid_condition", json::array{json::object{{"path", path}, {"message", message}}});
}

std::optional<SegmentCondition::Op> parse_op(std::string_view s) {
    using Op = SegmentCondition::Op;
    static const std::pair<std::string_view, Op> kOps[] = {
        {"eq", Op::kEq},   {"ne", Op::kNe},         {"gt", Op::kGt},   {"gte", Op::kGte},       {"lt", Op::kLt},
        {"lte", Op::kLte}, {"contains", Op::kContains}, {"starts_with", Op::kStartsWith}, {"in", Op::kIn},
        {"is_set", Op::kIsSet}, {"is_empty", Op::kIsEmpty}};
    for (const auto& [name, op] : kOps) {
        if (name == s) return op;
    }
    return std::nullopt;
}

std::optional<double> number_of(const json::value& v) {
    if (v.is_int64()) return static_cast<double>(v.as_int64());
    if (v.is_uint64()) return static_cast<double>(v.as_uint64());
    if (v.is_double()) return v.as_double();
    if (v.is_string()) {
        std::string_view s = v.as_string();
        if (s.empty()) return std::nullopt;
        double d = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (ec == std::errc() && end == s.data() + s.size()) return d;
    }
    return std::nullopt;
}

std::string text_of(const json::value& v) {
    if (v.is_string()) return std::string(v.as_string());
    return json::serialize(v);
}

bool equal(const json::value& a, const json::value& b) {
    if (a.is_string() && b.is_string()) return a.as_string() == b.as_string();
    auto x = number_of(a);
    auto y = number_of(b);
    if (x && y) return *x == *y;
    if (a.is_bool() || b.is_bool()) return a == b || text_of(a) == text_of(b);
    return a == b;
}

/// -1, 0, 1; numbers compare as numbers, everything else as text.
int compare(const json::value& a, const json::value& b) {
    auto x = number_of(a);
    auto y = number_of(b);
    if (x && y) return *x < *y ? -1 : *x > *y ? 1 : 0;
    std::string s = text_of(a), t = text_of(b);
    return s < t ? -1 : s > t ? 1 : 0;
}

struct Parser {
    std::size_t nodes = 0;

    SegmentCondition parse(const json::value& v, const std::string& path, std::size_t depth);
};

}  // namespace

// SegmentCondition's friend: the parser builds nodes through it.
struct SegmentBuilder {
    static SegmentCondition make(SegmentCondition::Kind kind, std::vector<SegmentCondition> children,
                                 std::vector<std::string> path, SegmentCondition::Op op, json::value value);
};

namespace {

SegmentCondition Parser::parse(const json::value& v, const std::string& path, std::size_t depth) {
    using Kind = SegmentCondition::Kind;
    if (depth > kMaxSegmentDepth) invalid(path, fmt::format("nested deeper than {} levels", kMaxSegmentDepth));
    if (++nodes > kMaxSegmentNodes) invalid(path, fmt::format("more than {} conditions", kMaxSegmentNodes));
    if (!v.is_object()) invalid(path, "a condition is an object");
    const auto& o = v.get_object();
    auto list = [&](std::string_view key, Kind kind) {
        if (o.size() != 1) invalid(path, fmt::format("'{}' stands alone in its object", key));
        const auto& arr = o.at(key);
        if (!arr.is_array() || arr.get_array().empty()) invalid(path + "." + std::string(key), "a non-empty array");
        std::vector<SegmentCondition> children;
        std::size_t i = 0;
        for (const auto& c : arr.get_array()) {
            children.push_back(parse(c, fmt::format("{}.{}[{}]", path, key, i++), depth + 1));
        }
        return SegmentBuilder::make(kind, std::move(children), {}, SegmentCondition::Op::kEq, nullptr);
    };
    if (o.contains("all")) return list("all", Kind::kAll);
    if (o.contains("any")) return list("any", Kind::kAny);
    if (o.contains("not")) {
        if (o.size() != 1) invalid(path, "'not' stands alone in its object");
        std::vector<SegmentCondition> children;
        children.push_back(parse(o.at("not"), path + ".not", depth + 1));
        return SegmentBuilder::make(Kind::kNot, std::move(children), {}, SegmentCondition::Op::kEq, nullptr);
    }
    for (const auto& [key, _] : o) {
        if (key != "var" && key != "op" && key != "value") invalid(path, fmt::format("unknown key '{}'", std::string_view(key)));
    }
    const auto* var = o.if_contains("var");
    if (!var || !var->is_string() || var->get_string().empty()) invalid(path + ".var", "a non-empty string is required");
    std::string_view var_text = var->get_string();
    if (var_text.size() > kMaxSegmentVarBytes) invalid(path + ".var", fmt::format("longer than {} bytes", kMaxSegmentVarBytes));
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (true) {
        auto dot = var_text.find('.', start);
        std::string part(var_text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
        if (part.empty()) invalid(path + ".var", "an empty path segment");
        parts.push_back(std::move(part));
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    const auto* op_value = o.if_contains("op");
    if (!op_value || !op_value->is_string()) invalid(path + ".op", "one of eq ne gt gte lt lte contains starts_with in is_set is_empty");
    auto op = parse_op(op_value->get_string());
    if (!op) invalid(path + ".op", "one of eq ne gt gte lt lte contains starts_with in is_set is_empty");
    const auto* value = o.if_contains("value");
    bool unary = *op == SegmentCondition::Op::kIsSet || *op == SegmentCondition::Op::kIsEmpty;
    if (unary && value) invalid(path + ".value", "is_set and is_empty take no value");
    if (!unary && !value) invalid(path + ".value", "a value is required");
    if (*op == SegmentCondition::Op::kIn && !value->is_array()) invalid(path + ".value", "'in' takes an array");
    if (!unary && *op != SegmentCondition::Op::kIn && (value->is_object() || value->is_array())) {
        invalid(path + ".value", "a string, number, boolean or null");
    }
    return SegmentBuilder::make(Kind::kCompare, {}, std::move(parts), *op, value ? *value : json::value(nullptr));
}

}  // namespace

SegmentCondition SegmentBuilder::make(SegmentCondition::Kind kind, std::vector<SegmentCondition> children,
                                      std::vector<std::string> path, SegmentCondition::Op op, json::value value) {
    SegmentCondition c;
    c.kind_ = kind;
    c.children_ = std::move(children);
    c.path_ = std::move(path);
    c.op_ = op;
    c.value_ = std::move(value);
    return c;
}

SegmentCondition SegmentCondition::parse(const json::value& value) {
    Parser parser;
    return parser.parse(value, "", 0);
}

bool SegmentCondition::matches(const json::object& card) const {
    switch (kind_) {
        case Kind::kAll:
            for (const auto& c : children_) {
                if (!c.matches(card)) return false;
            }
            return true;
        case Kind::kAny:
            for (const auto& c : children_) {
                if (c.matches(card)) return true;
            }
            return false;
        case Kind::kNot: return !children_.front().matches(card);
        case Kind::kCompare: break;
    }
    const json::value* at = nullptr;
    const json::object* scope = &card;
    for (std::size_t i = 0; i < path_.size(); ++i) {
        at = scope ? scope->if_contains(path_[i]) : nullptr;
        if (!at) break;
        scope = at->if_object();
        if (i + 1 < path_.size() && !scope) {
            at = nullptr;
            break;
        }
    }
    bool set = at && !at->is_null();
    bool empty = !set || (at->is_string() && at->get_string().empty()) || (at->is_array() && at->get_array().empty()) ||
                 (at->is_object() && at->get_object().empty());
    switch (op_) {
        case Op::kIsSet: return set;
        case Op::kIsEmpty: return empty;
        case Op::kNe: return !set || !equal(*at, value_);
        default: break;
    }
    if (!set) return false;
    switch (op_) {
        case Op::kEq: return equal(*at, value_);
        case Op::kGt: return compare(*at, value_) > 0;
        case Op::kGte: return compare(*at, value_) >= 0;
        case Op::kLt: return compare(*at, value_) < 0;
        case Op::kLte: return compare(*at, value_) <= 0;
        case Op::kContains:
            if (at->is_array()) {
                for (const auto& item : at->get_array()) {
                    if (equal(item, value_)) return true;
                }
                return false;
            }
            return text_of(*at).find(text_of(value_)) != std::string::npos;
        case Op::kStartsWith: return text_of(*at).rfind(text_of(value_), 0) == 0;
        case Op::kIn:
            for (const auto& item : value_.get_array()) {
                if (equal(*at, item)) return true;
            }
            return false;
        default: return false;
    }
}

}  // namespace parley::operators::internal

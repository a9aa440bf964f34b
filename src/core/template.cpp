#include "core/template.h"

#include <charconv>

namespace parley::core {

namespace json = boost::json;

namespace {

bool is_path_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// ---- UTF-8 case mapping -------------------------------------------------------------------------------------

char32_t upper_of(char32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
    if (c == 0xFF) return 0x178;
    if (c >= 0x100 && c <= 0x17F) {
        if ((c <= 0x137 || (c >= 0x14A && c <= 0x177)) && (c & 1)) return c - 1;
        if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && !(c & 1)) return c - 1;
        return c;
    }
    if (c >= 0x3B1 && c <= 0x3C9) return c == 0x3C2 ? 0x3A3 : c - 32;
    if (c == 0x3AC) return 0x386;
    if (c >= 0x3AD && c <= 0x3AF) return c - 37;
    if (c == 0x3CC) return 0x38C;
    if (c == 0x3CD || c == 0x3CE) return c - 63;
    if (c >= 0x430 && c <= 0x44F) return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    if (((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F)) && (c & 1))
        return c - 1;
    if (c >= 0x4C1 && c <= 0x4CE && !(c & 1)) return c - 1;
    if (c == 0x4CF) return 0x4C0;
    return c;
}

char32_t lower_of(char32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c == 0x178) return 0xFF;
    if (c >= 0x100 && c <= 0x17F) {
        if ((c <= 0x137 || (c >= 0x14A && c <= 0x177)) && !(c & 1)) return c + 1;
        if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c & 1)) return c + 1;
        return c;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if (((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F)) && !(c & 1))
        return c + 1;
    if (c >= 0x4C1 && c <= 0x4CE && (c & 1)) return c + 1;
    if (c == 0x4C0) return 0x4CF;
    return c;
}

void append_utf8(char32_t c, std::string& out) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
}

template <typename Map>
std::string map_case(std::string_view text, Map map) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        auto b0 = static_cast<unsigned char>(text[i]);
        if (b0 < 0x80) {
            out.push_back(static_cast<char>(map(b0)));
            ++i;
            continue;
        }
        // Only two-byte sequences hold letters we map; everything else is copied byte for byte.
        if ((b0 & 0xE0) == 0xC0 && i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80) {
            char32_t c = (static_cast<char32_t>(b0 & 0x1F) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3F);
            if (c >= 0x80) {
                append_utf8(map(c), out);
                i += 2;
                continue;
            }
        }
        out.push_back(text[i]);
        ++i;
    }
    return out;
}

void apply_filter(TemplateFilter filter, const std::string& arg, const json::value* value, std::string& text,
                  bool& present) {
    switch (filter) {
        case TemplateFilter::kDefault:
            if (!present || text.empty()) {
                text = arg;
                present = true;
            }
            return;
        case TemplateFilter::kUpper:
            text = utf8_upper(text);
            return;
        case TemplateFilter::kLower:
            text = utf8_lower(text);
            return;
        case TemplateFilter::kJson:
            (void)value;
            return;
    }
}

}  // namespace

std::string utf8_upper(std::string_view text) { return map_case(text, upper_of); }
std::string utf8_lower(std::string_view text) { return map_case(text, lower_of); }

TemplatePath parse_template_path(std::string_view text) {
    TemplatePath path;
    std::size_t start = 0;
    while (true) {
        std::size_t dot = text.find('.', start);
        std::string_view seg = text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (seg.empty()) return {};
        for (char c : seg) {
            if (!is_path_char(c)) return {};
        }
        PathSegment s;
        s.key = std::string(seg);
        std::int64_t idx = 0;
        auto [ptr, ec] = std::from_chars(seg.data(), seg.data() + seg.size(), idx);
        if (ec == std::errc() && ptr == seg.data() + seg.size() && idx >= 0) s.index = idx;
        path.push_back(std::move(s));
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return path;
}

std::string path_to_string(const TemplatePath& path) {
    std::string out;
    for (const auto& s : path) {
        if (!out.empty()) out.push_back('.');
        out += s.key;
    }
    return out;
}

const json::value* walk_path(const json::value* root, std::span<const PathSegment> segments) {
    const json::value* cur = root;
    for (const auto& seg : segments) {
        if (!cur) return nullptr;
        if (const auto* obj = cur->if_object()) {
            auto it = obj->find(seg.key);
            cur = it == obj->end() ? nullptr : &it->value();
        } else if (const auto* arr = cur->if_array()) {
            if (seg.index < 0 || static_cast<std::size_t>(seg.index) >= arr->size()) return nullptr;
            cur = &(*arr)[static_cast<std::size_t>(seg.index)];
        } else {
            return nullptr;
        }
    }
    return cur;
}

const json::value* JsonScope::resolve(std::span<const PathSegment> path, json::value&) const {
    if (path.empty()) return nullptr;
    auto it = root_.find(path[0].key);
    if (it == root_.end()) return nullptr;
    return walk_path(&it->value(), path.subspan(1));
}

void append_value_text(const json::value& value, std::string& out) {
    switch (value.kind()) {
        case json::kind::string:
            out.append(value.get_string().data(), value.get_string().size());
            return;
        case json::kind::null:
            return;
        case json::kind::int64: {
            char buf[24];
            auto r = std::to_chars(buf, buf + sizeof buf, value.get_int64());
            out.append(buf, r.ptr);
            return;
        }
        case json::kind::uint64: {
            char buf[24];
            auto r = std::to_chars(buf, buf + sizeof buf, value.get_uint64());
            out.append(buf, r.ptr);
            return;
        }
        case json::kind::double_: {
            double d = value.get_double();
            if (d == static_cast<double>(static_cast<std::int64_t>(d)) && d > -1e15 && d < 1e15) {
                char buf[24];
                auto r = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(d));
                out.append(buf, r.ptr);
            } else {
                char buf[32];
                auto r = std::to_chars(buf, buf + sizeof buf, d);
                out.append(buf, r.ptr);
            }
            return;
        }
        case json::kind::bool_:
            out += value.get_bool() ? "true" : "false";
            return;
        default:
            out += json::serialize(value);
            return;
    }
}

std::variant<Template, TemplateError> Template::compile(std::string_view source) {
    Template t;
    t.source_ = std::string(source);
    const std::string& s = t.source_;
    if (s.size() > UINT32_MAX / 2) return TemplateError{0, "template too long"};
    std::size_t lit_begin = 0;
    std::size_t i = 0;
    auto flush = [&](std::size_t end, std::int32_t hole) {
        t.pieces_.push_back(Piece{static_cast<std::uint32_t>(lit_begin), static_cast<std::uint32_t>(end - lit_begin), hole});
    };
    while (i < s.size()) {
        std::size_t open = s.find("{{", i);
        if (open == std::string::npos) break;
        std::size_t p = open + 2;
        auto skip_ws = [&] {
            while (p < s.size() && is_space(s[p])) ++p;
        };
        skip_ws();
        std::size_t path_begin = p;
        while (p < s.size() && (is_path_char(s[p]) || s[p] == '.')) ++p;
        if (p == path_begin) {
            if (p >= s.size()) return TemplateError{open, "unterminated '{{': expected a path and '}}'"};
            return TemplateError{p, "expected a variable path after '{{'"};
        }
        Hole hole;
        hole.path = parse_template_path(std::string_view(s).substr(path_begin, p - path_begin));
        if (hole.path.empty()) return TemplateError{path_begin, "malformed path (empty segment between dots)"};
        skip_ws();
        while (p < s.size() && s[p] == '|') {
            ++p;
            skip_ws();
            std::size_t name_begin = p;
            while (p < s.size() && ((s[p] >= 'a' && s[p] <= 'z') || s[p] == '_')) ++p;
            std::string_view name = std::string_view(s).substr(name_begin, p - name_begin);
            if (name.empty()) return TemplateError{name_begin, "expected a filter name after '|'"};
            skip_ws();
            if (name == "upper") {
                hole.filters.emplace_back(TemplateFilter::kUpper, std::string());
            } else if (name == "lower") {
                hole.filters.emplace_back(TemplateFilter::kLower, std::string());
            } else if (name == "json") {
                hole.filters.emplace_back(TemplateFilter::kJson, std::string());
            } else if (name == "default") {
                if (p >= s.size() || s[p] != ':') return TemplateError{p, "filter 'default' needs ': \"text\"'"};
                ++p;
                skip_ws();
                if (p >= s.size() || (s[p] != '"' && s[p] != '\''))
                    return TemplateError{p, "filter 'default' needs a quoted text argument"};
                char quote = s[p++];
                std::string arg;
                bool closed = false;
                while (p < s.size()) {
                    char c = s[p++];
                    if (c == '\\' && p < s.size()) {
                        arg.push_back(s[p++]);
                    } else if (c == quote) {
                        closed = true;
                        break;
                    } else {
                        arg.push_back(c);
                    }
                }
                if (!closed) return TemplateError{p, "unterminated quoted argument of 'default'"};
                hole.filters.emplace_back(TemplateFilter::kDefault, std::move(arg));
                skip_ws();
            } else {
                return TemplateError{name_begin, "unknown filter '" + std::string(name) +
                                                     "' (known: default, upper, lower, json)"};
            }
        }
        if (p + 1 >= s.size() || s[p] != '}' || s[p + 1] != '}') {
            if (p >= s.size()) return TemplateError{open, "unterminated '{{': missing '}}'"};
            return TemplateError{p, "expected '}}' or '|' in template"};
        }
        p += 2;
        flush(open, static_cast<std::int32_t>(t.holes_.size()));
        t.holes_.push_back(std::move(hole));
        lit_begin = p;
        i = p;
    }
    if (lit_begin < s.size()) flush(s.size(), -1);
    return t;
}

void Template::render_hole(const Hole& hole, const TemplateScope& scope, std::string& out) const {
    json::value scratch;
    const json::value* value = scope.resolve(hole.path, scratch);
    if (hole.filters.empty()) {
        if (value) append_value_text(*value, out);
        return;
    }
    std::string text;
    bool present = value != nullptr && !value->is_null();
    if (present) append_value_text(*value, text);
    for (const auto& [filter, arg] : hole.filters) {
        if (filter == TemplateFilter::kJson) {
            // The value as JSON; once a filter has produced text, that text is quoted as a JSON string.
            if (&filter == &hole.filters.front().first) {
                text = value ? json::serialize(*value) : "null";
            } else {
                text = json::serialize(json::value(text));
            }
            present = true;
            continue;
        }
        apply_filter(filter, arg, value, text, present);
    }
    out += text;
}

void Template::render(const TemplateScope& scope, std::string& out) const {
    for (const auto& piece : pieces_) {
        out.append(source_.data() + piece.literal_begin, piece.literal_size);
        if (piece.hole >= 0) render_hole(holes_[static_cast<std::size_t>(piece.hole)], scope, out);
    }
}

std::string Template::render(const TemplateScope& scope) const {
    std::string out;
    render(scope, out);
    return out;
}

json::value Template::render_value(const TemplateScope& scope) const {
    if (holes_.size() == 1 && pieces_.size() == 1 && pieces_[0].literal_size == 0 && holes_[0].filters.empty()) {
        json::value scratch;
        const json::value* value = scope.resolve(holes_[0].path, scratch);
        if (!value) return json::string();
        return *value;
    }
    if (holes_.empty()) return json::string(source_);
    return json::string(render(scope));
}

std::vector<const TemplatePath*> Template::paths() const {
    std::vector<const TemplatePath*> out;
    out.reserve(holes_.size());
    for (const auto& h : holes_) out.push_back(&h.path);
    return out;
}

}  // namespace parley::core

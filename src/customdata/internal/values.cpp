#include "customdata/internal/values.h"

#include <fmt/format.h>
#include <unicode/regex.h>
#include <unicode/unistr.h>

#include <charconv>
#include <cmath>
#include <cstring>

#include "core/json.h"
#include "core/template.h"
#include "customdata/csv.h"

namespace parley::customdata::internal {

namespace {

constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53
constexpr std::int32_t kRegexTimeLimit = 20;              // ICU "time limit" units (~ms of matching)

bool digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

int to_int(std::string_view s) {
    int v = 0;
    for (char c : s) v = v * 10 + (c - '0');
    return v;
}

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int m) {
    static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

// Howard Hinnant's days_from_civil / civil_from_days.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, int& y, unsigned& m, unsigned& d) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t yy = static_cast<std::int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = static_cast<int>(yy + (m <= 2));
}

bool valid_ymd(int y, int m, int d) { return y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m); }

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::size_t code_points(std::string_view s) {
    std::size_t n = 0;
    for (char c : s) {
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
    }
    return n;
}

void store_number(double v, store::Value& out) {
    if (std::trunc(v) == v && std::fabs(v) < kMaxExactInteger) {
        out = static_cast<std::int64_t>(v);
    } else {
        out = v;
    }
}

std::optional<std::string> number_from_text(std::string_view text, store::Value& out) {
    std::string s(trim(text));
    if (s.find('.') == std::string::npos) {
        auto comma = s.find(',');
        if (comma != std::string::npos && s.find(',', comma + 1) == std::string::npos) s[comma] = '.';
    }
    if (!s.empty() && s.front() == '+') s.erase(0, 1);
    double v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) {
        return fmt::format("'{}' is not a number", text.substr(0, 40));
    }
    store_number(v, out);
    return std::nullopt;
}

std::optional<std::string> reference_from_text(std::string_view text, store::Value& out) {
    text = trim(text);
    std::int64_t id = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (!digits(text) || ec != std::errc() || end != text.data() + text.size() || id < 1) {
        return fmt::format("'{}' is not a record id", text.substr(0, 40));
    }
    out = id;
    return std::nullopt;
}

}  // namespace

std::optional<std::string> parse_date(std::string_view text) {
    text = trim(text);
    int y = 0, m = 0, d = 0;
    if (text.size() == 10 && text[4] == '-' && text[7] == '-' && digits(text.substr(0, 4)) && digits(text.substr(5, 2)) &&
        digits(text.substr(8, 2))) {
        y = to_int(text.substr(0, 4));
        m = to_int(text.substr(5, 2));
        d = to_int(text.substr(8, 2));
    } else if (text.size() == 10 && text[2] == '.' && text[5] == '.' && digits(text.substr(0, 2)) &&
               digits(text.substr(3, 2)) && digits(text.substr(6, 4))) {
        d = to_int(text.substr(0, 2));
        m = to_int(text.substr(3, 2));
        y = to_int(text.substr(6, 4));
    } else {
        return std::nullopt;
    }
    if (!valid_ymd(y, m, d)) return std::nullopt;
    return fmt::format("{:04}-{:02}-{:02}", y, m, d);
}

std::optional<std::int64_t> parse_datetime(std::string_view text) {
    text = trim(text);
    if (text.size() < 10) return std::nullopt;
    auto date = parse_date(text.substr(0, 10));
    if (!date || text[4] != '-') return std::nullopt;
    int y = to_int(std::string_view(*date).substr(0, 4));
    int mo = to_int(std::string_view(*date).substr(5, 2));
    int d = to_int(std::string_view(*date).substr(8, 2));
    std::int64_t ms = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86'400'000;
    std::string_view rest = text.substr(10);
    if (rest.empty()) return ms;
    if (rest[0] != 'T' && rest[0] != 't' && rest[0] != ' ') return std::nullopt;
    rest.remove_prefix(1);
    if (rest.size() < 5 || rest[2] != ':' || !digits(rest.substr(0, 2)) || !digits(rest.substr(3, 2))) return std::nullopt;
    int hh = to_int(rest.substr(0, 2));
    int mm = to_int(rest.substr(3, 2));
    int ss = 0;
    int frac_ms = 0;
    rest.remove_prefix(5);
    if (!rest.empty() && rest[0] == ':') {
        if (rest.size() < 3 || !digits(rest.substr(1, 2))) return std::nullopt;
        ss = to_int(rest.substr(1, 2));
        rest.remove_prefix(3);
        if (!rest.empty() && (rest[0] == '.' || rest[0] == ',')) {
            rest.remove_prefix(1);
            std::size_t n = 0;
            while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') ++n;
            if (n == 0 || n > 9) return std::nullopt;
            std::string_view frac = rest.substr(0, n);
            int scale = 100;
            for (std::size_t i = 0; i < std::min<std::size_t>(3, n); ++i) {
                frac_ms += (frac[i] - '0') * scale;
                scale /= 10;
            }
            rest.remove_prefix(n);
        }
    }
    if (hh > 23 || mm > 59 || ss > 59) return std::nullopt;
    std::int64_t offset_minutes = 0;
    if (rest == "Z" || rest == "z") {
        rest = {};
    } else if (!rest.empty() && (rest[0] == '+' || rest[0] == '-')) {
        int sign = rest[0] == '-' ? -1 : 1;
        std::string_view off = rest.substr(1);
        int oh = 0, om = 0;
        if (off.size() == 5 && off[2] == ':' && digits(off.substr(0, 2)) && digits(off.substr(3, 2))) {
            oh = to_int(off.substr(0, 2));
            om = to_int(off.substr(3, 2));
        } else if (off.size() == 4 && digits(off)) {
            oh = to_int(off.substr(0, 2));
            om = to_int(off.substr(2, 2));
        } else if (off.size() == 2 && digits(off)) {
            oh = to_int(off);
        } else {
            return std::nullopt;
        }
        if (oh > 23 || om > 59) return std::nullopt;
        offset_minutes = sign * (oh * 60 + om);
        rest = {};
    }
    if (!rest.empty()) return std::nullopt;
    ms += (static_cast<std::int64_t>(hh) * 3600 + mm * 60 + ss) * 1000 + frac_ms - offset_minutes * 60'000;
    return ms;
}

void append_datetime(std::string& out, std::int64_t ms) {
    std::int64_t days = ms >= 0 ? ms / 86'400'000 : -((-ms + 86'399'999) / 86'400'000);
    std::int64_t rem = ms - days * 86'400'000;
    int y = 0;
    unsigned m = 0, d = 0;
    civil_from_days(days, y, m, d);
    auto hh = rem / 3'600'000;
    auto mi = (rem / 60'000) % 60;
    auto ss = (rem / 1000) % 60;
    auto mss = rem % 1000;
    fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", y, m, d, hh, mi, ss, mss);
}

std::string format_datetime(std::int64_t ms) {
    std::string out;
    append_datetime(out, ms);
    return out;
}

std::optional<std::string> value_from_text(const Field& field, std::string_view text, store::Value& out) {
    if (text.empty()) {
        out = nullptr;
        return std::nullopt;
    }
    switch (field.type) {
        case FieldType::kText:
        case FieldType::kSelect:
            out = std::string(text);
            return std::nullopt;
        case FieldType::kNumber:
            return number_from_text(text, out);
        case FieldType::kBoolean: {
            std::string t = core::utf8_lower(trim(text));
            if (t == "true" || t == "1" || t == "yes" || t == "y" || t == "так") {
                out = std::int64_t{1};
            } else if (t == "false" || t == "0" || t == "no" || t == "n" || t == "ні") {
                out = std::int64_t{0};
            } else {
                return fmt::format("'{}' is not a boolean (true/false, 1/0, yes/no)", text.substr(0, 40));
            }
            return std::nullopt;
        }
        case FieldType::kDate: {
            auto d = parse_date(text);
            if (!d) return fmt::format("'{}' is not a date (YYYY-MM-DD)", text.substr(0, 40));
            out = std::move(*d);
            return std::nullopt;
        }
        case FieldType::kDatetime: {
            auto t = parse_datetime(text);
            if (!t) return fmt::format("'{}' is not a date-time (ISO 8601, e.g. 2024-05-01T10:00:00Z)", text.substr(0, 40));
            out = *t;
            return std::nullopt;
        }
        case FieldType::kJson: {
            if (text.size() > kMaxJsonValueBytes) return fmt::format("the JSON value is longer than {} bytes", kMaxJsonValueBytes);
            boost::system::error_code ec;
            json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
            if (ec) return "the cell is not valid JSON";
            out = json::serialize(v);
            return std::nullopt;
        }
        case FieldType::kReference:
            return reference_from_text(text, out);
    }
    return "unsupported type";
}

std::optional<std::string> value_from_json(const Field& field, const json::value& value, bool lenient,
                                           store::Value& out) {
    if (value.is_null()) {
        out = nullptr;
        return std::nullopt;
    }
    const auto type = field.type;
    if (type == FieldType::kJson) {
        std::string text = json::serialize(value);
        if (text.size() > kMaxJsonValueBytes) return fmt::format("the JSON value is longer than {} bytes", kMaxJsonValueBytes);
        out = std::move(text);
        return std::nullopt;
    }
    if (value.is_string()) {
        const auto& s = value.get_string();
        std::string_view text(s.data(), s.size());
        switch (type) {
            case FieldType::kText:
            case FieldType::kSelect:
                out = std::string(text);
                return std::nullopt;
            case FieldType::kDate:
            case FieldType::kDatetime:
            case FieldType::kReference:
                if (text.empty()) {
                    out = nullptr;
                    return std::nullopt;
                }
                return value_from_text(field, text, out);
            case FieldType::kNumber:
            case FieldType::kBoolean:
                if (lenient) return value_from_text(field, text, out);
                break;
            case FieldType::kJson:
                break;
        }
        return fmt::format("expected {}, got a string", field_type_name(type));
    }
    switch (type) {
        case FieldType::kNumber:
            if (value.is_int64()) {
                out = value.get_int64();
                return std::nullopt;
            }
            if (value.is_uint64()) {
                store_number(static_cast<double>(value.get_uint64()), out);
                return std::nullopt;
            }
            if (value.is_double()) {
                if (!std::isfinite(value.get_double())) return "the number is not finite";
                store_number(value.get_double(), out);
                return std::nullopt;
            }
            break;
        case FieldType::kBoolean:
            if (value.is_bool()) {
                out = std::int64_t{value.get_bool() ? 1 : 0};
                return std::nullopt;
            }
            break;
        case FieldType::kReference:
            if (value.is_int64() && value.get_int64() > 0) {
                out = value.get_int64();
                return std::nullopt;
            }
            break;
        case FieldType::kText:
            if (lenient && (value.is_number() || value.is_bool())) {
                out = json::serialize(value);
                return std::nullopt;
            }
            break;
        default:
            break;
    }
    const char* got = value.is_bool() ? "a boolean" : value.is_number() ? "a number" : value.is_array() ? "an array"
                                                                                    : "an object";
    return fmt::format("expected {}, got {}", field_type_name(type), got);
}

json::value value_to_json(const Field& field, const store::Value& value) {
    if (std::holds_alternative<std::nullptr_t>(value)) return nullptr;
    switch (field.type) {
        case FieldType::kText:
        case FieldType::kSelect:
        case FieldType::kDate:
            if (auto* s = std::get_if<std::string>(&value)) return json::string(*s);
            break;
        case FieldType::kNumber:
            if (auto* i = std::get_if<std::int64_t>(&value)) return *i;
            if (auto* d = std::get_if<double>(&value)) return *d;
            break;
        case FieldType::kBoolean:
            if (auto* i = std::get_if<std::int64_t>(&value)) return *i != 0;
            break;
        case FieldType::kDatetime:
            if (auto* i = std::get_if<std::int64_t>(&value)) return json::string(format_datetime(*i));
            break;
        case FieldType::kJson:
            if (auto* s = std::get_if<std::string>(&value)) {
                boost::system::error_code ec;
                json::value v = json::parse(*s, ec);
                if (!ec) return v;
                return json::string(*s);
            }
            break;
        case FieldType::kReference:
            if (auto* i = std::get_if<std::int64_t>(&value)) return json::string(std::to_string(*i));
            break;
    }
    // A value of another storage type (written before a retype that this code did not make): show it as is.
    if (auto* s = std::get_if<std::string>(&value)) return json::string(*s);
    if (auto* i = std::get_if<std::int64_t>(&value)) return *i;
    if (auto* d = std::get_if<double>(&value)) return *d;
    return nullptr;
}

void append_value_text(const Field& field, const store::Value& value, std::string& out) {
    if (std::holds_alternative<std::nullptr_t>(value)) return;
    if (auto* s = std::get_if<std::string>(&value)) {
        out.append(*s);
        return;
    }
    if (auto* i = std::get_if<std::int64_t>(&value)) {
        switch (field.type) {
            case FieldType::kBoolean: out.append(*i ? "true" : "false"); return;
            case FieldType::kDatetime: append_datetime(out, *i); return;
            default: {
                char buf[24];
                auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *i);
                out.append(buf, end);
                return;
            }
        }
    }
    if (auto* d = std::get_if<double>(&value)) {
        char buf[32];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *d);
        out.append(buf, end);
    }
}

struct Validator::Compiled {
    std::unique_ptr<icu::RegexPattern> pattern;
};

Validator::Validator(const Model& model) : model_(model), patterns_(model.fields.size()) {
    for (std::size_t i = 0; i < model.fields.size(); ++i) {
        const auto& f = model.fields[i];
        if (!f.pattern) continue;
        UErrorCode status = U_ZERO_ERROR;
        UParseError pe;
        auto compiled = std::make_shared<Compiled>();
        compiled->pattern.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(*f.pattern), 0, pe, status));
        if (U_SUCCESS(status)) patterns_[i] = std::move(compiled);
    }
}

Validator::~Validator() = default;

std::optional<std::string> Validator::pattern_error(std::string_view pattern) {
    if (pattern.size() > kMaxPatternBytes) return fmt::format("the pattern is longer than {} bytes", kMaxPatternBytes);
    if (!valid_utf8(pattern)) return "the pattern is not valid UTF-8";
    UErrorCode status = U_ZERO_ERROR;
    UParseError pe;
    std::unique_ptr<icu::RegexPattern> p(icu::RegexPattern::compile(
        icu::UnicodeString::fromUTF8(icu::StringPiece(pattern.data(), static_cast<std::int32_t>(pattern.size()))), 0,
        pe, status));
    if (U_FAILURE(status)) return fmt::format("invalid pattern at offset {}: {}", pe.offset, u_errorName(status));
    return std::nullopt;
}

std::optional<std::string> Validator::check(std::size_t index, const store::Value& value) const {
    const Field& f = model_.fields[index];
    switch (f.type) {
        case FieldType::kText:
        case FieldType::kSelect: {
            const auto* s = std::get_if<std::string>(&value);
            if (!s) return std::nullopt;
            if (s->size() > kMaxTextBytes) return fmt::format("the text is longer than {} bytes", kMaxTextBytes);
            if (!valid_utf8(*s)) return "the text is not valid UTF-8";
            if (f.type == FieldType::kSelect) {
                bool found = false;
                for (const auto& o : f.options) {
                    if (o == *s) {
                        found = true;
                        break;
                    }
                }
                if (!found) return fmt::format("'{}' is not one of the options", s->substr(0, 60));
            }
            if (f.min_length || f.max_length) {
                auto n = static_cast<std::int64_t>(code_points(*s));
                if (f.min_length && n < *f.min_length) return fmt::format("shorter than {} characters", *f.min_length);
                if (f.max_length && n > *f.max_length) return fmt::format("longer than {} characters", *f.max_length);
            }
            if (patterns_[index]) {
                UErrorCode status = U_ZERO_ERROR;
                icu::UnicodeString input = icu::UnicodeString::fromUTF8(
                    icu::StringPiece(s->data(), static_cast<std::int32_t>(s->size())));
                std::unique_ptr<icu::RegexMatcher> m(patterns_[index]->pattern->matcher(input, status));
                if (U_FAILURE(status)) return "the pattern could not be applied";
                m->setTimeLimit(kRegexTimeLimit, status);
                bool found = m->find(status);
                if (status == U_REGEX_TIME_OUT || status == U_REGEX_STACK_OVERFLOW) {
                    return "the pattern took too long to check this value";
                }
                if (U_FAILURE(status) || !found) return fmt::format("does not match the pattern {}", *f.pattern);
            }
            return std::nullopt;
        }
        case FieldType::kNumber: {
            double v = 0;
            if (auto* i = std::get_if<std::int64_t>(&value)) v = static_cast<double>(*i);
            else if (auto* d = std::get_if<double>(&value)) v = *d;
            else return std::nullopt;
            if (f.min && v < *f.min) return fmt::format("less than the minimum {}", *f.min);
            if (f.max && v > *f.max) return fmt::format("more than the maximum {}", *f.max);
            return std::nullopt;
        }
        default:
            return std::nullopt;
    }
}

}  // namespace parley::customdata::internal

#include "auth/internal/validate.h"

namespace parley::auth::internal {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
        s.remove_suffix(1);
    }
    return s;
}

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

}  // namespace

std::optional<std::string> normalize_email(std::string_view raw) {
    std::string_view s = trim(raw);
    if (s.size() < 3 || s.size() > 254) return std::nullopt;
    auto at = s.find('@');
    if (at == std::string_view::npos || at == 0 || at > 64 || s.find('@', at + 1) != std::string_view::npos) {
        return std::nullopt;
    }
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f || c == '"' || c == '(' || c == ')' || c == ',' || c == ':' || c == ';' ||
            c == '<' || c == '>' || c == '[' || c == ']' || c == '\\') {
            return std::nullopt;
        }
        if (i > at && !(is_alnum(c) || c == '-' || c == '.' || u >= 0x80)) return std::nullopt;
        out.push_back(c);
    }
    std::string_view domain = std::string_view(out).substr(at + 1);
    if (domain.empty() || domain.front() == '.' || domain.back() == '.' || domain.find("..") != std::string_view::npos ||
        domain.front() == '-') {
        return std::nullopt;
    }
    std::string_view local = std::string_view(out).substr(0, at);
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) return std::nullopt;
    return out;
}

std::optional<std::string> normalize_name(std::string_view raw) {
    std::string_view s = trim(raw);
    if (s.empty() || s.size() > 200) return std::nullopt;
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) return std::nullopt;
    }
    return std::string(s);
}

bool is_valid_language(std::string_view tag) {
    if (tag.size() < 2 || tag.size() > 16 || tag.front() == '-' || tag.back() == '-') return false;
    for (char c : tag) {
        if (!is_alnum(c) && c != '-') return false;
    }
    return true;
}

bool is_hex_token(std::string_view text) {
    if (text.size() != 64) return false;
    for (char c : text) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

}  // namespace parley::auth::internal

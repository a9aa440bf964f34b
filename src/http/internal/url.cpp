#include "http/internal/url.h"

#include <boost/url/parse.hpp>

namespace parley::http::internal {

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::optional<TargetParts> split_target(std::string_view target) {
    // The path must be a valid origin-form path. The query is checked by hand: clients commonly send `[` and `]`
    // unencoded (`filter[kind][eq]=x`, as CONTRACT.md writes it), which RFC 3986 does not allow there, so
    // Boost.URL would refuse the whole target. Any visible ASCII except '#' is accepted; percent escapes are
    // checked when the query is decoded.
    std::size_t question = target.find('?');
    std::string_view path_part = target.substr(0, question);
    auto parsed = boost::urls::parse_origin_form(path_part);
    if (!parsed || parsed->has_query()) return std::nullopt;
    TargetParts parts;
    auto path = parsed->encoded_path();
    parts.path = std::string_view(path.data(), path.size());
    if (question != std::string_view::npos) {
        std::string_view query = target.substr(question + 1);
        for (char c : query) {
            auto u = static_cast<unsigned char>(c);
            if (u <= 0x20 || u >= 0x7f || c == '#') return std::nullopt;
        }
        parts.query = query;
    }
    return parts;
}

bool percent_decode(std::string_view in, std::string& out, bool plus_as_space) {
    out.reserve(out.size() + in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return false;
            int hi = hex_value(in[i + 1]);
            int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_as_space) {
            c = ' ';
        }
        if (c == '\0') return false;
        out.push_back(c);
    }
    return true;
}

bool parse_query(std::string_view query, std::vector<std::pair<std::string, std::string>>& out) {
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view item = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (item.empty()) continue;
        std::size_t eq = item.find('=');
        std::pair<std::string, std::string> kv;
        if (!percent_decode(item.substr(0, eq), kv.first, true)) return false;
        if (eq != std::string_view::npos && !percent_decode(item.substr(eq + 1), kv.second, true)) return false;
        out.push_back(std::move(kv));
    }
    return true;
}

}  // namespace parley::http::internal

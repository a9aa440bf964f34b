#include "knowledge/internal/multipart.h"

#include <fmt/format.h>

#include "knowledge/internal/analyzer.h"

namespace parley::knowledge::internal {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

/// `; key=value; key="quoted \" value"` parameters of a header value, keys lower-cased.
std::vector<std::pair<std::string, std::string>> header_params(std::string_view value) {
    std::vector<std::pair<std::string, std::string>> out;
    std::size_t i = value.find(';');
    while (i != std::string_view::npos && i < value.size()) {
        ++i;
        while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
        std::size_t eq = value.find('=', i);
        std::size_t semi = value.find(';', i);
        if (eq == std::string_view::npos || (semi != std::string_view::npos && semi < eq)) {
            i = semi;
            continue;
        }
        std::string key = lower(trim(value.substr(i, eq - i)));
        std::size_t j = eq + 1;
        while (j < value.size() && (value[j] == ' ' || value[j] == '\t')) ++j;
        std::string v;
        if (j < value.size() && value[j] == '"') {
            ++j;
            while (j < value.size() && value[j] != '"') {
                if (value[j] == '\\' && j + 1 < value.size()) ++j;
                v.push_back(value[j]);
                ++j;
            }
            if (j >= value.size()) throw MultipartError("an unterminated quoted string in a part header");
            ++j;
            semi = value.find(';', j);
        } else {
            v = std::string(trim(value.substr(j, semi == std::string_view::npos ? std::string_view::npos : semi - j)));
        }
        out.emplace_back(std::move(key), std::move(v));
        i = semi;
    }
    return out;
}

int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// RFC 5987 `UTF-8''percent%20encoded`.
std::string decode_ext_value(std::string_view v) {
    auto quote = v.find("''");
    if (quote != std::string_view::npos) v.remove_prefix(quote + 2);
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (v[i] == '%' && i + 2 < v.size() && hex(v[i + 1]) >= 0 && hex(v[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(v[i + 1]) * 16 + hex(v[i + 2])));
            i += 2;
        } else {
            out.push_back(v[i]);
        }
    }
    return out;
}

std::string clean_filename(std::string name) {
    auto slash = name.find_last_of("/\\");
    if (slash != std::string::npos) name = name.substr(slash + 1);
    std::string out;
    for (char c : name) {
        if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7F) out.push_back(c);
    }
    if (out.size() > kMaxFilenameBytes) out.resize(kMaxFilenameBytes);
    while (!out.empty() && !valid_utf8(out)) out.pop_back();  // a cut inside a character
    if (!valid_utf8(out)) out.clear();
    return out;
}

/// Finds the next delimiter line (`--boundary` at the start of the body or after a line break) at or after
/// `from`. Returns the offset of the line break before it (or of the dashes at the very start) and sets
/// `after` to the first byte after the boundary text.
std::size_t find_delimiter(std::string_view body, std::string_view delimiter, std::size_t from, std::size_t& after) {
    // A delimiter line is the boundary at the start of a line followed by "--" (the close) or by optional
    // white space and a line break; anything else that merely starts with the boundary text is content.
    auto completes = [&](std::size_t end) {
        if (body.substr(end, 2) == "--") return true;
        while (end < body.size() && (body[end] == ' ' || body[end] == '\t')) ++end;
        return body.substr(end, 1) == "\n" || body.substr(end, 2) == "\r\n";
    };
    std::size_t pos = from;
    for (;;) {
        pos = body.find(delimiter, pos);
        if (pos == std::string_view::npos) return pos;
        if ((pos == 0 || body[pos - 1] == '\n') && completes(pos + delimiter.size())) {
            after = pos + delimiter.size();
            if (pos == 0) return 0;
            return (pos >= 2 && body[pos - 2] == '\r') ? pos - 2 : pos - 1;
        }
        ++pos;
    }
}

}  // namespace

std::string multipart_boundary(std::string_view content_type) {
    std::string type = lower(trim(content_type.substr(0, content_type.find(';'))));
    if (type != "multipart/form-data") {
        throw MultipartError("send the document as multipart/form-data with a 'file' part");
    }
    for (auto& [key, value] : header_params(content_type)) {
        if (key != "boundary") continue;
        if (value.empty() || value.size() > kMaxBoundaryBytes) {
            throw MultipartError(fmt::format("the multipart boundary must be 1 to {} characters", kMaxBoundaryBytes));
        }
        return value;
    }
    throw MultipartError("the multipart Content-Type has no boundary");
}

std::vector<Part> parse_multipart(std::string_view body, std::string_view boundary) {
    if (boundary.empty() || boundary.size() > kMaxBoundaryBytes) throw MultipartError("bad multipart boundary");
    const std::string delimiter = "--" + std::string(boundary);
    std::vector<Part> parts;
    std::size_t after = 0;
    if (find_delimiter(body, delimiter, 0, after) == std::string_view::npos) {
        throw MultipartError("the body has no multipart boundary line");
    }
    for (;;) {
        // After a delimiter: "--" closes the body; otherwise optional padding then a line break.
        if (body.substr(after, 2) == "--") return parts;
        while (after < body.size() && (body[after] == ' ' || body[after] == '\t')) ++after;
        if (body.substr(after, 2) == "\r\n") {
            after += 2;
        } else if (body.substr(after, 1) == "\n") {
            after += 1;
        } else {
            throw MultipartError("a multipart boundary line is malformed or the body ends without the closing boundary");
        }
        if (parts.size() == kMaxMultipartParts) {
            throw MultipartError(fmt::format("more than {} multipart parts", kMaxMultipartParts));
        }
        // Headers up to the first empty line.
        Part part;
        bool disposition = false;
        std::size_t header_start = after;
        for (;;) {
            std::size_t nl = body.find('\n', after);
            if (nl == std::string_view::npos) throw MultipartError("a multipart part ends inside its headers");
            if (nl - header_start > kMaxPartHeaderBytes) {
                throw MultipartError(fmt::format("multipart part headers over {} bytes", kMaxPartHeaderBytes));
            }
            std::string_view line = body.substr(after, nl - after);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            after = nl + 1;
            if (line.empty()) break;
            auto colon = line.find(':');
            if (colon == std::string_view::npos) throw MultipartError("a multipart part header has no ':'");
            std::string name = lower(trim(line.substr(0, colon)));
            std::string_view value = trim(line.substr(colon + 1));
            if (name == "content-disposition") {
                if (lower(trim(value.substr(0, value.find(';')))) != "form-data") {
                    throw MultipartError("a multipart part is not form-data");
                }
                disposition = true;
                std::string ext_filename;
                for (auto& [key, v] : header_params(value)) {
                    if (key == "name") part.name = v;
                    if (key == "filename") part.filename = clean_filename(v);
                    if (key == "filename*") ext_filename = clean_filename(decode_ext_value(v));
                }
                if (!ext_filename.empty()) part.filename = ext_filename;
            } else if (name == "content-type") {
                part.content_type = std::string(value.substr(0, 200));
            }
        }
        if (!disposition) throw MultipartError("a multipart part has no Content-Disposition header");
        std::size_t next_after = 0;
        std::size_t end = find_delimiter(body, delimiter, after, next_after);
        if (end == std::string_view::npos) throw MultipartError("the multipart body ends without its closing boundary");
        if (end < after) end = after;  // an empty part whose blank line doubles as the delimiter's line break
        part.body = body.substr(after, end - after);
        parts.push_back(std::move(part));
        after = next_after;
    }
}

}  // namespace parley::knowledge::internal

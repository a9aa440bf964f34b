#include "clients/internal/file_list.h"

#include <fmt/format.h>

#include <set>
#include <utility>

#include "core/error.h"
#include "core/ids.h"

namespace parley::clients::internal {

namespace {

constexpr std::size_t kReportBytes = 200;

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= s.size()) return false;
        for (std::size_t k = 1; k <= n; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

std::string cut(std::string_view s) {
    if (!valid_utf8(s)) {
        // Reported back in JSON: bytes that are not UTF-8 become '?'.
        std::string out;
        for (char c : s.substr(0, kReportBytes)) out.push_back(static_cast<unsigned char>(c) < 0x80 && c != '\0' ? c : '?');
        return out;
    }
    if (s.size() <= kReportBytes) return std::string(s);
    std::size_t n = kReportBytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // keep whole UTF-8 sequences
    return std::string(s.substr(0, n));
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

/// Splits one line into cells; nullopt for a malformed quote.
std::optional<std::vector<std::string>> split_cells(std::string_view line, char delimiter) {
    std::vector<std::string> cells;
    std::size_t i = 0;
    while (true) {
        std::string cell;
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t') && line[i] != delimiter) ++i;
        if (i < line.size() && line[i] == '"') {
            ++i;
            bool closed = false;
            while (i < line.size()) {
                if (line[i] == '"') {
                    if (i + 1 < line.size() && line[i + 1] == '"') {
                        cell.push_back('"');
                        i += 2;
                        continue;
                    }
                    closed = true;
                    ++i;
                    break;
                }
                cell.push_back(line[i++]);
            }
            if (!closed) return std::nullopt;
            while (i < line.size() && (line[i] == ' ' || line[i] == '\t') && line[i] != delimiter) ++i;
            if (i < line.size() && line[i] != delimiter) return std::nullopt;
        } else {
            std::size_t end = delimiter ? line.find(delimiter, i) : std::string_view::npos;
            if (end == std::string_view::npos) end = line.size();
            cell = std::string(trim(line.substr(i, end - i)));
            i = end;
        }
        cells.push_back(std::move(cell));
        if (i >= line.size()) break;
        ++i;  // the delimiter
        if (i == line.size()) {
            cells.emplace_back();
            break;
        }
    }
    return cells;
}

std::optional<ListKind> header_kind(std::string_view cell) {
    std::string lower;
    for (char ch : trim(cell)) lower.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch);
    static const std::pair<std::string_view, ListKind> kNames[] = {
        {"phone", ListKind::kPhone},         {"phone_number", ListKind::kPhone}, {"phone number", ListKind::kPhone},
        {"tel", ListKind::kPhone},           {"mobile", ListKind::kPhone},       {"телефон", ListKind::kPhone},
        {"Телефон", ListKind::kPhone},       {"номер", ListKind::kPhone},        {"email", ListKind::kEmail},
        {"e-mail", ListKind::kEmail},        {"mail", ListKind::kEmail},         {"пошта", ListKind::kEmail},
        {"id", ListKind::kId},               {"client_id", ListKind::kId},       {"client id", ListKind::kId}};
    for (const auto& [name, kind] : kNames) {
        if (lower == name) return kind;
    }
    return std::nullopt;
}

struct Line {
    std::size_t number;
    std::string_view text;
};

}  // namespace

ParsedList parse_client_list(std::string_view text, ListKind kind) {
    if ((text.size() >= 2 && ((text[0] == '\xFF' && text[1] == '\xFE') || (text[0] == '\xFE' && text[1] == '\xFF'))) ||
        (text.size() >= 4 && text.substr(0, 4) == std::string_view("\0\0\xFE\xFF", 4))) {
        throw core::BadRequest("the file is UTF-16/UTF-32: save it as UTF-8 (or plain text)", "unsupported_encoding");
    }
    if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);

    // Physical lines (CRLF, LF, CR), blank ones dropped.
    std::vector<Line> lines;
    std::size_t number = 1, start = 0;
    for (std::size_t i = 0; i <= text.size(); ++i) {
        if (i < text.size() && text[i] != '\n' && text[i] != '\r') continue;
        std::string_view line = text.substr(start, i - start);
        if (!trim(line).empty()) {
            if (lines.size() > kMaxFileLines) {
                throw core::TooLarge(fmt::format("the file has more than {} lines", kMaxFileLines), "too_many_lines");
            }
            lines.push_back({number, line});
        }
        if (i < text.size() && text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
        ++number;
        start = i + 1;
    }

    ParsedList out;
    if (lines.empty()) return out;

    // CSV or one value a line: a delimiter in the first line decides.
    char delimiter = 0;
    for (char d : {'\t', ';', ','}) {
        if (lines.front().text.find(d) != std::string_view::npos) {
            delimiter = d;
            break;
        }
    }
    std::size_t column = 0;
    std::size_t first = 0;
    if (auto head = split_cells(lines.front().text, delimiter)) {
        for (std::size_t c = 0; c < head->size(); ++c) {
            auto named = header_kind((*head)[c]);
            if (!named) continue;
            if (kind == ListKind::kAuto || *named == kind) {
                column = c;
                if (kind == ListKind::kAuto) kind = *named;
                out.header = (*head)[c];
                break;
            }
            if (!out.header) out.header = (*head)[c];  // a header naming another kind: still a header row
        }
        if (out.header) first = 1;
    }
    if (lines.size() - first > kMaxFileLines) {
        throw core::TooLarge(fmt::format("the file has more than {} lines", kMaxFileLines), "too_many_lines");
    }

    std::set<std::pair<int, std::string>> seen;
    for (std::size_t i = first; i < lines.size(); ++i) {
        const Line& line = lines[i];
        ++out.lines;
        if (line.text.size() > kMaxFileLineBytes || line.text.find('\0') != std::string_view::npos ||
            !valid_utf8(line.text)) {
            out.problems.push_back({line.number, cut(line.text), "malformed_line"});
            continue;
        }
        auto cells = split_cells(line.text, delimiter);
        if (!cells) {
            out.problems.push_back({line.number, cut(line.text), "malformed_line"});
            continue;
        }
        std::string value = column < cells->size() ? (*cells)[column] : std::string();
        ListEntry entry;
        entry.line = line.number;
        entry.value = value;
        ListKind k = kind;
        if (k == ListKind::kAuto) {
            if (value.find('@') != std::string::npos) k = ListKind::kEmail;
            else if (core::looks_like_id(value)) k = ListKind::kId;
            else k = ListKind::kPhone;
        }
        entry.kind = k;
        if (k == ListKind::kPhone) entry.key = phone_key(value);
        else if (k == ListKind::kEmail) entry.key = email_key(value);
        else entry.key = core::looks_like_id(value) ? value : std::string();
        if (entry.key.empty()) {
            out.problems.push_back({line.number, cut(value), "invalid_value"});
            continue;
        }
        if (!seen.insert({static_cast<int>(k), entry.key}).second) {
            out.problems.push_back({line.number, cut(value), "duplicate"});
            continue;
        }
        out.entries.push_back(std::move(entry));
    }
    return out;
}

std::optional<std::string_view> multipart_file(std::string_view content_type, std::string_view body) {
    std::string lower;
    for (char ch : content_type) lower.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch);
    if (lower.rfind("multipart/form-data", 0) != 0) return std::nullopt;
    auto bad = [](const std::string& message) { return core::BadRequest(message, "invalid_multipart"); };
    auto b = lower.find("boundary=");
    if (b == std::string::npos) throw bad("multipart/form-data without a boundary");
    std::string_view boundary = content_type.substr(b + 9);
    if (auto semi = boundary.find(';'); semi != std::string_view::npos) boundary = boundary.substr(0, semi);
    boundary = trim(boundary);
    if (boundary.size() >= 2 && boundary.front() == '"' && boundary.back() == '"') {
        boundary = boundary.substr(1, boundary.size() - 2);
    }
    if (boundary.empty() || boundary.size() > 200) throw bad("the multipart boundary is empty or too long");
    std::string delimiter = "--" + std::string(boundary);
    std::size_t pos = body.find(delimiter);
    if (pos == std::string_view::npos) throw bad("the body has no multipart boundary");
    std::string next = "\r\n" + delimiter;
    while (true) {
        pos += delimiter.size();
        if (body.substr(pos, 2) == "--") break;
        if (body.substr(pos, 2) != "\r\n") throw bad("a multipart boundary is not followed by CRLF");
        pos += 2;
        auto headers_end = body.find("\r\n\r\n", pos);
        if (headers_end == std::string_view::npos) throw bad("a multipart part has no end of headers");
        std::string headers;
        for (char ch : body.substr(pos, headers_end - pos)) {
            headers.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch);
        }
        std::size_t content = headers_end + 4;
        auto end = body.find(next, content);
        if (end == std::string_view::npos) throw bad("a multipart part is not terminated by the boundary");
        if (headers.find("filename=") != std::string::npos || headers.find("name=\"file\"") != std::string::npos) {
            return body.substr(content, end - content);
        }
        pos = end + 2;
    }
    throw bad("the upload has no file part (send it as the form field 'file')");
}

}  // namespace parley::clients::internal

namespace parley::clients {

std::optional<ListKind> parse_list_kind(std::string_view text) {
    if (text.empty() || text == "auto") return ListKind::kAuto;
    if (text == "phone") return ListKind::kPhone;
    if (text == "email") return ListKind::kEmail;
    if (text == "id") return ListKind::kId;
    return std::nullopt;
}

}  // namespace parley::clients

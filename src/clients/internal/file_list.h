/// "Search clients by file": the parser of an uploaded list of phones, e-mails or client ids (TXT: one value a
/// line; CSV: a column chosen by its header or the first column) and the extraction of the file from a
/// multipart/form-data upload. Pure functions over bytes (fuzzed by tests/fuzz/fuzz_clients_file.cpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clients/clients.h"

namespace parley::clients::internal {

struct ListEntry {
    std::size_t line = 0;  ///< 1-based physical line
    std::string value;     ///< the cell as written (trimmed)
    std::string key;       ///< phone_key / email_key / the id
    ListKind kind = ListKind::kPhone;  ///< never kAuto
};

struct ListProblem {
    std::size_t line = 0;
    std::string value;   ///< the cell or line, cut to 200 bytes
    std::string reason;  ///< invalid_value, malformed_line, duplicate
};

struct ParsedList {
    std::vector<ListEntry> entries;
    std::vector<ListProblem> problems;
    std::size_t lines = 0;  ///< non-blank data lines (the header is not one)
    std::optional<std::string> header;  ///< the header cell that chose the column, when there was one
};

/// Parses the list. Blank lines are skipped; a UTF-8 BOM is dropped; CRLF, LF and CR end lines. The first line is
/// a header when one of its cells names a kind (phone, tel, mobile, телефон, email, e-mail, пошта, id, client_id);
/// that column is used (for `kind` auto, the kind the header names). CSV is recognised by `;`, tab or `,` in the
/// first line. Each value is normalised by its kind (auto: `@` → e-mail, an id shape → id, else phone); values that
/// do not normalise, malformed lines (bad quotes, invalid UTF-8, NUL, longer than kMaxFileLineBytes) and repeats
/// are reported as problems with their line. Throws BadRequest `unsupported_encoding` for UTF-16/32 input and
/// TooLarge `too_many_lines` past kMaxFileLines.
ParsedList parse_client_list(std::string_view text, ListKind kind);

/// The first file part of a multipart/form-data body (`content_type` carries the boundary); nullopt when the
/// content type is not multipart. BadRequest `invalid_multipart` for a malformed body or one without a file.
std::optional<std::string_view> multipart_file(std::string_view content_type, std::string_view body);

}  // namespace parley::clients::internal

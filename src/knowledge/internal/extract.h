/// Turns an uploaded file into plain text blocks (headings, paragraphs, table rows): format detection by
/// content, and extractors for TXT, Markdown, HTML (gumbo, boilerplate stripped), CSV, PDF (poppler-cpp) and
/// DOCX (libzip + pugixml), each bounded against hostile input.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace parley::knowledge::internal {

enum class Format { kText, kMarkdown, kHtml, kCsv, kPdf, kDocx };
std::string_view format_name(Format format);  ///< "txt" "md" "html" "csv" "pdf" "docx"
std::optional<Format> parse_format(std::string_view name);

/// Limits of extraction (documented in the module README).
inline constexpr std::size_t kMaxExtractedBytes = 32u << 20;   ///< text taken from one document
inline constexpr std::size_t kMaxDocxXmlBytes = 64u << 20;     ///< word/document.xml after decompression
inline constexpr std::size_t kMaxZipEntries = 10'000;
inline constexpr int kMaxPdfPages = 5'000;
inline constexpr std::size_t kMaxCsvColumns = 200;
inline constexpr std::size_t kMaxTreeDepth = 200;              ///< HTML / DOCX element nesting walked

/// One piece of a document's text.
struct Block {
    enum class Kind { kHeading, kParagraph, kRow };
    Kind kind = Kind::kParagraph;
    int level = 0;  ///< headings: 1..6
    std::string text;
};

/// A document that cannot be turned into text: the message is shown as the document's `error`.
class ExtractError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// What detection decided, or why the file is refused (`error` set, `format` meaningless).
struct Detection {
    Format format = Format::kText;
    std::string error;  ///< non-empty: unsupported (binary, legacy .doc, a ZIP that is not DOCX, ...)
};

/// Decides the format from the bytes first (%PDF, PK zip with word/document.xml, HTML markup), then for plain
/// text from the file name's extension or declared type (CSV, Markdown). A declared type never overrides what
/// the content shows. Thread-safe.
Detection detect_format(std::string_view content, std::string_view filename, std::string_view content_type);

/// Extracts `content` of `format`. `progress` (optional) receives 0..1 as extraction advances. Throws
/// ExtractError with a human message (malformed, encrypted, image-only, too large when expanded, empty).
/// Thread-safe (no shared state).
std::vector<Block> extract(Format format, std::string_view content,
                           const std::function<void(double)>& progress = {});

/// Text as UTF-8: a UTF-8 BOM removed; text that is not UTF-8 is read as Windows-1251 (common for Ukrainian
/// files). Throws ExtractError for binary data.
std::string decode_text(std::string_view content);

/// Parses CSV (RFC 4180 quoting; delimiter `,` `;` or tab guessed from the header line) into rows of cells.
/// Bounded: at most kMaxCsvColumns cells per row. Exposed for tests and the fuzz target.
std::vector<std::vector<std::string>> parse_csv(std::string_view text);

}  // namespace parley::knowledge::internal

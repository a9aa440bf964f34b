/// A streaming CSV reader (RFC 4180 plus what real spreadsheets produce) and the matching writer helpers. The
/// reader pulls bytes from a `CsvSource` in fixed-size chunks, so a file of any size is parsed with memory
/// bounded by the longest row; every problem is reported per row, never by aborting the whole file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace parley::customdata {

/// Where CSV bytes come from. `rewind()` restarts from the first byte: an import may be replayed when the
/// store retries its transaction. Not thread-safe; one reader uses it at a time.
class CsvSource {
public:
    virtual ~CsvSource() = default;
    /// Reads up to `size` bytes into `buffer`; returns 0 at the end.
    virtual std::size_t read(char* buffer, std::size_t size) = 0;
    virtual void rewind() = 0;
};

/// Bytes already in memory (an HTTP body). The text must outlive the source.
class StringCsvSource final : public CsvSource {
public:
    explicit StringCsvSource(std::string_view text) : text_(text) {}
    std::size_t read(char* buffer, std::size_t size) override;
    void rewind() override { offset_ = 0; }

private:
    std::string_view text_;
    std::size_t offset_ = 0;
};

/// A file read in chunks (the in-process import of files larger than the HTTP body limit).
class FileCsvSource final : public CsvSource {
public:
    /// Throws std::runtime_error when the file cannot be opened.
    explicit FileCsvSource(const std::string& path);
    std::size_t read(char* buffer, std::size_t size) override;
    void rewind() override;

private:
    std::ifstream file_;
    std::string path_;
};

/// The byte encoding of the input. UTF-8 (with or without BOM) is the default; Windows-1251 is what Excel
/// saves for Ukrainian text as "CSV (comma delimited)" and is transcoded to UTF-8 cell by cell.
enum class CsvEncoding { kUtf8, kWindows1251 };

struct CsvOptions {
    char delimiter = ',';
    CsvEncoding encoding = CsvEncoding::kUtf8;
    std::size_t max_cell_bytes = 1 << 20;  ///< a longer cell makes its row bad (the rest of it is skipped)
    std::size_t max_columns = 1000;        ///< more cells in one row make it bad
};

/// One record of the file. `cells` are decoded (quotes removed, UTF-8); `error` is set when the row is
/// malformed (unterminated quote, text after a closing quote, invalid UTF-8, too long); `error_column` is the
/// 0-based cell the error is in, when it is in one.
struct CsvRow {
    std::vector<std::string> cells;
    std::size_t line = 0;  ///< 1-based physical line the record starts on
    std::optional<std::string> error;
    std::optional<std::size_t> error_column;
};

/// Pull parser. Blank lines are skipped; CRLF, LF and lone CR end a record; a UTF-8 BOM is dropped; a UTF-16/32
/// BOM sets `fatal_error` (the caller should ask for UTF-8). Quoted cells may hold delimiters, quotes (`""`)
/// and line breaks. A quote inside an unquoted cell is kept as text (`5" screen`).
/// Not thread-safe.
class CsvReader {
public:
    explicit CsvReader(CsvSource& source, CsvOptions options = {});

    /// Reads the next record into `row` (reusing its storage); false at the end of input.
    bool next(CsvRow& row);

    /// Set when the input cannot be CSV text at all (UTF-16/UTF-32 byte order mark).
    const std::optional<std::string>& fatal_error() const { return fatal_; }

    /// Bytes consumed so far.
    std::uint64_t bytes_read() const { return consumed_; }

private:
    int peek();
    int get();
    bool fill();
    void ensure(std::size_t n);
    void finish_cell(CsvRow& row, std::string& cell, std::size_t& count);

    CsvSource& source_;
    CsvOptions options_;
    std::vector<char> buffer_;
    std::size_t pos_ = 0;
    std::size_t end_ = 0;
    bool eof_ = false;
    bool started_ = false;
    std::size_t line_ = 1;
    std::uint64_t consumed_ = 0;
    std::optional<std::string> fatal_;
};

/// Whether `text` is valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view text);

/// Windows-1251 bytes to UTF-8.
std::string cp1251_to_utf8(std::string_view text);

/// Appends one cell to `out` in CSV form: quoted when it holds the delimiter, a quote, CR/LF or leading/trailing
/// spaces. With `escape_formula`, a cell starting with `=`, `+`, `-`, `@`, TAB or CR gets a leading `'` so that
/// spreadsheet programs show it as text instead of running it (CSV/formula injection).
void append_csv_cell(std::string& out, std::string_view cell, bool escape_formula, char delimiter = ',');

/// Whether a cell would be escaped by append_csv_cell (starts with a formula trigger).
bool is_formula_like(std::string_view cell);

}  // namespace parley::customdata

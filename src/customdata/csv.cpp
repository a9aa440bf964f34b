#include "customdata/csv.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace parley::customdata {

namespace {

constexpr std::size_t kChunkBytes = 64 * 1024;

// Windows-1251 0x80..0xFF as Unicode code points.
constexpr char16_t kCp1251High[128] = {
    0x0402, 0x0403, 0x201A, 0x0453, 0x201E, 0x2026, 0x2020, 0x2021, 0x20AC, 0x2030, 0x0409, 0x2039, 0x040A,
    0x040C, 0x040B, 0x040F, 0x0452, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0xFFFD, 0x2122,
    0x0459, 0x203A, 0x045A, 0x045C, 0x045B, 0x045F, 0x00A0, 0x040E, 0x045E, 0x0408, 0x00A4, 0x0490, 0x00A6,
    0x00A7, 0x0401, 0x00A9, 0x0404, 0x00AB, 0x00AC, 0x00AD, 0x00AE, 0x0407, 0x00B0, 0x00B1, 0x0406, 0x0456,
    0x0491, 0x00B5, 0x00B6, 0x00B7, 0x0451, 0x2116, 0x0454, 0x00BB, 0x0458, 0x0405, 0x0455, 0x0457, 0x0410,
    0x0411, 0x0412, 0x0413, 0x0414, 0x0415, 0x0416, 0x0417, 0x0418, 0x0419, 0x041A, 0x041B, 0x041C, 0x041D,
    0x041E, 0x041F, 0x0420, 0x0421, 0x0422, 0x0423, 0x0424, 0x0425, 0x0426, 0x0427, 0x0428, 0x0429, 0x042A,
    0x042B, 0x042C, 0x042D, 0x042E, 0x042F, 0x0430, 0x0431, 0x0432, 0x0433, 0x0434, 0x0435, 0x0436, 0x0437,
    0x0438, 0x0439, 0x043A, 0x043B, 0x043C, 0x043D, 0x043E, 0x043F, 0x0440, 0x0441, 0x0442, 0x0443, 0x0444,
    0x0445, 0x0446, 0x0447, 0x0448, 0x0449, 0x044A, 0x044B, 0x044C, 0x044D, 0x044E, 0x044F};

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

}  // namespace

std::size_t StringCsvSource::read(char* buffer, std::size_t size) {
    std::size_t n = std::min(size, text_.size() - offset_);
    std::memcpy(buffer, text_.data() + offset_, n);
    offset_ += n;
    return n;
}

FileCsvSource::FileCsvSource(const std::string& path) : file_(path, std::ios::binary), path_(path) {
    if (!file_) throw std::runtime_error(fmt::format("cannot open '{}'", path));
}

std::size_t FileCsvSource::read(char* buffer, std::size_t size) {
    file_.read(buffer, static_cast<std::streamsize>(size));
    return static_cast<std::size_t>(file_.gcount());
}

void FileCsvSource::rewind() {
    file_.clear();
    file_.seekg(0);
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        // ASCII runs eight bytes at a time.
        while (i + 8 <= n) {
            std::uint64_t word;
            std::memcpy(&word, s.data() + i, 8);
            if (word & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        char32_t cp = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (std::size_t k = 1; k < len; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += len;
    }
    return true;
}

std::string cp1251_to_utf8(std::string_view text) {
    std::string out;
    out.reserve(text.size() * 2);
    for (char ch : text) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x80) {
            out.push_back(ch);
        } else {
            append_utf8(out, kCp1251High[c - 0x80]);
        }
    }
    return out;
}

bool is_formula_like(std::string_view cell) {
    if (cell.empty()) return false;
    char c = cell.front();
    return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r';
}

void append_csv_cell(std::string& out, std::string_view cell, bool escape_formula, char delimiter) {
    const bool escape = escape_formula && is_formula_like(cell);
    // Quoted too: leading/trailing spaces (spreadsheets trim them) and a leading U+FEFF (read back as a BOM).
    bool quote = !cell.empty() && (cell.front() == ' ' || cell.back() == ' ' || cell.rfind("\xEF\xBB\xBF", 0) == 0);
    if (!quote) {
        for (char c : cell) {
            if (c == delimiter || c == '"' || c == '\n' || c == '\r') {
                quote = true;
                break;
            }
        }
    }
    if (!quote) {
        if (escape) out.push_back('\'');
        out.append(cell);
        return;
    }
    out.push_back('"');
    if (escape) out.push_back('\'');
    for (char c : cell) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
}

CsvReader::CsvReader(CsvSource& source, CsvOptions options)
    : source_(source), options_(options), buffer_(kChunkBytes) {}

bool CsvReader::fill() {
    if (eof_) return false;
    end_ = source_.read(buffer_.data(), buffer_.size());
    pos_ = 0;
    if (end_ == 0) {
        eof_ = true;
        return false;
    }
    return true;
}

void CsvReader::ensure(std::size_t n) {
    while (!eof_ && end_ - pos_ < n) {
        std::memmove(buffer_.data(), buffer_.data() + pos_, end_ - pos_);
        end_ -= pos_;
        pos_ = 0;
        std::size_t got = source_.read(buffer_.data() + end_, buffer_.size() - end_);
        if (got == 0) {
            eof_ = true;
            break;
        }
        end_ += got;
    }
}

int CsvReader::peek() {
    if (pos_ == end_ && !fill()) return -1;
    return static_cast<unsigned char>(buffer_[pos_]);
}

int CsvReader::get() {
    if (pos_ == end_ && !fill()) return -1;
    ++consumed_;
    return static_cast<unsigned char>(buffer_[pos_++]);
}

void CsvReader::finish_cell(CsvRow& row, std::string& cell, std::size_t& count) {
    if (count >= options_.max_columns) {
        if (!row.error) {
            row.error = fmt::format("the row has more than {} cells", options_.max_columns);
            row.error_column = std::nullopt;
        }
        cell.clear();
        return;
    }
    if (count < row.cells.size()) {
        row.cells[count].swap(cell);
    } else {
        row.cells.emplace_back(std::move(cell));
    }
    cell.clear();
    ++count;
}

bool CsvReader::next(CsvRow& row) {
    if (fatal_) return false;
    if (!started_) {
        started_ = true;
        // Byte order marks: UTF-8's is dropped; UTF-16/32 input is refused (it would parse as garbage).
        ensure(4);
        std::size_t have = end_ - pos_;
        auto at = [&](std::size_t k) { return static_cast<unsigned char>(buffer_[pos_ + k]); };
        if (have >= 3 && at(0) == 0xEF && at(1) == 0xBB && at(2) == 0xBF) {
            pos_ += 3;
            consumed_ += 3;
        } else if (have >= 2 && ((at(0) == 0xFF && at(1) == 0xFE) || (at(0) == 0xFE && at(1) == 0xFF) ||
                                 (have >= 4 && at(0) == 0 && at(1) == 0 && at(2) == 0xFE && at(3) == 0xFF))) {
            fatal_ = "the file is UTF-16 or UTF-32 encoded; save it as UTF-8 (or Windows-1251) CSV";
            return false;
        }
    }

    row.error.reset();
    row.error_column.reset();
    std::size_t count = 0;
    std::string cell;

    // Skip blank lines between records.
    for (;;) {
        int c = peek();
        if (c < 0) {
            row.cells.clear();
            return false;
        }
        if (c == '\n') {
            get();
            ++line_;
        } else if (c == '\r') {
            get();
            if (peek() == '\n') get();
            ++line_;
        } else {
            break;
        }
    }
    row.line = line_;
    const std::size_t start_line = line_;
    // Cells past max_columns are dropped, so an error in one of them names no column.
    auto column_or_none = [this](std::size_t c) {
        return c < options_.max_columns ? std::optional<std::size_t>(c) : std::nullopt;
    };
    const char delim = options_.delimiter;
    bool too_long = false;
    auto append = [&](char ch) {
        if (cell.size() < options_.max_cell_bytes) {
            cell.push_back(ch);
        } else if (!too_long) {
            too_long = true;
            if (!row.error) {
                row.error = fmt::format("a cell is longer than {} bytes", options_.max_cell_bytes);
                row.error_column = column_or_none(count);
            }
        }
    };

    for (;;) {
        // One cell.
        int c = peek();
        bool end_of_row = false;
        if (c == '"') {
            get();
            bool closed = false;
            for (;;) {
                c = get();
                if (c < 0) break;
                if (c == '"') {
                    if (peek() == '"') {
                        get();
                        append('"');
                        continue;
                    }
                    closed = true;
                    break;
                }
                if (c == '\n') {
                    ++line_;
                } else if (c == '\r') {
                    if (peek() != '\n') ++line_;
                }
                append(static_cast<char>(c));
            }
            if (!closed) {
                if (!row.error) {
                    row.error = fmt::format("a quoted cell that starts on line {} is never closed", start_line);
                    row.error_column = column_or_none(count);
                }
                finish_cell(row, cell, count);
                break;
            }
            // After the closing quote: delimiter, end of line or end of input; anything else is kept as text.
            c = peek();
            if (c != delim && c != '\n' && c != '\r' && c >= 0) {
                if (!row.error) {
                    row.error = "unexpected text after a closing quote (quotes inside a quoted cell are written \"\")";
                    row.error_column = column_or_none(count);
                }
                while ((c = peek()) >= 0 && c != delim && c != '\n' && c != '\r') append(static_cast<char>(get()));
            }
        } else {
            // Unquoted: copy runs of ordinary bytes straight from the buffer.
            for (;;) {
                if (pos_ == end_ && !fill()) break;
                std::size_t start = pos_;
                while (pos_ < end_) {
                    char ch = buffer_[pos_];
                    if (ch == delim || ch == '\n' || ch == '\r') break;
                    ++pos_;
                }
                std::size_t n = pos_ - start;
                consumed_ += n;
                if (cell.size() + n <= options_.max_cell_bytes) {
                    cell.append(buffer_.data() + start, n);
                } else {
                    for (std::size_t k = 0; k < n; ++k) append(buffer_[start + k]);
                }
                if (pos_ < end_) break;
            }
        }
        c = peek();
        too_long = false;
        finish_cell(row, cell, count);
        if (c == delim) {
            get();
            continue;
        }
        if (c == '\r') {
            get();
            if (peek() == '\n') get();
            ++line_;
            end_of_row = true;
        } else if (c == '\n') {
            get();
            ++line_;
            end_of_row = true;
        } else {
            end_of_row = true;  // end of input
        }
        if (end_of_row) break;
    }
    row.cells.resize(count);

    for (std::size_t i = 0; i < row.cells.size(); ++i) {
        auto& text = row.cells[i];
        if (options_.encoding == CsvEncoding::kWindows1251) {
            bool ascii = std::all_of(text.begin(), text.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x80; });
            if (!ascii) text = cp1251_to_utf8(text);
        } else if (!valid_utf8(text)) {
            if (!row.error) {
                row.error = "the cell is not valid UTF-8 (save the file as UTF-8, or import with encoding=windows-1251)";
                row.error_column = i;
            }
        }
    }
    return true;
}

}  // namespace parley::customdata

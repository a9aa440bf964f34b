// Fuzz target: the streaming CSV reader (any bytes, odd chunk sizes, both encodings, several delimiters) and the
// writer round trip of every row it produces.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "customdata/csv.h"

namespace {

using namespace parley::customdata;

/// Hands out the input in chunks whose sizes come from the first byte, to cross buffer boundaries.
class ChunkedSource final : public CsvSource {
public:
    ChunkedSource(std::string_view text, std::size_t step) : text_(text), step_(step ? step : 1) {}
    std::size_t read(char* buffer, std::size_t size) override {
        std::size_t n = std::min({size, step_, text_.size() - offset_});
        std::copy_n(text_.data() + offset_, n, buffer);
        offset_ += n;
        return n;
    }
    void rewind() override { offset_ = 0; }

private:
    std::string_view text_;
    std::size_t step_;
    std::size_t offset_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t control = data[0];
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    CsvOptions options;
    options.delimiter = ",;\t|"[control & 3];
    options.encoding = (control & 4) ? CsvEncoding::kWindows1251 : CsvEncoding::kUtf8;
    options.max_cell_bytes = (control & 8) ? 16 : 1 << 20;
    options.max_columns = (control & 16) ? 4 : 1000;
    ChunkedSource source(text, (control >> 5) + 1);
    CsvReader reader(source, options);
    CsvRow row;
    std::size_t rows = 0;
    std::size_t last_line = 0;
    while (reader.next(row)) {
        if (++rows > size + 1) __builtin_trap();            // every row consumes input
        if (row.line < last_line) __builtin_trap();         // lines only grow
        last_line = row.line;
        if (row.cells.size() > options.max_columns) __builtin_trap();
        if (row.error_column && *row.error_column >= options.max_columns) __builtin_trap();
        for (const auto& cell : row.cells) {
            // The limit counts input bytes; a Windows-1251 byte becomes up to 3 UTF-8 bytes.
            const std::size_t growth = options.encoding == CsvEncoding::kWindows1251 ? 3 : 1;
            if (cell.size() > options.max_cell_bytes * growth && !row.error) __builtin_trap();
            if (!row.error && !valid_utf8(cell)) __builtin_trap();  // clean rows are valid UTF-8
        }
        if (row.error || row.cells.empty()) continue;
        // A clean row written back and read again gives the same cells.
        std::string line;
        for (std::size_t i = 0; i < row.cells.size(); ++i) {
            if (i) line.push_back(options.delimiter);
            append_csv_cell(line, row.cells[i], false, options.delimiter);
        }
        line += "\r\n";
        StringCsvSource again(line);
        CsvOptions utf8 = options;
        utf8.encoding = CsvEncoding::kUtf8;
        utf8.max_cell_bytes = 1 << 20;
        utf8.max_columns = 1000;
        CsvReader reader2(again, utf8);
        CsvRow back;
        bool all_empty = true;
        for (const auto& c : row.cells) all_empty &= c.empty();
        if (row.cells.size() == 1 && all_empty) continue;  // a lone empty cell is a blank line
        if (!reader2.next(back) || back.error || back.cells != row.cells) __builtin_trap();
    }
    return 0;
}

#include "customdata/csv.h"

#include <gtest/gtest.h>

namespace parley::customdata {
namespace {

/// A source that hands out `step` bytes per read, to cross every buffer boundary.
class TrickleSource final : public CsvSource {
public:
    TrickleSource(std::string text, std::size_t step) : text_(std::move(text)), step_(step) {}
    std::size_t read(char* buffer, std::size_t size) override {
        std::size_t n = std::min({size, step_, text_.size() - offset_});
        std::copy_n(text_.data() + offset_, n, buffer);
        offset_ += n;
        return n;
    }
    void rewind() override { offset_ = 0; }

private:
    std::string text_;
    std::size_t step_;
    std::size_t offset_ = 0;
};

std::vector<CsvRow> parse(CsvSource& source, CsvOptions options = {}) {
    CsvReader reader(source, options);
    std::vector<CsvRow> rows;
    CsvRow row;
    while (reader.next(row)) rows.push_back(row);
    return rows;
}

std::vector<CsvRow> parse(const std::string& text, CsvOptions options = {}) {
    StringCsvSource source(text);
    return parse(source, options);
}

using Cells = std::vector<std::string>;

TEST(CsvReader, Rfc4180QuotesNewlinesAndLineEndings) {
    const std::string text =
        "name,note\r\n"
        "\"Olena, Kyiv\",\"said \"\"hi\"\"\"\r\n"
        "plain,\"two\r\nlines\"\n"
        "\n"
        "last,\r"
        "x,y";
    for (std::size_t step : {1u, 2u, 3u, 7u, 1000u}) {
        TrickleSource source(text, step);
        auto rows = parse(source);
        ASSERT_EQ(rows.size(), 5u) << step;
        EXPECT_EQ(rows[0].cells, (Cells{"name", "note"}));
        EXPECT_EQ(rows[1].cells, (Cells{"Olena, Kyiv", "said \"hi\""}));
        EXPECT_EQ(rows[2].cells, (Cells{"plain", "two\r\nlines"}));
        EXPECT_EQ(rows[3].cells, (Cells{"last", ""}));
        EXPECT_EQ(rows[4].cells, (Cells{"x", "y"}));
        EXPECT_EQ(rows[2].line, 3u);
        EXPECT_EQ(rows[3].line, 6u);  // the quoted line break and the blank line count
        for (const auto& r : rows) EXPECT_FALSE(r.error) << *r.error;
    }
}

TEST(CsvReader, BomIsDroppedAndUtf16Refused) {
    auto rows = parse("\xEF\xBB\xBFназва,ціна\nчай,5\n");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].cells, (Cells{"назва", "ціна"}));

    const std::string bytes("\xFF\xFEn\0a\0", 6);
    StringCsvSource utf16(bytes);
    CsvReader reader(utf16);
    CsvRow row;
    EXPECT_FALSE(reader.next(row));
    ASSERT_TRUE(reader.fatal_error());
    EXPECT_NE(reader.fatal_error()->find("UTF-16"), std::string::npos);
}

TEST(CsvReader, MalformedRowsAreReportedPerRow) {
    auto rows = parse("a,b\n\"x\"y,2\nok,3\n\"never closed,4\n");
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_FALSE(rows[0].error);
    ASSERT_TRUE(rows[1].error);
    EXPECT_EQ(rows[1].error_column, 0u);
    EXPECT_EQ(rows[1].cells.size(), 2u);
    EXPECT_FALSE(rows[2].error);
    EXPECT_EQ(rows[2].cells, (Cells{"ok", "3"}));
    ASSERT_TRUE(rows[3].error);
    EXPECT_NE(rows[3].error->find("never closed"), std::string::npos);
}

TEST(CsvReader, StrayQuoteInsideUnquotedCellIsText) {
    auto rows = parse("size\n5\" screen\n");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[1].cells, (Cells{"5\" screen"}));
    EXPECT_FALSE(rows[1].error);
}

TEST(CsvReader, InvalidUtf8NamesTheCell) {
    auto rows = parse("a,b\nok,\xC3\x28\n");
    ASSERT_EQ(rows.size(), 2u);
    ASSERT_TRUE(rows[1].error);
    EXPECT_EQ(rows[1].error_column, 1u);
}

TEST(CsvReader, Windows1251IsTranscoded) {
    CsvOptions options;
    options.encoding = CsvEncoding::kWindows1251;
    auto rows = parse("\xCF\xF0\xE8\xE2\xB3\xF2;\xBF\xE6\xE0\n", [&] {
        options.delimiter = ';';
        return options;
    }());
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].cells, (Cells{"Привіт", "їжа"}));
}

TEST(CsvReader, LimitsMakeRowsBad) {
    CsvOptions options;
    options.max_cell_bytes = 4;
    options.max_columns = 3;
    auto rows = parse("abcdefgh,x\na,b,c,d\nok,1\n", options);
    ASSERT_EQ(rows.size(), 3u);
    ASSERT_TRUE(rows[0].error);
    EXPECT_EQ(rows[0].cells[0], "abcd");
    ASSERT_TRUE(rows[1].error);
    EXPECT_EQ(rows[1].cells.size(), 3u);
    EXPECT_FALSE(rows[2].error);
}

TEST(CsvReader, EmptyInputHasNoRows) {
    EXPECT_TRUE(parse("").empty());
    EXPECT_TRUE(parse("\n\r\n").empty());
}

TEST(CsvWriter, QuotesAndEscapesFormulas) {
    std::string out;
    append_csv_cell(out, "plain", true);
    out += '|';
    append_csv_cell(out, "a,b", true);
    out += '|';
    append_csv_cell(out, "say \"hi\"", true);
    out += '|';
    append_csv_cell(out, "=HYPERLINK(\"x\")", true);
    out += '|';
    append_csv_cell(out, "+1", true);
    out += '|';
    append_csv_cell(out, "-2", false);
    out += '|';
    append_csv_cell(out, "@cmd", true);
    out += '|';
    append_csv_cell(out, "two\nlines", true);
    EXPECT_EQ(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"'=HYPERLINK(\"\"x\"\")\"|'+1|-2|'@cmd|\"two\nlines\"");
}

TEST(CsvWriter, RoundTripsThroughTheReader) {
    const Cells cells{"", " padded ", "a\"b", "line\r\nbreak", "Ґанок", "x,y"};
    std::string text;
    for (std::size_t i = 0; i < cells.size(); ++i) {
        if (i) text += ',';
        append_csv_cell(text, cells[i], false);
    }
    text += "\r\n";
    auto rows = parse(text);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].cells, cells);
}

TEST(Utf8, Validation) {
    EXPECT_TRUE(valid_utf8("Привіт, world"));
    EXPECT_FALSE(valid_utf8("\xC0\xAF"));          // overlong
    EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate
    EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
    EXPECT_FALSE(valid_utf8("\xE2\x82"));          // truncated
}

}  // namespace
}  // namespace parley::customdata

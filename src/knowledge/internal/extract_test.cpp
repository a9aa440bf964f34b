#include "knowledge/internal/extract.h"

#include <gtest/gtest.h>

#include "knowledge/test_util.h"

namespace parley::knowledge::internal {
namespace {

using testing::docx_xml;
using testing::make_docx;
using testing::make_pdf;

std::string all_text(const std::vector<Block>& blocks) {
    std::string out;
    for (const auto& b : blocks) out += b.text + "\n";
    return out;
}

std::string error_of(Format f, const std::string& content) {
    try {
        extract(f, content);
    } catch (const ExtractError& e) {
        return e.what();
    }
    return "";
}

TEST(Detect, ByContentFirst) {
    EXPECT_EQ(detect_format(make_pdf({"hi"}), "notes.txt", "text/plain").format, Format::kPdf);
    EXPECT_EQ(detect_format(make_docx(docx_xml({"hi"})), "x.pdf", "application/pdf").format, Format::kDocx);
    EXPECT_EQ(detect_format("<!DOCTYPE html><html><body>x</body></html>", "a.txt", "").format, Format::kHtml);
    // A declared PDF that is really text is read as text.
    auto lying = detect_format("just some words", "fake.pdf", "application/pdf");
    EXPECT_TRUE(lying.error.empty());
    EXPECT_EQ(lying.format, Format::kText);
    EXPECT_EQ(detect_format("a,b\n1,2\n", "prices.csv", "").format, Format::kCsv);
    EXPECT_EQ(detect_format("a,b\n1,2\n", "upload", "text/csv; charset=utf-8").format, Format::kCsv);
    EXPECT_EQ(detect_format("# Title\n\ntext", "faq.md", "").format, Format::kMarkdown);
    EXPECT_EQ(detect_format("<p>x</p>", "page.html", "").format, Format::kHtml);
}

TEST(Detect, RefusesWhatIsNotADocument) {
    EXPECT_FALSE(detect_format(std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16), "a.png", "image/png").error.empty());
    EXPECT_FALSE(detect_format(std::string("\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8) + "rest", "old.doc", "").error.empty());
    EXPECT_FALSE(detect_format(std::string("PK\x03\x04garbage", 11), "x.docx", "").error.empty());
    EXPECT_FALSE(detect_format("\xFF\xFEh\0i\0", "u16.txt", "").error.empty());
}

TEST(Extract, Markdown) {
    auto blocks = extract(Format::kMarkdown,
                          "# Delivery\n\nWe ship **fast** via [Nova Poshta](https://novaposhta.ua).\n"
                          "Second line of the\nsame paragraph.\n\n## Cost\n\n- Branch: 70 UAH\n- Courier: 120 UAH\n\n"
                          "| Method | Price |\n|---|---|\n| Locker | 60 |\n\n```\ncode block\n```\n");
    ASSERT_GE(blocks.size(), 5u);
    EXPECT_EQ(blocks[0].kind, Block::Kind::kHeading);
    EXPECT_EQ(blocks[0].text, "Delivery");
    EXPECT_EQ(blocks[1].text, "We ship fast via Nova Poshta.\nSecond line of the same paragraph.");
    EXPECT_EQ(blocks[2].level, 2);
    EXPECT_EQ(blocks[3].text, "Branch: 70 UAH\nCourier: 120 UAH");
    EXPECT_EQ(blocks[4].text, "Method | Price");
    EXPECT_EQ(blocks[5].text, "Locker | 60");
    EXPECT_EQ(blocks.back().text, "code block");
}

TEST(Extract, HtmlDropsBoilerplate) {
    auto blocks = extract(Format::kHtml,
                          "<html><head><title>T</title><script>var x = 'secret';</script></head><body>"
                          "<nav><a href='/'>Home</a></nav><div class='cookie-banner'>Accept cookies</div>"
                          "<h1>Returns</h1><p>You can return items within <b>14 days</b>.</p>"
                          "<table><tr><td>Item</td><td>Days</td></tr></table>"
                          "<footer>© Lastivka</footer></body></html>");
    std::string text = all_text(blocks);
    EXPECT_NE(text.find("You can return items within 14 days."), std::string::npos) << text;
    EXPECT_NE(text.find("Item | Days"), std::string::npos) << text;
    EXPECT_EQ(text.find("secret"), std::string::npos);
    EXPECT_EQ(text.find("Home"), std::string::npos);
    EXPECT_EQ(text.find("cookies"), std::string::npos);
    EXPECT_EQ(text.find("Lastivka"), std::string::npos);
    EXPECT_EQ(blocks[0].kind, Block::Kind::kHeading);
}

TEST(Extract, HtmlPrefersMain) {
    auto blocks = extract(Format::kHtml, "<body><div>Menu junk</div><main><p>Real content.</p></main></body>");
    EXPECT_EQ(all_text(blocks), "Real content.\n");
}

TEST(Extract, CsvRowsCarryHeaders) {
    auto blocks = extract(Format::kCsv, "Question;Answer\n\"Do you ship abroad?\";\"No; Ukraine only.\"\nEmpty;\n");
    ASSERT_EQ(blocks.size(), 2u);
    EXPECT_EQ(blocks[0].kind, Block::Kind::kRow);
    EXPECT_EQ(blocks[0].text, "Question: Do you ship abroad?\nAnswer: No; Ukraine only.");
    EXPECT_EQ(blocks[1].text, "Question: Empty");
    auto rows = parse_csv("a,\"b\"\"c\",d\r\n\r\n1,2,3");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0][1], "b\"c");
}

TEST(Extract, PlainTextHeadingsAndWrappedLines) {
    auto blocks = extract(Format::kText, "Returns\n\nYou can return an item\nwithin 14 days.\nSecond sentence here.\n");
    ASSERT_EQ(blocks.size(), 2u);
    EXPECT_EQ(blocks[0].kind, Block::Kind::kHeading);
    EXPECT_EQ(blocks[1].text, "You can return an item within 14 days.\nSecond sentence here.");
}

TEST(Extract, Windows1251Text) {
    // "Привіт" in Windows-1251.
    auto blocks = extract(Format::kText, "\xCF\xF0\xE8\xE2\xB3\xF2 world");
    EXPECT_EQ(blocks[0].text, "Привіт world");
}

TEST(Extract, Pdf) {
    auto blocks = extract(Format::kPdf, make_pdf({"Warranty terms", "", "The warranty lasts 12 months."}));
    EXPECT_NE(all_text(blocks).find("The warranty lasts 12 months."), std::string::npos) << all_text(blocks);
}

TEST(Extract, BadPdfs) {
    EXPECT_NE(error_of(Format::kPdf, "%PDF-1.4\nthis is not a pdf at all"), "");
    EXPECT_NE(error_of(Format::kPdf, make_pdf({})).find("no text"), std::string::npos);
    // A PDF whose trailer names a Standard security handler with a user password.
    std::string pdf = make_pdf({"secret"});
    auto pos = pdf.find("/Root 1 0 R");
    pdf.insert(pos, "/Encrypt << /Filter /Standard /V 1 /R 2 /Length 40 /P -4 /O <" + std::string(64, 'a') +
                        "> /U <" + std::string(64, 'b') + "> >> /ID [<00112233445566778899aabbccddeeff> "
                        "<00112233445566778899aabbccddeeff>] ");
    std::string error = error_of(Format::kPdf, pdf);
    EXPECT_NE(error, "");
    EXPECT_NE(error.find("encrypted"), std::string::npos) << error;
}

TEST(Extract, Docx) {
    auto blocks = extract(Format::kDocx, make_docx(docx_xml({"# Payment", "Pay by card &amp; cash.", "Second."})));
    ASSERT_EQ(blocks.size(), 3u);
    EXPECT_EQ(blocks[0].kind, Block::Kind::kHeading);
    EXPECT_EQ(blocks[0].text, "Payment");
    EXPECT_EQ(blocks[1].text, "Pay by card & cash.");
}

TEST(Extract, BadDocx) {
    EXPECT_NE(error_of(Format::kDocx, make_docx("<w:document><w:body><w:p>")).find("XML"), std::string::npos);
    EXPECT_NE(error_of(Format::kDocx, make_docx(docx_xml({}))).find("no text"), std::string::npos);
    // A zip bomb: 70 MB of one repeated character compress to a few dozen KB.
    std::string bomb = make_docx(docx_xml({std::string(kMaxDocxXmlBytes + (6u << 20), 'a')}));
    EXPECT_LT(bomb.size(), 1u << 20);
    EXPECT_NE(error_of(Format::kDocx, bomb).find("zip bomb"), std::string::npos);
}

TEST(Extract, EmptyDocuments) {
    EXPECT_NE(error_of(Format::kText, "   \n\n  "), "");
    EXPECT_NE(error_of(Format::kHtml, "<html><body><script>x</script></body></html>"), "");
    EXPECT_NE(error_of(Format::kText, std::string("a\0b", 3)), "");
}

}  // namespace
}  // namespace parley::knowledge::internal

// The "search clients by file" parser and the multipart extraction: formats, headers, encodings, bad lines.
#include <gtest/gtest.h>

#include "clients/internal/file_list.h"
#include "clients/test_util.h"
#include "core/ids.h"

namespace parley::clients::internal {
namespace {

using testing::thrown;

std::vector<std::string> keys(const ParsedList& p) {
    std::vector<std::string> out;
    for (const auto& e : p.entries) out.push_back(e.key);
    return out;
}

TEST(FileList, TextOnePhoneALineWithAnyLineEnds) {
    auto p = parse_client_list("\xEF\xBB\xBF+380 50 111 22 33\r\n\r\n380671112233\r0931112233\n", ListKind::kPhone);
    EXPECT_EQ(keys(p), (std::vector<std::string>{"380501112233", "380671112233", "0931112233"}));
    EXPECT_EQ(p.lines, 3u);
    EXPECT_TRUE(p.problems.empty());
    EXPECT_EQ(p.entries[1].line, 3u);  // the blank line counts as a physical line
    EXPECT_EQ(p.entries[2].line, 4u);
    EXPECT_FALSE(p.header);
}

TEST(FileList, CsvColumnChosenByHeader) {
    auto p = parse_client_list("Name;Телефон;Email\nOlena;+380501112233;o@x.ua\n\"Ivan; Jr\";\"380671112233\";\n",
                               ListKind::kAuto);
    ASSERT_TRUE(p.header);
    EXPECT_EQ(*p.header, "Телефон");
    EXPECT_EQ(keys(p), (std::vector<std::string>{"380501112233", "380671112233"}));
    auto by_mail = parse_client_list("name,e-mail\nOlena,O@X.ua\nIvan,\n", ListKind::kEmail);
    EXPECT_EQ(keys(by_mail), std::vector<std::string>{"o@x.ua"});
    ASSERT_EQ(by_mail.problems.size(), 1u);
    EXPECT_EQ(by_mail.problems[0].reason, "invalid_value");
    EXPECT_EQ(by_mail.problems[0].line, 3u);
    // No header: the first column, the first line is data.
    auto plain = parse_client_list("380501112233,Olena\n380671112233,Ivan\n", ListKind::kAuto);
    EXPECT_EQ(plain.entries.size(), 2u);
    EXPECT_FALSE(plain.header);
}

TEST(FileList, AutoKindPerValue) {
    std::string id = core::new_id();
    auto p = parse_client_list(id + "\nolena@example.com\n+380501112233\nhello\n", ListKind::kAuto);
    ASSERT_EQ(p.entries.size(), 3u);
    EXPECT_EQ(p.entries[0].kind, ListKind::kId);
    EXPECT_EQ(p.entries[1].kind, ListKind::kEmail);
    EXPECT_EQ(p.entries[2].kind, ListKind::kPhone);
    ASSERT_EQ(p.problems.size(), 1u);
    EXPECT_EQ(p.problems[0].value, "hello");
    auto ids = parse_client_list("not-an-id\n" + id + "\n", ListKind::kId);
    EXPECT_EQ(ids.entries.size(), 1u);
    EXPECT_EQ(ids.problems.size(), 1u);
}

TEST(FileList, MalformedLinesAreReportedNotFatal) {
    std::string long_line(kMaxFileLineBytes + 1, '1');
    std::string text = "phone\n\"+380501112233\" trailing\n\xC3\x28\n" + long_line + "\n380501112233\n380 50 111 22 33\n";
    text += std::string("12345\0" "67\n", 9);
    auto p = parse_client_list(text, ListKind::kPhone);
    EXPECT_EQ(keys(p), std::vector<std::string>{"380501112233"});
    ASSERT_EQ(p.problems.size(), 5u);
    EXPECT_EQ(p.problems[0].reason, "malformed_line");  // text after a closing quote
    EXPECT_EQ(p.problems[1].reason, "malformed_line");  // invalid UTF-8
    EXPECT_EQ(p.problems[2].reason, "malformed_line");  // too long
    EXPECT_LE(p.problems[2].value.size(), 200u);        // reported cut
    EXPECT_EQ(p.problems[3].reason, "duplicate");
    EXPECT_EQ(p.problems[4].reason, "malformed_line");  // NUL
    EXPECT_EQ(p.lines, 6u);
}

TEST(FileList, EncodingsAndSizeLimits) {
    EXPECT_EQ(thrown([] { parse_client_list(std::string("\xFF\xFE" "3\0" "8\0", 6), ListKind::kAuto); }).code,
              "unsupported_encoding");
    EXPECT_EQ(thrown([] { parse_client_list(std::string("\xFE\xFF\0" "3", 4), ListKind::kAuto); }).code,
              "unsupported_encoding");
    std::string many;
    for (std::size_t i = 0; i <= kMaxFileLines; ++i) many += "1\n";
    auto big = thrown([&] { parse_client_list(many, ListKind::kPhone); });
    EXPECT_EQ(big.status, 413);
    EXPECT_EQ(big.code, "too_many_lines");
    EXPECT_TRUE(parse_client_list("", ListKind::kAuto).entries.empty());
    EXPECT_TRUE(parse_client_list("\n\r\n  \n", ListKind::kAuto).entries.empty());
}

TEST(Multipart, ExtractsTheFilePart) {
    std::string body =
        "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"list.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        "phone\r\n380501112233\r\n"
        "--XyZ--\r\n";
    auto file = multipart_file("multipart/form-data; boundary=XyZ", body);
    ASSERT_TRUE(file);
    EXPECT_EQ(*file, "phone\r\n380501112233");
    EXPECT_FALSE(multipart_file("text/csv", body));
    EXPECT_EQ(thrown([&] { multipart_file("multipart/form-data", body); }).code, "invalid_multipart");
    EXPECT_EQ(thrown([&] { multipart_file("multipart/form-data; boundary=Other", body); }).code, "invalid_multipart");
    EXPECT_EQ(thrown([&] { multipart_file("multipart/form-data; boundary=XyZ", "--XyZ\r\nno headers end"); }).code,
              "invalid_multipart");
    EXPECT_EQ(thrown([&] {
                  multipart_file("multipart/form-data; boundary=XyZ",
                                 "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XyZ--");
              }).code,
              "invalid_multipart");
    auto quoted = multipart_file("multipart/form-data; boundary=\"XyZ\"", body);
    ASSERT_TRUE(quoted);
}

}  // namespace
}  // namespace parley::clients::internal

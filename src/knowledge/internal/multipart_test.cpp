#include "knowledge/internal/multipart.h"

#include <gtest/gtest.h>

namespace parley::knowledge::internal {
namespace {

TEST(Multipart, Boundary) {
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=abc"), "abc");
    EXPECT_EQ(multipart_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\""), "a b");
    EXPECT_THROW(multipart_boundary("application/json"), MultipartError);
    EXPECT_THROW(multipart_boundary("multipart/form-data"), MultipartError);
    EXPECT_THROW(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'x')), MultipartError);
}

TEST(Multipart, ParsesFileAndFields) {
    std::string body =
        "preamble\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=\"name\"\r\n\r\n"
        "Price list\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"C:\\\\docs\\\\prices.csv\"\r\n"
        "Content-Type: text/csv\r\n\r\n"
        "a,b\r\n1,2\r\n--XyZ--\r\nepilogue";
    auto parts = parse_multipart(body, "XyZ");
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[0].name, "name");
    EXPECT_EQ(parts[0].body, "Price list");
    EXPECT_EQ(parts[1].name, "file");
    EXPECT_EQ(parts[1].filename, "prices.csv");
    EXPECT_EQ(parts[1].content_type, "text/csv");
    EXPECT_EQ(parts[1].body, "a,b\r\n1,2");
}

TEST(Multipart, ExtendedFilenameAndBareLineFeeds) {
    std::string body =
        "--b\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"; filename*=UTF-8''%D0%B4%D0%BE%D1%81.txt\n\n"
        "text\n--b--\n";
    auto parts = parse_multipart(body, "b");
    ASSERT_EQ(parts.size(), 1u);
    EXPECT_EQ(parts[0].filename, "дос.txt");
    EXPECT_EQ(parts[0].body, "text");
}

TEST(Multipart, BinaryBodyWithBoundaryLikeBytes) {
    std::string data = std::string("--b not at line start \0\r\n-b\r\n", 28);
    std::string body = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n" + data + "\r\n--b--";
    auto parts = parse_multipart(body, "b");
    ASSERT_EQ(parts.size(), 1u);
    EXPECT_EQ(parts[0].body, data);
}

TEST(Multipart, RefusesMalformedInput) {
    EXPECT_THROW(parse_multipart("no boundary here", "b"), MultipartError);
    EXPECT_THROW(parse_multipart("--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nunterminated", "b"),
                 MultipartError);
    EXPECT_THROW(parse_multipart("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "b"), MultipartError);
    EXPECT_THROW(parse_multipart("--b\r\nContent-Disposition: attachment\r\n\r\nx\r\n--b--", "b"), MultipartError);
    EXPECT_THROW(parse_multipart("--b\r\nX-Long: " + std::string(kMaxPartHeaderBytes + 10, 'a') + "\r\n\r\nx\r\n--b--", "b"),
                 MultipartError);
    std::string many;
    for (std::size_t i = 0; i <= kMaxMultipartParts; ++i) many += "--b\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\nx\r\n";
    many += "--b--";
    EXPECT_THROW(parse_multipart(many, "b"), MultipartError);
}

}  // namespace
}  // namespace parley::knowledge::internal

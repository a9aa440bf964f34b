#include "scenario/internal/regex.h"

#include <gtest/gtest.h>

#include <chrono>

namespace parley::scenario::internal {
namespace {

Regex re(std::string_view p) {
    auto r = Regex::compile(p);
    if (auto* e = std::get_if<std::string>(&r)) {
        ADD_FAILURE() << p << ": " << *e;
        return {};
    }
    return std::get<Regex>(std::move(r));
}

TEST(Regex, Basics) {
    EXPECT_TRUE(re("[A-Z]{2}-\\d{3}").full_match("AB-123"));
    EXPECT_FALSE(re("[A-Z]{2}-\\d{3}").full_match("AB-123x"));
    EXPECT_TRUE(re("[A-Z]{2}-\\d{3}").search("x AB-123x"));
    EXPECT_TRUE(re("^a(b|c)*d$").full_match("abcbcd"));
    EXPECT_FALSE(re("^a(b|c)*d$").search("abxd"));
    EXPECT_TRUE(re("colou?r").search("my color"));
    EXPECT_TRUE(re("a{2,3}").full_match("aaa"));
    EXPECT_FALSE(re("a{2,3}").full_match("aaaa"));
    EXPECT_TRUE(re("a{2,}").full_match("aaaaa"));
    EXPECT_TRUE(re("[^0-9]+").full_match("abc"));
    EXPECT_TRUE(re("\\w+@\\w+\\.com").full_match("me@site.com"));
    EXPECT_TRUE(re("\\S+\\s\\S+").full_match("a b"));
    EXPECT_TRUE(re("(?:ab)+").full_match("ababab"));
    EXPECT_TRUE(re(".*").full_match(""));
    EXPECT_TRUE(re("x*").search(""));
}

TEST(Regex, Utf8AndCase) {
    EXPECT_TRUE(re("^при.іт$").full_match("привіт"));
    EXPECT_TRUE(re("[а-яіїєґ]+").full_match("ґанок"));
    EXPECT_TRUE(re("(?i)привіт").search("ПРИВІТ, світ"));
    EXPECT_TRUE(re("(?i)[A-Z]+").full_match("abcXYZ"));
    EXPECT_FALSE(re("привіт").search("ПРИВІТ"));
}

TEST(Regex, Errors) {
    for (const char* bad : {"(", "a)", "[a", "*a", "a{3,1}", "\\", "a{1000}", "(?<x>a)", "\\q", "[z-a]"}) {
        EXPECT_TRUE(std::holds_alternative<std::string>(Regex::compile(bad))) << bad;
    }
    EXPECT_TRUE(std::holds_alternative<std::string>(Regex::compile(std::string(600, 'a'))));
    EXPECT_TRUE(std::holds_alternative<std::string>(Regex::compile("((a{100}){100}){100}")));
}

TEST(Regex, CatastrophicPatternsStayLinear) {
    auto start = std::chrono::steady_clock::now();
    Regex r = re("(a+)+$");
    std::string text(5000, 'a');
    text += "b";
    EXPECT_FALSE(r.full_match(text));
    EXPECT_TRUE(r.search(text.substr(0, 5000)));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

}  // namespace
}  // namespace parley::scenario::internal

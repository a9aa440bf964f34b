#include "auth/internal/validate.h"

#include <gtest/gtest.h>

namespace parley::auth::internal {
namespace {

TEST(Validate, EmailsAreTrimmedAndLowerCased) {
    EXPECT_EQ(normalize_email("  Olena.K@Example.COM \n"), "olena.k@example.com");
    EXPECT_EQ(normalize_email("admin@localhost"), "admin@localhost");
    for (const char* bad : {"", "no-at", "@example.com", "a@", "a@@b.c", "a b@c.d", "a@b..c", "a@.b", "a@b.",
                            "a@b_c.d", ".a@b.c", "a<b@c.d"}) {
        EXPECT_FALSE(normalize_email(bad)) << bad;
    }
    EXPECT_FALSE(normalize_email(std::string(65, 'a') + "@b.c"));
}

TEST(Validate, NamesAndLanguages) {
    EXPECT_EQ(normalize_name("  Олена  "), "Олена");
    EXPECT_FALSE(normalize_name("   "));
    EXPECT_FALSE(normalize_name("a\x01"));
    EXPECT_FALSE(normalize_name(std::string(201, 'x')));
    EXPECT_TRUE(is_valid_language("uk"));
    EXPECT_TRUE(is_valid_language("pt-BR"));
    EXPECT_FALSE(is_valid_language("u"));
    EXPECT_FALSE(is_valid_language("en_US"));
}

TEST(Validate, HexTokens) {
    EXPECT_TRUE(is_hex_token(std::string(64, 'a')));
    EXPECT_FALSE(is_hex_token(std::string(63, 'a')));
    EXPECT_FALSE(is_hex_token(std::string(64, 'A')));
}

}  // namespace
}  // namespace parley::auth::internal

#include "knowledge/internal/analyzer.h"

#include <gtest/gtest.h>

namespace parley::knowledge::internal {
namespace {

TEST(Analyzer, FoldsCaseDiacriticsAndApostrophes) {
    EXPECT_EQ(fold("Доставка ДОДОМУ"), "доставка додому");
    EXPECT_EQ(fold("Café naïve"), "cafe naive");
    EXPECT_EQ(fold("м'ясо м’ясо мʼясо"), "мясо мясо мясо");
    EXPECT_EQ(fold("Ґанок, їжак; йод!"), "ґанок іжак иод");
    EXPECT_EQ(fold("order #42-b, 3.5 kg"), "order 42 b 3 5 kg");
    EXPECT_EQ(fold("'quoted'"), "quoted");
    EXPECT_EQ(fold("\xff\xfe bad"), "bad");
}

TEST(Analyzer, TokensAreBounded) {
    std::string longword(500, 'a');
    auto tokens = tokenize(longword + " b");
    ASSERT_EQ(tokens.size(), 2u);
    EXPECT_EQ(tokens[0].size(), kMaxTokenBytes);
}

TEST(Analyzer, InflectedUkrainianFormsShareAStem) {
    auto s = [](const char* w) { return stem(fold(w)); };
    EXPECT_EQ(s("доставка"), s("доставку"));
    EXPECT_EQ(s("доставка"), s("доставки"));
    EXPECT_EQ(s("доставка"), s("доставкою"));
    EXPECT_EQ(s("оплата"), s("оплату"));
    EXPECT_EQ(s("оплата"), s("оплатити"));
    EXPECT_EQ(s("гарантія"), s("гарантії"));
    EXPECT_EQ(s("гарантія"), s("гарантію"));
    EXPECT_EQ(s("повернення"), s("повернути"));
    EXPECT_EQ(s("людина"), s("людиною"));
    EXPECT_EQ(s("замовлення"), s("замовленні"));
    EXPECT_NE(s("доставка"), s("оплата"));
}

TEST(Analyzer, EnglishStems) {
    EXPECT_EQ(stem("deliveries"), stem("delivery"));
    EXPECT_EQ(stem("delivered"), stem("delivering"));
    EXPECT_EQ(stem("returns"), stem("return"));
    EXPECT_EQ(stem("shipping"), stem("ship"));
    EXPECT_EQ(stem("warranties"), stem("warranty"));
    EXPECT_EQ(stem("2024"), "2024");
    EXPECT_EQ(stem("x100"), "x100");
}

TEST(Analyzer, AnalyzeDropsStopWordsUnlessNothingIsLeft) {
    auto a = analyze("Як оплатити замовлення?");
    EXPECT_EQ(a.words, "оплатити замовлення");
    auto b = analyze("who are you");
    EXPECT_EQ(b.words, "who are you");
    EXPECT_TRUE(is_stop_word("the"));
    EXPECT_TRUE(is_stop_word(fold("чи")));
    EXPECT_FALSE(is_stop_word("delivery"));
}

TEST(Analyzer, Utf8Helpers) {
    EXPECT_TRUE(valid_utf8("Привіт"));
    EXPECT_FALSE(valid_utf8("\xd0"));
    EXPECT_EQ(char_count("Привіт"), 6u);
    EXPECT_EQ(byte_offset_of_char("Привіт", 2), 4u);
    EXPECT_EQ(byte_offset_of_char("ab", 5), 2u);
}

}  // namespace
}  // namespace parley::knowledge::internal

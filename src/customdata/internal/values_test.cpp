#include "customdata/internal/values.h"

#include <gtest/gtest.h>

namespace parley::customdata::internal {
namespace {

Field field(FieldType type) {
    Field f;
    f.id = "f1";
    f.name = "x";
    f.type = type;
    return f;
}

TEST(Values, Dates) {
    EXPECT_EQ(parse_date("2024-02-29"), "2024-02-29");
    EXPECT_EQ(parse_date("29.02.2024"), "2024-02-29");
    EXPECT_FALSE(parse_date("2023-02-29"));
    EXPECT_FALSE(parse_date("2024-13-01"));
    EXPECT_FALSE(parse_date("2024-1-01"));
    EXPECT_FALSE(parse_date("yesterday"));
}

TEST(Values, DateTimes) {
    EXPECT_EQ(parse_datetime("1970-01-01T00:00:00Z"), 0);
    EXPECT_EQ(parse_datetime("2024-05-01T10:00:00.123Z"), 1714557600123);
    EXPECT_EQ(parse_datetime("2024-05-01T13:00:00+03:00"), 1714557600000);
    EXPECT_EQ(parse_datetime("2024-05-01 10:00"), 1714557600000);
    EXPECT_EQ(parse_datetime("2024-05-01"), 1714521600000);
    EXPECT_FALSE(parse_datetime("2024-05-01T25:00:00Z"));
    EXPECT_FALSE(parse_datetime("2024-05-01T10:00:00Q"));
    EXPECT_EQ(format_datetime(1714557600123), "2024-05-01T10:00:00.123Z");
    EXPECT_EQ(format_datetime(-1), "1969-12-31T23:59:59.999Z");
    auto t = parse_datetime("0001-01-01T00:00:00Z");
    ASSERT_TRUE(t);
    EXPECT_EQ(format_datetime(*t), "0001-01-01T00:00:00.000Z");
}

TEST(Values, TextForms) {
    store::Value v;
    EXPECT_FALSE(value_from_text(field(FieldType::kNumber), "42", v));
    EXPECT_EQ(std::get<std::int64_t>(v), 42);
    EXPECT_FALSE(value_from_text(field(FieldType::kNumber), "12,5", v));
    EXPECT_EQ(std::get<double>(v), 12.5);
    EXPECT_TRUE(value_from_text(field(FieldType::kNumber), "12abc", v));
    EXPECT_TRUE(value_from_text(field(FieldType::kNumber), "nan", v));
    EXPECT_FALSE(value_from_text(field(FieldType::kBoolean), "Так", v));
    EXPECT_EQ(std::get<std::int64_t>(v), 1);
    EXPECT_FALSE(value_from_text(field(FieldType::kBoolean), "yes", v));
    EXPECT_EQ(std::get<std::int64_t>(v), 1);
    EXPECT_TRUE(value_from_text(field(FieldType::kBoolean), "maybe", v));
    EXPECT_FALSE(value_from_text(field(FieldType::kJson), R"({"a": [1, 2]})", v));
    EXPECT_EQ(std::get<std::string>(v), R"({"a":[1,2]})");
    EXPECT_TRUE(value_from_text(field(FieldType::kJson), "{oops", v));
    EXPECT_FALSE(value_from_text(field(FieldType::kText), "", v));
    EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(v));
    EXPECT_TRUE(value_from_text(field(FieldType::kReference), "-3", v));
}

TEST(Values, JsonIsStrictUnlessLenient) {
    store::Value v;
    auto number = field(FieldType::kNumber);
    EXPECT_FALSE(value_from_json(number, 2.5, false, v));
    EXPECT_EQ(std::get<double>(v), 2.5);
    EXPECT_FALSE(value_from_json(number, 3.0, false, v));
    EXPECT_EQ(std::get<std::int64_t>(v), 3);
    EXPECT_TRUE(value_from_json(number, "7", false, v));
    EXPECT_FALSE(value_from_json(number, "7", true, v));
    EXPECT_TRUE(value_from_json(field(FieldType::kBoolean), 1, false, v));
    EXPECT_TRUE(value_from_json(field(FieldType::kText), 1, false, v));
    EXPECT_FALSE(value_from_json(field(FieldType::kText), 1, true, v));
    EXPECT_EQ(std::get<std::string>(v), "1");
    EXPECT_FALSE(value_from_json(field(FieldType::kJson), boost::json::parse(R"({"k": true})"), false, v));
    EXPECT_EQ(value_to_json(field(FieldType::kJson), v), boost::json::parse(R"({"k": true})"));
}

TEST(Values, ValidatorRules) {
    Model m;
    Field text = field(FieldType::kText);
    text.min_length = 2;
    text.max_length = 5;
    text.pattern = "^[А-Яа-яІіЇїЄєҐґ]+$";
    Field num = field(FieldType::kNumber);
    num.id = "f2";
    num.min = 0;
    num.max = 10;
    Field sel = field(FieldType::kSelect);
    sel.id = "f3";
    sel.options = {"a", "b"};
    m.fields = {text, num, sel};
    Validator v(m);
    EXPECT_FALSE(v.check(0, std::string("Київ")));
    EXPECT_TRUE(v.check(0, std::string("Kyiv")));      // pattern
    EXPECT_TRUE(v.check(0, std::string("К")));         // too short
    EXPECT_TRUE(v.check(0, std::string("Київщина")));  // too long (8 characters)
    EXPECT_FALSE(v.check(1, std::int64_t{10}));
    EXPECT_TRUE(v.check(1, 10.5));
    EXPECT_FALSE(v.check(2, std::string("a")));
    EXPECT_TRUE(v.check(2, std::string("c")));
    EXPECT_TRUE(Validator::pattern_error("(unclosed"));
    EXPECT_FALSE(Validator::pattern_error("^\\+380\\d{9}$"));
}

TEST(Values, CatastrophicPatternIsBounded) {
    Model m;
    Field text = field(FieldType::kText);
    text.pattern = "^(a+)+$";
    m.fields = {text};
    Validator v(m);
    auto error = v.check(0, std::string(40, 'a') + "b");
    ASSERT_TRUE(error);
}

}  // namespace
}  // namespace parley::customdata::internal

#include "core/json.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace parley::core {
namespace {

TEST(ParseJson, AcceptsObjects) {
    auto obj = parse_json_object(R"({"name":"Olena","n":3})");
    EXPECT_EQ(required_string(obj, "name"), "Olena");
    EXPECT_EQ(required_int(obj, "n"), 3);
}

TEST(ParseJson, MalformedNamesLineAndColumn) {
    try {
        parse_json("{\n  \"a\": tru }");
        FAIL();
    } catch (const BadRequest& e) {
        EXPECT_EQ(e.code(), "invalid_json");
        EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    }
}

TEST(ParseJson, TrailingGarbageIsAnError) { EXPECT_THROW(parse_json("{} {}"), BadRequest); }

TEST(ParseJson, DepthLimit) {
    std::string deep(100, '[');
    deep += std::string(100, ']');
    try {
        parse_json(deep);
        FAIL();
    } catch (const BadRequest& e) {
        EXPECT_EQ(e.code(), "too_deep");
    }
}

TEST(ParseJson, SizeLimit) {
    JsonLimits limits;
    limits.max_bytes = 10;
    EXPECT_THROW(parse_json(R"({"a":"0123456789"})", limits), TooLarge);
}

TEST(ParseJson, NonObjectRejected) { EXPECT_THROW(parse_json_object("[1]"), BadRequest); }

TEST(Fields, WrongTypeAndMissing) {
    auto obj = parse_json_object(R"({"name":5})");
    try {
        required_string(obj, "name");
        FAIL();
    } catch (const BadRequest& e) {
        EXPECT_EQ(e.code(), "wrong_type");
    }
    try {
        required_string(obj, "email");
        FAIL();
    } catch (const BadRequest& e) {
        EXPECT_EQ(e.code(), "missing_field");
    }
    EXPECT_FALSE(optional_string(obj, "email"));
    EXPECT_THROW(reject_unknown_fields(obj, {"email"}), BadRequest);
    EXPECT_NO_THROW(reject_unknown_fields(obj, {"name"}));
}

TEST(Fields, IntegersFromDoublesOnlyWhenWhole) {
    auto obj = parse_json_object(R"({"a":2.0,"b":2.5})");
    EXPECT_EQ(optional_int(obj, "a"), 2);
    EXPECT_THROW(optional_int(obj, "b"), BadRequest);
}

TEST(JsonQuote, Escapes) { EXPECT_EQ(json_quote("a\"b\n"), R"("a\"b\n")"); }

}  // namespace
}  // namespace parley::core

namespace parley::core {
TEST(Json, RefusesNumbersBeyondDoubleRange) {
    EXPECT_THROW(parse_json(R"({"a": [1, 1e999]})"), BadRequest);
    EXPECT_THROW(parse_json("-1e400"), BadRequest);
    EXPECT_NO_THROW(parse_json("1e308"));
}
}  // namespace parley::core

#include "jail/internal/validate.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace parley::jail::internal {
namespace {

TEST(Validate, NamesAndTags) {
    EXPECT_TRUE(is_valid_action_name("check_order_2"));
    EXPECT_FALSE(is_valid_action_name(""));
    EXPECT_FALSE(is_valid_action_name("Check"));
    EXPECT_FALSE(is_valid_action_name("a-b"));
    EXPECT_FALSE(is_valid_action_name(std::string(65, 'a')));
    EXPECT_TRUE(is_valid_tag("crm-v2"));
    EXPECT_FALSE(is_valid_tag("CRM"));
}

TEST(Validate, ParamsShorthandAndFullSchemaNormaliseAlike) {
    auto shorthand = json::parse(R"({"order_id": {"type": "string", "required": true}, "n": {"type": "integer", "default": 3}})").as_object();
    auto full = json::parse(R"({"type": "object", "properties": {"order_id": {"type": "string"}, "n": {"type": "integer", "default": 3}}, "required": ["order_id"]})").as_object();
    EXPECT_EQ(normalize_params(shorthand), normalize_params(full));
    json::object params{{"order_id", "A"}};
    apply_param_defaults(normalize_params(full), params);
    EXPECT_EQ(params.at("n"), 3);
    EXPECT_THROW(normalize_params(json::parse(R"({"x": {"type": "date"}})").as_object()), core::BadRequest);
    EXPECT_THROW(normalize_params(json::parse(R"({"x": "string"})").as_object()), core::BadRequest);
    EXPECT_THROW(normalize_params(json::parse(R"({"bad name": {"type": "string"}})").as_object()), core::BadRequest);
    EXPECT_THROW(normalize_params(json::parse(R"({"type": "object", "required": ["ghost"]})").as_object()), core::BadRequest);
}

TEST(Validate, LimitsStayWithinInstanceMaxima) {
    JailOptions options;
    auto l = parse_limits(json::parse(R"({"timeout_ms": 1000, "max_fetches": 0})"), options.maxima);
    EXPECT_EQ(l.timeout_ms, 1000);
    EXPECT_EQ(l.max_fetches, 0);
    EXPECT_FALSE(l.cpu_ms);
    auto e = effective_limits(l, options.defaults);
    EXPECT_EQ(e.timeout_ms, 1000);
    EXPECT_EQ(e.cpu_ms, options.defaults.cpu_ms);
    EXPECT_THROW(parse_limits(json::parse(R"({"timeout_ms": 0})"), options.maxima), core::BadRequest);
    EXPECT_THROW(parse_limits(json::parse(R"({"memory_mb": 100000})"), options.maxima), core::BadRequest);
    EXPECT_THROW(parse_limits(json::parse(R"({"memory_mb": 1.5})"), options.maxima), core::BadRequest);
    EXPECT_THROW(parse_limits(json::parse(R"({"heap": 1})"), options.maxima), core::BadRequest);
    EXPECT_EQ(limits_from_json(limits_to_json(l)), l);
}

TEST(Validate, ActionBodies) {
    JailOptions options;
    auto d = parse_action_body(json::parse(R"({"name": "a", "code": "function main() {}", "events": ["x", "y"], "tags": ["t"], "enabled": false})").as_object(), true, options);
    EXPECT_EQ(*d.name, "a");
    EXPECT_EQ(d.events->size(), 2u);
    EXPECT_FALSE(*d.enabled);
    EXPECT_THROW(parse_action_body(json::parse(R"({"name": "a"})").as_object(), true, options), core::BadRequest);
    EXPECT_THROW(parse_action_body(json::parse(R"({"name": "a", "code": "  "})").as_object(), true, options), core::BadRequest);
    EXPECT_THROW(parse_action_body(json::parse(R"({"name": "a", "code": "x", "events": ["x", "x"]})").as_object(), true, options), core::BadRequest);
    EXPECT_THROW(parse_action_body(json::parse(R"({"name": "a", "code": "x", "events": "x"})").as_object(), true, options), core::BadRequest);
    auto update = parse_action_body(json::parse(R"({"description": "d"})").as_object(), false, options);
    EXPECT_FALSE(update.code);
    EXPECT_EQ(*update.description, "d");
}

}  // namespace
}  // namespace parley::jail::internal

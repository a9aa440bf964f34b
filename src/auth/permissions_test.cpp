#include "auth/permissions.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <set>

#include "core/error.h"

namespace parley::auth {
namespace {

TEST(Permissions, ModulesAreUniqueAndValid) {
    std::set<std::string_view> names;
    for (const auto& m : modules()) {
        EXPECT_TRUE(names.insert(m.name).second) << m.name;
        EXPECT_TRUE(is_valid_role_name(m.name));
    }
    EXPECT_TRUE(is_module("bots"));
    EXPECT_FALSE(is_module("nope"));
    EXPECT_EQ(all_permissions().size(), modules().size() * 3);
}

TEST(Permissions, BuiltinDefaultsNameKnownModules) {
    ASSERT_EQ(builtin_roles().size(), 5u);
    for (const auto& role : builtin_roles()) {
        EXPECT_TRUE(is_builtin_role(role.name));
        for (const auto& p : role.defaults) {
            auto dot = p.find('.');
            ASSERT_NE(dot, std::string::npos);
            EXPECT_TRUE(is_module(p.substr(0, dot))) << p;
            EXPECT_TRUE(parse_action(p.substr(dot + 1))) << p;
        }
    }
    EXPECT_EQ(builtin_roles()[0].defaults, all_permissions());
}

TEST(Permissions, ParseAndPrintRoundTrip) {
    auto doc = boost::json::parse(R"({"bots": ["view", "edit"], "stats": ["view"], "qa": []})");
    PermissionSet set = parse_permissions(doc);
    EXPECT_EQ(set, (PermissionSet{"bots.view", "bots.edit", "stats.view"}));
    EXPECT_EQ(boost::json::value(permissions_to_json(set)),
              boost::json::parse(R"({"bots": ["view", "edit"], "stats": ["view"]})"));
}

TEST(Permissions, ParseRejectsUnknownModulesAndRights) {
    auto expect_code = [](const char* text, const char* code) {
        try {
            parse_permissions(boost::json::parse(text));
            ADD_FAILURE() << text;
        } catch (const core::BadRequest& e) {
            EXPECT_EQ(e.code(), code) << text;
        }
    };
    expect_code(R"({"rockets": ["view"]})", "unknown_module");
    expect_code(R"({"bots": ["launch"]})", "unknown_action");
    expect_code(R"({"bots": [1]})", "unknown_action");
    expect_code(R"({"bots": "view"})", "wrong_type");
    expect_code(R"(["bots"])", "wrong_type");
}

TEST(Permissions, RoleNames) {
    EXPECT_TRUE(is_valid_role_name("qa-lead_2"));
    EXPECT_FALSE(is_valid_role_name(""));
    EXPECT_FALSE(is_valid_role_name("QA"));
    EXPECT_FALSE(is_valid_role_name(std::string(65, 'a')));
}

}  // namespace
}  // namespace parley::auth

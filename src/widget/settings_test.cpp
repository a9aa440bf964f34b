// Widget settings validation and the allowed-domains check.
#include <gtest/gtest.h>

#include "core/error.h"
#include "widget/widget.h"

namespace parley::widget {
namespace {

std::string code_of(std::string_view text) {
    try {
        WidgetSettings::from_json(json::parse(text).as_object());
    } catch (const core::Error& e) {
        return e.code() + ":" + (e.details().empty() ? "" : std::string(e.details()[0].at("field").as_string()));
    }
    return "ok";
}

TEST(WidgetSettings, DefaultsAndRoundTrip) {
    WidgetSettings d = WidgetSettings::from_json({});
    EXPECT_EQ(d.side, "right");
    EXPECT_EQ(d.colors.at("primary"), "#2563eb");
    auto s = WidgetSettings::from_json(json::parse(R"({"title":"Help","colors":{"primary":"#ABC"},
        "position":{"side":"left","offset_x":0,"offset_y":40},"language":"uk","allowed_domains":["Shop.Example.com","*.example.org"],
        "avatar_url":"https://cdn.example.com/a.png","open_on_load":true})").as_object());
    EXPECT_EQ(s.title, "Help");
    EXPECT_EQ(s.colors.at("primary"), "#ABC");
    EXPECT_EQ(s.colors.at("background"), "#ffffff");
    EXPECT_EQ(s.side, "left");
    EXPECT_EQ(s.offset_y, 40);
    ASSERT_EQ(s.allowed_domains.size(), 2u);
    EXPECT_EQ(s.allowed_domains[0], "shop.example.com");
    auto again = WidgetSettings::from_json(s.to_json());
    EXPECT_EQ(again.to_json(), s.to_json());
    EXPECT_FALSE(s.public_json().contains("allowed_domains"));
}

TEST(WidgetSettings, RejectsBadValuesNamingTheField) {
    EXPECT_EQ(code_of(R"({"colors":{"primary":"blue"}})"), "invalid_settings:colors.primary");
    EXPECT_EQ(code_of(R"({"colors":{"primary":"#12345"}})"), "invalid_settings:colors.primary");
    EXPECT_EQ(code_of(R"({"colors":{"primary":"#1234567"}})"), "invalid_settings:colors.primary");
    EXPECT_EQ(code_of(R"({"colors":{"primary":"#ggg"}})"), "invalid_settings:colors.primary");
    EXPECT_EQ(code_of(R"({"colors":{"neon":"#fff"}})"), "unknown_field:colors.neon");
    EXPECT_EQ(code_of(R"j({"avatar_url":"javascript:alert(1)"})j"), "invalid_settings:avatar_url");
    EXPECT_EQ(code_of(R"({"avatar_url":"not a url"})"), "invalid_settings:avatar_url");
    EXPECT_EQ(code_of(R"({"position":{"side":"top"}})"), "invalid_settings:position.side");
    EXPECT_EQ(code_of(R"({"position":{"offset_x":-1}})"), "invalid_settings:position.offset_x");
    EXPECT_EQ(code_of(R"({"position":{"offset_y":501}})"), "invalid_settings:position.offset_y");
    EXPECT_EQ(code_of(R"({"language":"english"})"), "invalid_settings:language");
    EXPECT_EQ(code_of(R"({"allowed_domains":["http://example.com"]})"), "invalid_settings:allowed_domains.0");
    EXPECT_EQ(code_of(R"({"allowed_domains":["ok.com","bad domain"]})"), "invalid_settings:allowed_domains.1");
    EXPECT_EQ(code_of(R"({"allowed_domains":[5]})"), "invalid_settings:allowed_domains.0");
    EXPECT_EQ(code_of(R"({"title":")" + std::string(kMaxTitleBytes + 1, 'x') + R"("})"), "invalid_settings:title");
    EXPECT_EQ(code_of(R"({"colour":{}})"), "unknown_field:colour");
    std::string many = R"({"allowed_domains":[)";
    for (std::size_t i = 0; i <= kMaxAllowedDomains; ++i) many += (i ? "," : "") + std::string("\"d") + std::to_string(i) + ".com\"";
    EXPECT_EQ(code_of(many + "]}"), "invalid_settings:allowed_domains");
}

TEST(WidgetSettings, OriginCheck) {
    std::vector<std::string> allowed{"shop.example.com", "*.example.org", "localhost"};
    EXPECT_TRUE(origin_allowed({}, ""));
    EXPECT_TRUE(origin_allowed({}, "https://anything.test"));
    EXPECT_TRUE(origin_allowed(allowed, "https://shop.example.com"));
    EXPECT_TRUE(origin_allowed(allowed, "https://SHOP.example.com:8443"));
    EXPECT_TRUE(origin_allowed(allowed, "https://shop.example.com/page?x=1"));  // a Referer
    EXPECT_TRUE(origin_allowed(allowed, "https://a.b.example.org"));
    EXPECT_TRUE(origin_allowed(allowed, "http://localhost:3000"));
    EXPECT_FALSE(origin_allowed(allowed, "https://example.org"));  // *. means subdomains
    EXPECT_FALSE(origin_allowed(allowed, "https://evilexample.org"));
    EXPECT_FALSE(origin_allowed(allowed, "https://shop.example.com.evil.test"));
    EXPECT_FALSE(origin_allowed(allowed, "https://shop.example.com@evil.test"));
    EXPECT_FALSE(origin_allowed(allowed, ""));
    EXPECT_FALSE(origin_allowed(allowed, "null"));
    EXPECT_EQ(host_of("https://user@Host.Example:80/x"), "host.example");
    EXPECT_EQ(host_of("http://[::1]:8080"), "[::1]");
}

}  // namespace
}  // namespace parley::widget

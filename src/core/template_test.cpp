#include "core/template.h"

#include <gtest/gtest.h>

namespace parley::core {
namespace {

namespace json = boost::json;

Template compile_ok(std::string_view text) {
    auto r = Template::compile(text);
    if (auto* e = std::get_if<TemplateError>(&r)) {
        ADD_FAILURE() << "compile failed at " << e->offset << ": " << e->message;
        return {};
    }
    return std::get<Template>(std::move(r));
}

TemplateError compile_err(std::string_view text) {
    auto r = Template::compile(text);
    EXPECT_TRUE(std::holds_alternative<TemplateError>(r)) << text;
    if (auto* e = std::get_if<TemplateError>(&r)) return *e;
    return {};
}

std::string render(std::string_view text, std::string_view scope_json) {
    json::object root = json::parse(scope_json).as_object();
    return compile_ok(text).render(JsonScope(root));
}

TEST(Template, LiteralAndHoles) {
    EXPECT_EQ(render("plain", "{}"), "plain");
    EXPECT_EQ(render("Hi, {{name}}!", R"({"name":"Olena"})"), "Hi, Olena!");
    EXPECT_EQ(render("{{ name }}{{name}}", R"({"name":"a"})"), "aa");
    EXPECT_EQ(render("", "{}"), "");
}

TEST(Template, DottedPathsIntoObjectsAndArrays) {
    const char* scope = R"({"order":{"items":[{"name":"tea"},{"name":"cake"}],"total":12.5,"n":3,"ok":true}})";
    EXPECT_EQ(render("{{order.items.1.name}}", scope), "cake");
    EXPECT_EQ(render("{{order.total}}/{{order.n}}/{{order.ok}}", scope), "12.5/3/true");
    EXPECT_EQ(render("[{{order.items.7.name}}]", scope), "[]");
    EXPECT_EQ(render("[{{order.total.x}}]", scope), "[]");
    EXPECT_EQ(render("{{order.items.0}}", scope), R"({"name":"tea"})");
}

TEST(Template, MissingRendersEmpty) { EXPECT_EQ(render("a{{nope}}b{{x.y.z}}c", "{}"), "abc"); }

TEST(Template, Filters) {
    EXPECT_EQ(render(R"({{x | default: "friend"}})", "{}"), "friend");
    EXPECT_EQ(render(R"({{x | default: "friend"}})", R"({"x":""})"), "friend");
    EXPECT_EQ(render(R"({{x | default: "friend"}})", R"({"x":null})"), "friend");
    EXPECT_EQ(render(R"({{x | default: 'a \'q\''}})", "{}"), "a 'q'");
    EXPECT_EQ(render(R"({{x|default:"f"}})", R"({"x":"Bo"})"), "Bo");
    EXPECT_EQ(render("{{x | upper}}", R"({"x":"Привіт, ґанок! straße é"})"), "ПРИВІТ, ҐАНОК! STRAßE É");
    EXPECT_EQ(render("{{x | lower}}", R"({"x":"ЇЖАК Ёлка ΑΒΓ ABC"})"), "їжак ёлка αβγ abc");
    EXPECT_EQ(render("{{x | json}}", R"({"x":{"a":[1,"b"]}})"), R"({"a":[1,"b"]})");
    EXPECT_EQ(render("{{x | json}}", R"({"x":"q\""})"), R"("q\"")");
    EXPECT_EQ(render("{{x | json}}", "{}"), "null");
    EXPECT_EQ(render(R"({{x | default: "anon" | upper}})", "{}"), "ANON");
    EXPECT_EQ(render(R"({{x | upper | json}})", R"({"x":"a"})"), R"("A")");
}

TEST(Template, RenderValueKeepsTypes) {
    json::object root = json::parse(R"({"o":{"a":1},"s":"t"})").as_object();
    JsonScope scope(root);
    EXPECT_EQ(compile_ok("{{o}}").render_value(scope), json::parse(R"({"a":1})"));
    EXPECT_EQ(compile_ok("x{{o.a}}").render_value(scope), json::value("x1"));
    EXPECT_EQ(compile_ok("{{missing}}").render_value(scope), json::value(""));
    EXPECT_EQ(compile_ok("lit").render_value(scope), json::value("lit"));
}

TEST(Template, LoneBracesAreLiteral) {
    EXPECT_EQ(render("a } b }} c { d", "{}"), "a } b }} c { d");
}

TEST(Template, SyntaxErrorsPointAtTheText) {
    EXPECT_EQ(compile_err("Hello {{name").offset, 6u);
    EXPECT_EQ(compile_err("Hello {{}}").offset, 8u);
    EXPECT_EQ(compile_err("{{a..b}}").offset, 2u);
    auto e = compile_err("{{a | shout}}");
    EXPECT_EQ(e.offset, 6u);
    EXPECT_NE(e.message.find("shout"), std::string::npos);
    compile_err("{{a | default}}");
    compile_err("{{a | default: \"x}}");
    compile_err("{{a b}}");
    compile_err("{{");
}

TEST(Template, PathsAreReported) {
    auto t = compile_ok("{{a.b}} {{c | upper}}");
    auto paths = t.paths();
    ASSERT_EQ(paths.size(), 2u);
    EXPECT_EQ(path_to_string(*paths[0]), "a.b");
    EXPECT_EQ((*paths[0])[0].key, "a");
}

TEST(Template, InvalidUtf8PassesThrough) {
    std::string bad = "\xC3\x28\xFF\xD0";
    EXPECT_EQ(utf8_upper(bad), bad);
}

}  // namespace
}  // namespace parley::core

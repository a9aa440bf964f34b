#include "scenario/document.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace parley::scenario {
namespace {

std::string doc(std::string_view nodes, std::string_view extra = "") {
    return std::string(R"({"format":"parley.scenario/1","languages":["uk","en"])") + std::string(extra) +
           R"(,"sections":[{"name":"main","nodes":[)" + std::string(nodes) + "]}]}";
}

const char* kMinimal = R"({"id":"start","type":"start","next":"bye"},{"id":"bye","type":"end"})";

bool has_code(const std::vector<LintWarning>& w, std::string_view code) {
    return std::any_of(w.begin(), w.end(), [&](const LintWarning& x) { return x.code == code; });
}

const SchemaError* find_error(const CompileResult& r, std::string_view code) {
    for (const auto& e : r.errors) {
        if (e.code == code) return &e;
    }
    return nullptr;
}

TEST(Document, ContractExampleCompilesAndRoundTrips) {
    std::ifstream in(std::string(PARLEY_SOURCE_DIR) + "/tests/conversations/support_bot.json");
    std::stringstream ss;
    ss << in.rdbuf();
    std::vector<actions::ActionInfo> known = {
        {"operator_panel__connect_to_operator_with_msg", {}, {"connected", "limit", "queued"}},
        {"action_fastline_pro", {}, {"success", "escalate", "error"}}};
    CompileOptions options;
    options.actions = &known;
    auto r = compile_scenario(ss.str(), options);
    ASSERT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0].message);
    EXPECT_EQ(r.scenario->document(), boost::json::parse(ss.str()));
    EXPECT_EQ(r.scenario->languages(), (std::vector<std::string>{"uk", "en"}));
    EXPECT_EQ(r.scenario->find_alias("faq_start"), r.scenario->find_node("faq_entry"));
    EXPECT_EQ(r.scenario->language_index("en-US"), 1u);
    EXPECT_EQ(r.scenario->language_index("de"), 0u);
    // Declared events without edges: queued, error.
    std::size_t unhandled = 0;
    for (const auto& w : r.warnings) unhandled += w.code == "action_event_without_edge";
    EXPECT_EQ(unhandled, 2u);
    EXPECT_FALSE(has_code(r.warnings, "variable_never_set"));  // ai_answer is saved via save_response
}

TEST(Document, MalformedInputIsOneClearError) {
    auto r = compile_scenario("{\"format\": ");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].code, "invalid_json");
    EXPECT_EQ(compile_scenario(std::string(100, '[') + std::string(100, ']')).errors[0].code, "too_deep");
    EXPECT_EQ(compile_scenario(std::string(Limits::kMaxDocumentBytes + 1, ' ')).errors[0].code, "too_large");
    EXPECT_EQ(compile_scenario("[]").errors[0].code, "expected_object");
    EXPECT_THROW(compile_or_throw("{"), core::BadRequest);
    EXPECT_THROW(compile_or_throw(std::string(Limits::kMaxDocumentBytes + 1, ' ')), core::TooLarge);
}

TEST(Document, SchemaErrorsNameSectionNodeAndPath) {
    auto r = compile_scenario(doc(R"({"id":"start","type":"start","next":"m"},
        {"id":"m","type":"message","text":{"uk":"ok","de":"nein"}},
        {"id":"t","type":"message","text":"Hello {{name"},
        {"id":"x","type":"teleport"},
        {"id":"m","type":"end"},
        {"id":"Bad Id","type":"end"},
        {"id":"r","type":"router","routes":[{"if":{"var":"a","op":"approx","value":1},"next":"m"}]},
        {"id":"i","type":"input","expect":"regex","pattern":"(a"})"));
    ASSERT_FALSE(r.ok());
    const SchemaError* lang = find_error(r, "unknown_language");
    ASSERT_NE(lang, nullptr);
    EXPECT_EQ(lang->section, "main");
    EXPECT_EQ(lang->node, "m");
    EXPECT_EQ(lang->path, "sections[0].nodes[1].text.de");
    const SchemaError* tpl = find_error(r, "template_syntax");
    ASSERT_NE(tpl, nullptr);
    EXPECT_EQ(tpl->path, "sections[0].nodes[2].text");
    EXPECT_NE(tpl->message.find("offset 6"), std::string::npos) << tpl->message;
    EXPECT_NE(find_error(r, "unknown_node_type"), nullptr);
    EXPECT_NE(find_error(r, "duplicate_id"), nullptr);
    EXPECT_NE(find_error(r, "invalid_id"), nullptr);
    EXPECT_NE(find_error(r, "invalid_condition"), nullptr);
    EXPECT_NE(find_error(r, "invalid_pattern"), nullptr);
    try {
        compile_or_throw(doc(R"({"id":"x","type":"teleport"})"));
        FAIL();
    } catch (const core::Unprocessable& e) {
        EXPECT_EQ(e.status(), 422);
        EXPECT_GE(e.details().size(), 2u);  // unknown type + missing start
    }
}

TEST(Document, StructuralErrors) {
    EXPECT_NE(find_error(compile_scenario(R"({"sections":[]})"), "missing_field"), nullptr);
    EXPECT_NE(find_error(compile_scenario(R"({"format":"x","sections":[]})"), "unsupported_format"), nullptr);
    EXPECT_NE(find_error(compile_scenario(doc(R"({"id":"e","type":"end"})")), "start_count"), nullptr);
    std::string two = R"({"format":"parley.scenario/1","sections":[{"name":"a","nodes":[{"id":"e","type":"end"}]},
        {"name":"b","nodes":[{"id":"start","type":"start","next":"e"}]}]})";
    EXPECT_NE(find_error(compile_scenario(two), "start_not_in_first_section"), nullptr);
    std::string buttons;
    for (std::size_t i = 0; i <= Limits::kMaxButtons; ++i) buttons += (i ? "," : "") + std::string(R"({"id":"b)") + std::to_string(i) + R"(","text":"x"})";
    EXPECT_NE(find_error(compile_scenario(doc(std::string(kMinimal) + R"(,{"id":"m","type":"message","text":"x","buttons":[)" + buttons + "]}")),
                         "too_many_buttons"),
              nullptr);
    std::string long_text(Limits::kMaxTextBytes + 1, 'a');
    EXPECT_NE(find_error(compile_scenario(doc(std::string(kMinimal) + R"(,{"id":"m","type":"message","text":")" + long_text + "\"}")),
                         "text_too_long"),
              nullptr);
    EXPECT_NE(find_error(compile_scenario(doc(kMinimal, R"(,"languages":["english"])")), "invalid_language"), nullptr);
}

TEST(Document, LintWarnings) {
    std::vector<actions::ActionInfo> known = {{"test_echo", {}, {"success", "error"}}};
    CompileOptions options;
    options.actions = &known;
    auto r = compile_scenario(doc(R"(
        {"id":"start","type":"start","next":"a"},
        {"id":"a","type":"message","text":{"uk":"Привіт {{who}}"},"next":"b"},
        {"id":"b","type":"router","routes":[{"if":{"var":"x","op":"is_set"},"next":"ghost"}],"else":"a"},
        {"id":"lonely","type":"end"},
        {"id":"e1","type":"entry","alias":"dup","next":"act"},
        {"id":"e2","type":"entry","alias":"dup","next":"out"},
        {"id":"out","type":"exit","to":"nowhere"},
        {"id":"act","type":"action","action":"test_echo","on":{"success":"lonely2"}},
        {"id":"lonely2","type":"end","colour":"red"},
        {"id":"act2","type":"action","action":"no_such_action"})"),
                              options);
    ASSERT_TRUE(r.ok());
    for (const char* code : {"unreachable_node", "missing_edge_target", "duplicate_alias", "unknown_exit_alias",
                             "cycle_without_wait", "unknown_action", "action_event_without_edge", "variable_never_set",
                             "text_missing_language", "unknown_field"}) {
        EXPECT_TRUE(has_code(r.warnings, code)) << code;
    }
    for (const auto& w : r.warnings) {
        if (w.code == "unreachable_node") {
            EXPECT_TRUE(w.node == "lonely" || w.node == "act2") << w.node;
        }
        if (w.code == "cycle_without_wait") {
            EXPECT_NE(w.message.find("a, b"), std::string::npos) << w.message;
        }
    }
    EXPECT_EQ(to_json(r.warnings).size(), r.warnings.size());
}

TEST(Document, LanguagesDefaultToThoseTheTextsUse) {
    auto r = compile_scenario(R"({"format":"parley.scenario/1","sections":[{"name":"m","nodes":[
        {"id":"start","type":"start","next":"x"},{"id":"x","type":"message","text":{"pl":"Cześć","en":"Hi"}}]}]})");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.scenario->languages(), (std::vector<std::string>{"pl", "en"}));
}

TEST(Document, MacroSectionsDeclareVariables) {
    auto r = compile_scenario(R"({"format":"parley.scenario/1","sections":[{"name":"m","nodes":[
        {"id":"start","type":"start"}]},{"name":"check","macro":{"variables":["order_id",{"name":"phone","label":"Phone"}]},
        "nodes":[{"id":"in","type":"entry","alias":"check","next":"say"},{"id":"say","type":"message","text":"{{order_id}} {{phone}}"}]}]})");
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r.scenario->sections()[1].macro);
    EXPECT_EQ(r.scenario->sections()[1].macro_variables, (std::vector<std::string>{"order_id", "phone"}));
    EXPECT_FALSE(has_code(r.warnings, "variable_never_set"));
}

}  // namespace
}  // namespace parley::scenario

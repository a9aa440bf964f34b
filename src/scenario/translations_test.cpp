#include "scenario/translations.h"

#include <gtest/gtest.h>

namespace parley::scenario {
namespace {

namespace json = boost::json;

const char* kDoc = R"({"format":"parley.scenario/1","languages":["uk","en"],"sections":[{"name":"main","nodes":[
  {"id":"start","type":"start","next":"hello"},
  {"id":"hello","type":"message","text":{"uk":"Привіт, \"друже\"","en":"Hi, friend"},
   "buttons":[{"id":"faq","text":"FAQ, please","next":"ask"}]},
  {"id":"ask","type":"input","prompt":{"uk":"Питання?"},"retry_text":"Again?\nPlease","next":"hello"}]}]})";

TEST(Translations, ExportHasOneRowPerText) {
    auto r = compile_scenario(std::string_view(kDoc));
    ASSERT_TRUE(r.ok());
    std::string csv = export_translations_csv(*r.scenario);
    EXPECT_EQ(csv,
              "node_id,field,uk,en\r\n"
              "hello,text,\"Привіт, \"\"друже\"\"\",\"Hi, friend\"\r\n"
              "hello,buttons.faq.text,\"FAQ, please\",\r\n"
              "ask,prompt,Питання?,\r\n"
              "ask,retry_text,\"Again?\nPlease\",\r\n");
}

TEST(Translations, RoundTripAndNewLanguage) {
    auto r = compile_scenario(std::string_view(kDoc));
    std::string csv = export_translations_csv(*r.scenario);
    auto same = import_translations_csv(r.scenario->document(), csv);
    ASSERT_TRUE(same.ok()) << same.errors[0].message;
    EXPECT_EQ(same.document, r.scenario->document());

    std::string with_pl =
        "node_id,field,uk,en,pl\n"
        "ask,prompt,Питання?,Question?,Pytanie?\n"
        "hello,buttons.faq.text,ЧаПи,,\n";
    auto out = import_translations_csv(r.scenario->document(), with_pl);
    ASSERT_TRUE(out.ok()) << out.errors[0].message;
    const auto& root = out.document.as_object();
    EXPECT_EQ(root.at("languages"), json::parse(R"(["uk","en","pl"])"));
    const auto& nodes = root.at("sections").as_array()[0].as_object().at("nodes").as_array();
    EXPECT_EQ(nodes[2].as_object().at("prompt"), json::parse(R"({"uk":"Питання?","en":"Question?","pl":"Pytanie?"})"));
    EXPECT_EQ(nodes[1].as_object().at("buttons").as_array()[0].as_object().at("text"), json::value("ЧаПи"));
    EXPECT_EQ(nodes[2].as_object().at("retry_text"), json::value("Again?\nPlease"));  // untouched
}

TEST(Translations, ClearErrors) {
    auto r = compile_scenario(std::string_view(kDoc));
    const auto& doc = r.scenario->document();
    EXPECT_EQ(import_translations_csv(doc, "node_id,field,uk\nhello,text,\"open").errors[0].code, "invalid_csv");
    EXPECT_EQ(import_translations_csv(doc, "id,text\n").errors[0].code, "invalid_csv");
    EXPECT_EQ(import_translations_csv(doc, "node_id,field,uk\nghost,text,x\n").errors[0].code, "unknown_node");
    auto bad_field = import_translations_csv(doc, "node_id,field,uk\nhello,colour,x\n");
    EXPECT_EQ(bad_field.errors[0].code, "unknown_field");
    EXPECT_EQ(bad_field.errors[0].path, "line 2");
    EXPECT_EQ(import_translations_csv(doc, "node_id,field,uk\nhello,text\n").errors[0].code, "invalid_csv");
    EXPECT_EQ(import_translations_csv(doc, "node_id,field,Not A Language\n").errors[0].code, "unknown_language");
    EXPECT_EQ(import_translations_csv(doc, "node_id,field,uk\nhello,text,{{oops\n").errors[0].code, "template_syntax");
}

}  // namespace
}  // namespace parley::scenario

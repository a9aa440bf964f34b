// The client-frame parser: every frame type, and the 4xx codes for malformed, oversized and unknown frames.
#include <gtest/gtest.h>

#include "core/error.h"
#include "widget/frame.h"

namespace parley::widget {
namespace {

std::string code_of(std::string_view text) {
    try {
        parse_client_frame(text);
    } catch (const core::Error& e) {
        return e.code();
    }
    return "ok";
}

TEST(WidgetFrame, ParsesEveryKind) {
    auto m = parse_client_frame(R"({"type":"message","id":"c-1","text":"Hello"})");
    EXPECT_EQ(m.kind, ClientFrame::Kind::kMessage);
    EXPECT_EQ(m.id, "c-1");
    EXPECT_EQ(m.text, "Hello");
    auto b = parse_client_frame(R"({"type":"button","id":"c2","button":"faq"})");
    EXPECT_EQ(b.kind, ClientFrame::Kind::kButton);
    EXPECT_EQ(b.button, "faq");
    auto i = parse_client_frame(R"({"type":"identify","name":"Olena","email":"o@example.com","external_id":"42"})");
    EXPECT_EQ(i.kind, ClientFrame::Kind::kIdentify);
    EXPECT_EQ(i.identity.at("external_id").as_string(), "42");
    auto p = parse_client_frame(R"({"type":"params","params":{"page":"/pricing","plan":2},"alias":"promo"})");
    EXPECT_EQ(p.kind, ClientFrame::Kind::kParams);
    EXPECT_EQ(p.params.at("plan").as_int64(), 2);
    EXPECT_EQ(p.alias, "promo");
    EXPECT_EQ(parse_client_frame(R"({"type":"typing"})").kind, ClientFrame::Kind::kTyping);
    EXPECT_EQ(parse_client_frame(R"({"type":"start","id":"s1"})").kind, ClientFrame::Kind::kStart);
    EXPECT_EQ(parse_client_frame(R"({"type":"seen","n":7})").seen, 7);
    EXPECT_EQ(parse_client_frame(R"({"type":"ping"})").kind, ClientFrame::Kind::kPing);
}

TEST(WidgetFrame, RejectsBadFrames) {
    EXPECT_EQ(code_of("not json"), "invalid_json");
    EXPECT_EQ(code_of("[1]"), "expected_object");
    EXPECT_EQ(code_of(R"({"text":"x"})"), "missing_field");
    EXPECT_EQ(code_of(R"({"type":"dance"})"), "unknown_type");
    EXPECT_EQ(code_of(R"({"type":"message","text":"x"})"), "missing_field");  // no client message id
    EXPECT_EQ(code_of(R"({"type":"message","id":"a b","text":"x"})"), "invalid_id");
    EXPECT_EQ(code_of(R"({"type":"message","id":"","text":"x"})"), "invalid_id");
    EXPECT_EQ(code_of(R"({"type":"message","id":"1","text":"   "})"), "invalid_frame");
    EXPECT_EQ(code_of(R"({"type":"message","id":"1","text":"x","extra":1})"), "unknown_field");
    EXPECT_EQ(code_of(R"({"type":"message","id":"1","text":5})"), "wrong_type");
    EXPECT_EQ(code_of(R"({"type":"button","id":"1","button":""})"), "invalid_frame");
    EXPECT_EQ(code_of(R"({"type":"identify"})"), "invalid_frame");
    EXPECT_EQ(code_of(R"({"type":"params","params":[]})"), "wrong_type");
    EXPECT_EQ(code_of(R"({"type":"seen","n":-1})"), "invalid_frame");
    EXPECT_EQ(code_of(R"({"type":"message","id":")" + std::string(65, 'a') + R"(","text":"x"})"), "invalid_id");
}

TEST(WidgetFrame, LimitsAreEnforced) {
    std::string text(kMaxTextBytes + 1, 'a');
    EXPECT_EQ(code_of(R"({"type":"message","id":"1","text":")" + text + R"("})"), "too_large");
    EXPECT_EQ(code_of(std::string(kMaxFrameBytes + 1, ' ')), "frame_too_large");
    std::string big(kMaxParamsBytes, 'x');
    EXPECT_EQ(code_of(R"({"type":"params","params":{"a":")" + big + R"("}})"), "too_large");
    std::string deep;
    for (int i = 0; i < 20; ++i) deep += R"({"a":)";
    deep += "1";
    for (int i = 0; i < 20; ++i) deep += "}";
    EXPECT_EQ(code_of(R"({"type":"params","params":)" + deep + "}"), "too_deep");
}

}  // namespace
}  // namespace parley::widget

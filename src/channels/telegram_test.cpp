#include <gtest/gtest.h>

#include "channels/telegram.h"
#include "core/error.h"

namespace parley::channels::telegram {
namespace {

TEST(TelegramParse, TextContactCallbackAndMedia) {
    auto text = parse_update(R"({"update_id":10,"message":{"message_id":1,"from":{"id":42,"first_name":"Olena",
        "last_name":"K","language_code":"uk"},"chat":{"id":42,"type":"private"},"text":"hello"}})");
    EXPECT_EQ(text.kind, Update::Kind::kMessage);
    EXPECT_EQ(text.update_id, 10);
    EXPECT_EQ(text.user_id, "42");
    EXPECT_EQ(text.chat_id, "42");
    EXPECT_EQ(text.language, "uk");
    EXPECT_EQ(text.message.text, "hello");

    auto contact = parse_update(R"({"update_id":11,"message":{"from":{"id":42},"chat":{"id":42},
        "contact":{"phone_number":"+380501234567","first_name":"O"}}})");
    EXPECT_EQ(contact.message.kind, scenario::ClientMessage::Kind::kContact);
    EXPECT_EQ(contact.message.contact.at("phone"), "+380501234567");

    auto press = parse_update(R"({"update_id":12,"callback_query":{"id":"cb1","from":{"id":42,"language_code":"pt-br"},
        "message":{"chat":{"id":-100}},"data":"ask"}})");
    EXPECT_EQ(press.kind, Update::Kind::kCallback);
    EXPECT_EQ(press.message.button, "ask");
    EXPECT_EQ(press.callback_query_id, "cb1");
    EXPECT_EQ(press.chat_id, "-100");
    EXPECT_EQ(press.language, "pt");

    auto sticker = parse_update(R"({"update_id":13,"message":{"from":{"id":1},"chat":{"id":1},"sticker":{}}})");
    EXPECT_EQ(sticker.message.text, "[sticker]");
    auto photo = parse_update(R"({"update_id":14,"message":{"from":{"id":1},"chat":{"id":1},"photo":[],
        "caption":"look"}})");
    EXPECT_EQ(photo.message.text, "[photo] look");
    auto where = parse_update(R"({"update_id":15,"message":{"from":{"id":1},"chat":{"id":1},
        "location":{"latitude":50.45,"longitude":30.52}}})");
    EXPECT_EQ(where.message.text, "[location 50.450000,30.520000]");
    auto other = parse_update(R"({"update_id":16,"edited_message":{"text":"x"}})");
    EXPECT_EQ(other.kind, Update::Kind::kIgnored);
}

TEST(TelegramParse, MalformedIsBadRequest) {
    for (const char* bad : {"", "[]", "{", R"({"message":{}})", R"({"update_id":"1"})", R"({"update_id":-1})",
                            R"({"update_id":1,"message":{"from":{"id":1}}})",
                            R"({"update_id":1,"message":{"chat":{"id":"x"},"from":{"id":1}}})",
                            R"({"update_id":1,"message":{"chat":{"id":1},"from":{"id":1},"contact":{}}})",
                            R"({"update_id":1,"callback_query":{"from":{"id":1},"data":"a"}})"}) {
        EXPECT_THROW(parse_update(bad), core::BadRequest) << bad;
    }
}

TEST(TelegramRender, SplitsLongTextAndAddsKeyboardToTheLastPart) {
    std::string words;
    while (words.size() < 9000) words += "слово ";  // 2-byte characters
    auto parts = split_text(words);
    ASSERT_GE(parts.size(), 2u);
    std::string joined;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        std::size_t chars = 0;
        for (unsigned char c : parts[i]) chars += (c & 0xC0) != 0x80;
        EXPECT_LE(chars, kMaxMessageChars);
        joined += (i ? " " : "") + parts[i];
    }
    EXPECT_EQ(joined, words);  // split at spaces, nothing lost
    json::array buttons{json::object{{"id", "yes"}, {"text", "Yes"}},
                        json::object{{"id", std::string(80, 'x')}, {"text", "Long"}}};
    auto bodies = render("42", words, buttons, [](const std::string& id) { return id.size() > 64 ? "~h" : id; });
    ASSERT_EQ(bodies.size(), parts.size());
    EXPECT_FALSE(bodies.front().contains("reply_markup"));
    const auto& keyboard = bodies.back().at("reply_markup").at("inline_keyboard").as_array();
    ASSERT_EQ(keyboard.size(), 2u);
    EXPECT_EQ(keyboard[0].as_array()[0].at("callback_data"), "yes");
    EXPECT_EQ(keyboard[1].as_array()[0].at("callback_data"), "~h");
    EXPECT_TRUE(render("1", "", {}, [](const std::string& s) { return s; }).empty());
    EXPECT_EQ(render("1", "", buttons, [](const std::string& s) { return s; }).size(), 1u);
    EXPECT_EQ(split_text(std::string(10, 'a'), 4), (std::vector<std::string>{"aaaa", "aaaa", "aa"}));
}

}  // namespace
}  // namespace parley::channels::telegram

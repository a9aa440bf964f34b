// The adapters' pure parts: parsing each platform's webhook bodies into InboundEvents (malformed → BadRequest),
// verification, rendering within the platforms' limits, and classifying answers.
#include <gtest/gtest.h>

#include "channels/adapter.h"
#include "core/error.h"

namespace parley::channels {
namespace {

using Outcome = SendResult::Outcome;
using scenario::ClientMessage;
using scenario::ReplyButton;

const Adapter& adapter(std::string_view kind) {
    const Adapter* a = find_adapter(kind);
    EXPECT_NE(a, nullptr) << kind;
    return *a;
}

ChannelRef channel(std::string kind, json::object credentials) {
    ChannelRef c;
    c.id = "ch1";
    c.bot_id = "bot1";
    c.bot_name = "Support bot";
    c.kind = std::move(kind);
    c.credentials = std::move(credentials);
    c.api_base_url = "http://api.test";
    c.webhook_secret = "s3cret";
    c.webhook_url = "https://parley.example/hooks/ch1";
    return c;
}

PayloadOf identity() {
    return [](const std::string& id) { return id; };
}

std::vector<ReplyButton> buttons(std::size_t n, std::string label = "Option") {
    std::vector<ReplyButton> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(ReplyButton{"b" + std::to_string(i), label + " " + std::to_string(i)});
    return out;
}

outbound::Response answer(int status, std::string body, std::map<std::string, std::string> headers = {}) {
    outbound::Response r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return r;
}

WebhookRequest signed_request(std::string body, std::string header, std::string value) {
    WebhookRequest r;
    r.body = std::move(body);
    r.headers.emplace_back(std::move(header), std::move(value));
    return r;
}

TEST(Adapters, RegistryAndEventRoundTrip) {
    for (const auto& kind : adapter_kinds()) EXPECT_EQ(adapter(kind).kind(), kind);
    ASSERT_NE(find_adapter("email"), nullptr);  // email: IMAP/SMTP through its Transport (email_test.cpp)
    EXPECT_NE(find_adapter("email")->transport(), nullptr);
    EXPECT_EQ(find_adapter("widget"), nullptr);
    InboundEvent e;
    e.type = InboundEvent::Type::kMessage;
    e.key = "m:1";
    e.user_id = "u";
    e.message = ClientMessage::from_contact(json::object{{"phone", "+380"}});
    InboundEvent back = InboundEvent::from_json(e.to_json());
    EXPECT_EQ(back.message.kind, ClientMessage::Kind::kContact);
    EXPECT_EQ(back.message.contact.at("phone"), "+380");
    EXPECT_THROW(InboundEvent::from_json(json::value("x")), core::BadRequest);
    EXPECT_EQ(hmac_sha256_hex("key", "The quick brown fox jumps over the lazy dog"),
              "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    EXPECT_EQ(cut_chars("привіт", 3), "при");
    EXPECT_EQ(language_of("pt-BR"), "pt");
    EXPECT_EQ(language_of("toolong"), "");
}

TEST(Viber, ParsesMessagesReceiptsAndConversationStart) {
    const Adapter& a = adapter("viber");
    auto text = a.parse(R"({"event":"message","timestamp":1457764197627,"message_token":4912661846655238145,
        "sender":{"id":"01234567890A=","name":"Olena","language":"uk"},"message":{"type":"text","text":"hello"}})");
    ASSERT_EQ(text.size(), 1u);
    EXPECT_EQ(text[0].type, InboundEvent::Type::kMessage);
    EXPECT_EQ(text[0].key, "m:4912661846655238145");
    EXPECT_EQ(text[0].user_id, "01234567890A=");
    EXPECT_EQ(text[0].language, "uk");
    EXPECT_EQ(text[0].message.text, "hello");
    auto press = a.parse(R"({"event":"message","message_token":1,"sender":{"id":"u"},
        "message":{"type":"text","text":"btn:ask"}})");
    EXPECT_EQ(press[0].message.kind, ClientMessage::Kind::kButton);
    EXPECT_EQ(press[0].message.button, "ask");
    auto contact = a.parse(R"({"event":"message","message_token":2,"sender":{"id":"u"},
        "message":{"type":"contact","contact":{"name":"O","phone_number":"+380501234567"}}})");
    EXPECT_EQ(contact[0].message.contact.at("phone"), "+380501234567");
    auto where = a.parse(R"({"event":"message","message_token":3,"sender":{"id":"u"},
        "message":{"type":"location","location":{"lat":50.45,"lon":30.52}}})");
    EXPECT_EQ(where[0].message.text, "[location 50.450000,30.520000]");
    auto picture = a.parse(R"({"event":"message","message_token":4,"sender":{"id":"u"},
        "message":{"type":"picture","text":"look","media":"http://x"}})");
    EXPECT_EQ(picture[0].message.text, "[picture] look");
    auto seen = a.parse(R"({"event":"seen","timestamp":1,"message_token":77,"user_id":"u"})");
    EXPECT_EQ(seen[0].type, InboundEvent::Type::kReceipt);
    EXPECT_EQ(seen[0].receipt, "read");
    EXPECT_EQ(seen[0].message_ids, std::vector<std::string>{"77"});
    auto started = a.parse(R"({"event":"conversation_started","message_token":5,"user":{"id":"u"},"subscribed":true})");
    EXPECT_EQ(started[0].type, InboundEvent::Type::kStart);
    auto opened = a.parse(R"({"event":"conversation_started","message_token":6,"user":{"id":"u"},"subscribed":false})");
    EXPECT_EQ(opened[0].type, InboundEvent::Type::kIgnored);
    EXPECT_TRUE(a.parse(R"({"event":"webhook","timestamp":1,"message_token":1})").empty());
    for (const char* bad : {"", "[]", "{", R"({"timestamp":1})", R"({"event":"message","message_token":1})",
                            R"({"event":"message","sender":{"id":"u"},"message":{"type":"text"}})",
                            R"({"event":"message","message_token":1,"sender":{},"message":{"type":"text"}})",
                            R"({"event":"seen","message_token":1})"}) {
        EXPECT_THROW(a.parse(bad), core::BadRequest) << bad;
    }
}

TEST(Viber, VerifiesTheSignatureAndRendersKeyboards) {
    const Adapter& a = adapter("viber");
    ChannelRef c = channel("viber", a.validate_credentials(json::object{{"auth_token", "445da6az1s345z78"}}));
    std::string body = R"({"event":"webhook"})";
    EXPECT_NO_THROW(a.verify(c, signed_request(body, "x-viber-content-signature", hmac_sha256_hex("445da6az1s345z78", body))));
    EXPECT_THROW(a.verify(c, signed_request(body, "x-viber-content-signature", hmac_sha256_hex("other", body))),
                 core::Unauthorized);
    EXPECT_THROW(a.verify(c, signed_request(body, "x-other", "")), core::Unauthorized);

    auto connect = a.connect(c);
    ASSERT_TRUE(connect);
    EXPECT_EQ(connect->url, "http://api.test/pa/set_webhook");
    EXPECT_EQ(json::parse(connect->body).at("url"), "https://parley.example/hooks/ch1");

    OutboundContext to{"u1", "u1", "d", 1, 0, 0};
    Rendered r = a.render(c, to, std::string(7500, 'a'), buttons(2), identity());
    ASSERT_EQ(r.requests.size(), 2u);
    json::value last = json::parse(r.requests[1].body);
    EXPECT_EQ(last.at("receiver"), "u1");
    EXPECT_EQ(last.at("sender").at("name"), "Support bot");
    const auto& keys = last.at("keyboard").at("Buttons").as_array();
    ASSERT_EQ(keys.size(), 2u);
    EXPECT_EQ(keys[0].at("ActionBody"), "btn:b0");
    EXPECT_EQ(keys[0].at("Columns"), 6);
    EXPECT_FALSE(json::parse(r.requests[0].body).as_object().contains("keyboard"));
    // Beyond 24 buttons: half-width keys, the rest as a typed list.
    Rendered many = a.render(c, to, "Pick", buttons(30), identity());
    json::value body30 = json::parse(many.requests.back().body);
    EXPECT_EQ(body30.at("keyboard").at("Buttons").as_array().size(), 24u);
    EXPECT_EQ(body30.at("keyboard").at("Buttons").as_array()[0].at("Columns"), 3);
    EXPECT_NE(std::string(body30.at("text").as_string()).find("• Option 29"), std::string::npos);

    EXPECT_EQ(a.classify(answer(200, R"({"status":0,"status_message":"ok","message_token":5741311803571721087})")).message_id,
              "5741311803571721087");
    EXPECT_EQ(a.classify(answer(200, R"({"status":12,"status_message":"tooManyRequests"})")).outcome, Outcome::kRetryAfter);
    EXPECT_EQ(a.classify(answer(200, R"({"status":6,"status_message":"receiverNotSubscribed"})")).outcome,
              Outcome::kPermanent);
    EXPECT_EQ(a.classify(answer(429, "", {{"retry-after", "3"}})).retry_after_ms, 3000);
    EXPECT_EQ(a.classify(answer(503, "")).outcome, Outcome::kTransient);
    EXPECT_THROW(a.validate_credentials(json::object{}), core::BadRequest);
    EXPECT_THROW(a.validate_credentials(json::object{{"token", "x"}, {"extra", "y"}}), core::BadRequest);
}

constexpr const char* kWhatsAppMessage = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[
  {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106"},
   "contacts":[{"profile":{"name":"Olena"},"wa_id":"380501234567"}],
   "messages":[{"from":"380501234567","id":"wamid.A","timestamp":"1700000000","type":"text","text":{"body":"hi"}},
               {"from":"380501234567","id":"wamid.B","timestamp":"1700000001","type":"interactive",
                "interactive":{"type":"button_reply","button_reply":{"id":"ask","title":"Ask"}}},
               {"from":"380501234567","id":"wamid.C","timestamp":"1700000002","type":"interactive",
                "interactive":{"type":"list_reply","list_reply":{"id":"row7","title":"Seven"}}},
               {"from":"380501234567","id":"wamid.D","timestamp":"1700000003","type":"location",
                "location":{"latitude":50.45,"longitude":30.52,"name":"Office"}},
               {"from":"380501234567","id":"wamid.E","timestamp":"1700000004","type":"contacts",
                "contacts":[{"name":{"formatted_name":"Ivan"},"phones":[{"phone":"+380671112233"}]}]},
               {"from":"380501234567","id":"wamid.F","timestamp":"1700000005","type":"image",
                "image":{"id":"m1","caption":"receipt"}}]}}]}]})";

TEST(WhatsApp, ParsesMessagesAndStatuses) {
    const Adapter& a = adapter("whatsapp");
    auto events = a.parse(kWhatsAppMessage);
    ASSERT_EQ(events.size(), 6u);
    EXPECT_EQ(events[0].key, "m:wamid.A");
    EXPECT_EQ(events[0].name, "Olena");
    EXPECT_EQ(events[0].timestamp_ms, 1700000000000);
    EXPECT_EQ(events[0].message.text, "hi");
    EXPECT_EQ(events[1].message.button, "ask");
    EXPECT_EQ(events[2].message.button, "row7");
    EXPECT_EQ(events[3].message.text, "[location 50.450000,30.520000] Office");
    EXPECT_EQ(events[4].message.contact.at("phone"), "+380671112233");
    EXPECT_EQ(events[5].message.text, "[image] receipt");
    auto statuses = a.parse(R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{
        "statuses":[{"id":"wamid.X","status":"delivered","timestamp":"1700000000","recipient_id":"380"},
                    {"id":"wamid.X","status":"failed","timestamp":"1700000001","recipient_id":"380",
                     "errors":[{"code":131047,"title":"Re-engagement message"}]},
                    {"id":"wamid.X","status":"sent","timestamp":"1700000000","recipient_id":"380"}]}}]}]})");
    ASSERT_EQ(statuses.size(), 3u);
    EXPECT_EQ(statuses[0].type, InboundEvent::Type::kReceipt);
    EXPECT_EQ(statuses[0].receipt, "delivered");
    EXPECT_EQ(statuses[1].error, "131047 Re-engagement message");
    EXPECT_EQ(statuses[2].type, InboundEvent::Type::kIgnored);
    EXPECT_NE(statuses[0].key, statuses[1].key);
    for (const char* bad : {"{}", R"({"object":"page","entry":[]})", R"({"object":"whatsapp_business_account"})",
                            R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages"}]}]})",
                            R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
                                "value":{"messages":[{"id":"x","type":"text","text":{"body":"a"}}]}}]}]})",
                            R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
                                "value":{"messages":[{"id":"x","from":"1","type":"text"}]}}]}]})"}) {
        EXPECT_THROW(a.parse(bad), core::BadRequest) << bad;
    }
}

TEST(WhatsApp, RendersButtonsListsAndTemplatesOutsideTheWindow) {
    const Adapter& a = adapter("whatsapp");
    json::object creds = a.validate_credentials(json::object{{"token", "EAAB"}, {"app_secret", "appsecret"},
                                                             {"verify_token", "verify"}, {"phone_number_id", "106"}});
    ChannelRef c = channel("whatsapp", creds);
    std::int64_t now = 1'700'000'000'000;
    OutboundContext to{"380501234567", "380501234567", "d", 1, now - 1000, now};
    Rendered three = a.render(c, to, "Choose", buttons(3), identity());
    ASSERT_EQ(three.requests.size(), 1u);
    EXPECT_EQ(three.requests[0].url, "http://api.test/v21.0/106/messages");
    json::value b = json::parse(three.requests[0].body);
    EXPECT_EQ(b.at("interactive").at("type"), "button");
    EXPECT_EQ(b.at("interactive").at("action").at("buttons").as_array().size(), 3u);
    EXPECT_EQ(b.at("interactive").at("action").at("buttons").as_array()[0].at("reply").at("id"), "b0");

    Rendered list = a.render(c, to, "Choose", buttons(12, "A rather long option label"), identity());
    json::value l = json::parse(list.requests.back().body);
    EXPECT_EQ(l.at("interactive").at("type"), "list");
    const auto& rows = l.at("interactive").at("action").at("sections").as_array()[0].at("rows").as_array();
    EXPECT_EQ(rows.size(), 10u);
    EXPECT_LE(count_chars(rows[0].at("title").as_string()), 24u);
    EXPECT_TRUE(rows[0].as_object().contains("description"));
    EXPECT_NE(std::string(l.at("interactive").at("body").at("text").as_string()).find("• A rather long option label 11"),
              std::string::npos);

    Rendered long_text = a.render(c, to, std::string(1500, 'x'), buttons(2), identity());
    ASSERT_EQ(long_text.requests.size(), 2u);  // the button body holds 1024 characters: one text part first
    EXPECT_EQ(json::parse(long_text.requests[0].body).at("type"), "text");

    to.last_inbound_ms = now - 25LL * 3600 * 1000;
    EXPECT_FALSE(a.render(c, to, "Late", {}, identity()).refused.empty());
    creds["template"] = "follow_up";
    creds["template_language"] = "uk";
    creds["template_parameter"] = "text";
    Rendered late = a.render(channel("whatsapp", creds), to, "Late", buttons(1), identity());
    ASSERT_EQ(late.requests.size(), 1u);
    json::value t = json::parse(late.requests[0].body);
    EXPECT_EQ(t.at("template").at("name"), "follow_up");
    EXPECT_EQ(t.at("template").at("language").at("code"), "uk");
    EXPECT_EQ(t.at("template").at("components").as_array()[0].at("parameters").as_array()[0].at("text"), "Late\n• Option 0");

    EXPECT_EQ(a.classify(answer(200, R"({"messaging_product":"whatsapp","messages":[{"id":"wamid.Z"}]})")).message_id,
              "wamid.Z");
    EXPECT_EQ(a.classify(answer(400, R"({"error":{"code":130429,"message":"Rate limit hit"}})")).outcome,
              Outcome::kRetryAfter);
    SendResult pair = a.classify(answer(400, R"({"error":{"code":131056,"message":"pair rate limit"}})"));
    EXPECT_EQ(pair.outcome, Outcome::kRetryAfter);
    EXPECT_FALSE(pair.whole_channel);
    EXPECT_EQ(a.classify(answer(400, R"({"error":{"code":131047,"message":"Re-engagement"}})")).outcome,
              Outcome::kPermanent);
    EXPECT_EQ(a.classify(answer(500, R"({"error":{"code":131000,"message":"Something went wrong"}})")).outcome,
              Outcome::kTransient);
    EXPECT_THROW(a.validate_credentials(json::object{{"token", "t"}, {"app_secret", "s"}, {"verify_token", "v"}}),
                 core::BadRequest);  // phone_number_id missing
}

TEST(Meta, HandshakeAndSignature) {
    const Adapter& a = adapter("messenger");
    ChannelRef c = channel("messenger", a.validate_credentials(json::object{
                                            {"token", "PAGE"}, {"app_secret", "appsecret"}, {"verify_token", "verify"}}));
    WebhookRequest get;
    get.method = "GET";
    get.query = {{"hub.mode", "subscribe"}, {"hub.verify_token", "verify"}, {"hub.challenge", "1158201444"}};
    EXPECT_EQ(a.handshake(c, get), "1158201444");
    get.query[1].second = "wrong";
    EXPECT_THROW(a.handshake(c, get), core::Forbidden);
    get.query.clear();
    EXPECT_THROW(a.handshake(c, get), core::BadRequest);
    EXPECT_THROW(adapter("custom").handshake(c, get), core::NotFound);
    std::string body = R"({"object":"page","entry":[]})";
    EXPECT_NO_THROW(a.verify(c, signed_request(body, "x-hub-signature-256", "sha256=" + hmac_sha256_hex("appsecret", body))));
    EXPECT_THROW(a.verify(c, signed_request(body, "x-hub-signature-256", hmac_sha256_hex("appsecret", body))),
                 core::Unauthorized);
}

TEST(Messenger, ParsesMessagingEventsAndRendersQuickReplies) {
    const Adapter& a = adapter("messenger");
    auto events = a.parse(R"({"object":"page","entry":[{"id":"PAGE","time":1,"messaging":[
        {"sender":{"id":"PSID"},"recipient":{"id":"PAGE"},"timestamp":1000,"message":{"mid":"m1","text":"hi"}},
        {"sender":{"id":"PSID"},"recipient":{"id":"PAGE"},"timestamp":1001,
         "message":{"mid":"m2","text":"Ask","quick_reply":{"payload":"ask"}}},
        {"sender":{"id":"PSID"},"recipient":{"id":"PAGE"},"timestamp":1002,"postback":{"mid":"m3","title":"Start","payload":"GET_STARTED"}},
        {"sender":{"id":"PSID"},"recipient":{"id":"PAGE"},"timestamp":1003,"delivery":{"mids":["out1"],"watermark":999}},
        {"sender":{"id":"PSID"},"recipient":{"id":"PAGE"},"timestamp":1004,"read":{"watermark":1000}},
        {"sender":{"id":"PAGE"},"recipient":{"id":"PSID"},"timestamp":1005,"message":{"mid":"m4","text":"echo","is_echo":true}},
        {"sender":{"id":"PSID"},"recipient":{"id":"PAGE"},"timestamp":1006,"message":{"mid":"m5",
         "attachments":[{"type":"location","payload":{"coordinates":{"lat":50.45,"long":30.52}}}]}}]}]})");
    ASSERT_EQ(events.size(), 7u);
    EXPECT_EQ(events[0].message.text, "hi");
    EXPECT_EQ(events[1].message.button, "ask");
    EXPECT_EQ(events[2].message.button, "GET_STARTED");
    EXPECT_EQ(events[3].receipt, "delivered");
    EXPECT_EQ(events[3].message_ids, std::vector<std::string>{"out1"});
    EXPECT_EQ(events[4].receipt, "read");
    EXPECT_EQ(events[4].watermark_ms, 1000);
    EXPECT_EQ(events[5].type, InboundEvent::Type::kIgnored);
    EXPECT_EQ(events[6].message.text, "[location 50.450000,30.520000]");
    EXPECT_THROW(a.parse(R"({"object":"instagram","entry":[]})"), core::BadRequest);
    EXPECT_THROW(a.parse(R"({"object":"page","entry":[{"messaging":[{"message":{"mid":"x"}}]}]})"), core::BadRequest);
    EXPECT_THROW(a.parse(R"({"object":"page","entry":[{"messaging":[{"sender":{"id":"1"},"message":{}}]}]})"),
                 core::BadRequest);

    ChannelRef c = channel("messenger", json::object{{"token", "PAGE"}, {"api_version", "v21.0"}});
    OutboundContext to{"PSID", "PSID", "d", 1, 0, 0};
    Rendered r = a.render(c, to, "Pick", buttons(15, "A label longer than twenty"), identity());
    ASSERT_EQ(r.requests.size(), 1u);
    EXPECT_EQ(r.requests[0].url, "http://api.test/v21.0/me/messages");
    json::value body = json::parse(r.requests[0].body);
    EXPECT_EQ(body.at("recipient").at("id"), "PSID");
    const auto& quick = body.at("message").at("quick_replies").as_array();
    EXPECT_EQ(quick.size(), 13u);
    EXPECT_EQ(count_chars(quick[0].at("title").as_string()), 20u);
    EXPECT_NE(std::string(body.at("message").at("text").as_string()).find("• A label longer than twenty 14"),
              std::string::npos);
    EXPECT_EQ(a.classify(answer(200, R"({"recipient_id":"PSID","message_id":"mid.1"})")).message_id, "mid.1");
    EXPECT_EQ(a.classify(answer(400, R"({"error":{"code":613,"message":"Calls exceeded"}})")).outcome,
              Outcome::kRetryAfter);
    EXPECT_EQ(a.classify(answer(400, R"({"error":{"code":551,"message":"unavailable"}})")).outcome,
              Outcome::kPermanent);
    Rendered ig = adapter("instagram").render(c, to, std::string(1500, 'y'), {}, identity());
    EXPECT_EQ(ig.requests.size(), 2u);  // Instagram's 1000-character limit
}

TEST(Custom, ParsesEventsAndSignsReplies) {
    const Adapter& a = adapter("custom");
    auto one = a.parse(R"({"id":"e1","user":{"id":"u1","name":"Olena","language":"uk"},"message":{"text":"hi"}})");
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].key, "e1");
    EXPECT_EQ(one[0].chat_id, "u1");
    EXPECT_EQ(one[0].language, "uk");
    auto batch = a.parse(R"({"events":[
        {"id":"e2","user":{"id":"u1"},"chat_id":"c9","message":{"button":"ask"}},
        {"id":"e3","user":{"id":"u1"},"message":{"contact":{"phone":"+380501234567"}}},
        {"id":"e4","user":{"id":"u1"},"message":{"location":{"latitude":1.5,"longitude":2}}},
        {"id":"e5","user":{"id":"u1"},"message":{"media":{"type":"image","url":"https://x/y.png","caption":"c"}}},
        {"id":"e6","type":"start","user":{"id":"u2"}},
        {"id":"e7","type":"receipt","receipt":{"message_ids":["d:1"],"status":"read"}}]})");
    ASSERT_EQ(batch.size(), 6u);
    EXPECT_EQ(batch[0].chat_id, "c9");
    EXPECT_EQ(batch[0].message.button, "ask");
    EXPECT_EQ(batch[1].message.kind, ClientMessage::Kind::kContact);
    EXPECT_EQ(batch[2].message.text, "[location 1.500000,2.000000]");
    EXPECT_EQ(batch[3].message.text, "[image] c https://x/y.png");
    EXPECT_EQ(batch[4].type, InboundEvent::Type::kStart);
    EXPECT_EQ(batch[5].receipt, "read");
    for (const char* bad : {R"({"user":{"id":"u"},"message":{"text":"x"}})", R"({"id":"","user":{"id":"u"},"message":{"text":"x"}})",
                            R"({"id":"e","message":{"text":"x"}})", R"({"id":"e","user":{"id":"u"},"message":{}})",
                            R"({"id":"e","user":{"id":"u"},"message":{"text":"x","button":"y"}})",
                            R"({"id":"e","user":{"id":"u"},"message":{"text":1}})",
                            R"({"id":"e","user":{"id":"u"},"message":{"text":"x"},"extra":1})",
                            R"({"id":"e","type":"receipt","receipt":{"message_ids":[],"status":"read"}})",
                            R"({"id":"e","type":"receipt","receipt":{"message_ids":["a"],"status":"seen"}})",
                            R"({"events":[]})", R"({"events":[1]})"}) {
        EXPECT_THROW(a.parse(bad), core::BadRequest) << bad;
    }
    json::object creds = a.validate_credentials(json::object{{"secret", "0123456789abcdef"}});
    EXPECT_THROW(a.validate_credentials(json::object{{"secret", "short"}}), core::BadRequest);
    ChannelRef c = channel("custom", creds);
    OutboundContext to{"c9", "u1", "dlg", 4, 0, 123};
    Rendered r = a.render(c, to, "Hello", buttons(2), identity());
    ASSERT_EQ(r.requests.size(), 1u);
    EXPECT_EQ(r.requests[0].url, "http://api.test");
    json::value body = json::parse(r.requests[0].body);
    EXPECT_EQ(body.at("id"), "dlg:4");
    EXPECT_EQ(body.at("buttons").as_array().size(), 2u);
    bool signed_ok = false;
    for (const auto& [name, value] : r.requests[0].headers) {
        if (name == "X-Parley-Signature") signed_ok = value == "sha256=" + hmac_sha256_hex("0123456789abcdef", r.requests[0].body);
    }
    EXPECT_TRUE(signed_ok);
    EXPECT_EQ(a.classify(answer(202, R"({"message_id":"ext-1"})")).message_id, "ext-1");
    EXPECT_EQ(a.classify(answer(429, "", {{"retry-after", "2"}})).retry_after_ms, 2000);
    EXPECT_EQ(a.classify(answer(502, "")).outcome, Outcome::kTransient);
    EXPECT_EQ(a.classify(answer(404, "")).outcome, Outcome::kPermanent);
}

TEST(Telegram, AdapterKeepsTheBotApiShapes) {
    const Adapter& a = adapter("telegram");
    ChannelRef c = channel("telegram", a.validate_credentials(json::object{{"token", "123:ABC"}}));
    auto events = a.parse(R"({"update_id":7,"callback_query":{"id":"cb","from":{"id":42,"first_name":"O","last_name":"K"},
        "data":"ask"}})");
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].sequence, 7);
    EXPECT_EQ(events[0].name, "O K");
    EXPECT_EQ(events[0].message.button, "ask");
    auto ack = a.acknowledge(c, events[0]);
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->url, "http://api.test/bot123:ABC/answerCallbackQuery");
    WebhookRequest r = signed_request("{}", "x-telegram-bot-api-secret-token", "s3cret");
    EXPECT_NO_THROW(a.verify(c, r));
    r.headers[0].second = "nope";
    EXPECT_THROW(a.verify(c, r), core::Unauthorized);
    EXPECT_EQ(a.classify(answer(200, R"({"ok":true,"result":{"message_id":5}})")).message_id, "5");
    EXPECT_EQ(a.classify(answer(429, R"({"ok":false,"parameters":{"retry_after":3}})")).retry_after_ms, 3000);
    EXPECT_EQ(a.classify(answer(403, R"({"ok":false,"description":"Forbidden: bot was blocked by the user"})")).outcome,
              Outcome::kPermanent);
    EXPECT_EQ(a.limits().chat_per_second, 1);
}

}  // namespace
}  // namespace parley::channels

// The SMS channel (kind `sms`, providers Alpha SMS and Infobip): the pure parts (GSM-7 / UCS-2 segments,
// splitting, numbered buttons, credentials, report parsing, answer classification) and, end to end, ChannelService
// over real HTTP both ways against a fake of each provider's API (outbound::testing::TestServer on 127.0.0.1:0):
// request shapes and auth, splitting, Retry-After, dead letters, delivery reports stored as receipts, bad tokens
// and malformed reports refused with nothing stored, redelivered reports ignored, Infobip's inbound SMS.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "bots/bots.h"
#include "bots/dialogs.h"
#include "channels/adapter.h"
#include "channels/channels.h"
#include "channels/sms.h"
#include "channels/sms_provider.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/metrics.h"
#include "http/http.h"
#include "outbound/test_server.h"

namespace parley::channels {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using outbound::testing::TestRequest;
using outbound::testing::TestResponse;
using Outcome = SendResult::Outcome;
using scenario::ReplyButton;

// --- pure parts ------------------------------------------------------------------------------------------------

const Adapter& sms_adapter() {
    const Adapter* a = find_adapter("sms");
    EXPECT_NE(a, nullptr);
    return *a;
}

ChannelRef channel(json::object credentials) {
    ChannelRef c;
    c.id = "ch1";
    c.bot_id = "bot1";
    c.kind = "sms";
    c.credentials = sms_adapter().validate_credentials(credentials);
    c.api_base_url = "http://api.test";
    c.webhook_secret = "0123456789abcdef0123456789abcdef";
    c.webhook_url = "https://parley.example/hooks/ch1";
    return c;
}

outbound::Response answer(int status, std::string body, std::string url,
                          std::map<std::string, std::string> headers = {}) {
    outbound::Response r;
    r.status = status;
    r.body = std::move(body);
    r.url = std::move(url);
    r.headers = std::move(headers);
    return r;
}

PayloadOf identity() {
    return [](const std::string& id) { return id; };
}

TEST(Sms, CountsGsm7AndUcs2Segments) {
    using sms::Encoding;
    EXPECT_EQ(sms::count("").segments, 0u);
    auto one = sms::count(std::string(160, 'a'));
    EXPECT_EQ(one.encoding, Encoding::kGsm7);
    EXPECT_EQ(one.units, 160u);
    EXPECT_EQ(one.segments, 1u);
    EXPECT_EQ(sms::count(std::string(161, 'a')).segments, 2u);
    EXPECT_EQ(sms::count(std::string(306, 'a')).segments, 2u);
    EXPECT_EQ(sms::count(std::string(307, 'a')).segments, 3u);
    // Extension characters take two septets, and never straddle two segments.
    EXPECT_EQ(sms::count("€[]").units, 6u);
    EXPECT_EQ(sms::count(std::string(159, 'a') + "€").segments, 2u);
    EXPECT_EQ(sms::count(std::string(152, 'a') + "€" + std::string(10, 'b')).segments, 2u);
    EXPECT_EQ(sms::count("Ça coute 5 £ à Zürich: Δ").encoding, Encoding::kGsm7);
    EXPECT_EQ(sms::count("café `tick`").encoding, Encoding::kUcs2);  // the backtick is not GSM
    // UCS-2: Cyrillic, 70 per single SMS, 67 per part; an emoji is a surrogate pair (2 units).
    std::string cyr;
    for (int i = 0; i < 70; ++i) cyr += "ж";
    auto u = sms::count(cyr);
    EXPECT_EQ(u.encoding, Encoding::kUcs2);
    EXPECT_EQ(u.segments, 1u);
    EXPECT_EQ(sms::count(cyr + "ж").segments, 2u);
    EXPECT_EQ(sms::count("😀").units, 2u);
    std::string emojis;
    for (int i = 0; i < 34; ++i) emojis += "😀";  // 68 units: 33 pairs fill 66 of a part, the 34th moves on
    EXPECT_EQ(sms::count(emojis + std::string(3, 'a')).segments, 2u);
    EXPECT_TRUE(sms::is_gsm(U'é'));
    EXPECT_FALSE(sms::is_gsm(U'ж'));
    EXPECT_EQ(sms::gsm_septets(U'€'), 2u);
}

TEST(Sms, SplitsIntoMessagesWithinTheSegmentLimit) {
    EXPECT_TRUE(sms::split("", 4).empty());
    EXPECT_EQ(sms::split("short", 1), std::vector<std::string>{"short"});
    // 1 segment: 160 GSM characters; words are not cut.
    std::string words;
    while (words.size() < 500) words += "word ";
    words.pop_back();
    auto parts = sms::split(words, 1);
    ASSERT_GE(parts.size(), 4u);
    std::string joined;
    for (const auto& p : parts) {
        EXPECT_EQ(sms::count(p).segments, 1u) << p;
        EXPECT_NE(p.back(), ' ');
        if (!joined.empty()) joined += " ";
        joined += p;
    }
    EXPECT_EQ(joined, words);
    // 2 segments of UCS-2: 134 units per message; a line break in the last quarter is preferred.
    std::string cyr;
    for (int i = 0; i < 120; ++i) cyr += "ж";
    cyr += "\n";
    for (int i = 0; i < 120; ++i) cyr += "ш";
    auto two = sms::split(cyr, 2);
    ASSERT_EQ(two.size(), 2u);
    EXPECT_EQ(sms::count(two[0]).units, 120u);
    EXPECT_EQ(two[1].substr(0, 2), "ш");
    for (const auto& p : two) EXPECT_LE(sms::count(p).segments, 2u);
    // Without any break: cut at the capacity, never inside a UTF-8 sequence.
    std::string solid;
    for (int i = 0; i < 200; ++i) solid += "ї";
    auto cut = sms::split(solid, 1);
    ASSERT_EQ(cut.size(), 3u);
    EXPECT_EQ(sms::count(cut[0]).units, 70u);
    EXPECT_EQ(cut[0] + cut[1] + cut[2], solid);
    // max_segments is clamped to 1..10.
    EXPECT_EQ(sms::split(std::string(2000, 'x'), 99).size(), 2u);  // 10 × 153 = 1530 per message
    EXPECT_EQ(sms::split(std::string(200, 'x'), 0).size(), 2u);
}

TEST(Sms, PhoneNumbersAndNumberedButtons) {
    EXPECT_EQ(sms::phone_digits("+380 (50) 123-45-67"), "380501234567");
    EXPECT_EQ(sms::phone_digits("380501234567"), "380501234567");
    EXPECT_EQ(sms::phone_digits("12345"), "");
    EXPECT_EQ(sms::phone_digits("1234567890123456"), "");
    EXPECT_EQ(sms::phone_digits("38050abc4567"), "");
    EXPECT_EQ(sms::phone_digits("user-42"), "");
    EXPECT_EQ(sms::with_numbered_buttons("Pick one", {ReplyButton{"a", "Alpha"}, ReplyButton{"b", ""}}),
              "Pick one\n1. Alpha\n2. b");
    EXPECT_EQ(sms::with_numbered_buttons("", {ReplyButton{"a", "Alpha"}}), "1. Alpha");
}

TEST(SmsAdapter, ValidatesCredentials) {
    const Adapter& a = sms_adapter();
    json::object alpha = a.validate_credentials(
        json::object{{"provider", "alphasms"}, {"api_key", "alpha-key-1"}, {"sender", "Parley"}});
    EXPECT_EQ(alpha.at("max_segments"), sms::kDefaultMaxSegments);
    json::object ib = a.validate_credentials(json::object{{"provider", "infobip"},
                                                          {"api_key", "ib-key"},
                                                          {"sender", "+380501234567"},
                                                          {"max_segments", "2"},
                                                          {"validity_minutes", 60},
                                                          {"webhook_token", "tok-0123456789abcdef"}});
    EXPECT_EQ(ib.at("sender"), "380501234567");
    EXPECT_EQ(ib.at("max_segments"), 2);
    EXPECT_EQ(ib.at("validity_minutes"), 60);
    EXPECT_FALSE(a.validate_credentials(json::object{{"provider", "infobip"}, {"api_key", "k"}}).contains("sender"));
    auto refused = [&](json::object in, std::string_view field) {
        try {
            a.validate_credentials(in);
            ADD_FAILURE() << json::serialize(in);
        } catch (const core::BadRequest& e) {
            EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
        }
    };
    refused({{"api_key", "k"}, {"sender", "S"}}, "credentials.provider");
    refused({{"provider", "twilio"}, {"api_key", "k"}}, "credentials.provider");
    refused({{"provider", "infobip"}}, "credentials.api_key");
    refused({{"provider", "alphasms"}, {"api_key", "k"}}, "credentials.sender");
    refused({{"provider", "alphasms"}, {"api_key", "k"}, {"sender", "TwelveLetter"}}, "credentials.sender");
    refused({{"provider", "alphasms"}, {"api_key", "k"}, {"sender", "Парлі"}}, "credentials.sender");
    refused({{"provider", "infobip"}, {"api_key", "k"}, {"max_segments", 11}}, "credentials.max_segments");
    refused({{"provider", "infobip"}, {"api_key", "k"}, {"max_segments", "two"}}, "credentials.max_segments");
    refused({{"provider", "infobip"}, {"api_key", "k"}, {"validity_minutes", 0}}, "credentials.validity_minutes");
    refused({{"provider", "infobip"}, {"api_key", "k"}, {"webhook_token", "short"}}, "credentials.webhook_token");
    refused({{"provider", "infobip"}, {"api_key", "k"}, {"webhook_token", "has/slash/0123456789"}},
            "credentials.webhook_token");
    EXPECT_THROW(a.validate_credentials(json::object{{"provider", "infobip"}, {"api_key", "k"}, {"token", "x"}}),
                 core::BadRequest);
}

TEST(SmsAdapter, RendersProviderRequests) {
    const Adapter& a = sms_adapter();
    OutboundContext to{"+380 50 123 45 67", "380501234567", "dlg", 3, 0, 0};
    std::vector<ReplyButton> buttons{{"yes", "Yes"}, {"no", "No"}};

    ChannelRef ib = channel({{"provider", "infobip"}, {"api_key", "ib-key"}, {"sender", "Parley"},
                             {"validity_minutes", 30}});
    Rendered r = a.render(ib, to, "Continue?", buttons, identity());
    ASSERT_EQ(r.requests.size(), 1u);
    const auto& req = r.requests[0];
    EXPECT_EQ(req.url, "http://api.test/sms/2/text/advanced");
    bool auth = false;
    for (const auto& [name, value] : req.headers) auth = auth || (name == "Authorization" && value == "App ib-key");
    EXPECT_TRUE(auth);
    json::value body = json::parse(req.body);
    const auto& m = body.at("messages").as_array()[0];
    EXPECT_EQ(m.at("destinations").as_array()[0].at("to"), "380501234567");
    EXPECT_EQ(m.at("from"), "Parley");
    EXPECT_EQ(m.at("text"), "Continue?\n1. Yes\n2. No");
    EXPECT_EQ(m.at("notifyUrl"), "https://parley.example/hooks/ch1?token=0123456789abcdef0123456789abcdef");
    EXPECT_EQ(m.at("notifyContentType"), "application/json");
    EXPECT_EQ(m.at("callbackData"), "dlg:3:0");
    EXPECT_EQ(m.at("validityPeriod"), 30);
    // On the kind's default base URL (Alpha SMS's), an Infobip channel uses api.infobip.com.
    ib.api_base_url = "https://alphasms.net";
    EXPECT_EQ(a.render(ib, to, "x", {}, identity()).requests[0].url, "https://api.infobip.com/sms/2/text/advanced");

    ChannelRef alpha = channel({{"provider", "alphasms"}, {"api_key", "alpha-key"}, {"sender", "Shop"},
                                {"max_segments", 1}, {"webhook_token", "tok-0123456789abcdef"}});
    std::string cyr;
    for (int i = 0; i < 100; ++i) cyr += "ю";
    Rendered split = a.render(alpha, to, cyr, {}, identity());
    ASSERT_EQ(split.requests.size(), 2u);
    json::value first = json::parse(split.requests[0].body);
    EXPECT_EQ(split.requests[0].url, "http://api.test/api/json.php");
    EXPECT_EQ(first.at("auth"), "alpha-key");
    const auto& d = first.at("data").as_array()[0];
    EXPECT_EQ(d.at("type"), "sms");
    EXPECT_EQ(d.at("phone"), 380501234567LL);
    EXPECT_EQ(d.at("sms_signature"), "Shop");
    EXPECT_EQ(sms::count(d.at("sms_message").as_string()).units, 70u);
    EXPECT_EQ(d.at("hook"), "https://parley.example/hooks/ch1?token=tok-0123456789abcdef");
    json::value second = json::parse(split.requests[1].body);
    EXPECT_NE(d.at("id"), second.at("data").as_array()[0].at("id"));  // one id per message
    EXPECT_EQ(json::parse(a.render(alpha, to, cyr, {}, identity()).requests[0].body).at("data").as_array()[0].at("id"),
              d.at("id"));  // stable across retries

    // At most kMaxMessagesPerReply messages; nothing for an empty reply; not a phone → refused.
    EXPECT_EQ(a.render(alpha, to, std::string(5000, 'z'), {}, identity()).requests.size(), sms::kMaxMessagesPerReply);
    EXPECT_TRUE(a.render(alpha, to, "", {}, identity()).requests.empty());
    OutboundContext nobody{"user-42", "user-42", "dlg", 1, 0, 0};
    EXPECT_FALSE(a.render(alpha, nobody, "hi", {}, identity()).refused.empty());
    ChannelRef bare;
    bare.kind = "sms";
    EXPECT_FALSE(a.render(bare, to, "hi", {}, identity()).refused.empty());
}

TEST(SmsAdapter, VerifiesTheReportToken) {
    const Adapter& a = sms_adapter();
    ChannelRef c = channel({{"provider", "infobip"}, {"api_key", "k"}, {"webhook_token", "tok-0123456789abcdef"}});
    WebhookRequest r;
    r.body = "{}";
    EXPECT_THROW(a.verify(c, r), core::Unauthorized);
    r.query = {{"token", "tok-0123456789abcdef"}};
    EXPECT_NO_THROW(a.verify(c, r));
    r.query = {{"token", c.webhook_secret}};  // URLs handed out before the token was configured
    EXPECT_NO_THROW(a.verify(c, r));
    r.query = {{"token", "tok-0123456789abcdeX"}};
    EXPECT_THROW(a.verify(c, r), core::Unauthorized);
    r.query.clear();
    r.headers = {{"x-parley-token", "tok-0123456789abcdef"}};
    EXPECT_NO_THROW(a.verify(c, r));
    ChannelRef plain = channel({{"provider", "infobip"}, {"api_key", "k"}});
    r.headers.clear();
    r.query = {{"token", ""}};
    EXPECT_THROW(a.verify(plain, r), core::Unauthorized);
}

TEST(SmsAdapter, ParsesInfobipReportsAndInboundMessages) {
    const Adapter& a = sms_adapter();
    auto events = a.parse(R"({"results":[
      {"bulkId":"B","messageId":"m1","to":"380501234567","sentAt":"2019-11-09T16:00:00.000+0000",
       "doneAt":"2019-11-09T16:00:01.500+0000","smsCount":1,"callbackData":"d:1:0",
       "status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET","description":"Message delivered to handset"},
       "error":{"groupId":0,"groupName":"OK","id":0,"name":"NO_ERROR","description":"No Error","permanent":false}},
      {"messageId":"m2","to":"380501234567","status":{"groupId":5,"groupName":"REJECTED","id":6,"name":"REJECTED_NETWORK",
       "description":"Network is forbidden"},"error":{"id":9,"name":"EC_ABSENT_SUBSCRIBER","description":"Absent subscriber"}},
      {"messageId":"m3","status":{"groupId":1,"groupName":"PENDING","name":"PENDING_ENROUTE"}},
      {"messageId":"m4","status":{"groupId":4}},
      {"messageId":"mo-1","from":"380671112233","to":"447860099299","text":"QUIZ Paris","cleanText":"Paris",
       "keyword":"QUIZ","receivedAt":"2019-11-09T16:00:00.000+0000","smsCount":1}]})");
    ASSERT_EQ(events.size(), 5u);
    EXPECT_EQ(events[0].type, InboundEvent::Type::kReceipt);
    EXPECT_EQ(events[0].receipt, "delivered");
    EXPECT_EQ(events[0].message_ids, std::vector<std::string>{"m1"});
    EXPECT_EQ(events[0].key, "dlr:m1:delivered");
    EXPECT_EQ(events[0].chat_id, "380501234567");
    EXPECT_EQ(events[0].timestamp_ms, 1573315201500);
    EXPECT_EQ(events[1].receipt, "failed");
    EXPECT_NE(events[1].error.find("REJECTED_NETWORK"), std::string::npos);
    EXPECT_NE(events[1].error.find("EC_ABSENT_SUBSCRIBER"), std::string::npos);
    EXPECT_EQ(events[2].type, InboundEvent::Type::kIgnored);
    EXPECT_EQ(events[2].key, "dlr:m3:pending");
    EXPECT_EQ(events[3].receipt, "failed");  // groupId 4: EXPIRED
    EXPECT_EQ(events[4].type, InboundEvent::Type::kMessage);
    EXPECT_EQ(events[4].key, "mo:mo-1");
    EXPECT_EQ(events[4].user_id, "380671112233");
    EXPECT_EQ(events[4].chat_id, "380671112233");
    EXPECT_EQ(events[4].message.text, "QUIZ Paris");
    EXPECT_TRUE(a.parse(R"({"results":[]})").empty());
    for (const char* bad : {"", "{", "[1]", "\"x\"", R"({"results":{}})", R"({"results":[1]})",
                            R"({"results":[{"messageId":"m"}]})", R"({"results":[{"status":{"groupName":"DELIVERED"}}]})",
                            R"({"results":[{"messageId":"m","status":{}}]})",
                            R"({"results":[{"messageId":"m","status":"DELIVERED"}]})",
                            R"({"results":[{"messageId":"m","from":"1","text":5}]})"}) {
        EXPECT_THROW(a.parse(bad), core::BadRequest) << bad;
    }
}

TEST(SmsAdapter, ParsesAlphaSmsReports) {
    const Adapter& a = sms_adapter();
    auto one = a.parse(R"({"id":100500,"msg_id":123456789,"status":"delivered","phone":380501234567})");
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].type, InboundEvent::Type::kReceipt);
    EXPECT_EQ(one[0].receipt, "delivered");
    EXPECT_EQ(one[0].message_ids, std::vector<std::string>{"123456789"});
    EXPECT_EQ(one[0].chat_id, "380501234567");
    auto many = a.parse(R"([{"msg_id":"1","status":"UNDELIV","error":"absent"},{"msg_id":2,"status":"sent"},
                           {"msg_id":3,"status":17}])");
    ASSERT_EQ(many.size(), 3u);
    EXPECT_EQ(many[0].receipt, "failed");
    EXPECT_EQ(many[0].error, "Alpha SMS status UNDELIV: absent");
    EXPECT_EQ(many[1].type, InboundEvent::Type::kIgnored);
    EXPECT_EQ(many[2].type, InboundEvent::Type::kIgnored);
    EXPECT_EQ(many[2].key, "dlr:3:17");
    auto wrapped = a.parse(R"({"data":[{"message_id":9,"status":"expired"}]})");
    EXPECT_EQ(wrapped[0].receipt, "failed");
    for (const char* bad : {R"({"status":"delivered"})", R"({"msg_id":1})", R"({"msg_id":1,"status":true})",
                            R"({"msg_id":{},"status":"delivered"})", R"([{"msg_id":1,"status":"delivered"},2])",
                            R"({"data":[{"status":"delivered"}]})", "null"}) {
        EXPECT_THROW(a.parse(bad), core::BadRequest) << bad;
    }
}

TEST(SmsAdapter, ClassifiesAnswers) {
    const Adapter& a = sms_adapter();
    const std::string ib = "http://api.test/sms/2/text/advanced";
    const std::string alpha = "http://api.test/api/json.php";
    SendResult ok = a.classify(answer(200, R"({"bulkId":"b","messages":[{"to":"380","status":{"groupId":1,
        "groupName":"PENDING","id":26,"name":"PENDING_ACCEPTED"},"messageId":"2250be2d4219-3af1-78856-aabe-1362af1edfd2"}]})", ib));
    EXPECT_EQ(ok.outcome, Outcome::kOk);
    EXPECT_EQ(ok.message_id, "2250be2d4219-3af1-78856-aabe-1362af1edfd2");
    SendResult rejected = a.classify(answer(200, R"({"messages":[{"messageId":"x","status":{"groupId":5,
        "groupName":"REJECTED","name":"REJECTED_DESTINATION","description":"Invalid destination"}}]})", ib));
    EXPECT_EQ(rejected.outcome, Outcome::kPermanent);
    EXPECT_NE(rejected.error.find("REJECTED_DESTINATION"), std::string::npos);
    for (int status : {401, 403}) EXPECT_EQ(a.classify(answer(status, "", ib)).outcome, Outcome::kPermanent);
    SendResult bad = a.classify(answer(400, R"({"requestError":{"serviceException":{"messageId":"BAD_REQUEST",
        "text":"Bad request"}}})", ib));
    EXPECT_EQ(bad.outcome, Outcome::kPermanent);
    EXPECT_EQ(bad.error, "HTTP 400: BAD_REQUEST: Bad request");
    SendResult limited = a.classify(answer(429, "", ib, {{"retry-after", "7"}}));
    EXPECT_EQ(limited.outcome, Outcome::kRetryAfter);
    EXPECT_EQ(limited.retry_after_ms, 7000);
    EXPECT_TRUE(limited.whole_channel);
    EXPECT_EQ(a.classify(answer(429, "", ib)).retry_after_ms, 1000);
    for (int status : {500, 502, 503, 408}) EXPECT_EQ(a.classify(answer(status, "", ib)).outcome, Outcome::kTransient);
    EXPECT_EQ(a.classify(answer(200, "<html>", ib)).outcome, Outcome::kTransient);
    outbound::Response down;
    down.error = outbound::Error{outbound::ErrorCode::kConnectFailed, "refused"};
    EXPECT_EQ(a.classify(down).outcome, Outcome::kTransient);

    SendResult sent = a.classify(answer(200, R"({"success":true,"data":[{"success":true,"data":{"id":100500,
        "msg_id":123456789,"data":1,"parts":1}}]})", alpha));
    EXPECT_EQ(sent.outcome, Outcome::kOk);
    EXPECT_EQ(sent.message_id, "123456789");
    SendResult denied = a.classify(answer(200, R"({"success":false,"error":"Access denied"})", alpha));
    EXPECT_EQ(denied.outcome, Outcome::kPermanent);
    EXPECT_EQ(denied.error, "Alpha SMS: Access denied");
    EXPECT_EQ(a.classify(answer(200, R"({"success":true,"data":[{"success":false,"error":"Error in Alpha-name",
        "data":{"id":100500}}]})", alpha)).error, "Alpha SMS: Error in Alpha-name");
    EXPECT_EQ(a.classify(answer(200, R"({"success":true,"data":[]})", alpha)).outcome, Outcome::kTransient);
    EXPECT_EQ(a.classify(answer(503, "", alpha)).outcome, Outcome::kTransient);
    EXPECT_EQ(a.classify(answer(429, "", alpha, {{"retry-after", "2"}})).retry_after_ms, 2000);
}

TEST(SmsAdapter, ParsesProviderTimestamps) {
    using internal::sms_provider::parse_timestamp;
    EXPECT_EQ(parse_timestamp("1970-01-01T00:00:00.000+0000"), 0);
    EXPECT_EQ(parse_timestamp("2019-11-09T16:00:00.000+0000"), 1573315200000);
    EXPECT_EQ(parse_timestamp("2019-11-09T17:00:00.250+01:00"), 1573315200250);
    EXPECT_EQ(parse_timestamp("2019-11-09T16:00:00Z"), 1573315200000);
    EXPECT_EQ(parse_timestamp("2024-02-29T12:00:00"), 1709208000000);
    EXPECT_EQ(parse_timestamp(""), 0);
    EXPECT_EQ(parse_timestamp("yesterday"), 0);
    EXPECT_EQ(parse_timestamp("2019-13-09T16:00:00Z"), 0);
    EXPECT_EQ(parse_timestamp("2019-11-09T16:00:00+1"), 0);
}

// --- end to end ---------------------------------------------------------------------------------------------------

const char* kScenario = R"({"format":"parley.scenario/1","name":"t","languages":["en"],"sections":[{"name":"main",
 "nodes":[{"id":"start","type":"start","next":"menu"},
  {"id":"menu","type":"message","text":"Hello from Parley","buttons":[{"id":"ask","text":"Ask","next":"q"}]},
  {"id":"q","type":"input","prompt":"Your question?","save_as":"question","next":"menu"}]}]})";

struct Reply {
    int status = 0;
    json::value body;
};

struct ProviderCall {
    std::string path;
    std::string query;
    std::map<std::string, std::string> headers;
    json::value body;
    std::string answered_id;
    std::chrono::steady_clock::time_point at;
};

/// A fake of Alpha SMS's /api/json.php and Infobip's /sms/2/text/advanced: success with a fresh message id
/// unless a failure is queued. Thread-safe.
class FakeProviders {
public:
    FakeProviders() : server_([this](const TestRequest& r) { return handle(r); }, 2) {}

    std::string base_url() const { return server_.url("/").substr(0, server_.url("/").size() - 1); }
    std::vector<ProviderCall> calls(std::string_view path) const {
        std::lock_guard lock(mutex_);
        std::vector<ProviderCall> out;
        for (const auto& c : calls_) {
            if (c.path == path) out.push_back(c);
        }
        return out;
    }
    void fail_next(TestResponse response) {
        std::lock_guard lock(mutex_);
        failures_.push_back(std::move(response));
    }

private:
    TestResponse handle(const TestRequest& r) {
        std::lock_guard lock(mutex_);
        ProviderCall call{r.path, r.query, r.headers, {}, {}, std::chrono::steady_clock::now()};
        boost::system::error_code ec;
        call.body = json::parse(r.body, ec);
        if (!failures_.empty()) {
            TestResponse res = failures_.front();
            failures_.pop_front();
            calls_.push_back(std::move(call));
            return res;
        }
        ++counter_;
        json::object answer;
        if (r.path == "/api/json.php") {
            std::int64_t id = 900000 + counter_;
            call.answered_id = std::to_string(id);
            answer = {{"success", true},
                      {"data", json::array{json::object{
                                   {"success", true},
                                   {"data", json::object{{"id", 1}, {"msg_id", id}, {"data", 1}, {"parts", 1}}}}}}};
        } else if (r.path == "/sms/2/text/advanced") {
            call.answered_id = "ib-" + std::to_string(counter_);
            answer = {{"bulkId", "bulk"},
                      {"messages", json::array{json::object{
                                       {"to", "380501234567"},
                                       {"status", json::object{{"groupId", 1}, {"groupName", "PENDING"}, {"id", 26},
                                                               {"name", "PENDING_ACCEPTED"}}},
                                       {"messageId", call.answered_id}}}}};
        } else {
            calls_.push_back(std::move(call));
            return TestResponse{404, {}, "not found"};
        }
        calls_.push_back(std::move(call));
        return TestResponse{200, {{"Content-Type", "application/json"}}, json::serialize(answer)};
    }

    mutable std::mutex mutex_;
    std::vector<ProviderCall> calls_;
    std::deque<TestResponse> failures_;
    std::int64_t counter_ = 0;
    outbound::testing::TestServer server_;
};

class SmsServiceTest : public ::testing::Test {
protected:
    SmsServiceTest() : guard_(asio::make_work_guard(io_)) {
        dir_ = std::filesystem::temp_directory_path() / ("parley-sms-" + core::random_hex(8));
        std::filesystem::create_directories(dir_);
        store::StoreOptions options;
        options.path = (dir_ / "parley.db").string();
        options.durable = false;
        auto all = clients::migrations();
        for (auto& m : bots::migrations()) all.push_back(m);
        for (auto& m : migrations()) all.push_back(m);
        store_ = store::Store::open_sqlite(options, all);
        actions::register_builtin_actions(registry_);
        bots_ = std::make_unique<bots::BotService>(*store_, bot_clock_, registry_);
        dialogs_ = std::make_unique<bots::DialogService>(*bots_, registry_, nullptr, nullptr, nullptr);
        outbound::ClientOptions client_options;
        client_options.allowlist = [] { return std::optional<json::value>(json::array{"127.0.0.1"}); };
        client_ = std::make_unique<outbound::Client>(client_options);
        key_.fill(9);
        ChannelOptions channel_options;
        channel_options.public_base_url = "https://parley.example/";
        channel_options.poll_timeout_s = 1;
        channel_options.dispatch_idle_ms = 20;
        channel_options.backoff_base_ms = 50;
        service_ = std::make_unique<ChannelService>(*store_, clock_, *bots_, *dialogs_, *client_, key_,
                                                    channel_options);
        register_routes(router_, *service_);
        auto editor = std::make_shared<core::Principal>();
        editor->user_id = "editor";
        editor->permissions = {"channels.view", "channels.edit", "channels.delete"};
        tokens_["editor"] = editor;
        server_ = std::make_unique<http::Server>(io_, config_, router_, metrics_, [this](const http::Request& req)
                                                     -> std::optional<std::shared_ptr<const core::Principal>> {
            std::string auth(req.header("authorization"));
            if (auth.rfind("Bearer ", 0) != 0) return std::nullopt;
            auto it = tokens_.find(auth.substr(7));
            if (it == tokens_.end()) return std::nullopt;
            return it->second;
        });
        port_ = server_->start("127.0.0.1", 0);
        for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
        service_->start(io_.get_executor());
        bot_id_ = asio::co_spawn(io_, bots_->create("Support", true), asio::use_future).get().id;
        asio::co_spawn(io_, bots_->put_scenario(bot_id_, kScenario, {}, ""), asio::use_future).get();
    }

    ~SmsServiceTest() override {
        service_->stop();
        client_->shutdown();
        service_->wait_stopped();
        std::promise<void> stopped;
        server_->stop([&] { stopped.set_value(); });
        stopped.get_future().wait();
        guard_.reset();
        io_.stop();
        for (auto& t : threads_) t.join();
        server_.reset();
        service_.reset();
        store_->close();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    Reply request(bhttp::verb verb, const std::string& target, const std::string& body, const std::string& token) {
        asio::io_context io;
        beast::tcp_stream stream(io);
        stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
        stream.expires_after(20s);
        bhttp::request<bhttp::string_body> req{verb, target, 11};
        req.set(bhttp::field::host, "127.0.0.1");
        if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
        if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        bhttp::write(stream, req);
        beast::flat_buffer buffer;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(stream, buffer, res);
        Reply r;
        r.status = static_cast<int>(res.result_int());
        boost::system::error_code ec;
        if (!res.body().empty()) r.body = json::parse(res.body(), ec);
        if (ec) r.body = json::string(res.body());
        return r;
    }
    /// The channels of `owner_` (default the fixture's bot).
    std::string channels_url() const { return "/api/v1/bots/" + (owner_.empty() ? bot_id_ : owner_) + "/channels"; }
    Reply create_channel(json::object credentials) {
        return request(bhttp::verb::post, channels_url(),
                       json::serialize(json::object{{"kind", "sms"},
                                                    {"credentials", std::move(credentials)},
                                                    {"api_base_url", providers_.base_url()}}),
                       "editor");
    }
    std::string create(json::object credentials) {
        Reply r = create_channel(std::move(credentials));
        EXPECT_EQ(r.status, 201) << json::serialize(r.body);
        EXPECT_EQ(r.body.at("status"), "active") << json::serialize(r.body);
        return std::string(r.body.at("id").as_string());
    }
    Reply hook(const std::string& channel, const std::string& token, const std::string& body) {
        return request(bhttp::verb::post, "/hooks/" + channel + (token.empty() ? "" : "?token=" + token), body, "");
    }
    json::array receipts(const std::string& channel) {
        Reply r = request(bhttp::verb::get, channels_url() + "/" + channel + "/receipts", {}, "editor");
        EXPECT_EQ(r.status, 200) << json::serialize(r.body);
        return r.body.at("items").as_array();
    }
    json::value receipt(const std::string& channel, const std::string& message_id) {
        for (const auto& r : receipts(channel)) {
            if (r.at("message_id") == json::value(message_id)) return r;
        }
        return nullptr;
    }
    json::array dead_letters(const std::string& channel) {
        return request(bhttp::verb::get, channels_url() + "/" + channel + "/dead-letters", {}, "editor")
            .body.at("items")
            .as_array();
    }
    std::int64_t count(const std::string& sql) {
        return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
    }
    std::int64_t inbox(const std::string& channel) {
        return count("SELECT COUNT(*) FROM channel_inbox WHERE channel_id = '" + channel + "'");
    }
    std::string secret_of(const std::string& channel) {
        return store::read_value(*store_, [&](store::Tx& tx) {
            return tx.query_one("SELECT webhook_secret FROM channels WHERE id = ?", {channel})->text(0);
        });
    }
    template <typename F>
    bool eventually(F&& condition, std::chrono::milliseconds limit = 10s) {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            if (condition()) return true;
            std::this_thread::sleep_for(10ms);
        }
        return condition();
    }
    static std::string inbound(const std::string& id, const std::string& from, const std::string& text) {
        return json::serialize(json::object{
            {"results", json::array{json::object{{"messageId", id},
                                                 {"from", from},
                                                 {"to", "447860099299"},
                                                 {"text", text},
                                                 {"cleanText", text},
                                                 {"receivedAt", "2024-05-01T10:00:00.000+0000"},
                                                 {"smsCount", 1}}}},
            {"messageCount", 1},
            {"pendingMessageCount", 0}});
    }
    static std::string infobip_report(const std::string& id, const std::string& group, int group_id) {
        return json::serialize(json::object{
            {"results", json::array{json::object{
                            {"bulkId", "bulk"},
                            {"messageId", id},
                            {"to", "380501234567"},
                            {"doneAt", "2024-05-01T10:00:05.000+0000"},
                            {"smsCount", 1},
                            {"status", json::object{{"groupId", group_id}, {"groupName", group}, {"name", group + "_X"}}},
                            {"error", json::object{{"id", 0}, {"name", "NO_ERROR"}}}}}}});
    }
    /// A dialog of the bot on `channel` linked to a phone, as a campaign or an operator starting an SMS
    /// conversation would link it (an outbound-only provider has no inbound message to create it).
    std::string open_dialog(const std::string& bot, const std::string& channel, const std::string& phone) {
        clients::NewClient client;
        client.name = "Olena";
        client.phone = "+" + phone;
        std::string dialog = asio::co_spawn(io_, dialogs_->create(bot, channel, client), asio::use_future).get().id;
        store_->write_sync([&](store::Tx& tx) {
            tx.exec("INSERT INTO channel_identities(channel_id, external_user, chat_id, dialog_id, created_at, "
                    "last_inbound_at) VALUES (?, ?, ?, ?, 0, 0)",
                    {channel, phone, phone, dialog});
        });
        asio::co_spawn(io_, dialogs_->run(dialog, bots::Trigger::start()), asio::use_future).get();
        return dialog;
    }

    std::filesystem::path dir_;
    core::FakeClock bot_clock_;
    core::SystemClock clock_;
    std::unique_ptr<store::Store> store_;
    actions::ActionRegistry registry_;
    std::unique_ptr<bots::BotService> bots_;
    std::unique_ptr<bots::DialogService> dialogs_;
    std::unique_ptr<outbound::Client> client_;
    auth::SecretKey key_{};
    FakeProviders providers_;
    std::unique_ptr<ChannelService> service_;
    http::Router router_;
    core::Config config_;
    core::Metrics metrics_;
    std::map<std::string, std::shared_ptr<core::Principal>> tokens_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::unique_ptr<http::Server> server_;
    std::uint16_t port_ = 0;
    std::vector<std::thread> threads_;
    std::string bot_id_;
    std::string owner_;
};

constexpr const char* kToken = "tok-0123456789abcdef";
constexpr const char* kInfobip = "/sms/2/text/advanced";
constexpr const char* kAlpha = "/api/json.php";

TEST_F(SmsServiceTest, InfobipConversationReportsAndRefusedWebhooks) {
    // Bad credentials: 400, nothing stored; the API key is never shown.
    EXPECT_EQ(create_channel({{"provider", "infobip"}}).status, 400);
    EXPECT_EQ(create_channel({{"provider", "nexmo"}, {"api_key", "k"}}).status, 400);
    EXPECT_EQ(count("SELECT COUNT(*) FROM channels"), 0);
    Reply created = create_channel({{"provider", "infobip"}, {"api_key", "ib-secret-key"}, {"sender", "Parley"},
                                    {"webhook_token", kToken}});
    ASSERT_EQ(created.status, 201) << json::serialize(created.body);
    EXPECT_EQ(json::serialize(created.body).find("ib-secret-key"), std::string::npos);
    EXPECT_EQ(created.body.at("credentials_set"),
              (json::array{"api_key", "max_segments", "provider", "sender", "webhook_token"}));
    std::string id(created.body.at("id").as_string());

    // Unverified or malformed: 401 / 400, nothing stored.
    std::string hi = inbound("mo-1", "380501234567", "hi");
    EXPECT_EQ(hook(id, "", hi).status, 401);
    EXPECT_EQ(hook(id, "tok-0123456789abcdeX", hi).status, 401);
    EXPECT_EQ(hook(id, kToken, "{not json").status, 400);
    EXPECT_EQ(hook(id, kToken, R"({"results":[{"messageId":"m"}]})").status, 400);
    EXPECT_EQ(hook(id, kToken, R"({"results":[{"messageId":"m","status":{}}]})").status, 400);
    EXPECT_EQ(inbox(id), 0);

    // An inbound SMS starts the bot; the reply goes out with the key, the phone and the report URL.
    ASSERT_EQ(hook(id, kToken, hi).status, 200);
    ASSERT_TRUE(eventually([&] { return providers_.calls(kInfobip).size() == 1; }));
    ProviderCall first = providers_.calls(kInfobip)[0];
    EXPECT_EQ(first.headers.at("authorization"), "App ib-secret-key");
    EXPECT_EQ(first.headers.at("content-type"), "application/json");
    const auto& m = first.body.at("messages").as_array()[0];
    EXPECT_EQ(m.at("destinations").as_array()[0].at("to"), "380501234567");
    EXPECT_EQ(m.at("from"), "Parley");
    EXPECT_EQ(m.at("text"), "Hello from Parley\n1. Ask");
    EXPECT_EQ(m.at("notifyUrl"), json::value("https://parley.example/hooks/" + id + "?token=" + kToken));
    // Typing a button's label answers it.
    ASSERT_EQ(hook(id, kToken, inbound("mo-2", "380501234567", "Ask")).status, 200);
    ASSERT_TRUE(eventually([&] { return providers_.calls(kInfobip).size() == 2; }));
    EXPECT_EQ(providers_.calls(kInfobip)[1].body.at("messages").as_array()[0].at("text"), "Your question?");
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_identities WHERE channel_id = '" + id + "'"), 1);

    // Delivery reports become receipts; a redelivered report is a duplicate; a rejection is recorded.
    ASSERT_TRUE(eventually([&] { return receipts(id).size() == 2; }));
    std::string delivered_id = first.answered_id;
    std::string delivered = infobip_report(delivered_id, "DELIVERED", 3);
    ASSERT_EQ(hook(id, kToken, delivered).status, 200);
    ASSERT_TRUE(eventually([&] { return receipt(id, delivered_id).at("status") == "delivered"; }));
    EXPECT_FALSE(receipt(id, delivered_id).at("delivered_at").is_null());
    std::int64_t rows = inbox(id);
    std::uint64_t duplicates = service_->stats().duplicates;
    ASSERT_EQ(hook(id, kToken, delivered).status, 200);
    EXPECT_EQ(inbox(id), rows);
    EXPECT_EQ(service_->stats().duplicates, duplicates + 1);
    std::string rejected_id = providers_.calls(kInfobip)[1].answered_id;
    ASSERT_EQ(hook(id, secret_of(id), infobip_report(rejected_id, "REJECTED", 5)).status, 200);
    ASSERT_TRUE(eventually([&] { return receipt(id, rejected_id).at("status") == "failed"; }));
    EXPECT_NE(std::string(receipt(id, rejected_id).at("error").as_string()).find("REJECTED"), std::string::npos);
    // A late pending report does not lower a status.
    ASSERT_EQ(hook(id, kToken, infobip_report(delivered_id, "PENDING", 1)).status, 200);
    EXPECT_TRUE(eventually([&] { return count("SELECT COUNT(*) FROM channel_inbox WHERE status = 'pending'") == 0; }));
    EXPECT_EQ(receipt(id, delivered_id).at("status"), "delivered");
}

TEST_F(SmsServiceTest, InfobipRetryAfterDeadLettersAndARefusedKey) {
    std::string id = create({{"provider", "infobip"}, {"api_key", "ib-secret-key"}, {"webhook_token", kToken}});
    // 429 with Retry-After: the channel waits, then the same message goes out.
    providers_.fail_next(TestResponse{429, {{"Retry-After", "1"}}, ""});
    ASSERT_EQ(hook(id, kToken, inbound("mo-1", "380501234567", "hi")).status, 200);
    ASSERT_TRUE(eventually([&] { return providers_.calls(kInfobip).size() == 2; }));
    auto calls = providers_.calls(kInfobip);
    EXPECT_GE(calls[1].at - calls[0].at, 950ms);
    EXPECT_EQ(calls[1].body, calls[0].body);
    ASSERT_TRUE(eventually([&] { return service_->stats().sent == 1; }));

    // 5xx on every attempt: dead after kMaxDeliveryAttempts, the key redacted from the letter.
    for (int i = 0; i < kMaxDeliveryAttempts; ++i) providers_.fail_next(TestResponse{503, {}, "busy"});
    ASSERT_EQ(hook(id, kToken, inbound("mo-2", "380501234567", "Ask")).status, 200);
    ASSERT_TRUE(eventually([&] { return dead_letters(id).size() == 1; }));
    EXPECT_EQ(providers_.calls(kInfobip).size(), 2u + kMaxDeliveryAttempts);
    json::value letter = dead_letters(id)[0];
    EXPECT_EQ(letter.at("outcome"), "dead");
    EXPECT_EQ(letter.at("attempts"), kMaxDeliveryAttempts);
    EXPECT_EQ(letter.at("text"), "Your question?");

    // 401 (a revoked key): failed at once, not retried.
    providers_.fail_next(TestResponse{401, {{"Content-Type", "application/json"}},
                                      R"({"requestError":{"serviceException":{"messageId":"UNAUTHORIZED","text":"Invalid login details"}}})"});
    std::size_t before = providers_.calls(kInfobip).size();
    ASSERT_EQ(hook(id, kToken, inbound("mo-3", "380501234567", "Where is my order?")).status, 200);
    ASSERT_TRUE(eventually([&] { return dead_letters(id).size() == 2; }));
    EXPECT_EQ(providers_.calls(kInfobip).size(), before + 1);
    bool failed = false;
    for (const auto& l : dead_letters(id)) {
        if (l.at("outcome") == "failed") {
            failed = true;
            EXPECT_NE(std::string(l.at("last_error").as_string()).find("HTTP 401"), std::string::npos);
            EXPECT_EQ(std::string(l.at("last_error").as_string()).find("ib-secret-key"), std::string::npos);
        }
    }
    EXPECT_TRUE(failed);
}

TEST_F(SmsServiceTest, AlphaSmsSplitsLongRepliesAndStoresReports) {
    std::string long_text;
    for (int i = 0; i < 12; ++i) long_text += "Ваше замовлення прийнято. ";
    long_text.pop_back();  // 26 × 12 - 1 = 311 UCS-2 characters
    std::string bot = asio::co_spawn(io_, bots_->create("Notifier", true), asio::use_future).get().id;
    json::object scenario{
        {"format", "parley.scenario/1"},
        {"name", "n"},
        {"languages", json::array{"uk"}},
        {"sections", json::array{json::object{
                         {"name", "main"},
                         {"nodes", json::array{json::object{{"id", "start"}, {"type", "start"}, {"next", "m"}},
                                               json::object{{"id", "m"}, {"type", "message"}, {"text", long_text},
                                                            {"next", "w"}},
                                               json::object{{"id", "w"}, {"type", "input"}, {"save_as", "x"},
                                                            {"next", "m"}}}}}}}};
    asio::co_spawn(io_, bots_->put_scenario(bot, json::serialize(scenario), {}, ""), asio::use_future).get();
    owner_ = bot;
    Reply created = request(bhttp::verb::post, channels_url(),
                            json::serialize(json::object{{"kind", "sms"},
                                                         {"credentials", json::object{{"provider", "alphasms"},
                                                                                      {"api_key", "alpha-secret-key"},
                                                                                      {"sender", "Shop"},
                                                                                      {"max_segments", 2}}},
                                                         {"api_base_url", providers_.base_url()}}),
                            "editor");
    ASSERT_EQ(created.status, 201) << json::serialize(created.body);
    std::string id(created.body.at("id").as_string());
    std::string secret = secret_of(id);

    open_dialog(bot, id, "380501234567");
    // 311 UCS-2 characters in messages of at most 2 segments (134 units): 3 SMS, in order, split between words.
    ASSERT_TRUE(eventually([&] { return providers_.calls(kAlpha).size() == 3; }));
    auto calls = providers_.calls(kAlpha);
    std::string joined;
    for (const auto& c : calls) {
        EXPECT_EQ(c.body.at("auth"), "alpha-secret-key");
        const auto& d = c.body.at("data").as_array()[0];
        EXPECT_EQ(d.at("type"), "sms");
        EXPECT_EQ(d.at("phone"), 380501234567LL);
        EXPECT_EQ(d.at("sms_signature"), "Shop");
        EXPECT_EQ(d.at("hook"), json::value("https://parley.example/hooks/" + id + "?token=" + secret));
        std::string part(d.at("sms_message").as_string());
        EXPECT_LE(sms::count(part).segments, 2u);
        if (!joined.empty()) joined += " ";
        joined += part;
    }
    EXPECT_EQ(joined, long_text);
    ASSERT_TRUE(eventually([&] { return receipts(id).size() == 3; }));

    // Reports: bad token 401, malformed 400 (nothing stored), then delivered and failed; a repeat is ignored.
    std::string msg = calls[0].answered_id;
    std::string report = R"({"id":1,"msg_id":)" + msg + R"(,"status":"delivered","phone":380501234567})";
    EXPECT_EQ(hook(id, "", report).status, 401);
    EXPECT_EQ(hook(id, "wrong", report).status, 401);
    EXPECT_EQ(hook(id, secret, R"({"status":"delivered"})").status, 400);
    EXPECT_EQ(hook(id, secret, "[1,2]").status, 400);
    EXPECT_EQ(inbox(id), 0);
    ASSERT_EQ(hook(id, secret, report).status, 200);
    ASSERT_TRUE(eventually([&] { return receipt(id, msg).at("status") == "delivered"; }));
    ASSERT_EQ(hook(id, secret, report).status, 200);
    EXPECT_EQ(inbox(id), 1);
    std::string other = calls[2].answered_id;
    ASSERT_EQ(hook(id, secret, R"([{"msg_id":")" + other + R"(","status":"expired"}])").status, 200);
    ASSERT_TRUE(eventually([&] { return receipt(id, other).at("status") == "failed"; }));

    // Alpha SMS refusing the key (200, success false): failed at once, a dead letter.
    providers_.fail_next(TestResponse{200, {{"Content-Type", "application/json"}},
                                      R"({"success":false,"error":"Access denied"})"});
    std::string second = open_dialog(bot, id, "380671112233");
    ASSERT_TRUE(eventually([&] { return dead_letters(id).size() == 1; }));
    json::value letter = dead_letters(id)[0];
    EXPECT_EQ(letter.at("outcome"), "failed");
    EXPECT_EQ(letter.at("dialog_id"), json::value(second));
    EXPECT_EQ(letter.at("last_error"), "Alpha SMS: Access denied");
}

}  // namespace
}  // namespace parley::channels

// Webhooks over a real SQLite store and a real local HTTP receiver: the event mapping, signatures (verified with
// OpenSSL, independently of the libsodium signer), retries with backoff and Retry-After, dead deliveries, restart
// recovery, duplicate suppression, limits, pruning and validation.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>

#include "auth/internal/crypto.h"
#include "core/error.h"
#include "core/ids.h"
#include "webhooks/test_util.h"

namespace parley::webhooks {
namespace {

namespace json = boost::json;
using testing::WebhooksTest;
using outbound::testing::TestRequest;
using outbound::testing::TestResponse;

std::string openssl_signature(const std::string& secret, const std::string& timestamp, const std::string& body) {
    std::string message = timestamp + "." + body;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
    static const char* hex = "0123456789abcdef";
    std::string out = "sha256=";
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(hex[mac[i] >> 4]);
        out.push_back(hex[mac[i] & 15]);
    }
    return out;
}

std::vector<std::string> types_of(const std::vector<MappedEvent>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(e.type);
    return out;
}

std::vector<std::string> map_types(std::string_view type, const json::object& body) {
    json::object text{{"id", 7}, {"type", type}};
    for (const auto& kv : body) text[kv.key()] = kv.value();
    return types_of(map_event(type, json::serialize(text)));
}

using Types = std::vector<std::string>;

// --- the pure parts ------------------------------------------------------------------------------------------------

TEST(WebhookMapping, OperatorEventsBecomeDialogEvents) {
    // The bot's hand-over (connect action): group_id present.
    EXPECT_EQ(map_types("operator.dialog", {{"dialog_id", "d1"}, {"status", "queue"}, {"group_id", nullptr}}),
              (Types{"dialog.created", "dialog.queued"}));
    EXPECT_EQ(map_types("operator.dialog",
                        {{"dialog_id", "d1"}, {"status", "assigned"}, {"group_id", "g"}, {"operator_id", "u"}}),
              (Types{"dialog.created", "dialog.assigned"}));
    // An operator's outgoing dialog.
    EXPECT_EQ(map_types("operator.dialog", {{"dialog_id", "d1"}, {"status", "assigned"}, {"operator_id", "u"}, {"outgoing", true}}),
              (Types{"dialog.created", "dialog.assigned"}));
    // Take, auto-distribution.
    EXPECT_EQ(map_types("operator.dialog", {{"dialog_id", "d1"}, {"status", "assigned"}, {"operator_id", "u"}}),
              (Types{"dialog.assigned"}));
    // Re-queued: the operator went offline; a supervisor's reassign.
    EXPECT_EQ(map_types("operator.dialog", {{"dialog_id", "d1"}, {"status", "queue"}}), (Types{"dialog.queued"}));
    EXPECT_EQ(map_types("operator.dialog", {{"dialog_id", "d1"}, {"status", "queue"}, {"from_operator_id", "u"}}),
              (Types{"dialog.queued"}));
    EXPECT_EQ(map_types("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}}), (Types{"dialog.closed"}));
    EXPECT_EQ(map_types("operator.transferred", {{"dialog_id", "d1"}, {"from_operator_id", "a"}, {"operator_id", "b"}}),
              (Types{"dialog.transferred"}));
    EXPECT_EQ(map_types("operator.message", {{"dialog_id", "d1"}, {"message", {{"n", 3}, {"text", "hi"}}}}),
              (Types{"dialog.message"}));
    EXPECT_EQ(map_types("dialog.messages", {{"dialog_id", "d1"}, {"last_n", 4}, {"status", "operator"}}),
              (Types{"dialog.message"}));
}

TEST(WebhookMapping, OtherEventsMapToNothing) {
    EXPECT_TRUE(map_types("dialog.messages", {{"dialog_id", "d1"}, {"last_n", 4}, {"status", "bot"}}).empty());
    EXPECT_TRUE(map_types("operator.status", {{"user_id", "u"}, {"status", "online"}}).empty());
    EXPECT_TRUE(map_types("operator.queue", {{"dialog_id", "d1"}}).empty());
    EXPECT_TRUE(map_types("operator.dialog", {{"status", "closed"}}).empty());              // no dialog id
    EXPECT_TRUE(map_types("operator.dialog", {{"dialog_id", 5}, {"status", "closed"}}).empty());
    EXPECT_TRUE(map_types("operator.dialog", {{"dialog_id", "d"}, {"status", "weird"}}).empty());
    EXPECT_TRUE(map_event("operator.dialog", "{not json").empty());
    EXPECT_TRUE(map_event("operator.dialog", "[1,2]").empty());
}

TEST(WebhookMapping, DataIsTheBodyWithoutHubFields) {
    auto events = map_event("operator.dialog", R"({"id":9,"type":"operator.dialog","dialog_id":"d1","status":"closed"})");
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].data, (json::object{{"dialog_id", "d1"}, {"status", "closed"}}));
    EXPECT_EQ(events[0].entity, "d1");
    // The duplicate-suppression key ignores the hub id.
    auto again = map_event("operator.dialog", R"({"id":10,"type":"operator.dialog","dialog_id":"d1","status":"closed"})");
    EXPECT_EQ(again[0].key, events[0].key);
}

TEST(WebhookSignature, MatchesAnIndependentHmac) {
    EXPECT_EQ(signature("whsec_abc", "1700000000", R"({"a":1})"),
              openssl_signature("whsec_abc", "1700000000", R"({"a":1})"));
    EXPECT_NE(signature("whsec_abc", "1700000001", R"({"a":1})"), signature("whsec_abc", "1700000000", R"({"a":1})"));
}

TEST(WebhookRetryAfter, SecondsAndDates) {
    EXPECT_EQ(parse_retry_after("120", 0), 120'000);
    EXPECT_EQ(parse_retry_after(" 0 ", 0), 0);
    // 2015-10-21T07:28:00Z = 1445412480 s.
    EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1'445'412'470'000), 10'000);
    EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1'445'412'490'000), 0);  // in the past
    EXPECT_EQ(parse_retry_after("99999999999999", 0), kMaxRetryAfterMs);
    EXPECT_FALSE(parse_retry_after("", 0));
    EXPECT_FALSE(parse_retry_after("-5", 0));
    EXPECT_FALSE(parse_retry_after("soon", 0));
    EXPECT_FALSE(parse_retry_after("Wed, 21 Foo 2015 07:28:00 GMT", 0));
    EXPECT_FALSE(parse_retry_after("Wed, 21 Oct 2015 25:28:00 GMT", 0));
}

TEST(WebhookInput, Validation) {
    auto code_of = [](const json::object& body, bool creating = true) -> std::string {
        try {
            SubscriptionInput::from_json(body, creating);
        } catch (const core::Error& e) {
            return std::to_string(e.status()) + " " + e.code();
        }
        return "ok";
    };
    EXPECT_EQ(code_of({{"url", "https://crm.example.com/hooks/parley?x=1"}}), "ok");
    EXPECT_EQ(code_of({}), "400 missing_field");
    EXPECT_EQ(code_of({{"url", "ftp://example.com/x"}}), "400 invalid_url");
    EXPECT_EQ(code_of({{"url", "example.com/x"}}), "400 invalid_url");
    EXPECT_EQ(code_of({{"url", "https:///path"}}), "400 invalid_url");
    EXPECT_EQ(code_of({{"url", "https://user:pw@example.com/"}}), "400 invalid_url");
    EXPECT_EQ(code_of({{"url", "https://example.com/#frag"}}), "400 invalid_url");
    EXPECT_EQ(code_of({{"url", "https://example.com/a b"}}), "400 invalid_url");
    EXPECT_EQ(code_of({{"url", "https://example.com/" + std::string(kMaxUrlBytes, 'a')}}), "400 invalid_url");
    EXPECT_EQ(code_of({{"url", "https://example.com/" + std::string(kMaxUrlBytes - 20, 'a')}}), "ok");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"events", json::array{"dialog.closed", "*"}}}), "ok");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"events", json::array{"dialog.deleted"}}}), "400 unknown_event_type");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"events", json::array{"ping"}}}), "400 unknown_event_type");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"events", json::array{}}}), "400 invalid_events");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"events", "dialog.closed"}}), "400 wrong_type");
    json::array many;
    for (std::size_t i = 0; i <= kMaxEventTypes; ++i) many.emplace_back("dialog.closed");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"events", many}}), "400 invalid_events");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"description", std::string(kMaxDescriptionBytes + 1, 'd')}}),
              "400 invalid_description");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"secret", "mine"}}), "400 unknown_field");
    EXPECT_EQ(code_of({{"url", "https://example.com/"}, {"enabled", "yes"}}), "400 wrong_type");
    EXPECT_EQ(code_of({{"enabled", false}}, false), "ok");  // PATCH: every field optional

    auto in = SubscriptionInput::from_json({{"url", "https://example.com/"}, {"events", json::array{"dialog.closed", "dialog.closed"}}}, true);
    EXPECT_EQ(*in.events, (std::vector<std::string>{"dialog.closed"}));
    EXPECT_TRUE(*in.enabled);
    auto defaults = SubscriptionInput::from_json({{"url", "https://example.com/"}}, true);
    EXPECT_EQ(*defaults.events, (std::vector<std::string>{"*"}));
}

// --- delivery over real HTTP -------------------------------------------------------------------------------------

TEST_F(WebhooksTest, DeliversSignedEventsThatVerify) {
    auto [sub, secret] = subscribe();
    EXPECT_EQ(secret.rfind("whsec_", 0), 0u);
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "queue"}, {"group_id", nullptr}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 2; }));
    auto requests = received();
    ASSERT_EQ(requests.size(), 2u);
    std::set<std::string> types;
    for (const auto& r : requests) {
        EXPECT_EQ(r.method, "POST");
        EXPECT_EQ(r.path, "/hook");
        EXPECT_EQ(r.headers.at("content-type"), "application/json");
        EXPECT_EQ(r.headers.at("x-parley-timestamp"), std::to_string(clock_.now_ms() / 1000));
        EXPECT_EQ(r.headers.at("x-parley-signature"),
                  openssl_signature(secret, r.headers.at("x-parley-timestamp"), r.body));
        json::object body = json::parse(r.body).as_object();
        EXPECT_EQ(body.at("type").as_string(), r.headers.at("x-parley-event"));
        EXPECT_TRUE(core::looks_like_id(body.at("id").as_string()));
        EXPECT_EQ(body.at("created_at").as_string(), core::format_time(clock_.now_ms()));
        EXPECT_EQ(body.at("data").at("dialog_id").as_string(), "d1");
        types.insert(std::string(body.at("type").as_string()));
        auto d = service_->delivery(sub.id, r.headers.at("x-parley-delivery"));
        EXPECT_EQ(d.state, "delivered");
        EXPECT_EQ(d.payload, r.body);
        EXPECT_EQ(d.attempts, 1);
        EXPECT_EQ(d.last_status, 200);
        EXPECT_EQ(d.last_response, "ok");
    }
    EXPECT_EQ(types, (std::set<std::string>{"dialog.created", "dialog.queued"}));
    EXPECT_EQ(service_->stats().delivered, 2u);
}

TEST_F(WebhooksTest, OneChangePublishedToSeveralAudiencesIsDeliveredOnce) {
    subscribe();
    json::object message{{"dialog_id", "d1"}, {"message", {{"n", 3}, {"from", "operator"}, {"text", "Hello"}}}};
    publish("operator.message", message);  // to the holder
    publish("operator.message", message);  // to supervisors
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 2; }));
    EXPECT_EQ(count("SELECT COUNT(*) FROM webhook_deliveries WHERE event_type = 'dialog.message'"), 1);
    // The same body again after another change of that dialog is a new event.
    publish("operator.message", message);
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 3; }));
}

TEST_F(WebhooksTest, SubscriptionsChooseEventTypesAndDisabledOnesGetNothing) {
    auto [closed_only, s1] = subscribe({"dialog.closed"}, "/closed");
    auto [everything, s2] = subscribe({"*"}, "/all");
    SubscriptionInput off;
    off.enabled = false;
    run(service_->update(admin_, everything.id, off));
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "assigned"}, {"operator_id", "u"}});
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return received().size() == 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto requests = received();
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0].path, "/closed");
    EXPECT_EQ(requests[0].headers.at("x-parley-event"), "dialog.closed");
    EXPECT_EQ(count("SELECT COUNT(*) FROM webhook_deliveries"), 1);
}

TEST_F(WebhooksTest, FailureThenSuccessRetriesWithBackoff) {
    auto [sub, secret] = subscribe();
    std::atomic<int> calls{0};
    respond([&](const TestRequest&) {
        return ++calls == 1 ? TestResponse{500, {}, "boom"} : TestResponse{204, {}, ""};
    });
    std::int64_t t0 = clock_.now_ms();
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 1") == 1; }));
    auto list = service_->deliveries(sub.id, std::nullopt, std::nullopt, 10);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].state, "pending");
    EXPECT_EQ(list[0].last_status, 500);
    EXPECT_EQ(list[0].last_error, "HTTP 500");
    EXPECT_EQ(list[0].last_response, "boom");
    EXPECT_EQ(list[0].next_attempt_at, t0 + 1'000);  // the first step of the schedule, no jitter

    clock_.advance_ms(999);
    service_->wake();
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_EQ(calls.load(), 1);  // not due yet

    clock_.advance_ms(1);
    service_->wake();
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 1; }));
    auto d = service_->deliveries(sub.id, std::nullopt, std::nullopt, 10)[0];
    EXPECT_EQ(d.attempts, 2);
    EXPECT_EQ(d.last_status, 204);
    auto requests = received();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[0].headers.at("x-parley-delivery"), requests[1].headers.at("x-parley-delivery"));
    EXPECT_EQ(requests[0].body, requests[1].body);
}

TEST_F(WebhooksTest, DeadAfterMaxAttempts) {
    auto [sub, secret] = subscribe();
    respond([](const TestRequest&) { return TestResponse{502, {}, "bad gateway"}; });
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 1") == 1; }));
    clock_.advance_ms(1'000);
    service_->wake();
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 2") == 1; }));
    EXPECT_EQ(service_->deliveries(sub.id, std::nullopt, std::nullopt, 1)[0].next_attempt_at, clock_.now_ms() + 2'000);
    clock_.advance_ms(2'000);
    service_->wake();
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'failed'") == 1; }));
    clock_.advance_ms(3'600'000);
    service_->wake();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(received().size(), 3u);
    auto d = service_->deliveries(sub.id, std::string("failed"), std::nullopt, 10);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].attempts, 3);
    EXPECT_EQ(d[0].to_json(false).at("next_attempt_at"), nullptr);
    EXPECT_EQ(service_->stats().dead, 1u);
    EXPECT_EQ(service_->stats().attempts_failed, 3u);
}

TEST_F(WebhooksTest, RetryAfterOf429IsHonoured) {
    auto [sub, secret] = subscribe();
    respond([](const TestRequest&) { return TestResponse{429, {{"Retry-After", "120"}}, "slow down"}; });
    std::int64_t t0 = clock_.now_ms();
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 1") == 1; }));
    EXPECT_EQ(service_->deliveries(sub.id, std::nullopt, std::nullopt, 1)[0].next_attempt_at, t0 + 120'000);
}

TEST_F(WebhooksTest, TransportErrorsAndRefusedAddressesAreRetriedAndLogged) {
    SubscriptionInput in;
    in.url = "http://127.0.0.2:9/hook";  // loopback outside the allow-list: the SSRF guard refuses, nothing connects
    in.events = std::vector<std::string>{"*"};
    in.enabled = true;
    in.description = "";
    auto [sub, secret] = run(service_->create(admin_, std::move(in)));
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 1") == 1; }));
    auto d = service_->deliveries(sub.id, std::nullopt, std::nullopt, 1)[0];
    EXPECT_EQ(d.state, "pending");
    EXPECT_FALSE(d.last_status);
    EXPECT_EQ(d.last_error.rfind("refused_by_guard", 0), 0u) << d.last_error;
}

TEST_F(WebhooksTest, RestartResumesPendingAndNeverResendsDelivered) {
    auto [sub, secret] = subscribe();
    // Persisted before a crash, never attempted.
    stop_service();
    std::int64_t now = clock_.now_ms();
    std::string id = core::new_id();
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("INSERT INTO webhook_deliveries(id, subscription_id, event_id, event_type, payload, state, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, 'e1', 'dialog.closed', '{\"id\":\"e1\"}', 'pending', 0, ?, ?)",
                {id, sub.id, now, now});
    });
    restart();
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 1; }));
    ASSERT_EQ(received().size(), 1u);
    EXPECT_EQ(received()[0].headers.at("x-parley-delivery"), id);

    // A failed attempt, a restart, then the retry is due.
    respond([](const TestRequest&) { return TestResponse{500, {}, ""}; });
    publish("operator.dialog", {{"dialog_id", "d2"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 1 AND state = 'pending'") == 1; }));
    restart();
    respond(nullptr);
    clock_.advance_ms(1'000);
    service_->wake();
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 2; }));
    EXPECT_EQ(received().size(), 3u);

    // Delivered ones are never sent again, whatever the clock says.
    restart();
    clock_.advance_ms(24 * 3'600'000);
    service_->wake();
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_EQ(received().size(), 3u);
}

TEST_F(WebhooksTest, ADeliveryClaimedWhenTheProcessDiedIsSentWhenItsLeaseEnds) {
    auto [sub, secret] = subscribe();
    stop_service();
    std::int64_t now = clock_.now_ms();
    std::int64_t lease_end = now + test_options().timeout_ms + 60'000;
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("INSERT INTO webhook_deliveries(id, subscription_id, event_id, event_type, payload, state, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, 'e1', 'dialog.closed', '{}', 'pending', 0, ?, ?)",
                {core::new_id(), sub.id, lease_end, now});
    });
    restart();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(received().size(), 0u);
    clock_.set_ms(lease_end);
    service_->wake();
    ASSERT_TRUE(wait_for([&] { return received().size() == 1; }));
}

TEST_F(WebhooksTest, PingReachesEvenADisabledSubscription) {
    auto [sub, secret] = subscribe({"dialog.closed"});
    SubscriptionInput off;
    off.enabled = false;
    run(service_->update(admin_, sub.id, off));
    Delivery d = run(service_->ping(admin_, sub.id));
    EXPECT_EQ(d.event_type, "ping");
    ASSERT_TRUE(wait_for([&] { return received().size() == 1; }));
    auto r = received()[0];
    EXPECT_EQ(r.headers.at("x-parley-event"), "ping");
    EXPECT_EQ(r.headers.at("x-parley-delivery"), d.id);
    EXPECT_EQ(r.headers.at("x-parley-signature"), openssl_signature(secret, r.headers.at("x-parley-timestamp"), r.body));
    EXPECT_EQ(json::parse(r.body).at("data").at("subscription_id").as_string(), sub.id);
    EXPECT_THROW(run(service_->ping(admin_, "nope")), core::NotFound);
}

TEST_F(WebhooksTest, RedeliverSendsAFailedDeliveryAgain) {
    WebhookOptions once = test_options();
    once.max_attempts = 1;
    restart(once);
    auto [sub, secret] = subscribe();
    respond([](const TestRequest&) { return TestResponse{500, {}, ""}; });
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'failed'") == 1; }));
    auto failed = service_->deliveries(sub.id, std::string("failed"), std::nullopt, 1)[0];
    respond(nullptr);
    Delivery again = run(service_->redeliver(admin_, sub.id, failed.id));
    EXPECT_EQ(again.state, "pending");
    EXPECT_EQ(again.attempts, 0);
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 1; }));
    auto requests = received();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[1].headers.at("x-parley-delivery"), failed.id);
    EXPECT_THROW(run(service_->redeliver(admin_, sub.id, "nope")), core::NotFound);
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'webhook.redeliver'"), 1);
}

TEST_F(WebhooksTest, RedeliverOfAPendingDeliveryIsAConflict) {
    auto [sub, secret] = subscribe();
    respond([](const TestRequest&) { return TestResponse{500, {}, ""}; });
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 1") == 1; }));
    auto pending = service_->deliveries(sub.id, std::nullopt, std::nullopt, 1)[0];
    EXPECT_THROW(run(service_->redeliver(admin_, sub.id, pending.id)), core::Conflict);
}

TEST_F(WebhooksTest, SecretIsEncryptedAtRestAndRotationChangesTheSignature) {
    auto [sub, secret] = subscribe();
    std::string raw = store::read_value(*store_, [&](store::Tx& tx) {
        return tx.query_one("SELECT secret FROM webhook_subscriptions WHERE id = ?", {sub.id})->text(0);
    });
    EXPECT_EQ(raw.find(secret), std::string::npos);
    EXPECT_EQ(raw.find(secret.substr(6)), std::string::npos);
    EXPECT_EQ(auth::internal::open_sealed(key_, raw), secret);

    auto [rotated, fresh] = run(service_->rotate_secret(admin_, sub.id));
    EXPECT_NE(fresh, secret);
    EXPECT_GT(rotated.secret_rotated_at, 0);
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return received().size() == 1; }));
    auto r = received()[0];
    EXPECT_EQ(r.headers.at("x-parley-signature"), openssl_signature(fresh, r.headers.at("x-parley-timestamp"), r.body));
    EXPECT_NE(r.headers.at("x-parley-signature"), openssl_signature(secret, r.headers.at("x-parley-timestamp"), r.body));
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action IN ('webhook.create', 'webhook.rotate_secret')"), 2);
}

TEST_F(WebhooksTest, AtMostMaxSubscriptions) {
    for (std::size_t i = 0; i < kMaxSubscriptions; ++i) subscribe();
    SubscriptionInput in;
    in.url = "https://example.com/";
    in.events = std::vector<std::string>{"*"};
    in.enabled = true;
    in.description = "";
    EXPECT_THROW(run(service_->create(admin_, in)), core::Conflict);
    EXPECT_EQ(count("SELECT COUNT(*) FROM webhook_subscriptions"), static_cast<std::int64_t>(kMaxSubscriptions));
}

TEST_F(WebhooksTest, OversizedPayloadIsSentWithDataTruncated) {
    subscribe();
    publish("operator.message",
            {{"dialog_id", "d1"}, {"message", {{"n", 1}, {"text", std::string(kMaxPayloadBytes + 10, 'x')}}}});
    ASSERT_TRUE(wait_for([&] { return received().size() == 1; }));
    auto r = received()[0];
    EXPECT_LE(r.body.size(), kMaxPayloadBytes);
    auto data = json::parse(r.body).at("data");
    EXPECT_EQ(data, (json::object{{"dialog_id", "d1"}, {"truncated", true}}));
}

TEST_F(WebhooksTest, ABacklogAtTheLimitDropsNewEvents) {
    auto [sub, secret] = subscribe();
    std::int64_t later = clock_.now_ms() + 3'600'000;
    store_->write_sync([&](store::Tx& tx) {
        for (std::int64_t i = 0; i < kMaxPendingPerSubscription; ++i) {
            tx.exec("INSERT INTO webhook_deliveries(id, subscription_id, event_id, event_type, payload, state, "
                    "attempts, next_attempt_at, created_at) VALUES (?, ?, 'e', 'dialog.closed', '{}', 'pending', 1, ?, 0)",
                    {core::new_id(), sub.id, later});
        }
    });
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return service_->stats().events_dropped == 1; }));
    EXPECT_EQ(count("SELECT COUNT(*) FROM webhook_deliveries"), kMaxPendingPerSubscription);
}

TEST_F(WebhooksTest, TheInMemoryQueueIsBounded) {
    stop_service();
    WebhookService idle(*store_, clock_, *client_, key_, test_options());  // never started: nothing drains
    for (std::size_t i = 0; i <= kMaxQueuedEvents; ++i) {
        idle.on_event(i + 1, "operator.dialog", R"({"dialog_id":"d","status":"closed"})");
    }
    idle.on_event(1, "operator.status", R"({"user_id":"u"})");  // filtered before the queue
    EXPECT_EQ(idle.stats().events_dropped, 1u);
}

TEST_F(WebhooksTest, PruneDropsOldDeliveredAndFailedRows) {
    auto [sub, secret] = subscribe();
    std::int64_t now = clock_.now_ms();
    std::int64_t day = 86'400'000;
    auto insert = [&](const std::string& state, std::int64_t finished_at) {
        store_->write_sync([&](store::Tx& tx) {
            tx.exec("INSERT INTO webhook_deliveries(id, subscription_id, event_id, event_type, payload, state, "
                    "attempts, next_attempt_at, created_at, last_attempt_at) VALUES (?, ?, 'e', 'dialog.closed', '{}', "
                    "?, 1, ?, ?, ?)",
                    {core::new_id(), sub.id, state, now + 10 * day, finished_at, finished_at});
        });
    };
    insert("delivered", now - kDeliveredRetentionDays * day - 1);  // pruned
    insert("delivered", now - kDeliveredRetentionDays * day + 1000);
    insert("failed", now - kDeliveredRetentionDays * day - 1);      // failed rows are kept longer
    insert("failed", now - kFailedRetentionDays * day - 1);         // pruned
    insert("pending", now - 100 * day);                             // never pruned
    EXPECT_EQ(run(service_->prune()), 2u);
    EXPECT_EQ(count("SELECT COUNT(*) FROM webhook_deliveries"), 3);
    EXPECT_EQ(run(service_->prune()), 0u);
}

TEST_F(WebhooksTest, DeliveryLogPagesNewestFirstAndFiltersByState) {
    auto [sub, secret] = subscribe();
    for (int i = 0; i < 5; ++i) publish("operator.dialog", {{"dialog_id", "d" + std::to_string(i)}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 5; }));
    auto first = service_->deliveries(sub.id, std::nullopt, std::nullopt, 2);
    ASSERT_EQ(first.size(), 2u);
    EXPECT_GT(first[0].id, first[1].id);
    auto second = service_->deliveries(sub.id, std::nullopt, first.back().id, 10);
    EXPECT_EQ(second.size(), 3u);
    EXPECT_LT(second[0].id, first.back().id);
    EXPECT_TRUE(service_->deliveries(sub.id, std::string("failed"), std::nullopt, 10).empty());
    EXPECT_EQ(service_->deliveries(sub.id, std::string("delivered"), std::nullopt, 10).size(), 5u);
    EXPECT_THROW(service_->deliveries(sub.id, std::string("sent"), std::nullopt, 10), core::BadRequest);
    EXPECT_THROW(service_->deliveries("nope", std::nullopt, std::nullopt, 10), core::NotFound);
}

TEST_F(WebhooksTest, DeletingASubscriptionDeletesItsDeliveries) {
    auto [sub, secret] = subscribe();
    publish("operator.dialog", {{"dialog_id", "d1"}, {"status", "closed"}});
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'") == 1; }));
    run(service_->remove(admin_, sub.id));
    EXPECT_EQ(count("SELECT COUNT(*) FROM webhook_deliveries"), 0);
    EXPECT_THROW(service_->get(sub.id), core::NotFound);
    EXPECT_THROW(run(service_->remove(admin_, sub.id)), core::NotFound);
}

}  // namespace
}  // namespace parley::webhooks

// Operator-panel webhooks and SLA through the real binary: a local receiver (allowed by the outbound_allowlist
// setting, as an administrator would) gets the dialog events of a bot's hand-over signed with the subscription's
// secret; a failing receiver's delivery is recorded and rescheduled; only settings holders manage webhooks;
// calendars and policies are validated; a dialog's SLA figures and the report; and a subscription and its secret
// survive a restart.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

const char* kBot = R"({"format":"parley.scenario/1","languages":["en"],"sections":[{"name":"main","nodes":[
  {"id":"start","type":"start","next":"menu"},
  {"id":"menu","type":"message","text":"Hi","buttons":[{"id":"op","text":"Operator","next":"connect"}]},
  {"id":"connect","type":"action","action":"operator_panel__connect_to_operator_with_msg",
   "params":{"subject_alias":"billing","auto_connect_operator":true,"status":"queue","message":"wants a human"},
   "on":{"connected":"op_ok","queued":"op_queue","limit":"busy"}},
  {"id":"op_ok","type":"message","text":"Operator connected"},
  {"id":"op_queue","type":"message","text":"You are in the queue"},
  {"id":"busy","type":"message","text":"All operators are busy","next":"fin"},
  {"id":"fin","type":"end"}]}]})";

/// One request the receiver got.
struct Received {
    std::string method;
    std::string target;
    std::map<std::string, std::string> headers;  ///< lower-case names
    std::string body;
};

/// An HTTP/1.1 receiver on 127.0.0.1:0 (one thread, one request per connection). `status_for(target, n)` is the
/// status of the n-th (0-based) request to `target`.
class Receiver {
public:
    explicit Receiver(std::function<int(const std::string&, int)> status_for = {}) : status_for_(std::move(status_for)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 64) != 0) {
            throw std::runtime_error("receiver: bind/listen failed");
        }
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~Receiver() {
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

    /// Every request so far.
    std::vector<Received> all() {
        std::lock_guard lock(mutex_);
        return received_;
    }
    /// Waits until `pred` holds for the requests so far (or the timeout passes); returns whether it held.
    bool wait_for(const std::function<bool(const std::vector<Received>&)>& pred, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return pred(received_); });
    }

    /// The requests carrying X-Parley-Delivery `id` once at least `count` of them arrived (empty on timeout).
    std::vector<Received> wait_delivery(const std::string& id, std::chrono::milliseconds timeout, std::size_t count = 1) {
        std::vector<Received> out;
        auto matching = [&](const std::vector<Received>& all) {
            out.clear();
            for (const auto& r : all) {
                auto it = r.headers.find("x-parley-delivery");
                if (it != r.headers.end() && it->second == id) out.push_back(r);
            }
            return out.size() >= count;
        };
        if (!wait_for(matching, timeout)) return {};
        return out;
    }
    /// How many requests carried X-Parley-Delivery `id`.
    std::size_t count_delivery(const std::string& id) {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& r : received_) {
            auto it = r.headers.find("x-parley-delivery");
            n += it != r.headers.end() && it->second == id ? 1 : 0;
        }
        return n;
    }

private:
    void serve() {
        while (true) {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            timeval tv{5, 0};
            ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            std::string data;
            char buf[8192];
            std::size_t header_end = std::string::npos;
            std::size_t content_length = 0;
            bool ok = false;
            while (true) {
                if (header_end == std::string::npos) {
                    header_end = data.find("\r\n\r\n");
                    if (header_end != std::string::npos) {
                        std::string lower = data.substr(0, header_end);
                        for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                        auto p = lower.find("\r\ncontent-length:");
                        if (p != std::string::npos) content_length = std::stoul(lower.substr(p + 17));
                    }
                }
                if (header_end != std::string::npos && data.size() >= header_end + 4 + content_length) {
                    ok = true;
                    break;
                }
                ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0) break;
                data.append(buf, static_cast<std::size_t>(n));
            }
            if (!ok) {
                ::close(c);
                continue;
            }
            Received r;
            std::string head = data.substr(0, header_end);
            r.body = data.substr(header_end + 4, content_length);
            std::size_t line_end = head.find("\r\n");
            std::string request_line = head.substr(0, line_end);
            auto sp1 = request_line.find(' ');
            auto sp2 = request_line.find(' ', sp1 + 1);
            r.method = request_line.substr(0, sp1);
            r.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
            std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
            while (pos < head.size()) {
                auto e = head.find("\r\n", pos);
                if (e == std::string::npos) e = head.size();
                std::string line = head.substr(pos, e - pos);
                auto colon = line.find(':');
                if (colon != std::string::npos) {
                    std::string name = line.substr(0, colon);
                    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                    std::string value = line.substr(colon + 1);
                    value.erase(0, value.find_first_not_of(' '));
                    r.headers[name] = value;
                }
                pos = e + 2;
            }
            int status = 200;
            {
                std::lock_guard lock(mutex_);
                int n = counts_[r.target]++;
                if (status_for_) status = status_for_(r.target, n);
            }
            std::string reason = status == 200 ? "OK" : "Error";
            std::string answer = "ok";
            std::string response = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                                   "\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
                                   std::to_string(answer.size()) + "\r\n\r\n" + answer;
            ::write(c, response.data(), response.size());
            ::close(c);
            {
                std::lock_guard lock(mutex_);
                received_.push_back(std::move(r));
            }
            changed_.notify_all();
        }
    }

    std::function<int(const std::string&, int)> status_for_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Received> received_;
    std::map<std::string, int> counts_;
};

/// "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body), computed here with OpenSSL.
std::string expected_signature(const std::string& secret, const std::string& timestamp, const std::string& body) {
    std::string input = timestamp + "." + body;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len);
    static const char* hex = "0123456789abcdef";
    std::string out = "sha256=";
    for (unsigned int i = 0; i < mac_len; ++i) {
        out += hex[mac[i] >> 4];
        out += hex[mac[i] & 15];
    }
    return out;
}

/// Checks a received delivery: signature, headers matching the body, a fresh timestamp.
void expect_signed(const Received& r, const std::string& secret) {
    ASSERT_TRUE(r.headers.count("x-parley-signature")) << r.body;
    ASSERT_TRUE(r.headers.count("x-parley-timestamp")) << r.body;
    ASSERT_TRUE(r.headers.count("x-parley-event")) << r.body;
    ASSERT_TRUE(r.headers.count("x-parley-delivery")) << r.body;
    EXPECT_EQ(r.method, "POST");
    const std::string& ts = r.headers.at("x-parley-timestamp");
    EXPECT_EQ(r.headers.at("x-parley-signature"), expected_signature(secret, ts, r.body)) << r.body;
    EXPECT_NE(r.headers.at("x-parley-signature"), expected_signature(secret + "x", ts, r.body));
    EXPECT_LE(std::llabs(std::stoll(ts) - static_cast<long long>(std::time(nullptr))), 60) << ts;
    auto body = json::parse(r.body);
    EXPECT_EQ(body.at("type"), json::value(r.headers.at("x-parley-event")));
    EXPECT_TRUE(body.at("id").is_string());
    EXPECT_TRUE(body.at("created_at").is_string());
    EXPECT_TRUE(body.at("data").is_object());
    if (r.headers.count("content-type")) {
        EXPECT_NE(r.headers.at("content-type").find("application/json"), std::string::npos);
    }
}

std::string type_of(const Received& r) {
    auto it = r.headers.find("x-parley-event");
    return it == r.headers.end() ? std::string() : it->second;
}

/// ISO-8601 UTC ("2026-11-24T10:00:00.000Z") → Unix milliseconds; -1 when malformed.
std::int64_t parse_iso_ms(const json::value& v) {
    if (!v.is_string()) return -1;
    std::string s(v.as_string());
    std::tm tm{};
    int ms = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                    &tm.tm_sec) != 6) {
        return -1;
    }
    if (auto dot = s.find('.'); dot != std::string::npos) ms = std::atoi(s.substr(dot + 1, 3).c_str());
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

std::string iso(std::int64_t unix_seconds) {
    std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Polls `fetch` every 50 ms until `done` holds for its answer or `timeout` passes; returns the last answer.
HttpResult poll_until(const std::function<HttpResult()>& fetch, const std::function<bool(const HttpResult&)>& done,
                      std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    HttpResult r = fetch();
    while (!done(r) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(50ms);
        r = fetch();
    }
    return r;
}

class OperatorHooks : public ::testing::Test {
protected:
    void SetUp() override { start(); }
    void start() {
        server_ = std::make_unique<ParleyProcess>(dir_.path());
        admin_ = std::make_unique<HttpClient>(server_->port());
        ASSERT_EQ(admin_->login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    }
    void allow_loopback() {
        auto r = admin_->put("/api/v1/settings/outbound_allowlist", {{"value", json::array{"127.0.0.1"}}});
        ASSERT_EQ(r.status, 200) << r.body;
    }
    void create_bot() {
        auto created = admin_->post("/api/v1/bots", {{"name", "Hooks"}});
        ASSERT_EQ(created.status, 201) << created.body;
        bot_ = std::string(created.json().at("id").as_string());
        auto put = admin_->request("PUT", "/api/v1/bots/" + bot_ + "/scenario", kBot);
        ASSERT_EQ(put.status, 200) << put.body;
    }
    std::unique_ptr<HttpClient> user(const std::string& email, const std::string& role) {
        auto created = admin_->post("/api/v1/users", {{"email", email}, {"name", email}, {"password", "operator-pass-1"},
                                                      {"roles", json::array{json::value(role)}}});
        EXPECT_EQ(created.status, 201) << created.body;
        auto client = std::make_unique<HttpClient>(server_->port());
        EXPECT_EQ(client->login(email, "operator-pass-1").status, 200);
        return client;
    }
    /// A preview client presses "Operator"; returns the session (= the dialog id in the operator panel).
    std::string hand_over() {
        auto session = admin_->post("/api/v1/bots/" + bot_ + "/preview", {{"user", {{"name", "Olena"}}}});
        EXPECT_EQ(session.status / 100, 2) << session.body;
        std::string sid(session.json().at("session").as_string());
        auto pressed = admin_->post("/api/v1/bots/" + bot_ + "/preview/" + sid + "/messages", {{"button", "op"}});
        EXPECT_EQ(pressed.status, 200) << pressed.body;
        EXPECT_EQ(pressed.json().at("replies").as_array().at(0).at("text"), "Operator connected") << pressed.body;
        return sid;
    }
    /// Creates a subscription; returns {id, secret}.
    std::pair<std::string, std::string> subscribe(const std::string& url, json::array events = {"*"}) {
        auto r = admin_->post("/api/v1/operator/webhooks", {{"url", url}, {"events", events}, {"description", "test"}});
        EXPECT_EQ(r.status, 201) << r.body;
        auto body = r.json();
        std::string secret(body.at("secret").as_string());
        EXPECT_EQ(secret.rfind("whsec_", 0), 0u) << secret;
        EXPECT_EQ(secret.size(), 6u + 64u) << secret;
        return {std::string(body.at("id").as_string()), secret};
    }
    HttpResult delivery(const std::string& sub, const std::string& id) {
        return admin_->get("/api/v1/operator/webhooks/" + sub + "/deliveries/" + id);
    }

    TempDir dir_;
    std::unique_ptr<ParleyProcess> server_;
    std::unique_ptr<HttpClient> admin_;
    std::string bot_;
};

TEST_F(OperatorHooks, DialogEventsPingRetriesAndPermissions) {
    Receiver receiver([](const std::string& target, int n) { return target == "/flaky" && n == 0 ? 500 : 200; });
    allow_loopback();
    create_bot();
    auto [sub, secret] = subscribe(receiver.url("/hooks"));

    // The secret is shown once: neither the subscription nor the list shows it again.
    auto got = admin_->get("/api/v1/operator/webhooks/" + sub);
    ASSERT_EQ(got.status, 200) << got.body;
    EXPECT_FALSE(got.json().as_object().contains("secret")) << got.body;
    EXPECT_EQ(got.json().at("url"), json::value(receiver.url("/hooks")));
    auto list = admin_->get("/api/v1/operator/webhooks");
    ASSERT_EQ(list.status, 200);
    ASSERT_EQ(list.json().at("items").as_array().size(), 1u);
    EXPECT_EQ(list.body.find("whsec_"), std::string::npos) << list.body;

    // An operator goes online; a client asks the bot for a human and is connected to them.
    auto op = user("op1@example.com", "operator");
    ASSERT_EQ(op->put("/api/v1/operator/status", {{"status", "online"}}).status, 200);
    std::string dialog = hand_over();

    auto has = [&](const std::vector<Received>& all, const std::string& type) {
        for (const auto& r : all) {
            if (type_of(r) == type && r.body.find(dialog) != std::string::npos) return true;
        }
        return false;
    };
    ASSERT_TRUE(receiver.wait_for([&](const auto& all) { return has(all, "dialog.created") && has(all, "dialog.assigned"); }, 8s))
        << "receiver got " << receiver.all().size() << " requests";

    // The client writes to the operator (the bot stays silent), the operator answers and closes: each is an event.
    auto said = admin_->post("/api/v1/bots/" + bot_ + "/preview/" + dialog + "/messages", {{"text", "my invoice is wrong"}});
    ASSERT_EQ(said.status, 200) << said.body;
    ASSERT_EQ(op->post("/api/v1/operator/dialogs/" + dialog + "/messages", {{"text", "Let me check"}}).status, 201);
    ASSERT_EQ(op->post("/api/v1/operator/dialogs/" + dialog + "/close", json::object{}).status, 200);
    auto messages = op->get("/api/v1/operator/dialogs/" + dialog + "/messages");
    ASSERT_EQ(messages.status, 200) << messages.body;
    std::int64_t client_n = -1;
    auto message_list = messages.json();
    for (const auto& m : message_list.at("items").as_array()) {
        if (m.at("text") == "my invoice is wrong") client_n = m.at("n").as_int64();
    }
    ASSERT_GT(client_n, 0) << messages.body;
    auto operator_reply = [&](const Received& r) {
        auto body = json::parse(r.body);
        const auto* message = body.at("data").as_object().if_contains("message");
        return type_of(r) == "dialog.message" && message && message->is_object() &&
               message->as_object().if_contains("text") && message->at("text") == "Let me check";
    };
    auto client_wrote = [&](const Received& r) {
        auto data = json::parse(r.body).at("data").as_object();
        return type_of(r) == "dialog.message" && data.if_contains("from") && data.at("from") == "client" &&
               data.if_contains("last_n") && data.at("last_n") == client_n;
    };
    auto any = [](const std::vector<Received>& all, const std::function<bool(const Received&)>& pred) {
        for (const auto& r : all) {
            if (pred(r)) return true;
        }
        return false;
    };
    EXPECT_TRUE(receiver.wait_for([&](const auto& all) {
        return any(all, client_wrote) && any(all, operator_reply) && has(all, "dialog.closed");
    }, 8s)) << "receiver got " << receiver.all().size() << " requests";

    std::set<std::string> delivery_ids;
    for (const auto& r : receiver.all()) {
        EXPECT_EQ(r.target, "/hooks");
        expect_signed(r, secret);
        auto body = json::parse(r.body);
        EXPECT_EQ(body.at("data").at("dialog_id"), json::value(dialog)) << r.body;
        if (type_of(r) == "dialog.assigned") {
            auto opid = body.at("data").as_object().if_contains("operator_id");
            EXPECT_TRUE(opid && opid->is_string()) << r.body;
        }
        if (type_of(r) == "dialog.message") {
            // Either the operator's message itself, or a notice naming the client's last message number.
            EXPECT_TRUE(operator_reply(r) || body.at("data").at("from") == "client") << r.body;
        }
        EXPECT_TRUE(delivery_ids.insert(r.headers.at("x-parley-delivery")).second) << "delivery id repeated: " << r.body;
    }
    // One change is one event, even though the panel publishes it to several audiences.
    for (const char* type : {"dialog.created", "dialog.assigned", "dialog.closed"}) {
        int n = 0;
        for (const auto& r : receiver.all()) n += type_of(r) == type ? 1 : 0;
        EXPECT_EQ(n, 1) << type;
    }
    int replies = 0;
    for (const auto& r : receiver.all()) replies += operator_reply(r) ? 1 : 0;
    EXPECT_EQ(replies, 1);
    // The delivery log shows them delivered with the receiver's answer.
    auto log = poll_until([&] { return admin_->get("/api/v1/operator/webhooks/" + sub + "/deliveries?state=delivered"); },
                          [&](const HttpResult& r) {
                              return r.status == 200 && r.json().at("items").as_array().size() >= delivery_ids.size();
                          },
                          5s);
    ASSERT_EQ(log.status, 200) << log.body;
    EXPECT_EQ(log.json().at("items").as_array().size(), delivery_ids.size()) << log.body;
    auto log_json = log.json();
    for (const auto& d : log_json.at("items").as_array()) {
        EXPECT_TRUE(delivery_ids.count(std::string(d.at("id").as_string()))) << d;
        EXPECT_EQ(d.at("state"), "delivered");
        EXPECT_EQ(d.at("attempts"), 1) << d;
        EXPECT_EQ(d.at("last_status"), 200) << d;
        EXPECT_TRUE(d.at("delivered_at").is_string()) << d;
    }

    // Ping: a pending delivery with the payload is answered at once and arrives signed.
    auto ping = admin_->post("/api/v1/operator/webhooks/" + sub + "/ping", json::object{});
    ASSERT_EQ(ping.status, 201) << ping.body;
    EXPECT_EQ(ping.json().at("event_type"), "ping") << ping.body;
    EXPECT_EQ(ping.json().at("payload").at("data").at("subscription_id"), json::value(sub)) << ping.body;
    std::string ping_id(ping.json().at("id").as_string());
    auto pings = receiver.wait_delivery(ping_id, 8s);
    ASSERT_EQ(pings.size(), 1u) << "the ping did not arrive";
    const auto pinged = pings[0];
    expect_signed(pinged, secret);
    EXPECT_EQ(type_of(pinged), "ping");
    EXPECT_EQ(json::parse(pinged.body).at("data").at("url"), json::value(receiver.url("/hooks")));
    auto ping_state = poll_until([&] { return delivery(sub, ping_id); },
                                 [](const HttpResult& r) { return r.status == 200 && r.json().at("state") == "delivered"; }, 5s);
    EXPECT_EQ(ping_state.json().at("state"), "delivered") << ping_state.body;

    // A receiver that answers 500 first: the attempt is recorded, the delivery stays pending for a later retry.
    auto [flaky, flaky_secret] = subscribe(receiver.url("/flaky"), {"dialog.transferred"});
    auto flaky_ping = admin_->post("/api/v1/operator/webhooks/" + flaky + "/ping", json::object{});
    ASSERT_EQ(flaky_ping.status, 201) << flaky_ping.body;
    std::string flaky_id(flaky_ping.json().at("id").as_string());
    auto failed = poll_until([&] { return delivery(flaky, flaky_id); },
                             [](const HttpResult& r) { return r.status == 200 && r.json().at("attempts") == 1; }, 8s);
    ASSERT_EQ(failed.status, 200) << failed.body;
    auto f = failed.json();
    EXPECT_EQ(f.at("attempts"), 1) << failed.body;
    EXPECT_EQ(f.at("state"), "pending") << failed.body;
    EXPECT_EQ(f.at("last_status"), 500) << failed.body;
    EXPECT_TRUE(f.at("last_attempt_at").is_string()) << failed.body;
    EXPECT_TRUE(f.at("delivered_at").is_null()) << failed.body;
    std::int64_t next = parse_iso_ms(f.at("next_attempt_at"));
    ASSERT_GT(next, 0) << failed.body;
    EXPECT_GT(next, now_ms() + 2000) << "the retry should be seconds away: " << failed.body;
    EXPECT_GT(next, parse_iso_ms(f.at("last_attempt_at"))) << failed.body;
    // The receiver got exactly one attempt, signed with that subscription's own secret.
    int flaky_requests = 0;
    for (const auto& r : receiver.all()) {
        if (r.target != "/flaky") continue;
        ++flaky_requests;
        expect_signed(r, flaky_secret);
        EXPECT_NE(r.headers.at("x-parley-signature"), expected_signature(secret, r.headers.at("x-parley-timestamp"), r.body));
    }
    EXPECT_EQ(flaky_requests, 1);
    auto pending = admin_->get("/api/v1/operator/webhooks/" + flaky + "/deliveries?state=pending");
    ASSERT_EQ(pending.status, 200);
    ASSERT_EQ(pending.json().at("items").as_array().size(), 1u) << pending.body;
    EXPECT_EQ(pending.json().at("items").as_array()[0].at("id"), json::value(flaky_id));
    // While pending, it cannot be redelivered; the delivered ping can.
    EXPECT_EQ(admin_->post("/api/v1/operator/webhooks/" + flaky + "/deliveries/" + flaky_id + "/redeliver", json::object{}).status, 409);
    auto again = admin_->post("/api/v1/operator/webhooks/" + sub + "/deliveries/" + ping_id + "/redeliver", json::object{});
    ASSERT_EQ(again.status, 200) << again.body;
    EXPECT_EQ(again.json().at("state"), "pending");
    auto resent = receiver.wait_delivery(ping_id, 8s, 2);
    ASSERT_EQ(resent.size(), 2u) << "the redelivered ping did not arrive";
    expect_signed(resent[1], secret);
    EXPECT_EQ(resent[1].body, resent[0].body);  // the same bytes, signed anew

    // Validation: nothing is created from a bad request.
    EXPECT_EQ(admin_->post("/api/v1/operator/webhooks", {{"url", "ftp://example.com/x"}}).status / 100, 4);
    EXPECT_EQ(admin_->post("/api/v1/operator/webhooks", {{"url", receiver.url("/x")}, {"events", json::array{"dialog.nope"}}}).status / 100, 4);
    EXPECT_EQ(admin_->post("/api/v1/operator/webhooks", {{"url", receiver.url("/x")}, {"secret", "mine"}}).status, 400);
    EXPECT_EQ(admin_->get("/api/v1/operator/webhooks").json().at("items").as_array().size(), 2u);
    EXPECT_EQ(admin_->get("/api/v1/operator/webhooks/nope").status, 404);

    // Only settings holders manage webhooks: an operator gets 403 on every route.
    auto base = std::string("/api/v1/operator/webhooks");
    EXPECT_EQ(op->get(base).status, 403);
    EXPECT_EQ(op->get(base + "/event-types").status, 403);
    EXPECT_EQ(op->post(base, {{"url", receiver.url("/steal")}}).status, 403);
    EXPECT_EQ(op->get(base + "/" + sub).status, 403);
    EXPECT_EQ(op->patch(base + "/" + sub, {{"enabled", false}}).status, 403);
    EXPECT_EQ(op->post(base + "/" + sub + "/ping", json::object{}).status, 403);
    EXPECT_EQ(op->post(base + "/" + sub + "/rotate-secret", json::object{}).status, 403);
    EXPECT_EQ(op->get(base + "/" + sub + "/deliveries").status, 403);
    EXPECT_EQ(op->del(base + "/" + sub).status, 403);
    EXPECT_EQ(admin_->get(base + "/" + sub).json().at("enabled"), true);
    EXPECT_EQ(admin_->get(base).json().at("items").as_array().size(), 2u);
}

// The bot turn that hands a dialog over ends with the dialog's status "operator"; its own messages (the client's
// button press to the bot and the bot's "Operator connected") must not reach receivers as `dialog.message` from
// the client (bots::DialogService marks that turn's event `handover`, the webhook mapping skips it).
TEST_F(OperatorHooks, HandoverTurnIsNotReportedAsAClientMessage) {
    Receiver receiver;
    allow_loopback();
    create_bot();
    auto [sub, secret] = subscribe(receiver.url("/hooks"));
    auto op = user("op1@example.com", "operator");
    ASSERT_EQ(op->put("/api/v1/operator/status", {{"status", "online"}}).status, 200);
    std::string dialog = hand_over();
    ASSERT_TRUE(receiver.wait_for([](const auto& all) {
        for (const auto& r : all) {
            if (type_of(r) == "dialog.assigned") return true;
        }
        return false;
    }, 8s));
    std::this_thread::sleep_for(1500ms);  // the dispatcher's idle poll is 1 s: anything queued has gone out
    auto messages = op->get("/api/v1/operator/dialogs/" + dialog + "/messages");
    ASSERT_EQ(messages.status, 200) << messages.body;
    for (const auto& r : receiver.all()) {
        EXPECT_NE(type_of(r), "dialog.message") << "nobody wrote to the operator yet: " << r.body << "\nmessages: "
                                                << messages.body;
    }
}

TEST_F(OperatorHooks, SlaCalendarsPoliciesFiguresAndReport) {
    create_bot();
    const std::string cal = "/api/v1/operator/sla/calendars";
    const std::string pol = "/api/v1/operator/sla/policies";
    json::array all_day{json::object{{"from", "00:00"}, {"to", "24:00"}}};
    json::object week;
    for (const char* d : {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}) week[d] = all_day;

    // Validation: a bad time zone or interval is refused with a message, and nothing is created.
    auto bad_zone = admin_->post(cal, {{"name", "Mars"}, {"time_zone", "Mars/Olympus_Mons"}, {"week", week}});
    EXPECT_TRUE(bad_zone.status == 400 || bad_zone.status == 422) << bad_zone.status << " " << bad_zone.body;
    EXPECT_NE(bad_zone.body.find("time_zone"), std::string::npos) << bad_zone.body;
    auto bad_hour = admin_->post(cal, {{"name", "Late"}, {"time_zone", "Europe/Kyiv"},
                                       {"week", {{"mon", json::array{json::object{{"from", "09:00"}, {"to", "25:00"}}}}}}});
    EXPECT_TRUE(bad_hour.status == 400 || bad_hour.status == 422) << bad_hour.status << " " << bad_hour.body;
    EXPECT_TRUE(bad_hour.json().at("error").at("message").is_string()) << bad_hour.body;
    EXPECT_NE(bad_hour.body.find("week.mon"), std::string::npos) << bad_hour.body;
    auto never = admin_->post(cal, {{"name", "Never"}, {"time_zone", "Europe/Kyiv"}, {"week", json::object{}}});
    EXPECT_TRUE(never.status == 400 || never.status == 422) << never.status << " " << never.body;
    auto none = admin_->get(cal);
    ASSERT_EQ(none.status, 200) << none.body;
    EXPECT_TRUE(none.json().at("items").as_array().empty()) << none.body;

    // A calendar open around the clock, so business time equals wall-clock time and due times are exact.
    auto calendar = admin_->post(cal, {{"name", "Always"}, {"time_zone", "Europe/Kyiv"}, {"week", week}});
    ASSERT_EQ(calendar.status, 201) << calendar.body;
    std::string calendar_id(calendar.json().at("id").as_string());
    EXPECT_EQ(calendar.json().at("time_zone"), "Europe/Kyiv");
    auto probe = admin_->get(cal + "/" + calendar_id + "/probe?at=" + iso(std::time(nullptr)));
    ASSERT_EQ(probe.status, 200) << probe.body;
    EXPECT_EQ(probe.json().at("open"), true) << probe.body;

    // Policies: bad ones are refused, nothing is created.
    auto ttc_first = admin_->post(pol, {{"name", "Odd"}, {"tfr_minutes", 60}, {"ttc_minutes", 5}});
    EXPECT_TRUE(ttc_first.status == 400 || ttc_first.status == 422) << ttc_first.status << " " << ttc_first.body;
    auto no_calendar = admin_->post(pol, {{"name", "Lost"}, {"tfr_minutes", 5}, {"calendar_id", "nope"}});
    EXPECT_TRUE(no_calendar.status == 404 || no_calendar.status == 422) << no_calendar.status << " " << no_calendar.body;
    auto too_long = admin_->post(pol, {{"name", "Year+"}, {"tfr_minutes", 525601}});
    EXPECT_EQ(too_long.status, 400) << too_long.body;
    auto empty = admin_->post(pol, {{"name", "Empty"}});
    EXPECT_TRUE(empty.status == 400 || empty.status == 422) << empty.status << " " << empty.body;
    EXPECT_TRUE(admin_->get(pol).json().at("items").as_array().empty());

    auto policy = admin_->post(pol, {{"name", "Standard"}, {"tfr_minutes", 5}, {"ttc_minutes", 60},
                                     {"calendar_id", calendar_id}, {"default", true}});
    ASSERT_EQ(policy.status, 201) << policy.body;
    std::string policy_id(policy.json().at("id").as_string());
    EXPECT_EQ(policy.json().at("default"), true);
    EXPECT_EQ(admin_->del(cal + "/" + calendar_id).status, 409);  // in use by the policy

    // A handover: the dialog's figures have due times from its start.
    auto op = user("op1@example.com", "operator");
    ASSERT_EQ(op->put("/api/v1/operator/status", {{"status", "online"}}).status, 200);
    std::string dialog = hand_over();
    auto sla = poll_until([&] { return op->get("/api/v1/operator/dialogs/" + dialog + "/sla"); },
                          [](const HttpResult& r) { return r.status == 200 && r.json().at("tfr").at("due_at").is_string(); }, 5s);
    ASSERT_EQ(sla.status, 200) << sla.body;
    auto s = sla.json();
    EXPECT_EQ(s.at("dialog_id"), json::value(dialog));
    EXPECT_EQ(s.at("policy_id"), json::value(policy_id)) << sla.body;
    EXPECT_EQ(s.at("policy_name"), "Standard");
    EXPECT_EQ(s.at("calendar_id"), json::value(calendar_id));
    EXPECT_EQ(s.at("business_hours"), true);
    std::int64_t started = parse_iso_ms(s.at("started_at"));
    ASSERT_GT(started, 0) << sla.body;
    EXPECT_LE(std::llabs(started - now_ms()), 60'000) << sla.body;
    EXPECT_EQ(s.at("tfr").at("target_minutes"), 5);
    EXPECT_EQ(s.at("ttc").at("target_minutes"), 60);
    EXPECT_EQ(parse_iso_ms(s.at("tfr").at("due_at")), started + 5 * 60'000) << sla.body;
    EXPECT_EQ(parse_iso_ms(s.at("ttc").at("due_at")), started + 60 * 60'000) << sla.body;
    EXPECT_TRUE(s.at("tfr").at("done_at").is_null()) << sla.body;
    EXPECT_EQ(s.at("tfr").at("breached"), false);
    EXPECT_EQ(s.at("breached"), false);
    ASSERT_TRUE(s.at("tfr").at("remaining_ms").is_int64()) << sla.body;
    EXPECT_GT(s.at("tfr").at("remaining_ms").as_int64(), 4 * 60'000) << sla.body;
    EXPECT_LE(s.at("tfr").at("remaining_ms").as_int64(), 5 * 60'000) << sla.body;

    // The operator answers: TFR is done in time.
    ASSERT_EQ(op->post("/api/v1/operator/dialogs/" + dialog + "/messages", {{"text", "Hello"}}).status, 201);
    sla = poll_until([&] { return op->get("/api/v1/operator/dialogs/" + dialog + "/sla"); },
                     [](const HttpResult& r) { return r.status == 200 && r.json().at("tfr").at("done_at").is_string(); }, 5s);
    ASSERT_TRUE(sla.json().at("tfr").at("done_at").is_string()) << sla.body;
    EXPECT_TRUE(sla.json().at("tfr").at("remaining_ms").is_null()) << sla.body;
    EXPECT_EQ(sla.json().at("tfr").at("breached"), false) << sla.body;
    EXPECT_TRUE(sla.json().at("ttc").at("done_at").is_null()) << sla.body;

    // Another operator does not see the dialog's figures; an unknown dialog is 404.
    auto other = user("op2@example.com", "operator");
    EXPECT_EQ(other->get("/api/v1/operator/dialogs/" + dialog + "/sla").status, 403);
    EXPECT_EQ(admin_->get("/api/v1/operator/dialogs/nope/sla").status, 404);

    // Close it; the report over today counts it as answered and closed.
    ASSERT_EQ(op->post("/api/v1/operator/dialogs/" + dialog + "/close", json::object{}).status, 200);
    std::int64_t t = std::time(nullptr);
    std::string range = "?from=" + iso(t - 3600) + "&to=" + iso(t + 3600);
    auto report = poll_until([&] { return admin_->get("/api/v1/operator/sla/report" + range); },
                             [](const HttpResult& r) { return r.status == 200 && r.json().at("total").at("closed") == 1; }, 5s);
    ASSERT_EQ(report.status, 200) << report.body;
    auto total = report.json().at("total");
    EXPECT_EQ(total.at("dialogs"), 1) << report.body;
    EXPECT_EQ(total.at("answered"), 1) << report.body;
    EXPECT_EQ(total.at("closed"), 1) << report.body;
    EXPECT_EQ(total.at("tfr_breaches"), 0) << report.body;
    EXPECT_TRUE(total.at("tfr_median_ms").is_number()) << report.body;
    EXPECT_TRUE(total.at("ttc_median_ms").is_number()) << report.body;
    EXPECT_EQ(report.json().at("truncated"), false);
    // A range with nothing in it, a range too long, a missing bound; operators lack stats.view.
    auto empty_range = admin_->get("/api/v1/operator/sla/report?from=" + iso(t - 7200) + "&to=" + iso(t - 3600));
    ASSERT_EQ(empty_range.status, 200) << empty_range.body;
    EXPECT_EQ(empty_range.json().at("total").at("dialogs"), 0) << empty_range.body;
    EXPECT_EQ(admin_->get("/api/v1/operator/sla/report?from=" + iso(t - 400 * 86400) + "&to=" + iso(t)).status, 400);
    EXPECT_EQ(admin_->get("/api/v1/operator/sla/report?from=" + iso(t)).status, 400);
    EXPECT_EQ(op->get("/api/v1/operator/sla/report" + range).status, 403);
    EXPECT_EQ(op->post(pol, {{"name", "Mine"}, {"tfr_minutes", 1}}).status, 403);
}

TEST_F(OperatorHooks, SubscriptionAndSecretSurviveARestart) {
    Receiver receiver;
    allow_loopback();
    auto [sub, secret] = subscribe(receiver.url("/hooks"), {"dialog.closed"});
    auto ping = admin_->post("/api/v1/operator/webhooks/" + sub + "/ping", json::object{});
    ASSERT_EQ(ping.status, 201) << ping.body;
    std::string first_id(ping.json().at("id").as_string());
    auto first = receiver.wait_delivery(first_id, 8s);
    ASSERT_EQ(first.size(), 1u);
    expect_signed(first[0], secret);
    // Stop only once the 2xx is recorded (a stop in between sends it again: delivery is at least once).
    auto recorded = poll_until([&] { return delivery(sub, first_id); },
                               [](const HttpResult& r) { return r.status == 200 && r.json().at("state") == "delivered"; }, 5s);
    ASSERT_EQ(recorded.json().at("state"), "delivered") << recorded.body;

    EXPECT_EQ(server_->stop(SIGTERM), 0) << server_->output();
    admin_.reset();
    server_.reset();
    start();

    auto got = admin_->get("/api/v1/operator/webhooks/" + sub);
    ASSERT_EQ(got.status, 200) << got.body;
    EXPECT_EQ(got.json().at("url"), json::value(receiver.url("/hooks")));
    EXPECT_EQ(got.json().at("events"), json::value(json::array{"dialog.closed"}));
    EXPECT_FALSE(got.json().as_object().contains("secret"));
    auto delivered = admin_->get("/api/v1/operator/webhooks/" + sub + "/deliveries?state=delivered");
    ASSERT_EQ(delivered.status, 200);
    EXPECT_EQ(delivered.json().at("items").as_array().size(), 1u) << delivered.body;

    // The stored secret still signs: a new ping verifies with the secret shown at creation.
    ping = admin_->post("/api/v1/operator/webhooks/" + sub + "/ping", json::object{});
    ASSERT_EQ(ping.status, 201) << ping.body;
    std::string second_id(ping.json().at("id").as_string());
    auto second = receiver.wait_delivery(second_id, 8s);
    ASSERT_EQ(second.size(), 1u) << "the ping after the restart did not arrive";
    expect_signed(second[0], secret);
    auto second_state = poll_until([&] { return delivery(sub, second_id); },
                                   [](const HttpResult& r) { return r.status == 200 && r.json().at("state") == "delivered"; }, 5s);
    EXPECT_EQ(second_state.json().at("state"), "delivered") << second_state.body;
    EXPECT_EQ(receiver.count_delivery(first_id), 1u) << "a delivery recorded as delivered was sent again after the restart";

    // Rotation: the new secret signs the next ping, the old one no longer verifies.
    auto rotated = admin_->post("/api/v1/operator/webhooks/" + sub + "/rotate-secret", json::object{});
    ASSERT_EQ(rotated.status, 200) << rotated.body;
    std::string fresh(rotated.json().at("secret").as_string());
    EXPECT_NE(fresh, secret);
    EXPECT_FALSE(admin_->get("/api/v1/operator/webhooks/" + sub).json().as_object().contains("secret"));
    ping = admin_->post("/api/v1/operator/webhooks/" + sub + "/ping", json::object{});
    ASSERT_EQ(ping.status, 201) << ping.body;
    auto third = receiver.wait_delivery(std::string(ping.json().at("id").as_string()), 8s);
    ASSERT_EQ(third.size(), 1u) << "the ping after the rotation did not arrive";
    expect_signed(third[0], fresh);
    EXPECT_NE(third[0].headers.at("x-parley-signature"),
              expected_signature(secret, third[0].headers.at("x-parley-timestamp"), third[0].body));
    EXPECT_EQ(receiver.all().size(), 3u);
}

}  // namespace
}  // namespace parley::testing

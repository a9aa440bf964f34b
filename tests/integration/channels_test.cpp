// Telegram through the real binary: saving a webhook channel calls setWebhook on a local fake Bot API (allowed by
// outbound_allowlist), the webhook checks the secret token, and the bot's reply goes out through sendMessage.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

/// A fake Telegram Bot API: records each request (path and JSON body), answers {"ok":true,"result":...}.
class FakeBotApi {
public:
    FakeBotApi() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        ::listen(fd_, 16);
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~FakeBotApi() {
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    std::vector<std::pair<std::string, json::value>> calls() {
        std::lock_guard lock(mutex_);
        return calls_;
    }

private:
    void serve() {
        while (true) {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            std::string request;
            char buf[8192];
            std::size_t header_end = std::string::npos;
            std::size_t length = 0;
            while (true) {
                ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0) break;
                request.append(buf, static_cast<std::size_t>(n));
                if (header_end == std::string::npos && (header_end = request.find("\r\n\r\n")) != std::string::npos) {
                    std::string lower = request.substr(0, header_end);
                    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                    auto at = lower.find("content-length:");
                    if (at != std::string::npos) length = std::stoul(lower.substr(at + 15));
                }
                if (header_end != std::string::npos && request.size() >= header_end + 4 + length) break;
            }
            std::string path = request.substr(request.find(' ') + 1);
            path = path.substr(0, path.find(' '));
            json::value body;
            if (header_end != std::string::npos && length > 0) {
                boost::system::error_code ec;
                body = json::parse(request.substr(header_end + 4, length), ec);
            }
            std::string method = path.substr(path.rfind('/') + 1);
            {
                std::lock_guard lock(mutex_);
                calls_.emplace_back(method, body);
            }
            std::string answer = method == "sendMessage"
                                     ? R"({"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":42,"type":"private"}}})"
                                     : method == "getUpdates" ? R"({"ok":true,"result":[]})" : R"({"ok":true,"result":true})";
            std::string response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                   "Content-Length: " + std::to_string(answer.size()) + "\r\n\r\n" + answer;
            ::write(c, response.data(), response.size());
            ::close(c);
        }
    }
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::mutex mutex_;
    std::vector<std::pair<std::string, json::value>> calls_;
};

TEST(Channels, TelegramWebhookConversation) {
    FakeBotApi telegram;
    TempDir dir;
    ParleyProcess server(dir.path());
    HttpClient c(server.port());
    ASSERT_EQ(c.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    ASSERT_EQ(c.put("/api/v1/settings/outbound_allowlist", {{"value", json::array{"127.0.0.1"}}}).status, 200);
    std::string bot(c.post("/api/v1/bots", {{"name", "TG"}}).json().at("id").as_string());
    ASSERT_EQ(c.request("PUT", "/api/v1/bots/" + bot + "/scenario", R"({"format":"parley.scenario/1","languages":["en"],
      "sections":[{"name":"main","nodes":[{"id":"start","type":"start","next":"menu"},
        {"id":"menu","type":"message","text":"Hello {{user_name}}","buttons":[{"id":"more","text":"More","next":"more"}]},
        {"id":"more","type":"message","text":"Here is more","next":"fin"},{"id":"fin","type":"end"}]}]})").status, 200);

    auto channel = c.post("/api/v1/bots/" + bot + "/channels",
                          {{"kind", "telegram"},
                           {"credentials", {{"token", "123:ABC"}, {"mode", "webhook"}}},
                           {"api_base_url", "http://127.0.0.1:" + std::to_string(telegram.port())}});
    ASSERT_EQ(channel.status, 201) << channel.body;
    std::string id(channel.json().at("id").as_string());
    EXPECT_EQ(channel.body.find("123:ABC"), std::string::npos);
    auto calls = telegram.calls();
    ASSERT_FALSE(calls.empty());
    EXPECT_EQ(calls[0].first, "setWebhook");
    std::string secret(calls[0].second.at("secret_token").as_string());
    EXPECT_NE(std::string(calls[0].second.at("url").as_string()).find("/hooks/" + id), std::string::npos);

    json::object update{{"update_id", 1000},
                        {"message", {{"message_id", 5}, {"date", 0}, {"text", "hi"},
                                     {"chat", {{"id", 42}, {"type", "private"}}},
                                     {"from", {{"id", 42}, {"is_bot", false}, {"first_name", "Olena"}, {"language_code", "en"}}}}}};
    EXPECT_EQ(c.request("POST", "/hooks/" + id, json::serialize(update), {{"X-Telegram-Bot-Api-Secret-Token", "wrong"}}).status, 401);
    auto accepted = c.request("POST", "/hooks/" + id, json::serialize(update), {{"X-Telegram-Bot-Api-Secret-Token", secret}});
    ASSERT_EQ(accepted.status, 200) << accepted.body;
    // A redelivery is acknowledged and ignored.
    EXPECT_EQ(c.request("POST", "/hooks/" + id, json::serialize(update), {{"X-Telegram-Bot-Api-Secret-Token", secret}}).status, 200);

    // The reply reaches sendMessage with an inline keyboard.
    json::value sent;
    for (int i = 0; i < 100 && sent.is_null(); ++i) {
        for (auto& [method, body] : telegram.calls()) {
            if (method == "sendMessage") sent = body;
        }
        if (sent.is_null()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_FALSE(sent.is_null()) << "no sendMessage";
    EXPECT_EQ(sent.at("text"), "Hello Olena");
    // chat_id is "Integer or String" in the Bot API.
    EXPECT_TRUE(sent.at("chat_id") == json::value(42) || sent.at("chat_id") == json::value("42")) << sent;
    EXPECT_NE(json::serialize(sent).find("inline_keyboard"), std::string::npos);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    int sends = 0;
    for (auto& [method, body] : telegram.calls()) sends += method == "sendMessage";
    EXPECT_EQ(sends, 1);  // the redelivered update did not run the bot twice
}

}  // namespace
}  // namespace parley::testing

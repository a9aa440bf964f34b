// Outbound HTTP through the real binary: the demo bot's CRM check by action_send_request against a local server
// (allowed by the outbound_allowlist setting, refused without it), and Action Jail's fetch() through the same
// SSRF guard.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

/// A one-thread HTTP/1.1 server on 127.0.0.1 that answers every request with `body` (JSON) and counts them.
class TinyServer {
public:
    explicit TinyServer(std::string body) : body_(std::move(body)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        ::listen(fd_, 16);
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] {
            while (true) {
                int c = ::accept(fd_, nullptr, nullptr);
                if (c < 0) return;
                std::string request;
                char buf[4096];
                while (request.find("\r\n\r\n") == std::string::npos) {
                    ssize_t n = ::read(c, buf, sizeof buf);
                    if (n <= 0) break;
                    request.append(buf, static_cast<std::size_t>(n));
                }
                ++requests_;
                last_request_ = request.substr(0, request.find("\r\n"));
                std::string response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                       "Content-Length: " + std::to_string(body_.size()) + "\r\n\r\n" + body_;
                ::write(c, response.data(), response.size());
                ::close(c);
            }
        });
    }
    ~TinyServer() {
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    int requests() const { return requests_; }
    std::string last_request() const { return last_request_; }

private:
    std::string body_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::atomic<int> requests_{0};
    std::string last_request_;
};

TEST(Outbound, DemoBotChecksTheClientInTheCrm) {
    TinyServer crm(R"({"name": "Olena Petrenko"})");
    TempDir dir;
    ParleyProcess server(dir.path(), {"--demo"});
    HttpClient c(server.port());
    ASSERT_EQ(c.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    std::string crm_url = "http://127.0.0.1:" + std::to_string(crm.port());
    ASSERT_EQ(c.put("/api/v1/settings/crm_url", {{"value", crm_url}}).status, 200);
    std::string bot(c.get("/api/v1/bots").json().at("items").as_array()[0].at("id").as_string());

    // Loopback is refused by the SSRF guard until an administrator allows it: the bot treats the client as new.
    std::string s1(c.post("/api/v1/bots/" + bot + "/preview", {{"user", {{"language", "en"}}}}).json().at("session").as_string());
    auto refused = c.post("/api/v1/bots/" + bot + "/preview/" + s1 + "/messages", {{"text", "+380501112233"}});
    ASSERT_EQ(refused.status, 200) << refused.body;
    EXPECT_EQ(refused.json().at("replies").as_array()[0].at("text"), "Thank you, you are registered with +380501112233.");
    EXPECT_EQ(crm.requests(), 0);
    EXPECT_EQ(refused.json().at("state").at("crm").at("error").at("code"), "refused_by_guard");

    ASSERT_EQ(c.put("/api/v1/settings/outbound_allowlist", {{"value", json::array{"127.0.0.1"}}}).status, 200);
    std::string s2(c.post("/api/v1/bots/" + bot + "/preview", {{"user", {{"language", "en"}}}}).json().at("session").as_string());
    auto known = c.post("/api/v1/bots/" + bot + "/preview/" + s2 + "/messages", {{"text", "+380501112233"}});
    ASSERT_EQ(known.status, 200) << known.body;
    EXPECT_EQ(known.json().at("replies").as_array()[0].at("text"), "Good to see you again, Olena Petrenko!");
    EXPECT_EQ(crm.requests(), 1);
    EXPECT_NE(crm.last_request().find("/clients?phone=%2B380501112233"), std::string::npos) << crm.last_request();
}

TEST(Outbound, JailFetchGoesThroughTheGuard) {
    TinyServer api(R"({"ok": true})");
    TempDir dir;
    ParleyProcess server(dir.path());
    HttpClient c(server.port());
    ASSERT_EQ(c.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    std::string url = "http://127.0.0.1:" + std::to_string(api.port()) + "/ping";
    auto created = c.post("/api/v1/jail/actions",
                          {{"name", "ping"},
                           {"code", "async function main(ctx) { const r = await fetch(ctx.params.url); "
                                    "const j = await r.json(); return {event: 'done', state: {ok: j.ok, status: r.status}}; }"},
                           {"events", json::array{"done"}}});
    ASSERT_EQ(created.status, 201) << created.body;
    auto refused = c.post("/api/v1/jail/actions/ping/test", {{"params", {{"url", url}}}});
    EXPECT_EQ(refused.json().at("error").at("code"), "fetch_refused") << refused.body;
    ASSERT_EQ(c.put("/api/v1/settings/outbound_allowlist", {{"value", json::array{"127.0.0.0/8"}}}).status, 200);
    auto allowed = c.post("/api/v1/jail/actions/ping/test", {{"params", {{"url", url}}}});
    ASSERT_EQ(allowed.status, 200);
    EXPECT_EQ(allowed.json().at("event"), "done") << allowed.body;
    EXPECT_EQ(allowed.json().at("state").at("ok"), true);
    EXPECT_EQ(allowed.json().at("state").at("status"), 200);
}

}  // namespace
}  // namespace parley::testing

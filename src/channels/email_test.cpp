// The email channel: the pure MIME / HTML / quoting / composing parts, and the whole channel end to end against
// a fake IMAP server and a fake SMTP server written here (plain TCP on 127.0.0.1:0, enough of RFC 3501 and RFC
// 5321 for what libcurl sends), with a real SQLite store, BotService and DialogService.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "actions/actions.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "channels/channels.h"
#include "channels/email.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"
#include "store/async.h"

namespace parley::channels {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// --- pure parts ------------------------------------------------------------------------------------------------

TEST(EmailMime, ParsesHeadersAndPlainText) {
    email::Mail m = email::parse_mail(
        "From: =?UTF-8?B?0J7Qu9C10L3QsA==?= <Olena@Example.com>\r\n"
        "To: support@shop.example\r\n"
        "Subject: =?UTF-8?Q?=D0=94=D0=BE=D1=81=D1=82=D0=B0=D0=B2=D0=BA=D0=B0?=\r\n"
        "Message-ID: <m2@mail.example>\r\n"
        "In-Reply-To: <m1@mail.example>\r\n"
        "References: <root@mail.example> <m1@mail.example>\r\n"
        "Date: Mon, 06 May 2024 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Where is my order?\r\n\r\nOn Mon, 6 May 2024 at 09:00, Support <support@shop.example> wrote:\r\n"
        "> Hello\r\n");
    EXPECT_FALSE(m.malformed);
    EXPECT_EQ(m.from_address, "olena@example.com");
    EXPECT_EQ(m.from_name, "Олена");
    EXPECT_EQ(m.subject, "Доставка");
    EXPECT_EQ(m.message_id, "m2@mail.example");
    EXPECT_EQ(m.in_reply_to, "m1@mail.example");
    ASSERT_EQ(m.references.size(), 2u);
    EXPECT_EQ(m.thread_key(), "root@mail.example");
    EXPECT_EQ(m.text, "Where is my order?");
    EXPECT_EQ(m.date_ms, 1714989600000);
    EXPECT_EQ(m.key("x"), "m2@mail.example");
}

TEST(EmailMime, HtmlOnlyMailIsReducedToText) {
    email::Mail m = email::parse_mail(
        "From: a@b.example\r\nMessage-ID: <h@b>\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>"
        "<p>Caf=E9 <b>open</b></p><p>Line one<br>Line two</p><ul><li>first</li><li>second</li></ul>"
        "<p>See <a href=3D\"https://shop.example/faq\">our FAQ</a></p></body></html>\r\n");
    EXPECT_EQ(m.text, "Café open\n\nLine one\nLine two\n\n• first\n• second\n\nSee our FAQ (https://shop.example/faq)");
}

TEST(EmailMime, AlternativePrefersPlainAndKeepsAttachments) {
    email::Mail m = email::parse_mail(
        "From: a@b.example\r\nMessage-ID: <x@b>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n"
        "--OUT\r\nContent-Type: multipart/alternative; boundary=\"ALT\"\r\n\r\n"
        "--ALT\r\nContent-Type: text/plain; charset=koi8-u\r\n\r\n\xf0\xd2\xc9\xd7\xa6\xd4\r\n"
        "--ALT\r\nContent-Type: text/html\r\n\r\n<p>HTML version</p>\r\n--ALT--\r\n"
        "--OUT\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; "
        "filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--OUT--\r\n");
    EXPECT_EQ(m.text, "Привіт");
    ASSERT_EQ(m.attachments.size(), 1u);
    EXPECT_EQ(m.attachments[0].filename, "report.pdf");
    EXPECT_EQ(m.attachments[0].content_type, "application/pdf");
    EXPECT_EQ(m.attachments[0].data, "%PDF-1.4");
}

TEST(EmailMime, MalformedInputNeverThrows) {
    for (std::string raw : {std::string(), std::string("\0\0\xff\xfe garbage", 13), std::string("no headers at all"),
                            std::string("Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\n--B\r\n"),
                            std::string(5000, '<') + "a"}) {
        email::Mail m = email::parse_mail(raw);
        EXPECT_TRUE(m.from_address.empty());
        EXPECT_FALSE(m.key(raw).empty());
    }
    EXPECT_EQ(email::readable_text("a\xff" "b\r\nc"), "a\xEF\xBF\xBD" "b\nc");
}

TEST(EmailMime, StripsQuotedReplies) {
    EXPECT_EQ(email::strip_quoted("Thanks!\n\nOn Tue, May 7, 2024 at 10:00 AM Shop <s@shop.example>\nwrote:\n> hi"),
              "Thanks!");
    EXPECT_EQ(email::strip_quoted("Yes\n-----Original Message-----\nFrom: x"), "Yes");
    EXPECT_EQ(email::strip_quoted("Yes please\n> old\n> text"), "Yes please");
    EXPECT_EQ(email::strip_quoted("> only a quote"), "> only a quote");  // nothing would be left: unchanged
}

TEST(EmailMime, ComposesThreadedReply) {
    email::Outgoing o;
    o.from_address = "support@shop.example";
    o.from_name = "Shop Support";
    o.to_address = "olena@example.com";
    o.subject = email::reply_subject("Доставка");
    o.message_id = "parley.d1.3@shop.example";
    o.in_reply_to = "m2@mail.example";
    o.references = {"root@mail.example", "m2@mail.example"};
    o.text = "Ваше замовлення в дорозі.\n\n• Track";
    o.html = true;
    o.date_ms = 1714989600000;
    std::string raw = email::compose(o);
    EXPECT_NE(raw.find("In-Reply-To: <m2@mail.example>\r\n"), std::string::npos) << raw;
    EXPECT_NE(raw.find("References: <root@mail.example> <m2@mail.example>"), std::string::npos) << raw;
    EXPECT_NE(raw.find("multipart/alternative"), std::string::npos);
    email::Mail back = email::parse_mail(raw);
    EXPECT_EQ(back.subject, "Re: Доставка");
    EXPECT_EQ(back.text, "Ваше замовлення в дорозі.\n\n• Track");
    EXPECT_EQ(back.from_address, "support@shop.example");
    EXPECT_EQ(back.from_name, "Shop Support");
    EXPECT_EQ(back.message_id, "parley.d1.3@shop.example");
    EXPECT_TRUE(back.automatic);  // Auto-Submitted: auto-replied — never answered by another bot
    EXPECT_EQ(email::reply_subject("RE: x"), "RE: x");
}

TEST(EmailSettings, ValidatesCredentials) {
    json::object gmail = email::Settings::validate(
        json::object{{"provider", "gmail"}, {"username", "shop@gmail.com"}, {"password", "abcd efgh ijkl mnop"}});
    EXPECT_EQ(gmail.at("imap_host"), "imap.gmail.com");
    EXPECT_EQ(gmail.at("smtp_port"), "465");
    EXPECT_EQ(gmail.at("address"), "shop@gmail.com");
    json::object outlook = email::Settings::validate(
        json::object{{"provider", "outlook"}, {"username", "a@outlook.com"}, {"password", "p"}, {"poll_interval", 30}});
    EXPECT_EQ(outlook.at("smtp_security"), "starttls");
    EXPECT_EQ(outlook.at("poll_interval"), "30");
    auto field_of = [](const json::object& in) {
        try {
            email::Settings::validate(in);
        } catch (const core::Error& e) {
            return std::string(e.details().at(0).at("field").as_string());
        }
        return std::string("accepted");
    };
    json::object base{{"imap_host", "imap.x.example"}, {"smtp_host", "smtp.x.example"}, {"username", "a@x.example"},
                      {"password", "secret"}};
    EXPECT_EQ(field_of(base), "accepted");
    auto with = [&](const char* key, json::value v) {
        json::object o = base;
        o[key] = v;
        return o;
    };
    EXPECT_EQ(field_of(with("imap_port", 70000)), "credentials.imap_port");
    EXPECT_EQ(field_of(with("smtp_security", "ssl3")), "credentials.smtp_security");
    EXPECT_EQ(field_of(with("provider", "yahoo")), "credentials.provider");
    EXPECT_EQ(field_of(with("password", "")), "credentials.password");
    EXPECT_EQ(field_of(with("imap_host", "bad host")), "credentials.imap_host");
    EXPECT_EQ(field_of(with("address", "not-an-address")), "credentials.address");
    EXPECT_EQ(field_of(with("poll_interval", "0")), "credentials.poll_interval");
    EXPECT_EQ(field_of(with("unknown", "x")), "credentials.unknown");
}

// --- fake servers ----------------------------------------------------------------------------------------------

/// A line-oriented TCP server on 127.0.0.1:0 serving one connection at a time on its own thread.
class LineServer {
public:
    LineServer() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}
    virtual ~LineServer() = default;
    int port() const { return acceptor_.local_endpoint().port(); }
    std::vector<std::string> commands() const {
        std::lock_guard lock(mutex_);
        return commands_;
    }
    std::size_t count(std::string_view prefix) const {
        std::size_t n = 0;
        for (const auto& c : commands()) n += c.rfind(prefix, 0) == 0;
        return n;
    }

protected:
    void start() {
        thread_ = std::thread([this] {
            while (!stop_) {
                tcp::socket socket(io_);
                boost::system::error_code ec;
                acceptor_.accept(socket, ec);
                if (ec || stop_) break;
                timeval tv{5, 0};
                setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                try {
                    serve(socket);
                } catch (const std::exception&) {
                    // the client went away
                }
            }
        });
    }
    void finish() {
        stop_ = true;
        boost::system::error_code ec;
        tcp::socket wake(io_);
        wake.connect(acceptor_.local_endpoint(), ec);
        if (thread_.joinable()) thread_.join();
    }
    virtual void serve(tcp::socket& socket) = 0;

    std::string read_line(tcp::socket& socket) {
        std::size_t n = asio::read_until(socket, buffer_, "\r\n");
        std::string line(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + n - 2);
        buffer_.consume(n);
        return line;
    }
    static void write(tcp::socket& socket, const std::string& text) { asio::write(socket, asio::buffer(text)); }
    void record(std::string command) {
        std::lock_guard lock(mutex_);
        commands_.push_back(std::move(command));
    }

    mutable std::mutex mutex_;
    asio::streambuf buffer_;

private:
    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::vector<std::string> commands_;
};

class FakeSmtp : public LineServer {
public:
    FakeSmtp() { start(); }
    ~FakeSmtp() override { finish(); }
    std::vector<std::string> messages() const {
        std::lock_guard lock(mutex_);
        return messages_;
    }
    void fail_rcpt_with(int code) {
        std::lock_guard lock(mutex_);
        rcpt_code_ = code;
    }

private:
    void serve(tcp::socket& s) override {
        buffer_.consume(buffer_.size());
        write(s, "220 fake.smtp ESMTP\r\n");
        while (true) {
            std::string line = read_line(s);
            record(line);
            std::string upper = line.substr(0, 10);
            for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            if (upper.rfind("EHLO", 0) == 0) {
                write(s, "250-fake.smtp\r\n250-AUTH PLAIN\r\n250 OK\r\n");
            } else if (upper.rfind("AUTH PLAIN", 0) == 0) {
                if (line.size() <= 11) {
                    write(s, "334 \r\n");
                    record(read_line(s));
                }
                write(s, "235 2.7.0 Authentication successful\r\n");
            } else if (upper.rfind("MAIL FROM", 0) == 0) {
                write(s, "250 OK\r\n");
            } else if (upper.rfind("RCPT TO", 0) == 0) {
                int code = 250;
                {
                    std::lock_guard lock(mutex_);
                    code = rcpt_code_;
                }
                write(s, code == 250 ? "250 OK\r\n" : std::to_string(code) + " 4.7.0 Try again later\r\n");
            } else if (upper.rfind("DATA", 0) == 0) {
                write(s, "354 Go ahead\r\n");
                std::size_t n = asio::read_until(s, buffer_, "\r\n.\r\n");
                std::string data(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + n - 5);
                buffer_.consume(n);
                for (std::size_t at = data.find("\r\n.."); at != std::string::npos; at = data.find("\r\n..", at + 3)) {
                    data.erase(at + 2, 1);  // dot-stuffing
                }
                {
                    std::lock_guard lock(mutex_);
                    messages_.push_back(data + "\r\n");
                }
                write(s, "250 OK queued\r\n");
            } else if (upper.rfind("QUIT", 0) == 0) {
                write(s, "221 Bye\r\n");
                return;
            } else {
                write(s, "250 OK\r\n");  // RSET, NOOP
            }
        }
    }

    std::vector<std::string> messages_;
    int rcpt_code_ = 250;
};

class FakeImap : public LineServer {
public:
    FakeImap() { start(); }
    ~FakeImap() override { finish(); }
    /// Adds a message; returns its UID.
    std::int64_t add(std::string raw) {
        std::lock_guard lock(mutex_);
        mails_.push_back(Stored{next_uid_, std::move(raw), false});
        return next_uid_++;
    }
    void set_password(std::string p) {
        std::lock_guard lock(mutex_);
        password_ = std::move(p);
    }
    void set_uidvalidity(int v) {
        std::lock_guard lock(mutex_);
        uidvalidity_ = v;
    }
    bool seen(std::int64_t uid) const {
        std::lock_guard lock(mutex_);
        for (const auto& m : mails_) {
            if (m.uid == uid) return m.seen;
        }
        return false;
    }

private:
    struct Stored {
        std::int64_t uid;
        std::string raw;
        bool seen;
    };

    static std::vector<std::int64_t> uids_of(std::string_view set) {
        std::vector<std::int64_t> out;
        std::size_t p = 0;
        while (p < set.size()) {
            std::size_t e = set.find(',', p);
            if (e == std::string_view::npos) e = set.size();
            out.push_back(std::stoll(std::string(set.substr(p, e - p))));
            p = e + 1;
        }
        return out;
    }

    void serve(tcp::socket& s) override {
        buffer_.consume(buffer_.size());
        write(s, "* OK fake IMAP ready\r\n");
        while (true) {
            std::string line = read_line(s);
            std::size_t sp = line.find(' ');
            std::string tag = line.substr(0, sp);
            std::string cmd = sp == std::string::npos ? "" : line.substr(sp + 1);
            record(cmd.rfind("LOGIN", 0) == 0 ? "LOGIN" : cmd);
            std::lock_guard lock(mutex_);
            if (cmd == "CAPABILITY") {
                write(s, "* CAPABILITY IMAP4rev1\r\n" + tag + " OK CAPABILITY completed\r\n");
            } else if (cmd.rfind("LOGIN", 0) == 0) {
                std::string args = cmd.substr(6);
                std::erase(args, '"');
                if (args == "bot@shop.example " + password_) {
                    write(s, tag + " OK LOGIN completed\r\n");
                } else {
                    write(s, tag + " NO [AUTHENTICATIONFAILED] Invalid credentials\r\n");
                }
            } else if (cmd.rfind("STATUS", 0) == 0) {
                write(s, "* STATUS INBOX (UIDVALIDITY " + std::to_string(uidvalidity_) + " UIDNEXT " +
                             std::to_string(next_uid_) + ")\r\n" + tag + " OK STATUS completed\r\n");
            } else if (cmd.rfind("SELECT", 0) == 0 || cmd.rfind("EXAMINE", 0) == 0) {
                write(s, "* " + std::to_string(mails_.size()) + " EXISTS\r\n* OK [UIDVALIDITY " +
                             std::to_string(uidvalidity_) + "] UIDs valid\r\n" + tag +
                             " OK [READ-WRITE] SELECT completed\r\n");
            } else if (cmd.rfind("UID SEARCH", 0) == 0) {
                std::string out = "* SEARCH";
                if (cmd == "UID SEARCH UNSEEN") {
                    for (const auto& m : mails_) {
                        if (!m.seen) out += " " + std::to_string(m.uid);
                    }
                } else {  // UID SEARCH UID n:* — like real servers, * always matches the last message
                    std::int64_t from = std::stoll(cmd.substr(15));
                    for (const auto& m : mails_) {
                        if (m.uid >= from || &m == &mails_.back()) out += " " + std::to_string(m.uid);
                    }
                }
                write(s, out + "\r\n" + tag + " OK SEARCH completed\r\n");
            } else if (cmd.rfind("UID FETCH", 0) == 0) {
                std::string rest = cmd.substr(10);
                std::string set = rest.substr(0, rest.find(' '));
                std::string what = rest.substr(rest.find(' ') + 1);
                std::string out;
                for (auto uid : uids_of(set)) {
                    for (std::size_t i = 0; i < mails_.size(); ++i) {
                        if (mails_[i].uid != uid) continue;
                        std::string seq = std::to_string(i + 1);
                        if (what == "(RFC822.SIZE)") {
                            out += "* " + seq + " FETCH (UID " + std::to_string(uid) + " RFC822.SIZE " +
                                   std::to_string(mails_[i].raw.size()) + ")\r\n";
                        } else {
                            const std::string& raw = mails_[i].raw;
                            out += "* " + seq + " FETCH (UID " + std::to_string(uid) + " BODY[] {" +
                                   std::to_string(raw.size()) + "}\r\n" + raw + ")\r\n";
                        }
                    }
                }
                write(s, out + tag + " OK FETCH completed\r\n");
            } else if (cmd.rfind("UID STORE", 0) == 0) {
                std::string rest = cmd.substr(10);
                for (auto uid : uids_of(rest.substr(0, rest.find(' ')))) {
                    for (auto& m : mails_) {
                        if (m.uid == uid) m.seen = true;
                    }
                }
                write(s, tag + " OK STORE completed\r\n");
            } else if (cmd == "LOGOUT") {
                write(s, "* BYE\r\n" + tag + " OK LOGOUT completed\r\n");
                return;
            } else if (cmd == "NOOP") {
                write(s, tag + " OK NOOP\r\n");
            } else {
                write(s, tag + " BAD unknown command\r\n");
            }
        }
    }

    std::vector<Stored> mails_;
    std::int64_t next_uid_ = 1;
    int uidvalidity_ = 7;
    std::string password_ = "app-password";
};

std::string mail(const std::string& id, const std::string& subject, const std::string& body,
                 const std::string& extra_headers = {}) {
    return "From: Olena <olena@example.com>\r\nTo: bot@shop.example\r\nSubject: " + subject + "\r\nMessage-ID: <" + id +
           ">\r\nDate: Mon, 06 May 2024 10:00:00 +0000\r\n" + extra_headers +
           "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n";
}

const char* kScenario = R"({"format":"parley.scenario/1","name":"t","languages":["en"],"sections":[{"name":"main",
 "nodes":[{"id":"start","type":"start","next":"menu"},
  {"id":"menu","type":"message","text":"Hi {{user_name}}","buttons":[{"id":"ask","text":"Ask","next":"q"}]},
  {"id":"q","type":"input","prompt":"Your question?","save_as":"question","next":"menu"}]}]})";

// --- the channel end to end ------------------------------------------------------------------------------------

class EmailChannelTest : public ::testing::Test {
protected:
    EmailChannelTest() : guard_(asio::make_work_guard(io_)) {
        dir_ = std::filesystem::temp_directory_path() / ("parley-email-" + core::random_hex(8));
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
        client_ = std::make_unique<outbound::Client>();
        key_.fill(7);
        ChannelOptions channel_options;
        channel_options.dispatch_idle_ms = 20;
        channel_options.backoff_base_ms = 50;
        channel_options.transport_poll_interval_ms = 100;
        channel_options.transport_timeout_ms = 10'000;
        channel_options.email_attachments_dir = (dir_ / "email-attachments").string();
        channel_options.transport_allowlist = [] { return std::optional<json::value>(json::array{"127.0.0.1"}); };
        service_ = std::make_unique<ChannelService>(*store_, clock_, *bots_, *dialogs_, *client_, key_,
                                                    channel_options);
        for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
        service_->start(io_.get_executor());
        bot_id_ = asio::co_spawn(io_, bots_->create("Support", true), asio::use_future).get().id;
        asio::co_spawn(io_, bots_->put_scenario(bot_id_, kScenario, {}, ""), asio::use_future).get();
    }

    ~EmailChannelTest() override {
        service_->stop();
        client_->shutdown();
        service_->wait_stopped();
        guard_.reset();
        io_.stop();
        for (auto& t : threads_) t.join();
        service_.reset();
        store_->close();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    json::object credentials(const std::string& password = "app-password") {
        return json::object{{"imap_host", "127.0.0.1"},  {"imap_port", imap_.port()}, {"imap_security", "none"},
                            {"smtp_host", "127.0.0.1"},  {"smtp_port", smtp_.port()}, {"smtp_security", "none"},
                            {"username", "bot@shop.example"}, {"password", password}, {"from_name", "Shop"}};
    }
    Channel create(const std::string& password = "app-password") {
        NewChannel in;
        in.kind = "email";
        in.credentials = credentials(password);
        return asio::co_spawn(io_, service_->create(bot_id_, std::move(in)), asio::use_future).get();
    }
    std::int64_t count(const std::string& sql) {
        return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
    }
    template <typename F>
    bool eventually(F&& condition, std::chrono::milliseconds limit = 15s) {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            if (condition()) return true;
            std::this_thread::sleep_for(20ms);
        }
        return condition();
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
    std::unique_ptr<ChannelService> service_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::vector<std::thread> threads_;
    std::string bot_id_;
    FakeImap imap_;
    FakeSmtp smtp_;
};

TEST_F(EmailChannelTest, PollsRepliesThreadedAndIgnoresRedeliveries) {
    imap_.add(mail("m1@mail.example", "Order 123", "Where is my order?"));
    // Typing a button's label presses it; the quoted reply below it is stripped.
    imap_.add(mail("m2@mail.example", "Re: Order 123",
                   "Ask\r\n\r\nOn Mon, 6 May 2024 at 10:01, Shop <bot@shop.example> wrote:\r\n> Hi Olena",
                   "In-Reply-To: <m1@mail.example>\r\nReferences: <m1@mail.example>\r\n"));
    Channel ch = create();
    EXPECT_EQ(ch.kind, "email");
    EXPECT_FALSE(ch.to_json().contains("webhook_path"));
    std::string inbox = "SELECT COUNT(*) FROM channel_inbox WHERE channel_id = '" + ch.id + "'";
    ASSERT_TRUE(eventually([&] { return count(inbox) == 2; }));
    ASSERT_TRUE(eventually([&] { return smtp_.messages().size() >= 2; })) << smtp_.messages().size();
    EXPECT_TRUE(imap_.seen(1));
    EXPECT_TRUE(imap_.seen(2));
    // Both mails are one thread (root m1): one dialog, one client card found by the address.
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_identities WHERE channel_id = '" + ch.id + "'"), 1);
    EXPECT_EQ(count("SELECT COUNT(*) FROM clients WHERE email = 'olena@example.com'"), 1);
    std::string last = smtp_.messages().back();
    EXPECT_NE(last.find("In-Reply-To: <m2@mail.example>"), std::string::npos) << last;
    EXPECT_NE(last.find("References: <m1@mail.example> <m2@mail.example>"), std::string::npos) << last;
    EXPECT_NE(last.find("Subject: Re: Order 123"), std::string::npos) << last;
    EXPECT_NE(last.find("To: olena@example.com"), std::string::npos) << last;
    email::Mail first = email::parse_mail(smtp_.messages().front());
    EXPECT_EQ(first.from_address, "bot@shop.example");
    EXPECT_EQ(first.from_name, "Shop");
    EXPECT_EQ(first.subject, "Re: Order 123");
    EXPECT_FALSE(first.in_reply_to.empty());  // m1, or m2 when both were processed before the send
    EXPECT_EQ(first.text, "Hi Olena\n\n• Ask");
    EXPECT_EQ(email::parse_mail(last).text, "Your question?");
    EXPECT_EQ(smtp_.count("MAIL FROM:<bot@shop.example>"), smtp_.messages().size());
    EXPECT_GE(smtp_.count("RCPT TO:<olena@example.com>"), 2u);
    // Receipts know the Message-ID sent.
    EXPECT_GE(count("SELECT COUNT(*) FROM channel_messages WHERE message_id LIKE 'parley.%@shop.example'"), 2);

    // Later polls find nothing new (UID SEARCH UID 3:*), and a re-served copy under a new UID is a duplicate.
    std::size_t searches = imap_.count("UID SEARCH UID 3:*");
    ASSERT_TRUE(eventually([&] { return imap_.count("UID SEARCH UID 3:*") > searches; }));
    EXPECT_EQ(count(inbox), 2);
    imap_.add(mail("m2@mail.example", "Re: Order 123", "Any news?"));
    ASSERT_TRUE(eventually([&] { return imap_.seen(3); }));
    ASSERT_TRUE(eventually([&] { return service_->stats().duplicates >= 1; }));
    EXPECT_EQ(count(inbox), 2);
    // A UIDVALIDITY change resyncs from the unseen messages: nothing is stored twice.
    imap_.add(mail("m3@mail.example", "New question", "Do you ship to Lviv?"));
    imap_.set_uidvalidity(8);
    ASSERT_TRUE(eventually([&] { return count(inbox) == 3; }));
    EXPECT_GE(imap_.count("UID SEARCH UNSEEN"), 2u);
    // The commands libcurl sent.
    for (const char* c : {"CAPABILITY", "LOGIN", "STATUS \"INBOX\" (UIDVALIDITY UIDNEXT)", "SELECT",
                          "UID FETCH 1,2 (RFC822.SIZE)", "UID STORE 1,2 +FLAGS.SILENT (\\Seen)", "LOGOUT"}) {
        EXPECT_GE(imap_.count(c), 1u) << c;
    }
    EXPECT_EQ(service_->get(bot_id_, ch.id).status, "active");
}

TEST_F(EmailChannelTest, HtmlMailAttachmentsAndMalformedMail) {
    imap_.add("From: Petro <petro@example.com>\r\nMessage-ID: <h1@mail.example>\r\nSubject: Invoice\r\n"
              "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
              "--B\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Please see <b>attached</b></p>\r\n"
              "--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice 7.pdf\"\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--B--\r\n");
    imap_.add(std::string("\x01\x02\xff garbage without headers \x00\x00", 30));
    imap_.add(mail("auto@mail.example", "Out of office", "I am away", "Auto-Submitted: auto-replied\r\n"));
    Channel ch = create();
    std::string inbox = "SELECT COUNT(*) FROM channel_inbox WHERE channel_id = '" + ch.id + "'";
    ASSERT_TRUE(eventually([&] { return count(inbox) == 3; }));
    ASSERT_TRUE(eventually([&] {
        return count("SELECT COUNT(*) FROM channel_inbox WHERE status = 'pending'") == 0;
    }));
    std::string payload = store::read_value(*store_, [&](store::Tx& tx) {
        return tx.query_one("SELECT payload FROM channel_inbox WHERE event_key = 'h1@mail.example'")->text(0);
    });
    json::object event = json::parse(payload).as_object();
    std::string text(event.at("text").as_string());
    EXPECT_EQ(text.substr(0, text.find("\n\n[attachment]")), "Invoice\n\nPlease see attached");
    EXPECT_NE(text.find("[attachment] invoice 7.pdf (application/pdf, 8 B) /api/v1/bots/" + bot_id_ + "/channels/" +
                        ch.id + "/attachments/"),
              std::string::npos)
        << text;
    std::string name = text.substr(text.rfind('/') + 1);
    auto file = service_->attachment(bot_id_, ch.id, name);
    std::ifstream in(file.path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes, "%PDF-1.4");
    EXPECT_EQ(file.content_type, "application/pdf");
    EXPECT_EQ(file.filename, "invoice_7.pdf");
    EXPECT_THROW(service_->attachment(bot_id_, ch.id, "../../etc/passwd"), core::NotFound);
    EXPECT_THROW(service_->attachment("other-bot", ch.id, name), core::NotFound);
    // The garbage and the auto-reply are kept (duplicates stay duplicates) but never answered.
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_inbox WHERE status = 'ignored'"), 2);
    ASSERT_TRUE(eventually([&] { return smtp_.messages().size() == 1; }));
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(smtp_.messages().size(), 1u);  // only Petro gets an answer
}

TEST_F(EmailChannelTest, SmtpFailureIsRetriedWithBackoffThenDeadLettered) {
    smtp_.fail_rcpt_with(451);
    imap_.add(mail("m1@mail.example", "Hello", "Hi there"));
    Channel ch = create();
    ASSERT_TRUE(eventually([&] {
        return count("SELECT COUNT(*) FROM channel_dead_letters WHERE outcome = 'dead'") == 1;
    }, 30s));
    EXPECT_EQ(smtp_.count("RCPT TO:<olena@example.com>"), static_cast<std::size_t>(kMaxDeliveryAttempts));
    EXPECT_TRUE(smtp_.messages().empty());
    std::optional<std::string> next;
    auto letters = service_->dead_letters(bot_id_, ch.id, std::nullopt, 10, &next);
    ASSERT_EQ(letters.size(), 1u);
    EXPECT_EQ(letters[0].attempts, kMaxDeliveryAttempts);
    EXPECT_NE(letters[0].last_error.find("451"), std::string::npos) << letters[0].last_error;
    EXPECT_EQ(service_->stats().retried, static_cast<std::uint64_t>(kMaxDeliveryAttempts - 1));
}

TEST_F(EmailChannelTest, BadCredentialsSetLastError) {
    imap_.add(mail("m1@mail.example", "Hello", "Hi there"));
    Channel ch = create("wrong-password");
    ASSERT_TRUE(eventually([&] { return service_->get(bot_id_, ch.id).status == "error"; }));
    Channel got = service_->get(bot_id_, ch.id);
    EXPECT_NE(got.last_error.find("login denied"), std::string::npos) << got.last_error;
    EXPECT_EQ(got.last_error.find("wrong-password"), std::string::npos);  // redacted
    EXPECT_EQ(count("SELECT COUNT(*) FROM channel_inbox"), 0);
    // Fixing the password recovers the channel.
    ChannelPatch patch;
    patch.credentials = credentials();
    asio::co_spawn(io_, service_->update(bot_id_, ch.id, std::move(patch)), asio::use_future).get();
    ASSERT_TRUE(eventually([&] { return count("SELECT COUNT(*) FROM channel_inbox") == 1; }));
    ASSERT_TRUE(eventually([&] { return service_->get(bot_id_, ch.id).status == "active"; }));
}

}  // namespace
}  // namespace parley::channels

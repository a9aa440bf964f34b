// IMAP polling and SMTP sending through libcurl easy handles (blocking; run on the runtime's transport threads).
// Every connection passes the outbound SSRF guard (CURLOPT_OPENSOCKETFUNCTION), like outbound::Client's.
#include <curl/curl.h>
#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "channels/internal/email_transport.h"
#include "outbound/guard.h"

namespace parley::channels::email {

namespace {

void init_curl() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Guard {
    outbound::Allowlist allowlist;
    bool host_allowed = false;
    std::string refused;
};

curl_socket_t open_socket(void* clientp, curlsocktype, struct curl_sockaddr* address) {
    auto* guard = static_cast<Guard*>(clientp);
    auto ip = outbound::ip_from_sockaddr(&address->addr);
    if (!ip) {
        guard->refused = "not an IP address";
        return CURL_SOCKET_BAD;
    }
    outbound::Verdict verdict = outbound::check_address(*ip, guard->allowlist, guard->host_allowed);
    if (!verdict.allowed) {
        guard->refused = verdict.reason;
        return CURL_SOCKET_BAD;
    }
    return ::socket(address->family, address->socktype, address->protocol);
}

std::size_t append(char* data, std::size_t size, std::size_t n, void* userp) {
    auto* sink = static_cast<std::pair<std::string, std::size_t>*>(userp);
    std::size_t bytes = size * n;
    if (sink->first.size() + bytes > sink->second) return 0;  // over the limit: CURLE_WRITE_ERROR
    sink->first.append(data, bytes);
    return bytes;
}

std::string url_host(const std::string& host) {
    return host.find(':') != std::string::npos && host.front() != '[' ? "[" + host + "]" : host;
}

int progress(void* clientp, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<const std::atomic<bool>*>(clientp)->load() ? 1 : 0;
}

/// One easy handle with the settings every transfer shares.
class Session {
public:
    Session(const std::string& host, const TransportContext& context) {
        init_curl();
        curl_ = curl_easy_init();
        if (!curl_) throw std::runtime_error("curl_easy_init failed");
        if (context.allowlist) {
            if (auto value = context.allowlist()) guard_.allowlist = outbound::Allowlist::parse(*value).allowlist;
        }
        guard_.host_allowed = guard_.allowlist.allows_host(host);
        error_[0] = 0;
        curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, static_cast<long>(context.timeout_ms));
        curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, std::min(10'000L, static_cast<long>(context.timeout_ms)));
        curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, error_);
        curl_easy_setopt(curl_, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(curl_, CURLOPT_OPENSOCKETDATA, &guard_);
        curl_easy_setopt(curl_, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "imap,imaps,smtp,smtps");
        if (context.cancelled) {
            curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, progress);
            curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, context.cancelled);
            curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
        }
    }
    ~Session() { curl_easy_cleanup(curl_); }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    CURL* get() const { return curl_; }

    void login(const Settings& s) {
        curl_easy_setopt(curl_, CURLOPT_USERNAME, s.username.c_str());
        curl_easy_setopt(curl_, CURLOPT_PASSWORD, s.password.c_str());
    }

    /// Performs a transfer; on failure returns why ("" on success).
    std::string perform(const std::string& url, const char* custom, std::string* out, std::size_t max_bytes) {
        std::pair<std::string, std::size_t> sink{std::string(), max_bytes};
        error_[0] = 0;
        guard_.refused.clear();
        curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
        curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, custom);
        curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, append);
        curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &sink);
        CURLcode rc = curl_easy_perform(curl_);
        if (out) *out = std::move(sink.first);
        if (rc == CURLE_OK) return {};
        return describe(rc);
    }

    std::string describe(CURLcode rc) const {
        if (!guard_.refused.empty()) return "refused by the outbound guard: " + guard_.refused;
        std::string detail;
        for (char c : std::string_view(error_[0] ? error_ : curl_easy_strerror(rc))) {
            if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) detail += c;  // curl may echo control bytes
        }
        while (!detail.empty() && detail.back() == ' ') detail.pop_back();
        if (rc == CURLE_LOGIN_DENIED) return "login denied (check username and app password): " + detail;
        return detail;
    }

private:
    CURL* curl_ = nullptr;
    Guard guard_;
    char error_[CURL_ERROR_SIZE];
};

/// "(UIDVALIDITY 7 UIDNEXT 3)" → the number after `name`, "" when absent.
std::string number_after(std::string_view text, std::string_view name) {
    std::size_t at = 0;
    while ((at = text.find(name, at)) != std::string_view::npos) {
        std::size_t p = at + name.size();
        while (p < text.size() && text[p] == ' ') ++p;
        std::size_t e = p;
        while (e < text.size() && std::isdigit(static_cast<unsigned char>(text[e]))) ++e;
        if (e > p) return std::string(text.substr(p, e - p));
        at = p;
    }
    return {};
}

std::vector<std::int64_t> search_result(std::string_view text) {
    std::vector<std::int64_t> uids;
    std::size_t at = text.find("* SEARCH");
    if (at == std::string_view::npos) return uids;
    std::size_t end = text.find('\n', at);
    std::string_view line = text.substr(at + 8, end == std::string_view::npos ? std::string_view::npos : end - at - 8);
    std::size_t p = 0;
    while (p < line.size()) {
        while (p < line.size() && !std::isdigit(static_cast<unsigned char>(line[p]))) ++p;
        std::int64_t n = 0;
        auto [q, ec] = std::from_chars(line.data() + p, line.data() + line.size(), n);
        if (ec != std::errc()) break;
        if (n > 0) uids.push_back(n);
        p = static_cast<std::size_t>(q - line.data());
    }
    return uids;
}

std::string uid_list(const std::vector<std::int64_t>& uids) {
    std::string out;
    for (auto u : uids) out += (out.empty() ? "" : ",") + std::to_string(u);
    return out;
}

}  // namespace

ImapPoll imap_poll(const Settings& s, const std::string& uidvalidity, std::int64_t last_uid,
                   const TransportContext& context) {
    ImapPoll poll;
    poll.uidvalidity = uidvalidity;
    poll.last_uid = last_uid;
    Session session(s.imap_host, context);
    session.login(s);
    if (s.imap_security == "starttls") curl_easy_setopt(session.get(), CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
    std::string base = fmt::format("{}://{}:{}", s.imap_security == "tls" ? "imaps" : "imap", url_host(s.imap_host),
                                   s.imap_port);
    char* escaped = curl_easy_escape(session.get(), s.folder.c_str(), static_cast<int>(s.folder.size()));
    std::string mailbox = base + "/" + (escaped ? escaped : "INBOX");
    curl_free(escaped);

    std::string status;
    std::string status_cmd = fmt::format("STATUS \"{}\" (UIDVALIDITY UIDNEXT)", s.folder);
    if (auto error = session.perform(base + "/", status_cmd.c_str(), &status, 64 * 1024); !error.empty()) {
        poll.error = "IMAP: " + error;
        return poll;
    }
    std::string validity = number_after(status, "UIDVALIDITY");
    if (validity.empty()) {
        poll.error = fmt::format("IMAP: the server did not report the UIDVALIDITY of folder '{}'", s.folder);
        return poll;
    }
    bool resync = validity != uidvalidity || last_uid <= 0;
    poll.uidvalidity = validity;
    if (resync) poll.last_uid = 0;
    std::string search_cmd = resync ? std::string("UID SEARCH UNSEEN") : fmt::format("UID SEARCH UID {}:*", last_uid + 1);
    std::string found;
    if (auto error = session.perform(mailbox, search_cmd.c_str(), &found, 4 * 1024 * 1024); !error.empty()) {
        poll.error = "IMAP: " + error;
        return poll;
    }
    std::vector<std::int64_t> uids = search_result(found);
    std::sort(uids.begin(), uids.end());
    uids.erase(std::unique(uids.begin(), uids.end()), uids.end());
    if (!resync) std::erase_if(uids, [&](std::int64_t u) { return u <= last_uid; });  // "n:*" includes the last one
    if (uids.size() > kMaxMessagesPerPoll) uids.resize(kMaxMessagesPerPoll);
    if (uids.empty()) {
        if (resync) {  // nothing unseen: start after the newest message
            std::string next = number_after(status, "UIDNEXT");
            std::int64_t n = 0;
            std::from_chars(next.data(), next.data() + next.size(), n);
            poll.last_uid = std::max<std::int64_t>(0, n - 1);
        }
        return poll;
    }
    // Sizes first, so a huge mail is never downloaded whole.
    std::map<std::int64_t, std::int64_t> sizes;
    std::string sized;
    std::string size_cmd = "UID FETCH " + uid_list(uids) + " (RFC822.SIZE)";
    if (auto error = session.perform(mailbox, size_cmd.c_str(), &sized, 4 * 1024 * 1024); !error.empty()) {
        poll.error = "IMAP: " + error;
        return poll;
    }
    std::size_t line_start = 0;
    while (line_start < sized.size()) {
        std::size_t end = sized.find('\n', line_start);
        if (end == std::string::npos) end = sized.size();
        std::string_view line(sized.data() + line_start, end - line_start);
        std::string uid = number_after(line, "UID");
        std::string size = number_after(line, "RFC822.SIZE");
        std::int64_t u = 0;
        std::int64_t z = 0;
        if (!uid.empty() && !size.empty()) {
            std::from_chars(uid.data(), uid.data() + uid.size(), u);
            std::from_chars(size.data(), size.data() + size.size(), z);
            sizes[u] = z;
        }
        line_start = end + 1;
    }
    std::vector<std::int64_t> fetched;
    for (std::int64_t uid : uids) {
        Fetched f;
        f.uid = uid;
        f.size = sizes.count(uid) ? sizes[uid] : 0;
        f.too_large = f.size > static_cast<std::int64_t>(kMaxMessageBytes);
        std::string url = fmt::format("{}/;UID={}{}", mailbox, uid, f.too_large ? "/;SECTION=HEADER" : "");
        std::string error = session.perform(url, nullptr, &f.raw, kMaxMessageBytes + 64 * 1024);
        if (!error.empty() && !f.too_large && f.raw.size() >= kMaxMessageBytes) {
            // The server understated the size: import the header only.
            f.too_large = true;
            f.raw.clear();
            error = session.perform(mailbox + fmt::format("/;UID={}/;SECTION=HEADER", uid), nullptr, &f.raw, 1 << 20);
        }
        if (!error.empty()) {
            poll.error = fmt::format("IMAP: fetching UID {}: {}", uid, error);
            break;
        }
        poll.mails.push_back(std::move(f));
        poll.last_uid = uid;
        fetched.push_back(uid);
    }
    if (s.mark_seen && !fetched.empty()) {
        std::string store_cmd = "UID STORE " + uid_list(fetched) + " +FLAGS.SILENT (\\Seen)";
        session.perform(mailbox, store_cmd.c_str(), nullptr, 1024 * 1024);  // cosmetic: failures are ignored
    }
    return poll;
}

namespace {

struct Reader {
    const std::string* data;
    std::size_t pos = 0;
};

std::size_t read_data(char* buffer, std::size_t size, std::size_t n, void* userp) {
    auto* r = static_cast<Reader*>(userp);
    std::size_t bytes = std::min(size * n, r->data->size() - r->pos);
    std::copy_n(r->data->data() + r->pos, bytes, buffer);
    r->pos += bytes;
    return bytes;
}

}  // namespace

SmtpResult smtp_send(const Settings& s, const std::string& to, const std::string& data,
                     const TransportContext& context) {
    SmtpResult result;
    Session session(s.smtp_host, context);
    session.login(s);
    CURL* curl = session.get();
    if (s.smtp_security == "starttls") curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
    std::string domain = s.address.substr(s.address.find('@') + 1);
    std::string url = fmt::format("{}://{}:{}/{}", s.smtp_security == "tls" ? "smtps" : "smtp", url_host(s.smtp_host),
                                  s.smtp_port, domain);
    std::string from = "<" + s.address + ">";
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from.c_str());
    curl_slist* rcpt = curl_slist_append(nullptr, ("<" + to + ">").c_str());
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    Reader reader{&data};
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_data);
    curl_easy_setopt(curl, CURLOPT_READDATA, &reader);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(data.size()));
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(rcpt);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.code);
    if (rc == CURLE_OK) {
        result.ok = true;
        return result;
    }
    result.error = "SMTP: " + session.describe(rc);
    if (result.code > 0 && result.error.find(std::to_string(result.code)) == std::string::npos) {
        result.error += fmt::format(" (reply {})", result.code);
    }
    // 5xx refuses the message for good (550 no such mailbox, 554 rejected), except 535 authentication failed and
    // 530 which an administrator fixes in the settings; 4xx, network and TLS failures are retried.
    result.transient = !(result.code >= 500 && result.code != 530 && result.code != 535);
    return result;
}

}  // namespace parley::channels::email

// The email channel's adapter: no webhooks; its Transport polls IMAP and sends through SMTP (email_transport.cpp),
// turning each mail into one InboundEvent (email_mime.cpp parses it) and each bot message into one reply mail
// threaded under the client's latest mail.
#include <fmt/format.h>
#include <sodium.h>

#include <charconv>
#include <filesystem>
#include <fstream>

#include "channels/adapter.h"
#include "channels/email.h"
#include "channels/internal/adapters.h"
#include "channels/internal/email_transport.h"
#include "core/error.h"
#include "core/ids.h"

namespace parley::channels::email {

namespace fs = std::filesystem;

namespace {

std::string human_size(std::size_t bytes) {
    if (bytes < 1024) return fmt::format("{} B", bytes);
    if (bytes < 1024 * 1024) return fmt::format("{:.1f} KB", static_cast<double>(bytes) / 1024);
    return fmt::format("{:.1f} MB", static_cast<double>(bytes) / (1024 * 1024));
}

/// The stored name of an attachment: a hash of its bytes and a file name safe on every file system.
std::string stored_name(const Attachment& a) {
    unsigned char h[16];
    crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(a.data.data()), a.data.size(), nullptr, 0);
    char hex[sizeof h * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    std::string safe;
    for (char c : a.filename) {
        bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
        safe += ok ? c : '_';
        if (safe.size() >= 100) break;
    }
    while (!safe.empty() && safe.front() == '.') safe.erase(0, 1);
    return std::string(hex) + (safe.empty() ? "" : "-" + safe);
}

/// Writes the attachment under dir/<channel>/ once (content-addressed); returns its name, "" when not kept.
std::string keep(const std::string& dir, const std::string& channel_id, const Attachment& a) {
    if (dir.empty()) return {};
    std::string name = stored_name(a);
    std::error_code ec;
    fs::path folder = fs::path(dir) / channel_id;
    fs::create_directories(folder, ec);
    fs::path path = folder / name;
    if (fs::exists(path, ec)) return name;
    fs::path tmp = folder / (name + ".tmp-" + core::random_hex(4));
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(a.data.data(), static_cast<std::streamsize>(a.data.size()));
        out.close();
        if (!out) {
            fs::remove(tmp, ec);
            return {};
        }
    }
    std::ofstream meta(folder / (name + ".type"), std::ios::trunc);
    meta << a.content_type;
    meta.close();
    fs::rename(tmp, path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        return {};
    }
    return name;
}

std::string domain_of(const std::string& address) { return address.substr(address.find('@') + 1); }

class EmailAdapter final : public Adapter, public Transport {
public:
    std::string_view kind() const override { return "email"; }
    std::string default_api_base_url() const override { return ""; }
    json::object validate_credentials(const json::object& credentials) const override {
        return Settings::validate(credentials);
    }
    AdapterLimits limits() const override {
        AdapterLimits l;
        l.channel_per_second = 5;  // mailbox providers throttle bursts (Gmail ~20/min sustained for new accounts)
        l.chat_per_second = 0;
        l.max_payload_bytes = 200;
        return l;
    }
    void verify(const ChannelRef&, const WebhookRequest&) const override {
        throw core::NotFound("email channels receive mail by IMAP polling, not by webhooks", "channel_not_found");
    }
    std::vector<InboundEvent> parse(std::string_view) const override {
        throw core::BadRequest("email channels have no webhook", "invalid_update");
    }
    Rendered render(const ChannelRef&, const OutboundContext&, std::string_view,
                    const std::vector<scenario::ReplyButton>&, const PayloadOf&) const override {
        Rendered r;
        r.refused = "email is sent through its transport";
        return r;
    }
    SendResult classify(const outbound::Response&) const override { return SendResult{}; }
    const Transport* transport() const override { return this; }

    // --- Transport ----------------------------------------------------------------------------------------------
    std::int64_t poll_interval_ms(const ChannelRef& channel) const override {
        return Settings::from(channel.credentials).poll_interval_s * 1000;
    }

    PollResult poll(const ChannelRef& channel, const std::string& cursor,
                    const TransportContext& context) const override {
        Settings settings = Settings::from(channel.credentials);
        std::string validity;
        std::int64_t last_uid = 0;
        if (auto colon = cursor.find(':'); colon != std::string::npos) {
            validity = cursor.substr(0, colon);
            std::from_chars(cursor.data() + colon + 1, cursor.data() + cursor.size(), last_uid);
        }
        ImapPoll imap = imap_poll(settings, validity, last_uid, context);
        PollResult result;
        result.error = imap.error;
        result.cursor = imap.uidvalidity.empty() ? cursor : fmt::format("{}:{}", imap.uidvalidity, imap.last_uid);
        for (const auto& f : imap.mails) result.events.push_back(event_of(channel, settings, f, context));
        return result;
    }

    SendResult send(const ChannelRef& channel, const OutboundContext& to, std::string_view text,
                    const std::vector<scenario::ReplyButton>& buttons, const json::object& thread,
                    const TransportContext& context) const override {
        Settings settings = Settings::from(channel.credentials);
        auto str = [&](std::string_view key) {
            auto it = thread.find(key);
            return it != thread.end() && it->value().is_string() ? std::string(it->value().get_string())
                                                                  : std::string();
        };
        Outgoing mail;
        mail.from_address = settings.address;
        mail.from_name = settings.from_name;
        mail.to_address = to.chat_id;
        mail.subject = reply_subject(str("subject"));
        mail.in_reply_to = str("message_id");
        if (auto it = thread.find("references"); it != thread.end() && it->value().is_array()) {
            for (const auto& r : it->value().get_array()) {
                if (r.is_string()) mail.references.emplace_back(r.get_string());
            }
        }
        if (mail.references.size() > kMaxReferences) {
            mail.references.erase(mail.references.begin() + 1,
                                  mail.references.end() - static_cast<std::ptrdiff_t>(kMaxReferences - 1));
        }
        mail.message_id = fmt::format("parley.{}.{}@{}", to.dialog_id, to.n, domain_of(settings.address));
        mail.text = std::string(text);
        if (!buttons.empty()) {
            mail.text += "\n";
            for (const auto& b : buttons) mail.text += "\n• " + (b.text.empty() ? b.id : b.text);
        }
        mail.html = settings.send_html;
        mail.date_ms = to.now_ms;
        SendResult result;
        if (to.chat_id.empty() || to.chat_id.find('@') == std::string::npos) {
            result.outcome = SendResult::Outcome::kPermanent;
            result.error = "no e-mail address to reply to";
            return result;
        }
        SmtpResult smtp = smtp_send(settings, to.chat_id, compose(mail), context);
        if (smtp.ok) {
            result.outcome = SendResult::Outcome::kOk;
            result.message_id = mail.message_id;
            return result;
        }
        result.outcome = smtp.transient ? SendResult::Outcome::kTransient : SendResult::Outcome::kPermanent;
        result.error = smtp.error;
        return result;
    }

private:
    static InboundEvent event_of(const ChannelRef& channel, const Settings& settings, const Fetched& f,
                                 const TransportContext& context) {
        Mail mail = parse_mail(f.raw);
        InboundEvent e;
        e.key = mail.key(f.raw);
        e.timestamp_ms = mail.date_ms;
        // Nobody to answer, our own mail (a copy of a reply), or an auto-reply (out of office, bounces): stored so
        // a re-served copy stays a duplicate, never answered (no mail loops).
        if (mail.from_address.empty() || mail.from_address == settings.address || mail.automatic) return e;
        e.type = InboundEvent::Type::kMessage;
        std::string thread = mail.thread_key().empty() ? e.key : mail.thread_key();
        e.user_id = cut_bytes(mail.from_address + " " + thread, 1000);
        e.chat_id = mail.reply_to.empty() ? mail.from_address : mail.reply_to;
        e.email = mail.from_address;
        e.name = mail.from_name;
        json::array refs;
        for (const auto& r : mail.references) refs.emplace_back(r);
        if (!mail.message_id.empty()) refs.emplace_back(mail.message_id);
        e.thread = json::object{{"subject", mail.subject}, {"message_id", mail.message_id}, {"references", refs}};
        std::string text = mail.text;
        bool new_thread = mail.in_reply_to.empty() && mail.references.empty();
        if (new_thread && !mail.subject.empty() && !mail.malformed) {
            text = text.empty() ? mail.subject : mail.subject + "\n\n" + text;
        }
        if (f.too_large) {
            text += fmt::format("{}[e-mail of {} over the {} limit: only its header was imported]",
                                text.empty() ? "" : "\n\n", human_size(static_cast<std::size_t>(f.size)),
                                human_size(kMaxMessageBytes));
        }
        std::string lines;
        for (const auto& a : mail.attachments) {
            std::string name = keep(context.attachments_dir, channel.id, a);
            lines += fmt::format("\n[attachment] {} ({}, {})", a.filename.empty() ? "unnamed" : a.filename,
                                 a.content_type, human_size(a.data.size()));
            if (!name.empty()) {
                lines += fmt::format(" /api/v1/bots/{}/channels/{}/attachments/{}", channel.bot_id, channel.id, name);
            }
        }
        if (mail.attachments_dropped) {
            lines += fmt::format("\n[{} more attachments not kept]", mail.attachments_dropped);
        }
        if (!lines.empty()) {  // the attachment lines survive a long body: the body is cut first
            lines = cut_bytes(text.empty() ? lines.substr(1) : "\n" + lines, kMaxTextBytes / 2);
            text = cut_bytes(std::move(text), kMaxTextBytes - lines.size()) + lines;
        }
        e.message = scenario::ClientMessage::from_text(cut_bytes(std::move(text), kMaxTextBytes));
        return e;
    }
};

}  // namespace

std::unique_ptr<Adapter> make_adapter() { return std::make_unique<EmailAdapter>(); }

}  // namespace parley::channels::email

namespace parley::channels::internal {

std::unique_ptr<Adapter> make_email_adapter() { return email::make_adapter(); }

}  // namespace parley::channels::internal

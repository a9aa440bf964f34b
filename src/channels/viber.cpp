// The Viber REST bot API adapter: set_webhook when the channel is saved, X-Viber-Content-Signature (HMAC-SHA256 of
// the body keyed with the auth token), conversation_started / subscribed / message / delivered / seen / failed
// callbacks, send_message with a reply keyboard for buttons.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "channels/adapter.h"
#include "channels/internal/adapters.h"
#include "channels/internal/parse_util.h"
#include "core/error.h"
#include "core/json.h"

namespace parley::channels {

namespace {

constexpr std::size_t kMaxTextChars = 7000;       ///< send_message text
constexpr std::size_t kMaxKeyboardButtons = 24;   ///< 12 rows of two buttons
constexpr std::size_t kFullWidthButtons = 12;     ///< up to this many: one full-width button per row
constexpr std::size_t kMaxButtonTextChars = 250;
constexpr std::size_t kMaxSenderNameChars = 28;
constexpr std::string_view kButtonPrefix = "btn:";  ///< ActionBody of a reply button: "btn:" + button id

using internal::JsonReader;
using internal::labelled;

/// Viber's webhook events that Parley asks for.
const json::array& event_types() {
    static const json::array types{"delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"};
    return types;
}

outbound::Request viber_call(const ChannelRef& c, std::string_view method, const json::object& body) {
    outbound::Request req = json_post(fmt::format("{}/pa/{}", c.api_base_url, method), body);
    req.headers.emplace_back("X-Viber-Auth-Token", c.credential("token"));
    return req;
}

void read_user(const JsonReader& r, const json::object& user, InboundEvent& e) {
    e.user_id = r.required_id(user, "id");
    e.chat_id = e.user_id;
    e.name = r.string(user, "name", 200);
    e.language = language_of(r.string(user, "language", 16));
}

scenario::ClientMessage read_message(const JsonReader& r, const json::object& m) {
    std::string type = r.required_string(m, "type");
    std::string text = r.string(m, "text", internal::kMaxInboundTextBytes);
    if (type == "text") {
        if (text.rfind(kButtonPrefix, 0) == 0 && text.size() > kButtonPrefix.size()) {
            return scenario::ClientMessage::from_button(text.substr(kButtonPrefix.size()));
        }
        return scenario::ClientMessage::from_text(std::move(text));
    }
    if (type == "contact") {
        const json::object& contact = r.required_object(m, "contact");
        std::string phone = r.string(contact, "phone_number", 32);
        if (phone.empty()) r.fail("'message.contact.phone_number' is missing");
        json::object c{{"phone", phone}};
        if (auto name = r.string(contact, "name", 200); !name.empty()) c["first_name"] = name;
        return scenario::ClientMessage::from_contact(std::move(c));
    }
    if (type == "location") {
        const json::object* where = r.object(m, "location");
        if (!where) return scenario::ClientMessage::from_text("[location]");
        return scenario::ClientMessage::from_text(fmt::format("[location {},{}]", JsonReader::coordinate(*where, "lat"),
                                                              JsonReader::coordinate(*where, "lon")));
    }
    if (type == "url") return scenario::ClientMessage::from_text(r.string(m, "media", 4096));
    if (type == "file") return scenario::ClientMessage::from_text(labelled("file", r.string(m, "file_name", 200)));
    if (type == "picture" || type == "video" || type == "sticker" || type == "rich_media") {
        return scenario::ClientMessage::from_text(labelled(type == "rich_media" ? "rich media" : type, text));
    }
    return scenario::ClientMessage::from_text(labelled("unsupported message", text));
}

class ViberAdapter final : public Adapter {
public:
    std::string_view kind() const override { return "viber"; }
    std::string default_api_base_url() const override { return "https://chatapi.viber.com"; }

    json::object validate_credentials(const json::object& in) const override {
        core::reject_unknown_fields(in, {"token", "auth_token", "sender_name", "sender_avatar"});
        std::string token = internal::optional_credential(in, "token", 256);
        if (token.empty()) token = internal::optional_credential(in, "auth_token", 256);
        if (token.empty()) internal::bad_credential("token", "is required (the bot's auth token)");
        json::object out{{"token", token}};
        if (auto name = internal::optional_credential(in, "sender_name", 200, true); !name.empty()) {
            out["sender_name"] = cut_chars(name, kMaxSenderNameChars);
        }
        if (auto avatar = internal::optional_credential(in, "sender_avatar", 2048); !avatar.empty()) {
            out["sender_avatar"] = avatar;
        }
        return out;
    }

    AdapterLimits limits() const override {
        AdapterLimits l;
        l.channel_per_second = 30;
        l.chat_per_second = 0;
        l.max_payload_bytes = 200;
        return l;
    }

    std::optional<outbound::Request> connect(const ChannelRef& c) const override {
        return viber_call(c, "set_webhook",
                          json::object{{"url", c.webhook_url}, {"event_types", event_types()}, {"send_name", true},
                                       {"send_photo", false}});
    }
    std::optional<outbound::Request> disconnect(const ChannelRef& c) const override {
        return viber_call(c, "set_webhook", json::object{{"url", ""}});
    }

    void verify(const ChannelRef& c, const WebhookRequest& r) const override {
        std::string given(r.header("x-viber-content-signature"));
        std::transform(given.begin(), given.end(), given.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        if (!equal_secret(given, hmac_sha256_hex(c.credential("token"), r.body))) {
            throw core::Unauthorized("the X-Viber-Content-Signature header is missing or wrong", "invalid_signature");
        }
    }

    std::vector<InboundEvent> parse(std::string_view body) const override {
        JsonReader r("Viber");
        json::value v = r.parse(body);
        const json::object& root = r.root(v);
        std::string event = r.required_string(root, "event");
        InboundEvent e;
        e.timestamp_ms = r.integer(root, "timestamp").value_or(0);
        std::string token = r.id(root, "message_token");
        if (event == "webhook") return {};  // set_webhook's check: answered 200, nothing stored
        if (event == "message") {
            if (token.empty()) r.fail("'message_token' is missing");
            read_user(r, r.required_object(root, "sender"), e);
            e.type = InboundEvent::Type::kMessage;
            e.key = "m:" + token;
            e.message = read_message(r, r.required_object(root, "message"));
            return {std::move(e)};
        }
        if (event == "delivered" || event == "seen" || event == "failed") {
            if (token.empty()) r.fail("'message_token' is missing");
            e.user_id = r.required_id(root, "user_id");
            e.chat_id = e.user_id;
            e.type = InboundEvent::Type::kReceipt;
            e.receipt = event == "delivered" ? "delivered" : event == "seen" ? "read" : "failed";
            e.message_ids.push_back(token);
            e.error = r.string(root, "desc", 1000);
            e.key = event + ":" + token;
            return {std::move(e)};
        }
        if (event == "conversation_started" || event == "subscribed") {
            read_user(r, r.required_object(root, "user"), e);
            bool subscribed = event == "subscribed";
            if (auto it = root.find("subscribed"); it != root.end() && it->value().is_bool()) {
                subscribed = subscribed || it->value().get_bool();
            }
            // A user who only opened the chat cannot be messaged yet (Viber refuses until they subscribe or
            // write): the dialog starts on their first message instead.
            e.type = subscribed ? InboundEvent::Type::kStart : InboundEvent::Type::kIgnored;
            e.key = fmt::format("{}:{}", event, token.empty() ? e.user_id + ":" + std::to_string(e.timestamp_ms) : token);
            return {std::move(e)};
        }
        // unsubscribed, client_status and future events: stored as ignored.
        e.user_id = r.id(root, "user_id");
        e.key = fmt::format("{}:{}:{}:{}", cut_bytes(event, 64), token, e.user_id, e.timestamp_ms);
        return {std::move(e)};
    }

    Rendered render(const ChannelRef& c, const OutboundContext& to, std::string_view text,
                    const std::vector<scenario::ReplyButton>& buttons, const PayloadOf& payload_of) const override {
        std::string body_text = internal::with_choices(std::string(text), buttons, kMaxKeyboardButtons);
        std::vector<std::string> parts = split_text(body_text, kMaxTextChars);
        Rendered out;
        if (parts.size() == 1 && parts[0].empty()) {
            if (buttons.empty()) return out;
            parts[0] = internal::kInvisibleText;
        }
        std::string sender_name = c.credential("sender_name");
        if (sender_name.empty()) sender_name = cut_chars(c.bot_name.empty() ? "Parley" : c.bot_name, kMaxSenderNameChars);
        json::object sender{{"name", sender_name}};
        if (auto avatar = c.credential("sender_avatar"); !avatar.empty()) sender["avatar"] = avatar;
        json::array keyboard;
        std::size_t shown = std::min(buttons.size(), kMaxKeyboardButtons);
        int columns = shown <= kFullWidthButtons ? 6 : 3;
        for (std::size_t i = 0; i < shown; ++i) {
            const auto& b = buttons[i];
            keyboard.push_back(json::object{{"Columns", columns},
                                            {"Rows", 1},
                                            {"ActionType", "reply"},
                                            {"ActionBody", std::string(kButtonPrefix) + payload_of(b.id)},
                                            {"Text", cut_chars(b.text.empty() ? b.id : b.text, kMaxButtonTextChars)},
                                            {"TextSize", "regular"}});
        }
        for (std::size_t i = 0; i < parts.size(); ++i) {
            json::object body{{"receiver", to.chat_id}, {"type", "text"}, {"text", parts[i]}, {"sender", sender}};
            if (i + 1 == parts.size() && !keyboard.empty()) {
                body["keyboard"] = json::object{{"Type", "keyboard"}, {"DefaultHeight", false}, {"Buttons", keyboard}};
            }
            out.requests.push_back(viber_call(c, "send_message", body));
        }
        return out;
    }

    SendResult classify(const outbound::Response& r) const override {
        SendResult out;
        if (r.error) {
            out.outcome = SendResult::Outcome::kTransient;
            out.error = fmt::format("{}: {}", outbound::error_code_name(r.error->code), r.error->message);
            return out;
        }
        if (r.status == 429) {
            std::int64_t s = 0;
            std::string_view h = r.header("retry-after");
            std::from_chars(h.data(), h.data() + h.size(), s);
            out.outcome = SendResult::Outcome::kRetryAfter;
            out.retry_after_ms = std::max<std::int64_t>(s, 1) * 1000;
            out.error = "HTTP 429";
            return out;
        }
        if (r.status >= 500 || r.status == 408) {
            out.outcome = SendResult::Outcome::kTransient;
            out.error = fmt::format("HTTP {}", r.status);
            return out;
        }
        boost::system::error_code ec;
        json::value v = json::parse(r.body, ec);
        if (r.status != 200 || ec || !v.is_object()) {
            out.outcome = r.status == 200 ? SendResult::Outcome::kTransient : SendResult::Outcome::kPermanent;
            out.error = fmt::format("HTTP {}: not a Viber answer", r.status);
            return out;
        }
        const auto& o = v.get_object();
        std::int64_t status = -1;
        if (auto it = o.find("status"); it != o.end() && it->value().is_int64()) status = it->value().get_int64();
        std::string message = "unknown error";
        if (auto it = o.find("status_message"); it != o.end() && it->value().is_string()) {
            message = std::string(it->value().get_string());
        }
        if (status == 0) {
            out.outcome = SendResult::Outcome::kOk;
            if (auto it = o.find("message_token"); it != o.end()) {
                if (it->value().is_int64()) out.message_id = std::to_string(it->value().get_int64());
                if (it->value().is_uint64()) out.message_id = std::to_string(it->value().get_uint64());
            }
            return out;
        }
        out.error = fmt::format("Viber status {}: {}", status, message);
        if (status == 12) {  // tooManyRequests
            out.outcome = SendResult::Outcome::kRetryAfter;
            out.retry_after_ms = 1000;
        } else if (status >= 1 && status <= 14) {
            // invalidUrl, invalidAuthToken, badData, missingData, receiverNotRegistered, receiverNotSubscribed,
            // publicAccountBlocked/NotFound/Suspended, webhookNotSet, receiverNoSuitableDevice, apiVersion...
            out.outcome = SendResult::Outcome::kPermanent;
        } else {
            out.outcome = SendResult::Outcome::kTransient;  // generalError and codes Parley does not know
        }
        return out;
    }
};

}  // namespace

namespace internal {
std::unique_ptr<Adapter> make_viber_adapter() { return std::make_unique<ViberAdapter>(); }
}  // namespace internal

}  // namespace parley::channels

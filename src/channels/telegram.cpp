#include "channels/telegram.h"

#include <fmt/format.h>

#include <charconv>

#include "channels/adapter.h"
#include "channels/internal/adapters.h"

#include "core/error.h"
#include "core/json.h"

namespace parley::channels::telegram {

namespace {

[[noreturn]] void malformed(std::string_view what) {
    throw core::BadRequest(fmt::format("not a Telegram update: {}", what), "invalid_update");
}

const json::object* object_at(const json::object& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->value().is_null()) return nullptr;
    if (!it->value().is_object()) malformed(fmt::format("'{}' is not an object", key));
    return &it->value().get_object();
}

std::string string_at(const json::object& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->value().is_null()) return {};
    if (!it->value().is_string()) malformed(fmt::format("'{}' is not a string", key));
    return std::string(it->value().get_string());
}

/// An integer id (Telegram ids fit in 52 bits; JSON parsers may hand them over as int64 or uint64).
std::optional<std::int64_t> int_at(const json::object& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end()) return std::nullopt;
    if (it->value().is_int64()) return it->value().get_int64();
    if (it->value().is_uint64() && it->value().get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
        return static_cast<std::int64_t>(it->value().get_uint64());
    }
    malformed(fmt::format("'{}' is not an integer", key));
}

std::int64_t required_id(const json::object& obj, std::string_view key) {
    auto v = int_at(obj, key);
    if (!v) malformed(fmt::format("'{}' is missing", key));
    return *v;
}

/// Cuts at most max bytes without splitting a UTF-8 sequence.
std::string cut_utf8(std::string text, std::size_t max) {
    if (text.size() <= max) return text;
    std::size_t end = max;
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    text.resize(end);
    return text;
}


void read_user(const json::object& from, Update& out) {
    out.user_id = std::to_string(required_id(from, "id"));
    out.first_name = cut_utf8(string_at(from, "first_name"), 200);
    out.last_name = cut_utf8(string_at(from, "last_name"), 200);
    out.language = channels::language_of(string_at(from, "language_code"));
}

std::string number_text(const json::value& v) {
    if (v.is_double()) return fmt::format("{:.6f}", v.get_double());
    if (v.is_int64()) return std::to_string(v.get_int64());
    if (v.is_uint64()) return std::to_string(v.get_uint64());
    return "?";
}

/// A message that is neither text nor contact, as readable text ("[photo] caption").
std::string describe(const json::object& message) {
    static const std::pair<std::string_view, std::string_view> kKinds[] = {
        {"sticker", "[sticker]"},   {"animation", "[animation]"}, {"photo", "[photo]"},
        {"video", "[video]"},       {"video_note", "[video note]"}, {"voice", "[voice]"},
        {"audio", "[audio]"},       {"document", "[document]"},   {"poll", "[poll]"},
        {"dice", "[dice]"},         {"game", "[game]"},           {"venue", "[venue]"},
    };
    std::string caption = string_at(message, "caption");
    if (const json::object* loc = object_at(message, "location"); loc && !message.contains("venue")) {
        auto lat = loc->find("latitude");
        auto lon = loc->find("longitude");
        if (lat != loc->end() && lon != loc->end()) {
            return fmt::format("[location {},{}]", number_text(lat->value()), number_text(lon->value()));
        }
        return "[location]";
    }
    for (const auto& [key, label] : kKinds) {
        if (message.contains(key)) return caption.empty() ? std::string(label) : fmt::format("{} {}", label, caption);
    }
    return caption.empty() ? "[unsupported message]" : caption;
}

}  // namespace

Update parse_update(std::string_view body) {
    json::value parsed;
    try {
        parsed = core::parse_json(body);
    } catch (const core::Error&) {
        malformed("the body is not JSON");
    }
    if (!parsed.is_object()) malformed("the body is not a JSON object");
    const json::object& root = parsed.get_object();
    Update out;
    auto id = int_at(root, "update_id");
    if (!id || *id < 0) malformed("'update_id' is missing");
    out.update_id = *id;

    if (const json::object* message = object_at(root, "message")) {
        const json::object* from = object_at(*message, "from");
        const json::object* chat = object_at(*message, "chat");
        if (!chat) malformed("'message.chat' is missing");
        out.chat_id = std::to_string(required_id(*chat, "id"));
        if (!from) return out;  // a message without a sender (a channel post relayed to a group): ignored
        read_user(*from, out);
        out.kind = Update::Kind::kMessage;
        if (message->contains("text")) {
            out.message = scenario::ClientMessage::from_text(cut_utf8(string_at(*message, "text"), kMaxTextBytes));
        } else if (const json::object* contact = object_at(*message, "contact")) {
            std::string phone = string_at(*contact, "phone_number");
            if (phone.empty()) malformed("'contact.phone_number' is missing");
            json::object c{{"phone", cut_utf8(phone, 32)}};
            if (auto first = string_at(*contact, "first_name"); !first.empty()) c["first_name"] = cut_utf8(first, 200);
            if (auto last = string_at(*contact, "last_name"); !last.empty()) c["last_name"] = cut_utf8(last, 200);
            if (auto uid = int_at(*contact, "user_id")) c["user_id"] = std::to_string(*uid);
            out.message = scenario::ClientMessage::from_contact(std::move(c));
        } else {
            out.message = scenario::ClientMessage::from_text(cut_utf8(describe(*message), kMaxTextBytes));
        }
        return out;
    }
    if (const json::object* callback = object_at(root, "callback_query")) {
        out.callback_query_id = string_at(*callback, "id");
        if (out.callback_query_id.empty()) malformed("'callback_query.id' is missing");
        const json::object* from = object_at(*callback, "from");
        if (!from) malformed("'callback_query.from' is missing");
        read_user(*from, out);
        out.chat_id = out.user_id;  // a private chat's id is the user's id
        if (const json::object* message = object_at(*callback, "message")) {
            if (const json::object* chat = object_at(*message, "chat")) out.chat_id = std::to_string(required_id(*chat, "id"));
        }
        std::string data = string_at(*callback, "data");
        if (data.empty() || data.size() > kMaxCallbackDataBytes) {
            return out;  // a game button or a foreign keyboard: answered, otherwise ignored
        }
        out.kind = Update::Kind::kCallback;
        out.message = scenario::ClientMessage::from_button(std::move(data));
        return out;
    }
    return out;
}

std::vector<std::string> split_text(std::string_view text, std::size_t max_chars) {
    return channels::split_text(text, max_chars);
}

std::vector<json::object> render(std::string_view chat_id, std::string_view text, const json::array& buttons,
                                 const std::function<std::string(const std::string&)>& data_of) {
    std::vector<json::object> out;
    std::vector<std::string> parts = split_text(text);
    json::array keyboard;
    for (const auto& b : buttons) {
        if (!b.is_object()) continue;
        const json::object& button = b.get_object();
        auto id = button.find("id");
        auto label = button.find("text");
        if (id == button.end() || !id->value().is_string()) continue;
        std::string id_text(id->value().get_string());
        std::string label_text = label != button.end() && label->value().is_string()
                                     ? std::string(label->value().get_string())
                                     : id_text;
        keyboard.push_back(json::array{json::object{{"text", label_text}, {"callback_data", data_of(id_text)}}});
    }
    if (parts.size() == 1 && parts[0].empty()) {
        if (keyboard.empty()) return out;
        parts[0] = "\u2063";
    }
    for (std::size_t i = 0; i < parts.size(); ++i) {
        json::object body{{"chat_id", chat_id}, {"text", parts[i]}};
        if (i + 1 == parts.size() && !keyboard.empty()) {
            body["reply_markup"] = json::object{{"inline_keyboard", keyboard}};
        }
        out.push_back(std::move(body));
    }
    return out;
}

}  // namespace parley::channels::telegram

namespace parley::channels {
namespace internal {

outbound::Request telegram_call(const ChannelRef& channel, std::string_view method, const json::object& args,
                                std::int64_t timeout_ms) {
    return json_post(fmt::format("{}/bot{}/{}", channel.api_base_url, channel.credential("token"), method), args,
                     timeout_ms);
}

}  // namespace internal

namespace {

bool valid_token(std::string_view token) {
    std::size_t colon = token.find(':');
    if (colon == 0 || colon == std::string_view::npos || colon > 20 || token.size() > 256 || colon + 1 == token.size()) {
        return false;
    }
    for (std::size_t i = 0; i < token.size(); ++i) {
        char c = token[i];
        if (i < colon && (c < '0' || c > '9')) return false;
        if (i > colon && !(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
    }
    return true;
}

/// Telegram Bot API: webhook with secret_token or long polling (the runtime's getUpdates loop), inline keyboards,
/// 4096-character parts, 30 messages/s per bot and 1 per second per chat.
class TelegramAdapter final : public Adapter {
public:
    std::string_view kind() const override { return "telegram"; }
    std::string default_api_base_url() const override { return "https://api.telegram.org"; }

    json::object validate_credentials(const json::object& in) const override {
        core::reject_unknown_fields(in, {"token", "mode"});
        std::string token(core::required_string(in, "token"));
        if (!valid_token(token)) {
            internal::bad_credential("token", "must be a Telegram bot token like 123456:ABC-def");
        }
        std::string mode = core::optional_string(in, "mode").value_or("webhook");
        if (mode != "webhook" && mode != "polling") internal::bad_credential("mode", "must be webhook or polling");
        return json::object{{"token", token}, {"mode", mode}};
    }

    AdapterLimits limits() const override {
        AdapterLimits l;
        l.channel_per_second = 30;
        l.chat_per_second = 1;
        l.chat_burst = 1;
        l.max_payload_bytes = telegram::kMaxCallbackDataBytes;
        return l;
    }

    std::optional<outbound::Request> connect(const ChannelRef& c) const override {
        if (c.credential("mode") == "polling") return internal::telegram_call(c, "deleteWebhook", {}, 15'000);
        json::object args{{"url", c.webhook_url},
                          {"secret_token", c.webhook_secret},
                          {"allowed_updates", json::array{"message", "callback_query"}}};
        return internal::telegram_call(c, "setWebhook", args, 15'000);
    }

    std::optional<outbound::Request> disconnect(const ChannelRef& c) const override {
        if (c.credential("mode") == "polling") return std::nullopt;
        return internal::telegram_call(c, "deleteWebhook", {}, 15'000);
    }

    void verify(const ChannelRef& c, const WebhookRequest& r) const override {
        if (!equal_secret(r.header("x-telegram-bot-api-secret-token"), c.webhook_secret)) {
            throw core::Unauthorized("the X-Telegram-Bot-Api-Secret-Token header is missing or wrong",
                                     "invalid_secret");
        }
    }

    std::vector<InboundEvent> parse(std::string_view body) const override {
        telegram::Update u = telegram::parse_update(body);
        InboundEvent e;
        e.key = std::to_string(u.update_id);
        e.sequence = u.update_id;
        e.user_id = u.user_id;
        e.chat_id = u.chat_id;
        e.name = u.first_name;
        if (!u.last_name.empty()) e.name += (e.name.empty() ? "" : " ") + u.last_name;
        e.language = u.language;
        e.ack = u.callback_query_id;
        if (u.kind != telegram::Update::Kind::kIgnored) {
            e.type = InboundEvent::Type::kMessage;
            e.message = std::move(u.message);
        }
        return {std::move(e)};
    }

    std::optional<outbound::Request> acknowledge(const ChannelRef& c, const InboundEvent& e) const override {
        if (e.ack.empty()) return std::nullopt;
        return internal::telegram_call(c, "answerCallbackQuery", json::object{{"callback_query_id", e.ack}}, 15'000);
    }

    Rendered render(const ChannelRef& c, const OutboundContext& to, std::string_view text,
                    const std::vector<scenario::ReplyButton>& buttons, const PayloadOf& payload_of) const override {
        json::array list;
        for (const auto& b : buttons) list.push_back(json::object{{"id", b.id}, {"text", b.text}});
        Rendered out;
        for (auto& body : telegram::render(to.chat_id, text, list, payload_of)) {
            out.requests.push_back(internal::telegram_call(c, "sendMessage", body, 15'000));
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
        boost::system::error_code ec;
        json::value v = json::parse(r.body, ec);
        bool ok = false;
        std::int64_t retry_after = 0;
        if (!ec && v.is_object()) {
            const auto& o = v.get_object();
            if (auto it = o.find("ok"); it != o.end() && it->value().is_bool()) ok = it->value().get_bool();
            if (auto it = o.find("description"); it != o.end() && it->value().is_string()) {
                out.error = std::string(it->value().get_string());
            }
            if (auto it = o.find("parameters"); it != o.end() && it->value().is_object()) {
                const auto& p = it->value().get_object();
                if (auto ra = p.find("retry_after"); ra != p.end() && ra->value().is_int64()) {
                    retry_after = ra->value().get_int64();
                }
            }
            if (auto it = o.find("result"); it != o.end() && it->value().is_object()) {
                if (auto id = it->value().get_object().find("message_id");
                    id != it->value().get_object().end() && id->value().is_int64()) {
                    out.message_id = std::to_string(id->value().get_int64());
                }
            }
        }
        if (out.error.empty()) out.error = fmt::format("HTTP {}", r.status);
        if (ok && r.status == 200) {
            out.outcome = SendResult::Outcome::kOk;
            out.error.clear();
        } else if (r.status == 429) {
            if (retry_after <= 0) {
                std::string_view h = r.header("retry-after");
                std::from_chars(h.data(), h.data() + h.size(), retry_after);
            }
            out.outcome = SendResult::Outcome::kRetryAfter;
            out.retry_after_ms = std::max<std::int64_t>(retry_after, 1) * 1000;
        } else if (r.status >= 500) {
            out.outcome = SendResult::Outcome::kTransient;
        } else {
            out.outcome = SendResult::Outcome::kPermanent;  // 400 chat not found, 403 blocked by the user, 401 token
        }
        return out;
    }
};

}  // namespace

namespace internal {
std::unique_ptr<Adapter> make_telegram_adapter() { return std::make_unique<TelegramAdapter>(); }
}  // namespace internal

}  // namespace parley::channels

#include "channels/adapter.h"

#include <fmt/format.h>
#include <sodium.h>

#include <map>

#include "channels/internal/adapters.h"
#include "core/error.h"

namespace parley::channels {

std::string ChannelRef::credential(std::string_view key) const {
    auto it = credentials.find(key);
    return it != credentials.end() && it->value().is_string() ? std::string(it->value().get_string()) : "";
}

std::string_view WebhookRequest::header(std::string_view lower_name) const {
    for (const auto& [name, value] : headers) {
        if (name == lower_name) return value;
    }
    return {};
}

std::optional<std::string_view> WebhookRequest::query_param(std::string_view name) const {
    for (const auto& [key, value] : query) {
        if (key == name) return std::string_view(value);
    }
    return std::nullopt;
}

namespace {

std::string_view type_name(InboundEvent::Type type) {
    switch (type) {
        case InboundEvent::Type::kMessage: return "message";
        case InboundEvent::Type::kStart: return "start";
        case InboundEvent::Type::kReceipt: return "receipt";
        case InboundEvent::Type::kIgnored: break;
    }
    return "ignored";
}

[[noreturn]] void bad_event() { throw core::BadRequest("not a stored channel event", "invalid_event"); }

std::string text_of(const json::object& o, std::string_view key) {
    auto it = o.find(key);
    if (it == o.end()) return {};
    if (!it->value().is_string()) bad_event();
    return std::string(it->value().get_string());
}

std::int64_t int_of(const json::object& o, std::string_view key, std::int64_t fallback) {
    auto it = o.find(key);
    if (it == o.end()) return fallback;
    if (!it->value().is_int64()) bad_event();
    return it->value().get_int64();
}

}  // namespace

json::object InboundEvent::to_json() const {
    json::object o{{"type", type_name(type)}, {"key", key}};
    if (sequence >= 0) o["sequence"] = sequence;
    if (timestamp_ms) o["ts"] = timestamp_ms;
    if (!user_id.empty()) o["user"] = user_id;
    if (!chat_id.empty()) o["chat"] = chat_id;
    if (!name.empty()) o["name"] = name;
    if (!language.empty()) o["language"] = language;
    if (!ack.empty()) o["ack"] = ack;
    if (!email.empty()) o["email"] = email;
    if (!thread.empty()) o["thread"] = thread;
    if (type == Type::kMessage) {
        switch (message.kind) {
            case scenario::ClientMessage::Kind::kText: o["text"] = message.text; break;
            case scenario::ClientMessage::Kind::kButton: o["button"] = message.button; break;
            case scenario::ClientMessage::Kind::kContact: o["contact"] = message.contact; break;
        }
    }
    if (type == Type::kReceipt) {
        o["receipt"] = receipt;
        json::array ids;
        for (const auto& id : message_ids) ids.emplace_back(id);
        o["ids"] = std::move(ids);
        if (watermark_ms) o["watermark"] = watermark_ms;
        if (!error.empty()) o["error"] = error;
    }
    return o;
}

InboundEvent InboundEvent::from_json(const json::value& value) {
    if (!value.is_object()) bad_event();
    const auto& o = value.get_object();
    InboundEvent e;
    std::string type = text_of(o, "type");
    if (type == "message") {
        e.type = Type::kMessage;
    } else if (type == "start") {
        e.type = Type::kStart;
    } else if (type == "receipt") {
        e.type = Type::kReceipt;
    } else if (type == "ignored") {
        e.type = Type::kIgnored;
    } else {
        bad_event();
    }
    e.key = text_of(o, "key");
    e.sequence = int_of(o, "sequence", -1);
    e.timestamp_ms = int_of(o, "ts", 0);
    e.user_id = text_of(o, "user");
    e.chat_id = text_of(o, "chat");
    e.name = text_of(o, "name");
    e.language = text_of(o, "language");
    e.ack = text_of(o, "ack");
    e.email = text_of(o, "email");
    if (auto it = o.find("thread"); it != o.end()) {
        if (!it->value().is_object()) bad_event();
        e.thread = it->value().get_object();
    }
    if (e.type == Type::kMessage) {
        if (o.contains("button")) {
            e.message = scenario::ClientMessage::from_button(text_of(o, "button"));
        } else if (auto it = o.find("contact"); it != o.end()) {
            if (!it->value().is_object()) bad_event();
            e.message = scenario::ClientMessage::from_contact(it->value().get_object());
        } else {
            e.message = scenario::ClientMessage::from_text(text_of(o, "text"));
        }
    }
    if (e.type == Type::kReceipt) {
        e.receipt = text_of(o, "receipt");
        if (auto it = o.find("ids"); it != o.end()) {
            if (!it->value().is_array()) bad_event();
            for (const auto& id : it->value().get_array()) {
                if (!id.is_string()) bad_event();
                e.message_ids.emplace_back(id.get_string());
            }
        }
        e.watermark_ms = int_of(o, "watermark", 0);
        e.error = text_of(o, "error");
    }
    return e;
}

std::optional<outbound::Request> Adapter::connect(const ChannelRef&) const { return std::nullopt; }
std::optional<outbound::Request> Adapter::disconnect(const ChannelRef&) const { return std::nullopt; }
std::optional<outbound::Request> Adapter::acknowledge(const ChannelRef&, const InboundEvent&) const {
    return std::nullopt;
}
std::string Adapter::handshake(const ChannelRef&, const WebhookRequest&) const {
    throw core::NotFound("this channel kind has no verification handshake", "not_found");
}

const Adapter* find_adapter(std::string_view kind) {
    static const auto* const adapters = [] {
        auto* m = new std::map<std::string, std::unique_ptr<Adapter>, std::less<>>();
        for (auto make : {internal::make_telegram_adapter, internal::make_viber_adapter,
                          internal::make_whatsapp_adapter, internal::make_messenger_adapter,
                          internal::make_instagram_adapter, internal::make_custom_adapter,
                          internal::make_email_adapter, internal::make_sms_adapter}) {
            auto a = make();
            std::string k(a->kind());
            m->emplace(std::move(k), std::move(a));
        }
        return m;
    }();
    auto it = adapters->find(kind);
    return it == adapters->end() ? nullptr : it->second.get();
}

std::vector<std::string> adapter_kinds() {
    return {"telegram", "viber", "whatsapp", "messenger", "instagram", "custom", "email", "sms"};
}

// --- helpers -------------------------------------------------------------------------------------------------------

std::vector<std::string> split_text(std::string_view text, std::size_t max_chars) {
    std::vector<std::string> parts;
    if (max_chars == 0) max_chars = 1;
    std::size_t pos = 0;
    while (true) {
        std::size_t i = pos;
        std::size_t chars = 0;
        std::size_t last_newline = std::string_view::npos;
        std::size_t last_space = std::string_view::npos;
        std::size_t quarter_start = 0;
        while (i < text.size() && chars < max_chars) {
            if (chars == max_chars - max_chars / 4) quarter_start = i;
            unsigned char c = static_cast<unsigned char>(text[i]);
            // A character is its lead byte plus the continuation bytes that follow (invalid UTF-8 counts byte by
            // byte), so a cut never lands inside a sequence.
            std::size_t len = 1;
            while (c >= 0xC0 && len < 4 && i + len < text.size() &&
                   (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80) {
                ++len;
            }
            if (c == '\n') last_newline = i;
            if (c == ' ') last_space = i;
            i += len;
            ++chars;
        }
        if (i >= text.size()) {
            parts.emplace_back(text.substr(pos));
            return parts;
        }
        std::size_t cut = i;
        std::size_t next = i;
        if (last_newline != std::string_view::npos && last_newline >= quarter_start && last_newline > pos) {
            cut = last_newline;
            next = last_newline + 1;
        } else if (last_space != std::string_view::npos && last_space >= quarter_start && last_space > pos) {
            cut = last_space;
            next = last_space + 1;
        }
        parts.emplace_back(text.substr(pos, cut - pos));
        pos = next;
    }
}

std::string cut_bytes(std::string text, std::size_t max_bytes) {
    if (text.size() <= max_bytes) return text;
    std::size_t end = max_bytes;
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    text.resize(end);
    return text;
}

std::size_t count_chars(std::string_view text) {
    std::size_t n = 0;
    for (unsigned char c : text) n += (c & 0xC0) != 0x80;
    return n;
}

std::string cut_chars(std::string_view text, std::size_t max_chars) {
    std::size_t chars = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
            if (chars == max_chars) return std::string(text.substr(0, i));
            ++chars;
        }
    }
    return std::string(text);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view body) {
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(key.data()), key.size());
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(body.data()), body.size());
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_final(&state, mac);
    char hex[crypto_auth_hmacsha256_BYTES * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    return hex;
}

bool equal_secret(std::string_view a, std::string_view b) {
    return a.size() == b.size() && !a.empty() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string language_of(std::string_view tag) {
    std::string base(tag.substr(0, std::min(tag.find_first_of("-_"), tag.size())));
    if (base.size() < 2 || base.size() > 3) return {};
    for (char& c : base) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c < 'a' || c > 'z') return {};
    }
    return base;
}

outbound::Request json_post(std::string url, const json::value& body, std::int64_t timeout_ms) {
    outbound::Request req;
    req.method = "POST";
    req.url = std::move(url);
    req.body = json::serialize(body);
    req.content_type = "application/json";
    req.timeout_ms = std::min<std::int64_t>(timeout_ms, outbound::kMaxTimeoutMs);
    req.max_redirects = 0;
    req.max_response_bytes = 8 * 1024 * 1024;
    return req;
}

namespace internal {

void bad_credential(std::string_view key, std::string_view why) {
    throw core::BadRequest(fmt::format("'credentials.{}' {}", key, why), "invalid_credentials",
                           json::array{json::object{{"field", fmt::format("credentials.{}", key)}}});
}

std::string optional_credential(const json::object& in, std::string_view key, std::size_t max, bool free_text) {
    auto it = in.find(key);
    if (it == in.end() || it->value().is_null()) return {};
    if (!it->value().is_string()) bad_credential(key, "must be a string");
    std::string value(it->value().get_string());
    if (value.size() > max) bad_credential(key, fmt::format("is longer than {} bytes", max));
    for (unsigned char c : value) {
        bool control = c < 0x20 || c == 0x7f;
        if (control || (!free_text && (c == ' ' || c >= 0x80))) {
            bad_credential(key, free_text ? "may not contain control characters"
                                          : "may contain only printable ASCII without spaces");
        }
    }
    return value;
}

std::string required_credential(const json::object& in, std::string_view key, std::size_t max) {
    std::string value = optional_credential(in, key, max);
    if (value.empty()) bad_credential(key, "is required");
    return value;
}

}  // namespace internal

}  // namespace parley::channels

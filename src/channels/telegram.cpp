#include "channels/telegram.h"

#include <fmt/format.h>

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

std::string language_of(const std::string& code) {
    std::string base = code.substr(0, code.find('-'));
    if (base.size() < 2 || base.size() > 3) return {};
    for (char c : base) {
        if (c < 'a' || c > 'z') return {};
    }
    return base;
}

void read_user(const json::object& from, Update& out) {
    out.user_id = std::to_string(required_id(from, "id"));
    out.first_name = cut_utf8(string_at(from, "first_name"), 200);
    out.last_name = cut_utf8(string_at(from, "last_name"), 200);
    out.language = language_of(string_at(from, "language_code"));
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
    std::vector<std::string> parts;
    if (max_chars == 0) max_chars = 1;
    std::size_t pos = 0;
    while (true) {
        // Find the byte offset after max_chars characters from pos.
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

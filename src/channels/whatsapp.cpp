// The WhatsApp Cloud API adapter: Meta's verification handshake and X-Hub-Signature-256, messages and statuses
// from the `messages` webhook field, replies as text, interactive reply buttons (≤ 3) or a list (≤ 10 rows), and a
// template named in the channel's credentials for messages outside the 24-hour customer service window.
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "channels/adapter.h"
#include "channels/internal/adapters.h"
#include "channels/internal/meta.h"
#include "channels/internal/parse_util.h"
#include "core/error.h"
#include "core/json.h"

namespace parley::channels {

namespace {

constexpr std::size_t kMaxTextChars = 4096;         ///< text.body
constexpr std::size_t kMaxButtonBodyChars = 1024;   ///< interactive button body.text
constexpr std::size_t kMaxListBodyChars = 4096;     ///< interactive list body.text
constexpr std::size_t kMaxReplyButtons = 3;
constexpr std::size_t kMaxButtonTitleChars = 20;
constexpr std::size_t kMaxListRows = 10;
constexpr std::size_t kMaxRowTitleChars = 24;
constexpr std::size_t kMaxRowDescriptionChars = 72;
constexpr std::size_t kMaxTemplateParamChars = 1024;
constexpr std::int64_t kWindowMs = 24LL * 3600 * 1000;  ///< the customer service window

using internal::JsonReader;
using internal::labelled;

std::string label_of(const scenario::ReplyButton& b) { return b.text.empty() ? b.id : b.text; }

scenario::ClientMessage read_message(const JsonReader& r, const json::object& m, const std::string& type,
                                     bool* ignored) {
    if (type == "text") {
        const json::object& text = r.required_object(m, "text");
        return scenario::ClientMessage::from_text(r.string(text, "body", internal::kMaxInboundTextBytes));
    }
    if (type == "interactive") {
        const json::object& i = r.required_object(m, "interactive");
        std::string kind = r.string(i, "type");
        if (kind == "button_reply" || kind == "list_reply") {
            const json::object& reply = r.required_object(i, kind);
            return scenario::ClientMessage::from_button(r.required_string(reply, "id"));
        }
        return scenario::ClientMessage::from_text(labelled("form reply", ""));
    }
    if (type == "button") {  // a template's quick-reply button
        const json::object& b = r.required_object(m, "button");
        std::string payload = r.string(b, "payload");
        if (!payload.empty()) return scenario::ClientMessage::from_button(std::move(payload));
        return scenario::ClientMessage::from_text(r.string(b, "text"));
    }
    if (type == "contacts") {
        const json::array* list = r.array(m, "contacts");
        if (list && !list->empty()) {
            const json::object& c = r.item(list->front(), "contacts");
            std::string phone;
            if (const json::array* phones = r.array(c, "phones"); phones && !phones->empty()) {
                phone = r.string(r.item(phones->front(), "phones"), "phone", 32);
            }
            std::string name;
            if (const json::object* n = r.object(c, "name")) name = r.string(*n, "formatted_name", 200);
            if (!phone.empty()) {
                json::object contact{{"phone", phone}};
                if (!name.empty()) contact["first_name"] = name;
                return scenario::ClientMessage::from_contact(std::move(contact));
            }
            return scenario::ClientMessage::from_text(labelled("contact", name));
        }
        return scenario::ClientMessage::from_text("[contact]");
    }
    if (type == "location") {
        const json::object& where = r.required_object(m, "location");
        std::string text = fmt::format("[location {},{}]", JsonReader::coordinate(where, "latitude"),
                                       JsonReader::coordinate(where, "longitude"));
        std::string name = r.string(where, "name", 200);
        std::string address = r.string(where, "address", 500);
        if (!name.empty()) text += " " + name;
        if (!address.empty()) text += " " + address;
        return scenario::ClientMessage::from_text(std::move(text));
    }
    if (type == "image" || type == "video" || type == "audio" || type == "document" || type == "sticker") {
        std::string caption;
        if (const json::object* media = r.object(m, type)) {
            caption = r.string(*media, "caption", internal::kMaxInboundTextBytes);
            if (caption.empty() && type == "document") caption = r.string(*media, "filename", 200);
        }
        return scenario::ClientMessage::from_text(labelled(type, caption));
    }
    if (type == "reaction" || type == "system" || type == "request_welcome") {
        *ignored = true;
        return {};
    }
    return scenario::ClientMessage::from_text("[unsupported message]");
}

class WhatsAppAdapter final : public Adapter {
public:
    std::string_view kind() const override { return "whatsapp"; }
    std::string default_api_base_url() const override { return "https://graph.facebook.com"; }

    json::object validate_credentials(const json::object& in) const override {
        core::reject_unknown_fields(in, {"token", "app_secret", "verify_token", "api_version", "phone_number_id",
                                         "template", "template_language", "template_parameter", "list_button"});
        json::object out;
        internal::meta_credentials(in, out);
        std::string phone = internal::required_credential(in, "phone_number_id", 64);
        if (!std::all_of(phone.begin(), phone.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            internal::bad_credential("phone_number_id", "must be the numeric id of the business phone number");
        }
        out["phone_number_id"] = phone;
        std::string name = internal::optional_credential(in, "template", 512);
        if (!std::all_of(name.begin(), name.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; })) {
            internal::bad_credential("template", "must be a template name of [a-z0-9_]");
        }
        if (!name.empty()) {
            out["template"] = name;
            std::string language = internal::optional_credential(in, "template_language", 16);
            out["template_language"] = language.empty() ? "en" : language;
            std::string parameter = internal::optional_credential(in, "template_parameter", 16);
            if (!parameter.empty() && parameter != "text" && parameter != "none") {
                internal::bad_credential("template_parameter", "must be text or none");
            }
            out["template_parameter"] = parameter.empty() ? "text" : parameter;
        }
        if (auto label = internal::optional_credential(in, "list_button", 200, true); !label.empty()) {
            out["list_button"] = cut_chars(label, kMaxButtonTitleChars);
        }
        return out;
    }

    AdapterLimits limits() const override {
        AdapterLimits l;
        l.channel_per_second = 80;       // Cloud API default throughput per business phone number
        l.chat_per_second = 1.0 / 6.0;   // pair rate limit: one message per 6 s to one user...
        l.chat_burst = 45;               // ...after a burst of up to 45
        l.max_payload_bytes = 200;       // list row id (reply button ids allow 256)
        return l;
    }

    std::string handshake(const ChannelRef& c, const WebhookRequest& r) const override {
        return internal::meta_handshake(c, r);
    }
    void verify(const ChannelRef& c, const WebhookRequest& r) const override { internal::meta_verify(c, r); }

    std::vector<InboundEvent> parse(std::string_view body) const override {
        JsonReader r("WhatsApp");
        json::value v = r.parse(body);
        const json::object& root = r.root(v);
        if (r.string(root, "object") != "whatsapp_business_account") {
            r.fail("'object' is not whatsapp_business_account");
        }
        const json::array* entries = r.array(root, "entry");
        if (!entries) r.fail("'entry' is missing");
        std::vector<InboundEvent> out;
        for (const auto& entry_value : *entries) {
            const json::object& entry = r.item(entry_value, "entry");
            const json::array* changes = r.array(entry, "changes");
            if (!changes) continue;
            for (const auto& change_value : *changes) {
                const json::object& change = r.item(change_value, "changes");
                if (r.string(change, "field") != "messages") continue;
                const json::object& value = r.required_object(change, "value");
                std::map<std::string, std::string> names;
                if (const json::array* contacts = r.array(value, "contacts")) {
                    for (const auto& c : *contacts) {
                        const json::object& contact = r.item(c, "contacts");
                        std::string wa_id = r.id(contact, "wa_id");
                        if (const json::object* profile = r.object(contact, "profile")) {
                            names[wa_id] = r.string(*profile, "name", 200);
                        }
                    }
                }
                if (const json::array* messages = r.array(value, "messages")) {
                    for (const auto& m : *messages) {
                        const json::object& message = r.item(m, "messages");
                        InboundEvent e;
                        e.key = "m:" + r.required_string(message, "id");
                        e.user_id = r.required_id(message, "from");
                        e.chat_id = e.user_id;
                        e.name = names[e.user_id];
                        e.timestamp_ms = r.integer(message, "timestamp").value_or(0) * 1000;
                        bool ignored = false;
                        e.message = read_message(r, message, r.required_string(message, "type"), &ignored);
                        e.type = ignored ? InboundEvent::Type::kIgnored : InboundEvent::Type::kMessage;
                        out.push_back(std::move(e));
                        if (out.size() > internal::kMaxEventsPerWebhook) r.fail("too many events");
                    }
                }
                if (const json::array* statuses = r.array(value, "statuses")) {
                    for (const auto& s : *statuses) {
                        const json::object& status = r.item(s, "statuses");
                        std::string id = r.required_string(status, "id");
                        std::string state = r.required_string(status, "status");
                        InboundEvent e;
                        e.key = "s:" + id + ":" + cut_bytes(state, 32);
                        e.user_id = r.id(status, "recipient_id");
                        e.chat_id = e.user_id;
                        e.timestamp_ms = r.integer(status, "timestamp").value_or(0) * 1000;
                        if (state == "delivered" || state == "read" || state == "failed") {
                            e.type = InboundEvent::Type::kReceipt;
                            e.receipt = state;
                            e.message_ids.push_back(id);
                            if (const json::array* errors = r.array(status, "errors"); errors && !errors->empty()) {
                                const json::object& error = r.item(errors->front(), "errors");
                                auto code = r.integer(error, "code");
                                e.error = fmt::format("{} {}", code.value_or(0), r.string(error, "title", 500));
                            }
                        }
                        out.push_back(std::move(e));
                        if (out.size() > internal::kMaxEventsPerWebhook) r.fail("too many events");
                    }
                }
            }
        }
        return out;
    }

    Rendered render(const ChannelRef& c, const OutboundContext& to, std::string_view text,
                    const std::vector<scenario::ReplyButton>& buttons, const PayloadOf& payload_of) const override {
        Rendered out;
        std::string path = c.credential("phone_number_id") + "/messages";
        auto message = [&](json::object content) {
            json::object body{{"messaging_product", "whatsapp"}, {"recipient_type", "individual"}, {"to", to.chat_id}};
            for (auto& kv : content) body[kv.key()] = kv.value();
            out.requests.push_back(internal::graph_post(c, path, body));
        };
        bool in_window = to.last_inbound_ms > 0 && to.now_ms - to.last_inbound_ms < kWindowMs;
        if (!in_window) {
            std::string name = c.credential("template");
            if (name.empty()) {
                out.refused = "outside WhatsApp's 24-hour customer service window and the channel names no "
                              "template (credentials.template)";
                return out;
            }
            json::object tmpl{{"name", name}, {"language", json::object{{"code", c.credential("template_language")}}}};
            if (c.credential("template_parameter") != "none") {
                std::string param = cut_chars(internal::with_choices(std::string(text), buttons, 0),
                                              kMaxTemplateParamChars);
                if (param.empty()) param = "-";
                tmpl["components"] = json::array{json::object{
                    {"type", "body"}, {"parameters", json::array{json::object{{"type", "text"}, {"text", param}}}}}};
            }
            message(json::object{{"type", "template"}, {"template", tmpl}});
            return out;
        }
        bool as_buttons = !buttons.empty() && buttons.size() <= kMaxReplyButtons;
        std::string body_text =
            buttons.size() > kMaxListRows ? internal::with_choices(std::string(text), buttons, kMaxListRows)
                                          : std::string(text);
        std::size_t limit = buttons.empty() ? kMaxTextChars : as_buttons ? kMaxButtonBodyChars : kMaxListBodyChars;
        std::vector<std::string> parts = split_text(body_text, limit);
        if (parts.size() == 1 && parts[0].empty()) {
            if (buttons.empty()) return out;
            parts[0] = internal::kInvisibleText;
        }
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
            message(json::object{{"type", "text"}, {"text", json::object{{"preview_url", false}, {"body", parts[i]}}}});
        }
        const std::string& last = parts.back();
        if (buttons.empty()) {
            message(json::object{{"type", "text"}, {"text", json::object{{"preview_url", false}, {"body", last}}}});
        } else if (as_buttons) {
            json::array list;
            for (const auto& b : buttons) {
                list.push_back(json::object{
                    {"type", "reply"},
                    {"reply", json::object{{"id", payload_of(b.id)}, {"title", cut_chars(label_of(b), kMaxButtonTitleChars)}}}});
            }
            message(json::object{{"type", "interactive"},
                                 {"interactive", json::object{{"type", "button"},
                                                              {"body", json::object{{"text", last}}},
                                                              {"action", json::object{{"buttons", list}}}}}});
        } else {
            json::array rows;
            for (std::size_t i = 0; i < buttons.size() && i < kMaxListRows; ++i) {
                std::string label = label_of(buttons[i]);
                json::object row{{"id", payload_of(buttons[i].id)}, {"title", cut_chars(label, kMaxRowTitleChars)}};
                if (count_chars(label) > kMaxRowTitleChars) row["description"] = cut_chars(label, kMaxRowDescriptionChars);
                rows.push_back(std::move(row));
            }
            std::string button = c.credential("list_button");
            if (button.empty()) button = "Options";
            message(json::object{
                {"type", "interactive"},
                {"interactive",
                 json::object{{"type", "list"},
                              {"body", json::object{{"text", last}}},
                              {"action", json::object{{"button", button},
                                                      {"sections", json::array{json::object{{"rows", rows}}}}}}}}});
        }
        return out;
    }

    SendResult classify(const outbound::Response& r) const override { return internal::graph_classify(r); }
};

}  // namespace

namespace internal {
std::unique_ptr<Adapter> make_whatsapp_adapter() { return std::make_unique<WhatsAppAdapter>(); }
}  // namespace internal

}  // namespace parley::channels

// Messenger and Instagram through the Graph Send API: Meta's verification handshake and X-Hub-Signature-256,
// `messaging` events (messages, quick replies, postbacks, deliveries, reads; echoes ignored), replies as text
// with quick replies (≤ 13).
#include <fmt/format.h>

#include "channels/adapter.h"
#include "channels/internal/adapters.h"
#include "channels/internal/meta.h"
#include "channels/internal/parse_util.h"
#include "core/error.h"
#include "core/json.h"

namespace parley::channels {

namespace {

constexpr std::size_t kMaxQuickReplies = 13;
constexpr std::size_t kMaxQuickReplyTitleChars = 20;
constexpr std::size_t kMaxPayloadBytes = 1000;

using internal::JsonReader;
using internal::labelled;

class MetaMessagingAdapter final : public Adapter {
public:
    explicit MetaMessagingAdapter(bool instagram) : instagram_(instagram) {}

    std::string_view kind() const override { return instagram_ ? "instagram" : "messenger"; }
    std::string default_api_base_url() const override { return "https://graph.facebook.com"; }

    json::object validate_credentials(const json::object& in) const override {
        core::reject_unknown_fields(in, {"token", "app_secret", "verify_token", "api_version"});
        json::object out;
        internal::meta_credentials(in, out);
        return out;
    }

    AdapterLimits limits() const override {
        AdapterLimits l;
        l.channel_per_second = 40;
        l.chat_per_second = 0;
        l.max_payload_bytes = kMaxPayloadBytes;
        return l;
    }

    std::string handshake(const ChannelRef& c, const WebhookRequest& r) const override {
        return internal::meta_handshake(c, r);
    }
    void verify(const ChannelRef& c, const WebhookRequest& r) const override { internal::meta_verify(c, r); }

    std::vector<InboundEvent> parse(std::string_view body) const override {
        JsonReader r(instagram_ ? "Instagram" : "Messenger");
        json::value v = r.parse(body);
        const json::object& root = r.root(v);
        std::string object = r.string(root, "object");
        if (object != (instagram_ ? "instagram" : "page")) {
            r.fail(fmt::format("'object' is not {}", instagram_ ? "instagram" : "page"));
        }
        const json::array* entries = r.array(root, "entry");
        if (!entries) r.fail("'entry' is missing");
        std::vector<InboundEvent> out;
        for (const auto& entry_value : *entries) {
            const json::object& entry = r.item(entry_value, "entry");
            const json::array* messaging = r.array(entry, "messaging");
            if (!messaging) continue;
            for (const auto& item_value : *messaging) {
                out.push_back(parse_item(r, r.item(item_value, "messaging")));
                if (out.size() > internal::kMaxEventsPerWebhook) r.fail("too many events");
            }
        }
        return out;
    }

    Rendered render(const ChannelRef& c, const OutboundContext& to, std::string_view text,
                    const std::vector<scenario::ReplyButton>& buttons, const PayloadOf& payload_of) const override {
        Rendered out;
        std::string body_text = internal::with_choices(std::string(text), buttons, kMaxQuickReplies);
        std::vector<std::string> parts = split_text(body_text, instagram_ ? 1000 : 2000);
        if (parts.size() == 1 && parts[0].empty()) {
            if (buttons.empty()) return out;
            parts[0] = internal::kInvisibleText;
        }
        json::array quick;
        for (std::size_t i = 0; i < buttons.size() && i < kMaxQuickReplies; ++i) {
            const auto& b = buttons[i];
            quick.push_back(json::object{{"content_type", "text"},
                                         {"title", cut_chars(b.text.empty() ? b.id : b.text, kMaxQuickReplyTitleChars)},
                                         {"payload", payload_of(b.id)}});
        }
        for (std::size_t i = 0; i < parts.size(); ++i) {
            json::object message{{"text", parts[i]}};
            if (i + 1 == parts.size() && !quick.empty()) message["quick_replies"] = quick;
            json::object body{{"recipient", json::object{{"id", to.chat_id}}},
                              {"messaging_type", "RESPONSE"},
                              {"message", std::move(message)}};
            out.requests.push_back(internal::graph_post(c, "me/messages", body));
        }
        return out;
    }

    SendResult classify(const outbound::Response& r) const override { return internal::graph_classify(r); }

private:
    InboundEvent parse_item(const JsonReader& r, const json::object& item) const {
        InboundEvent e;
        e.user_id = r.required_id(r.required_object(item, "sender"), "id");
        e.chat_id = e.user_id;
        e.timestamp_ms = r.integer(item, "timestamp").value_or(0);
        if (const json::object* message = r.object(item, "message")) {
            e.key = "m:" + r.required_string(*message, "mid");
            if (auto echo = message->find("is_echo"); echo != message->end() && echo->value() == json::value(true)) {
                return e;  // our own message echoed back
            }
            e.type = InboundEvent::Type::kMessage;
            if (const json::object* quick = r.object(*message, "quick_reply")) {
                std::string payload = r.string(*quick, "payload", kMaxPayloadBytes);
                if (!payload.empty()) {
                    e.message = scenario::ClientMessage::from_button(std::move(payload));
                    return e;
                }
            }
            std::string text = r.string(*message, "text", internal::kMaxInboundTextBytes);
            if (!text.empty()) {
                e.message = scenario::ClientMessage::from_text(std::move(text));
                return e;
            }
            if (const json::array* attachments = r.array(*message, "attachments"); attachments && !attachments->empty()) {
                const json::object& a = r.item(attachments->front(), "attachments");
                std::string type = r.string(a, "type", 64);
                if (type == "location") {
                    const json::object* payload = r.object(a, "payload");
                    const json::object* where = payload ? r.object(*payload, "coordinates") : nullptr;
                    e.message = scenario::ClientMessage::from_text(
                        where ? fmt::format("[location {},{}]", JsonReader::coordinate(*where, "lat"),
                                            JsonReader::coordinate(*where, "long"))
                              : "[location]");
                    return e;
                }
                e.message = scenario::ClientMessage::from_text(labelled(type.empty() ? "attachment" : type, ""));
                return e;
            }
            e.message = scenario::ClientMessage::from_text("[unsupported message]");
            return e;
        }
        if (const json::object* postback = r.object(item, "postback")) {
            std::string mid = r.string(*postback, "mid");
            e.key = mid.empty() ? fmt::format("p:{}:{}", e.user_id, e.timestamp_ms) : "p:" + mid;
            std::string payload = r.string(*postback, "payload", kMaxPayloadBytes);
            e.type = InboundEvent::Type::kMessage;
            e.message = payload.empty() ? scenario::ClientMessage::from_text(r.string(*postback, "title"))
                                        : scenario::ClientMessage::from_button(std::move(payload));
            return e;
        }
        if (const json::object* delivery = r.object(item, "delivery")) {
            e.type = InboundEvent::Type::kReceipt;
            e.receipt = "delivered";
            if (const json::array* mids = r.array(*delivery, "mids")) {
                for (const auto& mid : *mids) {
                    if (!mid.is_string()) r.fail("'delivery.mids' holds a non-string");
                    e.message_ids.emplace_back(cut_bytes(std::string(mid.get_string()), internal::kMaxShortBytes));
                }
            }
            e.watermark_ms = r.integer(*delivery, "watermark").value_or(0);
            e.key = fmt::format("d:{}:{}:{}", e.user_id, e.watermark_ms, e.message_ids.empty() ? "" : e.message_ids[0]);
            return e;
        }
        if (const json::object* read = r.object(item, "read")) {
            e.type = InboundEvent::Type::kReceipt;
            e.receipt = "read";
            if (std::string mid = r.string(*read, "mid"); !mid.empty()) e.message_ids.push_back(mid);  // Instagram
            e.watermark_ms = r.integer(*read, "watermark").value_or(0);
            e.key = fmt::format("r:{}:{}:{}", e.user_id, e.watermark_ms, e.message_ids.empty() ? "" : e.message_ids[0]);
            return e;
        }
        // reactions, referrals, opt-ins...: kept as ignored.
        e.key = fmt::format("x:{}:{}", e.user_id, e.timestamp_ms);
        return e;
    }

    bool instagram_;
};

}  // namespace

namespace internal {
std::unique_ptr<Adapter> make_messenger_adapter() { return std::make_unique<MetaMessagingAdapter>(false); }
std::unique_ptr<Adapter> make_instagram_adapter() { return std::make_unique<MetaMessagingAdapter>(true); }
}  // namespace internal

}  // namespace parley::channels

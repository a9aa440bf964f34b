// The custom channel: generic JSON webhooks in and out, both signed with HMAC-SHA256 of the body keyed with the
// channel's secret (X-Parley-Signature: sha256=<hex>). The JSON shapes are documented in README.md "Custom
// channel": integrators code against them.
#include <fmt/format.h>

#include <charconv>

#include "channels/adapter.h"
#include "channels/internal/adapters.h"
#include "channels/internal/parse_util.h"
#include "core/error.h"
#include "core/json.h"

namespace parley::channels {

namespace {

constexpr std::size_t kMaxEventsPerBody = 100;
constexpr std::size_t kMaxIdBytes = 200;
constexpr std::size_t kMaxOutboundTextBytes = 64 * 1024;
constexpr std::size_t kMinSecretBytes = 16;

using internal::JsonReader;

void only(const JsonReader& r, const json::object& o, std::initializer_list<std::string_view> keys,
          std::string_view where) {
    for (const auto& kv : o) {
        bool known = false;
        for (auto k : keys) known = known || kv.key() == k;
        if (!known) r.fail(fmt::format("unknown field '{}' in {}", std::string_view(kv.key()), where));
    }
}

std::string bounded_id(const JsonReader& r, const json::object& o, std::string_view key) {
    auto it = o.find(key);
    if (it == o.end() || !it->value().is_string() || it->value().get_string().empty() ||
        it->value().get_string().size() > kMaxIdBytes) {
        r.fail(fmt::format("'{}' must be a string of 1 to {} bytes", key, kMaxIdBytes));
    }
    return std::string(it->value().get_string());
}

scenario::ClientMessage read_message(const JsonReader& r, const json::object& m) {
    only(r, m, {"text", "button", "contact", "location", "media"}, "message");
    if (m.size() != 1) r.fail("'message' must have exactly one of text, button, contact, location, media");
    if (m.contains("text")) {
        if (!m.at("text").is_string()) r.fail("'message.text' is not a string");
        return scenario::ClientMessage::from_text(r.string(m, "text", internal::kMaxInboundTextBytes));
    }
    if (m.contains("button")) return scenario::ClientMessage::from_button(bounded_id(r, m, "button"));
    if (const json::object* contact = r.object(m, "contact")) {
        only(r, *contact, {"phone", "first_name", "last_name"}, "message.contact");
        std::string phone = r.string(*contact, "phone", 32);
        if (phone.empty()) r.fail("'message.contact.phone' is missing");
        json::object c{{"phone", phone}};
        if (auto v = r.string(*contact, "first_name", 200); !v.empty()) c["first_name"] = v;
        if (auto v = r.string(*contact, "last_name", 200); !v.empty()) c["last_name"] = v;
        return scenario::ClientMessage::from_contact(std::move(c));
    }
    if (const json::object* where = r.object(m, "location")) {
        only(r, *where, {"latitude", "longitude"}, "message.location");
        for (auto key : {"latitude", "longitude"}) {
            auto it = where->find(key);
            if (it == where->end() || !it->value().is_number()) r.fail(fmt::format("'message.location.{}' is not a number", key));
        }
        return scenario::ClientMessage::from_text(fmt::format("[location {},{}]", JsonReader::coordinate(*where, "latitude"),
                                                              JsonReader::coordinate(*where, "longitude")));
    }
    if (const json::object* media = r.object(m, "media")) {
        only(r, *media, {"type", "url", "caption"}, "message.media");
        std::string type = r.string(*media, "type", 32);
        if (type.empty()) type = "media";
        std::string text = internal::labelled(type, r.string(*media, "caption", internal::kMaxInboundTextBytes));
        if (auto url = r.string(*media, "url", 4096); !url.empty()) text += " " + url;
        return scenario::ClientMessage::from_text(std::move(text));
    }
    r.fail("'message' must be an object of text, button, contact, location or media");
}

InboundEvent read_event(const JsonReader& r, const json::object& o) {
    only(r, o, {"id", "type", "timestamp", "user", "chat_id", "message", "receipt"}, "the event");
    InboundEvent e;
    e.key = bounded_id(r, o, "id");
    e.timestamp_ms = r.integer(o, "timestamp").value_or(0);
    std::string type = r.string(o, "type", 32);
    if (type.empty()) type = "message";
    if (type == "receipt") {
        const json::object& receipt = r.required_object(o, "receipt");
        only(r, receipt, {"message_ids", "status", "error"}, "receipt");
        e.type = InboundEvent::Type::kReceipt;
        e.receipt = r.required_string(receipt, "status");
        if (e.receipt != "delivered" && e.receipt != "read" && e.receipt != "failed") {
            r.fail("'receipt.status' must be delivered, read or failed");
        }
        const json::array* ids = r.array(receipt, "message_ids");
        if (!ids || ids->empty() || ids->size() > kMaxEventsPerBody) {
            r.fail(fmt::format("'receipt.message_ids' must list 1 to {} ids", kMaxEventsPerBody));
        }
        for (const auto& id : *ids) {
            if (!id.is_string() || id.get_string().empty() || id.get_string().size() > kMaxIdBytes) {
                r.fail("'receipt.message_ids' holds something that is not an id");
            }
            e.message_ids.emplace_back(id.get_string());
        }
        e.error = r.string(receipt, "error", 1000);
        if (const json::object* user = r.object(o, "user")) e.user_id = bounded_id(r, *user, "id");
        return e;
    }
    if (type != "message" && type != "start") r.fail("'type' must be message, start or receipt");
    const json::object& user = r.required_object(o, "user");
    only(r, user, {"id", "name", "language"}, "user");
    e.user_id = bounded_id(r, user, "id");
    e.name = r.string(user, "name", 200);
    e.language = language_of(r.string(user, "language", 16));
    e.chat_id = o.contains("chat_id") ? bounded_id(r, o, "chat_id") : e.user_id;
    if (type == "start") {
        e.type = InboundEvent::Type::kStart;
        return e;
    }
    e.type = InboundEvent::Type::kMessage;
    e.message = read_message(r, r.required_object(o, "message"));
    return e;
}

class CustomAdapter final : public Adapter {
public:
    std::string_view kind() const override { return "custom"; }
    std::string default_api_base_url() const override { return {}; }  // the integrator's endpoint is required

    json::object validate_credentials(const json::object& in) const override {
        core::reject_unknown_fields(in, {"secret"});
        std::string secret = internal::required_credential(in, "secret", 512);
        if (secret.size() < kMinSecretBytes) {
            internal::bad_credential("secret", fmt::format("must be at least {} bytes", kMinSecretBytes));
        }
        return json::object{{"secret", secret}};
    }

    AdapterLimits limits() const override {
        AdapterLimits l;
        l.channel_per_second = 100;
        l.chat_per_second = 0;
        l.max_payload_bytes = kMaxIdBytes;
        return l;
    }

    void verify(const ChannelRef& c, const WebhookRequest& r) const override {
        std::string expected = "sha256=" + hmac_sha256_hex(c.credential("secret"), r.body);
        if (!equal_secret(r.header("x-parley-signature"), expected)) {
            throw core::Unauthorized("the X-Parley-Signature header is missing or wrong", "invalid_signature");
        }
    }

    std::vector<InboundEvent> parse(std::string_view body) const override {
        JsonReader r("custom channel");
        json::value v = r.parse(body);
        const json::object& root = r.root(v);
        std::vector<InboundEvent> out;
        if (root.contains("events")) {
            only(r, root, {"events"}, "the body");
            const json::array* events = r.array(root, "events");
            if (!events || events->empty() || events->size() > kMaxEventsPerBody) {
                r.fail(fmt::format("'events' must hold 1 to {} events", kMaxEventsPerBody));
            }
            for (const auto& e : *events) out.push_back(read_event(r, r.item(e, "events")));
        } else {
            out.push_back(read_event(r, root));
        }
        return out;
    }

    Rendered render(const ChannelRef& c, const OutboundContext& to, std::string_view text,
                    const std::vector<scenario::ReplyButton>& buttons, const PayloadOf& payload_of) const override {
        json::array list;
        for (const auto& b : buttons) list.push_back(json::object{{"id", payload_of(b.id)}, {"text", b.text}});
        std::string id = fmt::format("{}:{}", to.dialog_id, to.n);
        json::object body{{"id", id},
                          {"channel_id", c.id},
                          {"dialog_id", to.dialog_id},
                          {"n", to.n},
                          {"chat_id", to.chat_id},
                          {"user_id", to.user_id},
                          {"text", cut_bytes(std::string(text), kMaxOutboundTextBytes)},
                          {"buttons", std::move(list)},
                          {"timestamp", to.now_ms}};
        outbound::Request req = json_post(c.api_base_url, body);
        req.headers.emplace_back("X-Parley-Signature", "sha256=" + hmac_sha256_hex(c.credential("secret"), req.body));
        req.headers.emplace_back("X-Parley-Channel", c.id);
        req.headers.emplace_back("X-Parley-Message-Id", id);
        Rendered out;
        out.requests.push_back(std::move(req));
        return out;
    }

    SendResult classify(const outbound::Response& r) const override {
        SendResult out;
        if (r.error) {
            out.outcome = SendResult::Outcome::kTransient;
            out.error = fmt::format("{}: {}", outbound::error_code_name(r.error->code), r.error->message);
            return out;
        }
        out.error = fmt::format("HTTP {}", r.status);
        if (r.status >= 200 && r.status < 300) {
            out.outcome = SendResult::Outcome::kOk;
            out.error.clear();
            boost::system::error_code ec;
            json::value v = json::parse(r.body, ec);
            if (!ec && v.is_object()) {
                if (auto it = v.get_object().find("message_id"); it != v.get_object().end() && it->value().is_string()) {
                    out.message_id = cut_bytes(std::string(it->value().get_string()), kMaxIdBytes);
                }
            }
        } else if (r.status == 429) {
            std::int64_t s = 0;
            std::string_view h = r.header("retry-after");
            std::from_chars(h.data(), h.data() + h.size(), s);
            out.outcome = SendResult::Outcome::kRetryAfter;
            out.retry_after_ms = std::max<std::int64_t>(s, 1) * 1000;
        } else if (r.status >= 500 || r.status == 408) {
            out.outcome = SendResult::Outcome::kTransient;
        } else {
            out.outcome = SendResult::Outcome::kPermanent;
        }
        return out;
    }
};

}  // namespace

namespace internal {
std::unique_ptr<Adapter> make_custom_adapter() { return std::make_unique<CustomAdapter>(); }
}  // namespace internal

}  // namespace parley::channels

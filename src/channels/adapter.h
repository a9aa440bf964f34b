/// The channel adapter interface: what one messenger kind (Telegram, Viber, WhatsApp, Messenger, Instagram, the
/// custom JSON channel) contributes to the channel runtime. An adapter is pure: it verifies and parses inbound
/// webhooks into one message model (InboundEvent), renders a bot reply into the platform's API requests within its
/// limits, and classifies the platform's answers (ok / retry-after / transient / permanent). All I/O (the inbox,
/// the dispatcher, rate limits, outbound::Client) is the runtime's (ChannelService).
#pragma once

#include <boost/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outbound/outbound.h"
#include "scenario/runtime.h"

namespace parley::channels {

namespace json = boost::json;

/// What an adapter sees of a stored channel (credentials decrypted).
struct ChannelRef {
    std::string id;
    std::string bot_id;
    std::string bot_name;
    std::string kind;
    json::object credentials;
    std::string api_base_url;    ///< without trailing slash
    std::string webhook_secret;  ///< random per channel (Telegram's secret_token)
    std::string webhook_url;     ///< {public_base_url}/hooks/{id}

    /// The credential's string value, "" when absent.
    std::string credential(std::string_view key) const;
};

/// An inbound HTTP request to /hooks/{channel_id}.
struct WebhookRequest {
    std::string method = "POST";                                 ///< GET (verification handshake) or POST
    std::vector<std::pair<std::string, std::string>> headers;   ///< names lower-case
    std::vector<std::pair<std::string, std::string>> query;     ///< decoded
    std::string body;

    std::string_view header(std::string_view lower_name) const;
    std::optional<std::string_view> query_param(std::string_view name) const;
};

/// One inbound event in Parley's message model.
struct InboundEvent {
    enum class Type {
        kMessage,  ///< a client message: text, button press, contact; location/media/unknown types as readable text
        kStart,    ///< the client opened the conversation (Viber conversation_started, subscribed): start the bot
        kReceipt,  ///< a delivery / read / failure report about messages Parley sent
        kIgnored,  ///< stored (so a redelivery stays a duplicate) but not acted upon
    };
    Type type = Type::kIgnored;
    std::string key;             ///< idempotency key, unique within the channel (platform event / message id)
    std::int64_t sequence = -1;  ///< Telegram update_id (polling offset); -1 elsewhere
    std::int64_t timestamp_ms = 0;
    std::string user_id;  ///< the platform's id of the client
    std::string chat_id;  ///< where replies go (usually user_id)
    std::string name;
    std::string language;  ///< "" or a 2–3 letter code
    scenario::ClientMessage message;
    std::string ack;  ///< Telegram callback_query_id to answer

    // kReceipt
    std::string receipt;                   ///< delivered | read | failed
    std::vector<std::string> message_ids;  ///< platform ids of the messages concerned
    std::int64_t watermark_ms = 0;         ///< Messenger: every message to chat_id sent at or before this
    std::string error;                     ///< failed: the platform's reason

    std::string email;    ///< the client's e-mail address (kind email): their client card is found by it
    json::object thread;  ///< kind-specific conversation state kept for replies (email: subject, Message-IDs)

    json::object to_json() const;
    /// Reads what to_json() wrote; throws core::BadRequest when it is not such an object.
    static InboundEvent from_json(const json::value& value);
};

/// The recipient and context of one outbound message.
struct OutboundContext {
    std::string chat_id;
    std::string user_id;
    std::string dialog_id;
    std::int64_t n = 0;
    std::int64_t last_inbound_ms = 0;  ///< the client's last message (WhatsApp's 24-hour window)
    std::int64_t now_ms = 0;
};

/// A bot message rendered into platform API requests, sent in order. `refused` non-empty: the message cannot be
/// sent at all (e.g. WhatsApp outside the 24-hour window without a template) and fails permanently unsent.
struct Rendered {
    std::vector<outbound::Request> requests;
    std::string refused;
};

/// The platform's answer to one request.
struct SendResult {
    enum class Outcome { kOk, kRetryAfter, kTransient, kPermanent };
    Outcome outcome = Outcome::kPermanent;
    std::int64_t retry_after_ms = 0;  ///< kRetryAfter
    bool whole_channel = true;        ///< kRetryAfter: pauses the channel (false: only this chat)
    std::string error;                ///< why, for logs and last_error (credentials are redacted by the runtime)
    std::string message_id;           ///< kOk: the platform's id of the message sent, "" when none
};

/// Rates and sizes of a kind (documented in README "Limits").
struct AdapterLimits {
    double channel_per_second = 30;  ///< token bucket per channel (one platform bot account)
    double chat_per_second = 0;      ///< token bucket per chat; 0 = none
    double chat_burst = 1;           ///< its capacity
    std::size_t max_payload_bytes = 64;  ///< a button id longer than this is sent as "~" + 128-bit hash
};

/// Maps a button id to the payload sent to the platform (the runtime hashes ids over max_payload_bytes).
using PayloadOf = std::function<std::string(const std::string& button_id)>;

/// What the runtime gives a Transport (ChannelOptions).
struct TransportContext {
    std::string attachments_dir;          ///< "" → inbound attachments are listed in the text but not kept
    outbound::AllowlistSource allowlist;  ///< the SSRF guard's allow-list for the transport's own connections
    std::int64_t timeout_ms = 60'000;     ///< one transfer
    const std::atomic<bool>* cancelled = nullptr;  ///< set → transfers in progress abort (shutdown)
};

/// What one poll brought.
struct PollResult {
    std::vector<InboundEvent> events;
    std::string cursor;  ///< persisted once `events` are stored; handed to the next poll ("" at first)
    std::string error;   ///< non-empty: the poll failed (shown as the channel's last_error)
};

/// A kind that does not speak HTTP (email: IMAP and SMTP). Its calls block; the runtime runs them on its small
/// transport thread pool, never on an I/O thread. Implementations are stateless and thread-safe.
class Transport {
public:
    virtual ~Transport() = default;
    /// Pause between two polls of the channel.
    virtual std::int64_t poll_interval_ms(const ChannelRef& channel) const = 0;
    /// Fetches what arrived after `cursor`. Events carry idempotency keys, so a re-served item is a duplicate.
    virtual PollResult poll(const ChannelRef& channel, const std::string& cursor,
                            const TransportContext& context) const = 0;
    /// Sends one bot message; `thread` is InboundEvent::thread of the client's latest message ({} when none).
    /// kOk carries the platform's message id.
    virtual SendResult send(const ChannelRef& channel, const OutboundContext& to, std::string_view text,
                            const std::vector<scenario::ReplyButton>& buttons, const json::object& thread,
                            const TransportContext& context) const = 0;
};

/// One messenger kind. Implementations are stateless and thread-safe.
class Adapter {
public:
    virtual ~Adapter() = default;
    virtual std::string_view kind() const = 0;
    /// The platform's public API, used when a channel is saved without api_base_url ("" → api_base_url required).
    virtual std::string default_api_base_url() const = 0;
    /// Checks credentials (core::BadRequest naming `credentials.KEY`); returns them normalised.
    virtual json::object validate_credentials(const json::object& credentials) const = 0;
    virtual AdapterLimits limits() const = 0;

    /// The call that registers the webhook when the channel is saved (Telegram setWebhook / deleteWebhook in
    /// polling mode, Viber set_webhook), or none.
    virtual std::optional<outbound::Request> connect(const ChannelRef& channel) const;
    /// The call that unregisters it when the channel is deleted (best effort), or none.
    virtual std::optional<outbound::Request> disconnect(const ChannelRef& channel) const;

    /// GET /hooks/{id}: the verification handshake (Meta's hub.challenge). Returns the body to answer with 200.
    /// Throws core::Forbidden for a wrong verify token, core::NotFound when the kind has no handshake.
    virtual std::string handshake(const ChannelRef& channel, const WebhookRequest& request) const;
    /// POST /hooks/{id}: throws core::Unauthorized unless the request is signed by the platform.
    virtual void verify(const ChannelRef& channel, const WebhookRequest& request) const = 0;
    /// Parses a verified body into events (one body may carry several). Throws core::BadRequest when malformed.
    virtual std::vector<InboundEvent> parse(std::string_view body) const = 0;
    /// A call to make once an event is processed (Telegram answerCallbackQuery), or none.
    virtual std::optional<outbound::Request> acknowledge(const ChannelRef& channel, const InboundEvent& event) const;

    /// Renders one bot message (text and buttons) into requests within the platform's limits.
    virtual Rendered render(const ChannelRef& channel, const OutboundContext& to, std::string_view text,
                            const std::vector<scenario::ReplyButton>& buttons, const PayloadOf& payload_of) const = 0;
    /// Classifies the answer to a request made by connect() or render().
    virtual SendResult classify(const outbound::Response& response) const = 0;

    /// Non-HTTP kinds (email): the transport that polls and sends instead of webhooks and render(); null for
    /// HTTP kinds.
    virtual const Transport* transport() const { return nullptr; }
};

/// The adapter of `kind`, or null (email, widget, sms and preview have none here).
const Adapter* find_adapter(std::string_view kind);
/// Every kind with an adapter: telegram viber whatsapp messenger instagram custom email.
std::vector<std::string> adapter_kinds();

// --- helpers shared by the adapters (pure) -----------------------------------------------------------------------

/// Splits `text` into parts of at most `max_chars` Unicode characters, preferring a line break, then a space, in
/// the last quarter of a part; never splits a UTF-8 sequence. Empty text gives one empty part.
std::vector<std::string> split_text(std::string_view text, std::size_t max_chars);
/// At most `max_bytes` bytes, cut before a UTF-8 sequence that would not fit.
std::string cut_bytes(std::string text, std::size_t max_bytes);
/// At most `max_chars` Unicode characters.
std::string cut_chars(std::string_view text, std::size_t max_chars);
std::size_t count_chars(std::string_view text);
/// Lower-case hex HMAC-SHA256 of `body` keyed with `key`.
std::string hmac_sha256_hex(std::string_view key, std::string_view body);
/// Constant-time equality (case-insensitive for hex digits is NOT applied: compare lower-case hex).
bool equal_secret(std::string_view a, std::string_view b);
/// "" or the 2–3 letter base of a language tag ("pt-BR" → "pt").
std::string language_of(std::string_view tag);
/// A JSON POST request with the usual limits (15 s, no redirects, 8 MiB answer).
outbound::Request json_post(std::string url, const json::value& body, std::int64_t timeout_ms = 15'000);

}  // namespace parley::channels

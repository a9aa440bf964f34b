/// Operator-panel webhooks: subscriptions (URL, event types, a server-generated signing secret kept encrypted),
/// durable deliveries of operator-panel events (dialog created, queued, assigned, transferred, closed, message)
/// as HMAC-SHA256-signed POSTs through the outbound client, retried with exponential backoff and jitter, and the
/// delivery log (list, redeliver, ping).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/object.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "auth/secret_key.h"
#include "core/clock.h"
#include "core/principal.h"
#include "store/store.h"

namespace parley::outbound {
class Client;
}
namespace parley::http {
class Router;
}

namespace parley::webhooks {

// --- limits (README "Limits"; each has a test) -------------------------------------------------------------------
inline constexpr std::size_t kMaxSubscriptions = 50;          ///< per instance
inline constexpr std::size_t kMaxUrlBytes = 2048;
inline constexpr std::size_t kMaxDescriptionBytes = 500;
inline constexpr std::size_t kMaxEventTypes = 16;              ///< entries of `events`
inline constexpr std::size_t kMaxPayloadBytes = 256 * 1024;    ///< a larger body is sent with `data` truncated
inline constexpr int kMaxAttemptsLimit = 20;                    ///< WebhookOptions::max_attempts at most
inline constexpr std::size_t kMaxQueuedEvents = 10'000;        ///< events waiting in memory to be persisted
inline constexpr std::int64_t kMaxPendingPerSubscription = 10'000;  ///< backlog beyond which new events are dropped
inline constexpr std::size_t kMaxResponseBytesKept = 1024;     ///< of the receiver's answer, in the delivery log
inline constexpr std::int64_t kMaxRetryAfterMs = 6 * 3'600'000;  ///< a receiver's Retry-After is honoured up to 6 h
inline constexpr int kDeliveredRetentionDays = 7;               ///< delivered rows are pruned after this
inline constexpr int kFailedRetentionDays = 30;                 ///< failed (dead) rows are pruned after this

/// The webhook event types a subscription may name (besides "*"), in documentation order; "ping" is sent only
/// by the ping route and reaches the subscription whatever its `events`.
const std::vector<std::string_view>& event_types();

/// One webhook event derived from one EventHub event.
struct MappedEvent {
    std::string type;           ///< "dialog.created", ...
    boost::json::object data;   ///< the payload's `data`
    std::string entity;         ///< dialog id: duplicates are suppressed per dialog
    std::string key;            ///< the hub event's type and body without its id (same for all events of one)
};

/// Maps an EventHub event (`hub_type`, its full JSON text `{"id", "type", ...body}`) to webhook events (none when
/// the type is not one webhooks carry, or the text is not a JSON object). Pure and thread-safe; the mapping table
/// is in the README. Never throws.
std::vector<MappedEvent> map_event(std::string_view hub_type, std::string_view text);

/// Whether an EventHub type can map to anything (the listener's cheap pre-filter).
bool is_source_type(std::string_view hub_type);

/// `sha256=` + hex HMAC-SHA256 keyed with `secret` over `timestamp + "." + body` (the X-Parley-Signature value).
std::string signature(std::string_view secret, std::string_view timestamp, std::string_view body);

/// Parses a Retry-After value (delta-seconds, or an IMF-fixdate such as "Wed, 21 Oct 2015 07:28:00 GMT") into a
/// delay in ms from `now_ms`; nullopt when malformed. Never negative. Never throws.
std::optional<std::int64_t> parse_retry_after(std::string_view value, std::int64_t now_ms);

/// Tunables. Defaults are production values; tests inject a short schedule and no jitter.
struct WebhookOptions {
    /// Wait after the k-th failed attempt (1-based) is backoff_ms[min(k, size) - 1], times a random factor in
    /// [1 - jitter, 1 + jitter]. Default: 10 s, 30 s, 2 min, 10 min, 1 h, 3 h, 6 h.
    std::vector<std::int64_t> backoff_ms{10'000, 30'000, 120'000, 600'000, 3'600'000, 3 * 3'600'000, 6 * 3'600'000};
    double jitter = 0.2;
    int max_attempts = 8;               ///< then the delivery is `failed` (1..kMaxAttemptsLimit)
    std::int64_t timeout_ms = 10'000;   ///< per attempt
    std::size_t max_in_flight = 64;     ///< requests at once
    std::size_t claim_batch = 256;      ///< deliveries claimed per dispatcher round
    std::int64_t idle_poll_ms = 1'000;  ///< the dispatcher looks for due deliveries at least this often
    std::int64_t prune_every_ms = 3'600'000;
};

/// A subscription as the API shows it (never the secret).
struct Subscription {
    std::string id;
    std::string url;
    std::vector<std::string> events;
    bool enabled = true;
    std::string description;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    std::int64_t secret_rotated_at = 0;
    std::string created_by;

    boost::json::object to_json() const;
};

/// What a create or PATCH names (absent fields keep their value on PATCH).
struct SubscriptionInput {
    std::optional<std::string> url;
    std::optional<std::vector<std::string>> events;
    std::optional<bool> enabled;
    std::optional<std::string> description;

    /// Validates a request body (BadRequest for unknown fields and wrong types, 422 `invalid_url` /
    /// `unknown_event_type`, 413 for over-long fields).
    static SubscriptionInput from_json(const boost::json::object& body, bool creating);
};

/// One delivery of one event to one subscription.
struct Delivery {
    std::string id;
    std::string subscription_id;
    std::string event_id;
    std::string event_type;
    std::string state;  ///< pending | delivered | failed
    int attempts = 0;
    std::int64_t next_attempt_at = 0;
    std::optional<int> last_status;
    std::string last_error;
    std::string last_response;
    std::int64_t last_attempt_at = 0;
    std::int64_t delivered_at = 0;
    std::int64_t created_at = 0;
    std::string payload;  ///< the exact body sent

    boost::json::object to_json(bool with_payload) const;
};

/// Counters (bench, /metrics).
struct WebhookStats {
    std::uint64_t events_seen = 0;       ///< mapped webhook events taken from the hub
    std::uint64_t events_dropped = 0;    ///< the in-memory queue was full, or a backlog was full
    std::uint64_t deliveries_created = 0;
    std::uint64_t delivered = 0;
    std::uint64_t attempts_failed = 0;   ///< non-2xx or transport error (retried or dead)
    std::uint64_t dead = 0;
};

std::vector<store::Migration> migrations();

/// The webhooks service.
///
/// Threads: on_event() runs on whichever thread publishes to the EventHub; it only appends to an in-memory queue
/// (mutex) and posts a wake-up. Everything else of the delivery path runs as coroutines on one strand of the
/// executor given to start(): the ingest worker (persists deliveries with store::co_write), the dispatcher
/// (claims due deliveries, sends through outbound::Client, records outcomes) and pruning. The API methods run on
/// the HTTP workers. No thread ever blocks on the network or an fsync.
/// Ownership: store, clock and client must outlive the service; call stop() then wait_stopped() before the
/// io_context stops (pending sends are cancelled by the client's shutdown and retried after a restart).
class WebhookService {
public:
    WebhookService(store::Store& store, const core::Clock& clock, outbound::Client& client, auth::SecretKey key,
                   WebhookOptions options = {});
    ~WebhookService();
    WebhookService(const WebhookService&) = delete;
    WebhookService& operator=(const WebhookService&) = delete;

    /// The EventHub listener body: quick, never throws, never blocks on I/O.
    void on_event(std::uint64_t hub_id, const std::string& type, const std::string& text);

    void start(boost::asio::any_io_executor executor);
    void stop();
    void wait_stopped();
    /// Makes the dispatcher look for due deliveries now (tests after moving a FakeClock; the API after ping).
    void wake();

    // --- API (HTTP worker threads) ---
    /// Creates a subscription; returns it with its secret (the only time it is shown, apart from rotation).
    boost::asio::awaitable<std::pair<Subscription, std::string>> create(const core::Principal& who,
                                                                        SubscriptionInput input);
    std::vector<Subscription> list(std::optional<std::string> cursor, std::size_t limit);
    Subscription get(const std::string& id);
    boost::asio::awaitable<Subscription> update(const core::Principal& who, std::string id, SubscriptionInput input);
    boost::asio::awaitable<void> remove(const core::Principal& who, std::string id);
    /// A new secret; the old one stops signing at once.
    boost::asio::awaitable<std::pair<Subscription, std::string>> rotate_secret(const core::Principal& who,
                                                                               std::string id);
    /// Queues a "ping" delivery (sent even to a disabled subscription).
    boost::asio::awaitable<Delivery> ping(const core::Principal& who, std::string id);
    /// Newest first; `state` filters; cursor is the last id of the previous page.
    std::vector<Delivery> deliveries(const std::string& subscription_id, std::optional<std::string> state,
                                     std::optional<std::string> cursor, std::size_t limit);
    Delivery delivery(const std::string& subscription_id, const std::string& delivery_id);
    /// Sends a delivered or failed delivery again (same delivery id, attempts start over). 409 while pending.
    boost::asio::awaitable<Delivery> redeliver(const core::Principal& who, std::string subscription_id,
                                               std::string delivery_id);

    /// Deletes delivered rows older than kDeliveredRetentionDays and failed ones older than kFailedRetentionDays
    /// (at most 1000 per call); returns how many. The dispatcher calls it every prune_every_ms.
    boost::asio::awaitable<std::size_t> prune();

    WebhookStats stats() const;
    const WebhookOptions& options() const { return options_; }

private:
    struct Queued {
        std::uint64_t hub_id;
        std::string type;
        std::string text;
    };
    struct Claimed;

    boost::asio::awaitable<void> ingest_loop();
    boost::asio::awaitable<void> ingest(std::vector<Queued> batch);
    boost::asio::awaitable<void> dispatch_loop();
    boost::asio::awaitable<void> deliver(Claimed claimed);
    std::int64_t backoff_after(int attempts);
    void spawn(boost::asio::awaitable<void> task);
    std::string seal_secret(std::string_view secret) const;
    std::string open_secret(std::string_view blob) const;

    store::Store& store_;
    const core::Clock& clock_;
    outbound::Client& client_;
    auth::SecretKey key_;
    WebhookOptions options_;

    std::mutex mutex_;  // guards queue_, running_, the strand handles
    std::condition_variable idle_;
    std::deque<Queued> queue_;
    std::size_t running_ = 0;
    std::optional<boost::asio::strand<boost::asio::any_io_executor>> strand_;
    std::optional<boost::asio::steady_timer> ingest_timer_;    // strand only
    std::optional<boost::asio::steady_timer> dispatch_timer_;  // strand only
    std::atomic<bool> stopping_{false};
    std::atomic<bool> ingest_wake_{false};
    std::atomic<bool> dispatch_wake_{false};
    std::size_t in_flight_ = 0;  // strand only

    // Duplicate suppression (strand only): the last event key per dialog. The operator module publishes one
    // change to several audiences (the holder, then supervisors), each a separate hub event with the same body.
    std::unordered_map<std::string, std::string> last_key_;

    std::atomic<std::uint64_t> events_seen_{0}, events_dropped_{0}, deliveries_created_{0}, delivered_{0},
        attempts_failed_{0}, dead_{0};
};

/// Registers the routes under /api/v1/operator/webhooks (README "Routes").
void register_routes(http::Router& router, WebhookService& service);

}  // namespace parley::webhooks

/// Channels: the registry of a bot's channel connections (kind, encrypted credentials, API base URL, status)
/// and the channel runtime that connects them to the message pipeline — inbound webhooks and long polling into a
/// persisted inbox, bot turns through bots::DialogService, and the dispatcher that sends the outbox through the
/// channel's API with retries, backoff and rate limits. Each kind plugs in through an Adapter (adapter.h):
/// telegram, viber, whatsapp, messenger, instagram and custom have one; email, widget and sms channels are stored
/// and listed here and served by their own modules.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "auth/secret_key.h"
#include "channels/adapter.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "bots/keyed_lock.h"
#include "core/clock.h"
#include "outbound/outbound.h"
#include "store/store.h"

namespace parley::http {
class Router;
}

namespace parley::channels {

namespace json = boost::json;

/// Limits of the registry and the runtime.
inline constexpr std::size_t kMaxCredentialKeys = 32;
inline constexpr std::size_t kMaxCredentialValueBytes = 4096;
inline constexpr std::size_t kMaxApiBaseUrlBytes = 2048;
inline constexpr std::size_t kMaxWebhookBodyBytes = 1024 * 1024;  ///< larger updates answer 413, nothing stored
inline constexpr int kMaxDeliveryAttempts = 5;                    ///< then the message is marked `dead`
inline constexpr std::size_t kMaxDispatchInFlight = 64;           ///< messages being sent at once (all channels)

/// The kinds a channel may have (CONTRACT.md "Channels").
const std::vector<std::string>& channel_kinds();

/// A stored channel as the API shows it: credentials never leave the service, only which keys are set.
struct Channel {
    std::string id;
    std::string bot_id;
    std::string kind;
    std::vector<std::string> credential_keys;  ///< sorted
    std::string mode;                          ///< telegram: webhook | polling; "" for other kinds
    bool has_adapter = false;                  ///< whether this module receives and sends for the kind
    std::string api_base_url;
    std::string status;  ///< active | error | disabled
    std::string last_error;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    json::object to_json() const;
};

/// POST body.
struct NewChannel {
    std::string kind;
    json::object credentials;
    std::optional<std::string> api_base_url;  ///< default: the platform's public API (telegram: api.telegram.org)
};

/// PATCH body: absent fields stay. `credentials` replaces the whole set; `status` may be active or disabled.
struct ChannelPatch {
    std::optional<json::object> credentials;
    std::optional<std::string> api_base_url;
    std::optional<std::string> status;
};

struct ChannelOptions {
    std::string public_base_url;                 ///< core::Config::base_url(): webhooks are {this}/hooks/{id}
    std::int64_t poll_timeout_s = 25;            ///< getUpdates long-poll `timeout`
    std::int64_t poll_error_pause_ms = 2'000;    ///< pause after a failed getUpdates
    std::int64_t dispatch_idle_ms = 100;         ///< dispatcher pause when nothing is due
    std::size_t dispatch_batch = 200;            ///< pending deliveries read per round
    double bot_messages_per_second = 0;          ///< per-channel token bucket; 0: the kind's (Telegram 30/s)
    double chat_messages_per_second = -1;        ///< per-chat bucket; < 0: the kind's (Telegram 1/s), 0: none
    std::size_t max_in_flight = kMaxDispatchInFlight;
    bool process_inbound = true;                 ///< false: store and acknowledge only (ingest benchmarks)
    std::int64_t backoff_base_ms = 1'000;        ///< 5xx / network: base * 2^(attempt-1), capped at backoff_max_ms
    std::int64_t backoff_max_ms = 5 * 60'000;
    std::int64_t request_timeout_ms = 15'000;    ///< every API call except getUpdates (timeout + 10 s)
    // Non-HTTP kinds (email: IMAP/SMTP through libcurl easy handles, blocking): run on a small pool of their own.
    std::size_t transport_threads = 2;           ///< polls and sends of such kinds at once
    std::int64_t transport_timeout_ms = 60'000;  ///< one IMAP/SMTP transfer, login included
    std::string email_attachments_dir;           ///< inbound attachments kept here ("" → listed, not kept)
    outbound::AllowlistSource transport_allowlist;  ///< SSRF guard of IMAP/SMTP connections (outbound_allowlist)
    std::int64_t transport_poll_interval_ms = 0;    ///< > 0 overrides every channel's poll_interval (tests)
};

/// Migrations of module `channels` (channels, channel_inbox, channel_identities, channel_deliveries).
std::vector<store::Migration> migrations();

/// The registry and the runtime. Thread-safety: every method may be called from any thread. Background loops
/// (one dispatcher, one getUpdates loop per polling channel, inbox processing) run as coroutines on the executor
/// given to start(); none blocks a thread: HTTP goes through outbound::Client, writes through store::co_write.
/// Ownership: references to store, clock, bots, dialogs and client must outlive the service; call stop() and
/// wait_stopped() before destroying it.
class ChannelService {
public:
    ChannelService(store::Store& store, const core::Clock& clock, bots::BotService& bots,
                   bots::DialogService& dialogs, outbound::Client& client, const auth::SecretKey& key,
                   ChannelOptions options);
    ~ChannelService();

    // --- registry ---------------------------------------------------------------------------------------------
    /// Validates (400), stores, then connects the channel (telegram webhook: setWebhook; polling: deleteWebhook
    /// and starts a getUpdates loop). A failed connection leaves the channel with status `error` and last_error.
    /// NotFound `bot_not_found`.
    boost::asio::awaitable<Channel> create(std::string bot_id, NewChannel channel);
    std::vector<Channel> list(std::string_view bot_id, std::optional<std::string> cursor, std::size_t limit,
                              std::optional<std::string>* next_cursor) const;
    /// NotFound `channel_not_found` (also when it belongs to another bot).
    Channel get(std::string_view bot_id, std::string_view id) const;
    /// The channel with this id whatever its bot (for adapters living in other modules, e.g. the widget).
    std::optional<Channel> find(std::string_view id) const;
    /// Every channel of this kind that is not disabled, in id order.
    std::vector<Channel> list_kind(std::string_view kind) const;
    boost::asio::awaitable<Channel> update(std::string bot_id, std::string id, ChannelPatch patch);
    /// Deletes the channel (telegram webhook: deleteWebhook, best effort), its inbox, identities and delivery
    /// state. Its dialogs stay as history.
    boost::asio::awaitable<void> remove(std::string bot_id, std::string id);

    // --- inbound ----------------------------------------------------------------------------------------------
    /// POST /hooks/{channel_id}: verifies the platform's signature, persists every event of the body into the
    /// inbox (one transaction), then processes them in the background. Returns the HTTP status to answer (200:
    /// stored, duplicate or nothing to store). Throws Unauthorized (bad signature / secret, nothing stored),
    /// NotFound (unknown or disabled channel, or a kind without adapter), BadRequest (malformed), TooLarge.
    boost::asio::awaitable<int> receive_webhook(std::string channel_id, WebhookRequest request);
    /// GET /hooks/{channel_id}: the platform's verification handshake (WhatsApp, Messenger, Instagram); returns
    /// the text to answer. Throws Forbidden (wrong verify token), BadRequest, NotFound.
    std::string verify_webhook(std::string_view channel_id, const WebhookRequest& request) const;

    // --- delivery reports and dead letters --------------------------------------------------------------------
    /// One message sent to the platform and what the platform reported about it.
    struct Receipt {
        std::string message_id;  ///< the platform's id
        std::string dialog_id;   ///< "" when only a receipt arrived (the send is not recorded yet)
        std::int64_t n = 0;
        std::string chat_id;
        std::string status;  ///< sent | delivered | read | failed
        std::int64_t sent_at = 0, delivered_at = 0, read_at = 0, failed_at = 0;
        std::string error;
        std::int64_t seq = 0;  ///< cursor
        json::object to_json() const;
    };
    /// Receipts of a channel, oldest first, optionally of one dialog. NotFound `channel_not_found`.
    std::vector<Receipt> receipts(std::string_view bot_id, std::string_view channel_id,
                                  std::optional<std::string> dialog_id, std::int64_t after, std::size_t limit,
                                  std::optional<std::int64_t>* next) const;

    /// A message the dispatcher gave up on: `dead` (retries exhausted) or `failed` (refused by the platform).
    struct DeadLetter {
        std::string id;
        std::string channel_id;
        std::string dialog_id;
        std::int64_t n = 0;
        std::string outcome;  ///< dead | failed
        std::int64_t attempts = 0;
        std::string last_error;
        std::string text;  ///< the message's text
        std::int64_t created_at = 0;
        json::object to_json() const;
    };
    std::vector<DeadLetter> dead_letters(std::string_view bot_id, std::string_view channel_id,
                                         std::optional<std::string> cursor, std::size_t limit,
                                         std::optional<std::string>* next_cursor) const;
    /// Puts the message back into the outbox (delivery `pending`, attempts reset) and deletes the letter.
    /// NotFound `dead_letter_not_found`.
    boost::asio::awaitable<DeadLetter> retry_dead_letter(std::string bot_id, std::string channel_id,
                                                         std::string letter_id);
    /// Deletes the letter; the message stays dead/failed. NotFound `dead_letter_not_found`.
    boost::asio::awaitable<void> discard_dead_letter(std::string bot_id, std::string channel_id,
                                                     std::string letter_id);

    // --- lifecycle --------------------------------------------------------------------------------------------
    /// Starts the dispatcher, the polling loops of polling channels, and reprocesses inbox rows left unprocessed
    /// by a crash. Call once.
    void start(boost::asio::any_io_executor executor);
    /// Asks every loop to end (each ends within ~100 ms, a getUpdates in flight when outbound::Client shuts down
    /// or its long poll returns). Idempotent.
    void stop();
    /// Blocks the calling (non-worker) thread until every background coroutine has ended; the executor must still
    /// run (call before io_context::stop()). The destructor waits at most 5 s.
    void wait_stopped();

    /// A stored inbound e-mail attachment (GET .../channels/{id}/attachments/{name}). NotFound
    /// `attachment_not_found`.
    struct AttachmentFile {
        std::string path;
        std::string content_type;
        std::string filename;
    };
    AttachmentFile attachment(std::string_view bot_id, std::string_view channel_id, std::string_view name) const;

    /// Counters for tests and /metrics.
    struct Stats {
        std::uint64_t received = 0;    ///< inbox rows stored
        std::uint64_t duplicates = 0;  ///< redelivered updates ignored
        std::uint64_t processed = 0;   ///< inbox rows processed (done or failed)
        std::uint64_t sent = 0;        ///< outbox messages sent
        std::uint64_t retried = 0;     ///< send attempts that will be retried (429, 5xx, network)
        std::uint64_t dead = 0;
        std::uint64_t failed = 0;      ///< refused by the platform (permanent)
        std::uint64_t receipts = 0;    ///< delivery / read / failure reports applied
    };
    Stats stats() const;

private:
    struct Stored;  // a channel row with decrypted credentials
    struct Bucket {
        double tokens = 0;
        std::int64_t last_ms = 0;
        std::int64_t paused_until_ms = 0;
    };
    struct Identity {
        std::string user;
        std::string chat;
        std::int64_t last_inbound_at = 0;
    };

    std::optional<Stored> load(std::string_view id) const;
    /// load() through a small cache (webhooks): entries live until the registry changes or for 5 s.
    std::shared_ptr<const Stored> load_cached(const std::string& id) const;
    std::vector<Stored> load_active(std::string_view kind) const;
    Stored load_owned(std::string_view bot_id, std::string_view id) const;  // NotFound channel_not_found
    ChannelRef ref(const Stored& channel) const;
    std::string redact(const Stored& channel, std::string text) const;
    boost::asio::awaitable<void> connect(Stored channel);
    boost::asio::awaitable<void> set_status(std::string id, std::string status, std::string error);
    boost::asio::awaitable<outbound::Response> send(outbound::Request request);
    boost::asio::awaitable<outbound::Response> call(const Stored& channel, std::string method, json::object args,
                                                    std::int64_t timeout_ms);
    boost::asio::awaitable<std::vector<std::int64_t>> store_events(const std::string& channel_id,
                                                                   const std::vector<InboundEvent>& events);
    void spawn(boost::asio::any_io_executor executor, boost::asio::awaitable<void> task);
    boost::asio::awaitable<void> process_all(std::string channel_id, std::vector<std::int64_t> update_ids);
    boost::asio::awaitable<void> process(std::string channel_id, std::int64_t update_id);
    boost::asio::awaitable<std::string> process_event(const Stored& channel, const InboundEvent& event);
    boost::asio::awaitable<void> apply_receipt(const Stored& channel, const InboundEvent& event);
    boost::asio::awaitable<void> recover_inbox();
    boost::asio::awaitable<void> poll_loop(std::string channel_id);
    void ensure_polling(const std::string& channel_id);
    // Transport kinds (email): poll loop and sends on transport_pool_.
    TransportContext transport_context() const;
    boost::asio::awaitable<void> transport_poll_loop(std::string channel_id);
    void ensure_transport_polling(const std::string& channel_id);
    boost::asio::awaitable<SendResult> transport_send(const Stored& channel, const OutboundContext& to,
                                                      const bots::DialogService::Delivery& delivery);
    boost::asio::awaitable<void> dispatch_loop();
    boost::asio::awaitable<void> deliver(Stored channel, bots::DialogService::Delivery delivery,
                                         std::optional<Identity> identity);
    boost::asio::awaitable<bool> deliver_parts(const Stored& channel, const bots::DialogService::Delivery& delivery,
                                               const Identity& identity);
    boost::asio::awaitable<void> finish(const Stored& channel, const bots::DialogService::Delivery& delivery,
                                        std::string outcome, std::string error, std::int64_t attempts);
    boost::asio::awaitable<void> record_sent(const Stored& channel, const bots::DialogService::Delivery& delivery,
                                             const std::string& chat_id, std::string message_id, std::size_t part);
    boost::asio::awaitable<void> sleep_ms(std::int64_t ms);
    void wake_dispatcher();
    /// Takes a token from the channel's and the chat's buckets when both have one; else returns the ms to wait
    /// (and takes nothing).
    std::int64_t try_take(const Stored& channel, const std::string& chat_key);
    boost::asio::awaitable<void> take_tokens(const Stored& channel, const std::string& chat_key);
    void pause(const Stored& channel, const std::string& chat_key, bool whole_channel, std::int64_t until_ms);
    std::string callback_data(const std::string& button_id, std::size_t max_bytes) const;
    std::string resolve_callback(const std::string& dialog_id, const std::string& data, std::size_t max_bytes) const;

    store::Store& store_;
    const core::Clock& clock_;
    bots::BotService& bots_;
    bots::DialogService& dialogs_;
    outbound::Client& client_;
    auth::SecretKey key_;
    ChannelOptions options_;
    bots::KeyedLock user_locks_;  ///< one client's updates are processed one after another, in arrival order

    mutable std::mutex mutex_;
    std::optional<boost::asio::any_io_executor> executor_;  ///< set by start()
    std::optional<boost::asio::strand<boost::asio::any_io_executor>> dispatch_strand_;  ///< the dispatcher's
    std::optional<boost::asio::steady_timer> dispatch_timer_;  ///< used on dispatch_strand_ only
    std::atomic<bool> dispatch_wake_{false};
    std::atomic<std::uint64_t> registry_generation_{0};  ///< bumped by create/update/remove/set_status
    struct Cached {
        std::shared_ptr<const Stored> channel;  ///< null: no such channel
        std::uint64_t generation = 0;
        std::int64_t loaded_at = 0;
    };
    mutable std::map<std::string, Cached> cache_;  ///< guarded by mutex_
    std::map<std::string, bool> polling_;                ///< channel id → a getUpdates loop runs
    std::map<std::string, Bucket> buckets_;              ///< channel id → token bucket
    std::map<std::string, Bucket> chat_buckets_;         ///< channel id + "\n" + chat id → token bucket
    std::set<std::string> in_flight_;                    ///< dialogs with a delivery being sent
    std::condition_variable idle_;
    std::size_t running_ = 0;  ///< background coroutines alive
    std::atomic<bool> stopping_{false};
    Stats stats_;
    std::unique_ptr<boost::asio::thread_pool> transport_pool_;  ///< blocking IMAP/SMTP transfers
};

void register_routes(http::Router& router, ChannelService& channels);

}  // namespace parley::channels

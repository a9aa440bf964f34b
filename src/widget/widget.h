/// The website widget channel: per-channel widget settings (colours, texts, position, language, allowed
/// domains), anonymous visitors identified by a server-issued token, the public WebSocket that carries a
/// visitor's dialog (history, live messages, client frames), file uploads, and the dispatcher that pushes bot and
/// operator messages of widget dialogs to connected visitors. The browser side is web/widget/widget.js, served
/// by this module at GET /widget.js.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actions/actions.h"
#include "auth/secret_key.h"
#include "bots/dialogs.h"
#include "bots/keyed_lock.h"
#include "core/clock.h"
#include "store/store.h"
#include "widget/frame.h"

namespace parley::events {
class EventHub;
}
namespace parley::http {
class Router;
class WebSocketSession;
struct Request;
}  // namespace parley::http

namespace parley::widget {

namespace json = boost::json;

// --- limits (README "Limits") ---------------------------------------------------------------------------------
inline constexpr std::size_t kMaxAllowedDomains = 50;
inline constexpr std::size_t kMaxDomainBytes = 253;
inline constexpr std::size_t kMaxTitleBytes = 100;
inline constexpr std::size_t kMaxGreetingBytes = 500;
inline constexpr std::size_t kMaxPlaceholderBytes = 100;
inline constexpr std::size_t kMaxUrlBytes = 2048;
inline constexpr std::int64_t kMaxOffsetPx = 500;
inline constexpr std::size_t kMaxSettingsBytes = 16 * 1024;  ///< PUT body
inline constexpr std::size_t kHistoryPage = 200;             ///< messages per history frame
inline constexpr std::size_t kMaxHistoryMessages = 2000;     ///< most messages sent on one connect
inline constexpr std::size_t kMaxUploadBytes = 5 * 1024 * 1024;
inline constexpr std::size_t kMaxFileNameBytes = 200;

/// The widget's look and behaviour for one channel. Defaults apply to a channel never configured.
struct WidgetSettings {
    std::string title = "Chat with us";
    std::string greeting = "Hi! How can we help you?";
    std::string placeholder = "Type a message...";
    std::string avatar_url;  ///< "" or an http(s) URL
    std::map<std::string, std::string> colors = default_colors();
    std::string side = "right";  ///< left | right
    std::int64_t offset_x = 20;  ///< px from the side edge
    std::int64_t offset_y = 20;  ///< px from the bottom
    std::string language;        ///< "" = the browser's; else a client language code for new visitors
    std::vector<std::string> allowed_domains;  ///< "" list = any site; "example.com" or "*.example.com"
    bool open_on_load = false;

    static std::map<std::string, std::string> default_colors();
    /// The colour keys a document may set.
    static const std::vector<std::string>& color_keys();

    /// Parses a PUT body: every field optional (absent = default), unknown fields, bad colours (#rgb / #rrggbb),
    /// bad URLs, domains, side, offsets or languages → core::BadRequest naming the field.
    static WidgetSettings from_json(const json::object& body);
    json::object to_json() const;
    /// What the script needs (no allowed_domains).
    json::object public_json() const;
};

/// A client language code: "en", "uk", "pt-BR".
bool valid_language(std::string_view code);

/// Whether a page at `origin_or_referer` (an Origin header or a Referer URL) may use a widget with these
/// allowed domains. Empty list: any. A missing/unparseable origin passes only an empty list.
bool origin_allowed(const std::vector<std::string>& allowed_domains, std::string_view origin_or_referer);
/// The lower-case host of an Origin header value or URL ("" when it has none).
std::string host_of(std::string_view origin_or_url);

/// A widget channel as the widget sees it in the channel registry.
struct WidgetChannel {
    std::string id;
    std::string bot_id;
    bool disabled = false;
};

/// What the widget needs from the channel registry (module `channels`, which owns channel rows and their kind).
/// Behind an interface so the widget depends on no other module's internals: the server adapts
/// channels::ChannelService with RegistryDirectory below; tests may use any map. Implementations are thread-safe.
class ChannelDirectory {
public:
    virtual ~ChannelDirectory() = default;
    /// The channel with this id when it is of kind `widget` (disabled ones too, flagged).
    virtual std::optional<WidgetChannel> find(std::string_view id) const = 0;
    /// Ids of every widget channel that is not disabled.
    virtual std::vector<std::string> active_ids() const = 0;
};

/// Adapts a registry with `find(id) -> optional<Channel>` and `list_kind(kind) -> vector<Channel>` (Channel with
/// id, bot_id, kind, status), i.e. channels::ChannelService, header-only so this library need not link it.
template <class Registry>
class RegistryDirectory final : public ChannelDirectory {
public:
    explicit RegistryDirectory(const Registry& registry) : registry_(registry) {}
    std::optional<WidgetChannel> find(std::string_view id) const override {
        auto c = registry_.find(id);
        if (!c || c->kind != "widget") return std::nullopt;
        return WidgetChannel{c->id, c->bot_id, c->status == "disabled"};
    }
    std::vector<std::string> active_ids() const override {
        std::vector<std::string> ids;
        for (const auto& c : registry_.list_kind("widget")) ids.push_back(c.id);
        return ids;
    }

private:
    const Registry& registry_;
};

/// Tunables (tests shorten them). Limits that protect the server are constants above or fields here.
struct WidgetOptions {
    std::int64_t dispatch_idle_ms = 100;        ///< dispatcher pause when nothing is pending
    std::size_t dispatch_batch = 500;           ///< pending deliveries read per round
    double frames_per_second = 5;               ///< per visitor (token bucket refill)
    double frame_burst = 20;                    ///< bucket size
    std::size_t max_sockets_per_visitor = 5;    ///< a further connect is refused (error frame, close)
    std::size_t max_new_visitors_per_minute_per_ip = 30;
    std::size_t max_uploads_per_minute = 10;    ///< per visitor
    std::size_t max_upload_bytes = kMaxUploadBytes;
    std::int64_t typing_min_interval_ms = 2'000;  ///< typing events forwarded to operators at most this often
    /// Base of file links posted into dialogs; "" = http://{Host of the upload request}.
    std::string public_base_url;
};

/// Migrations of module `widget` (widget_settings, widget_visitors, widget_files).
std::vector<store::Migration> migrations();

/// The widget script (web/widget/widget.js, embedded at build time) and its ETag.
std::string_view widget_script();
const std::string& widget_script_etag();

/// The widget runtime. Thread-safety: every method may be called from any thread. WebSocket callbacks arrive on
/// each socket's strand and are handed to coroutines on the executor given to start() (frames of one socket are
/// handled one after another, in order). Shared state (rooms of connected sockets per dialog, rate-limit buckets)
/// is guarded by mutex_ / each room's mutex. Writes go through store::co_write; store reads run on the calling
/// thread. Ownership: references must outlive the service; call stop() and wait_stopped() before destroying it.
class WidgetService {
public:
    WidgetService(store::Store& store, const core::Clock& clock, const ChannelDirectory& channels,
                  bots::DialogService& dialogs, const actions::ActionRegistry& actions, events::EventHub* hub,
                  const auth::SecretKey& key, WidgetOptions options = {});
    ~WidgetService();

    // --- settings (admin API) -----------------------------------------------------------------------------------
    /// NotFound `channel_not_found` unless `channel_id` is a widget channel of `bot_id`.
    WidgetSettings settings(std::string_view bot_id, std::string_view channel_id) const;
    boost::asio::awaitable<WidgetSettings> put_settings(std::string bot_id, std::string channel_id,
                                                        WidgetSettings settings);

    // --- public surface -----------------------------------------------------------------------------------------
    /// The settings of an active widget channel, checked against the page's origin. NotFound `channel_not_found`
    /// (unknown, not a widget, disabled); Forbidden `origin_not_allowed`.
    WidgetSettings public_settings(std::string_view channel_id, std::string_view origin) const;

    /// A new WebSocket on /widget/{channel}/ws. Checks origin and token, issues a visitor token when needed,
    /// sends the history after `since`, then keeps the socket in its dialog's room. Problems are answered with an
    /// error frame and a close.
    void attach(std::shared_ptr<http::WebSocketSession> session, const http::Request& request);

    struct Upload {
        std::string id;
        std::string url;  ///< path of the file: /widget/files/{id}/{name}
        std::string name;
        std::string content_type;
        std::size_t size = 0;
    };
    /// Stores a visitor's file and posts it into the dialog as a client message. Unauthorized `invalid_token`,
    /// TooLarge, BadRequest `unsupported_type` / `type_mismatch`, RateLimited.
    struct UploadRequest {
        std::string channel_id;
        std::string origin;    ///< Origin (or Referer) of the page
        std::string token;     ///< the visitor token
        std::string name;      ///< the file's name as the visitor's browser gave it
        std::string content_type;
        std::string body;
        std::string base_url;  ///< scheme://host the file URL in the dialog starts with
    };
    boost::asio::awaitable<Upload> upload(UploadRequest request);
    struct File {
        std::string name;
        std::string content_type;
        std::string data;
    };
    std::optional<File> file(std::string_view id) const;

    // --- lifecycle ----------------------------------------------------------------------------------------------
    /// Starts the dispatcher. Call once.
    void start(boost::asio::any_io_executor executor);
    /// Asks the dispatcher to end and closes every widget socket. Idempotent.
    void stop();
    /// Blocks the calling (non-worker) thread until the background coroutines ended; the executor must still run.
    void wait_stopped();

    struct Stats {
        std::uint64_t visitors_created = 0;
        std::uint64_t frames = 0;          ///< client frames handled
        std::uint64_t rejected_frames = 0; ///< malformed, too large or over the rate
        std::uint64_t pushed = 0;          ///< messages written to sockets
        std::uint64_t delivered = 0;       ///< deliveries marked delivered (a socket was open)
        std::uint64_t stored_for_later = 0;///< deliveries marked sent with no socket open (history covers them)
        std::size_t sockets = 0;           ///< open widget sockets
    };
    Stats stats() const;

private:
    struct Visitor {
        std::string id;
        std::string channel_id;
        std::string bot_id;
        std::string dialog_id;  ///< "" until the first message / start
        std::string client_id;
    };
    struct Conn;
    struct Room;
    struct Bucket {
        double tokens = 0;
        std::int64_t last_ms = 0;
    };

    std::optional<WidgetChannel> widget_channel(std::string_view id) const;
    WidgetSettings load_settings(std::string_view channel_id) const;
    std::optional<Visitor> visitor_by_token(std::string_view channel_id, std::string_view token) const;
    boost::asio::awaitable<std::pair<Visitor, std::string>> create_visitor(std::string channel_id, std::string bot_id,
                                                                           std::string ip, std::string language);
    boost::asio::awaitable<std::string> ensure_dialog(Visitor& visitor, bool run_start);
    boost::asio::awaitable<void> open(std::shared_ptr<Conn> conn, std::string token, std::int64_t since);
    void on_frame(const std::shared_ptr<Conn>& conn, std::string_view text);
    boost::asio::awaitable<void> drain(std::shared_ptr<Conn> conn);
    boost::asio::awaitable<void> handle(std::shared_ptr<Conn> conn, ClientFrame frame);
    void join_room(const std::shared_ptr<Conn>& conn);
    void leave_room(Conn* conn);
    /// Sends every message of the room's dialog newer than what each of its sockets has seen; returns whether a
    /// socket was open.
    bool flush(Room& room);
    void send_error(Conn& conn, std::string_view code, std::string_view message, std::string_view id = {});
    bool take_token(Bucket& bucket, double rate, double burst);
    boost::asio::awaitable<void> dispatch_loop();
    boost::asio::awaitable<void> sleep_ms(std::int64_t ms);
    void spawn(boost::asio::awaitable<void> task, std::optional<boost::asio::any_io_executor> on = std::nullopt);
    std::string hash_token(std::string_view token) const;

    store::Store& store_;
    const core::Clock& clock_;
    const ChannelDirectory& channels_;
    bots::DialogService& dialogs_;
    const actions::ActionRegistry& actions_;
    events::EventHub* hub_;
    auth::SecretKey key_;
    WidgetOptions options_;
    bots::KeyedLock visitor_locks_;  ///< one visitor's dialog creation / identify at a time

    mutable std::mutex mutex_;
    std::optional<boost::asio::any_io_executor> executor_;
    std::unordered_map<std::string, std::shared_ptr<Room>> rooms_;            ///< visitor id → its sockets
    std::unordered_map<std::string, std::shared_ptr<Room>> dialog_rooms_;     ///< dialog id → the same rooms
    std::unordered_map<std::string, std::size_t> sockets_per_visitor_;        ///< visitor id → open sockets
    std::unordered_map<std::string, Bucket> new_visitor_buckets_;             ///< ip → bucket
    std::unordered_map<std::string, Bucket> upload_buckets_;                  ///< visitor id → bucket
    std::vector<std::weak_ptr<Conn>> conns_;                                  ///< for stop(); pruned lazily
    std::condition_variable idle_;
    std::size_t running_ = 0;
    std::atomic<bool> stopping_{false};
    Stats stats_;
};

/// Admin: GET|PUT /api/v1/bots/{bot}/channels/{id}/widget (channels.view / channels.edit).
/// Public: GET /widget.js, GET /widget/{channel}/config, WebSocket /widget/{channel}/ws,
/// POST|OPTIONS /widget/{channel}/upload, GET /widget/files/{id}/{name}.
void register_routes(http::Router& router, WidgetService& widget);

}  // namespace parley::widget

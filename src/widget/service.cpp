// WidgetService: settings storage, visitors and tokens, the visitor WebSocket (history, frames, live pushes),
// uploads, and the dispatcher over DialogService::pending_deliveries.
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <deque>

#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "events/events.h"
#include "http/http.h"
#include "store/async.h"
#include "widget/widget.h"

namespace parley::widget {

namespace asio = boost::asio;

/// One visitor socket. Fields below `mutex` are guarded by it; `last_sent` by its room's mutex.
struct WidgetService::Conn {
    std::weak_ptr<http::WebSocketSession> session;
    std::string channel_id;
    std::string origin;
    std::string ip;
    std::string language;  ///< `lang` of the connect URL ("" when absent or not a language code)
    std::int64_t last_sent = 0;  ///< room mutex: highest message number written to this socket

    std::mutex mutex;
    Visitor visitor;
    std::shared_ptr<Room> room;
    std::deque<std::string> inbox;  ///< frames waiting for drain()
    bool ready = false;             ///< open() finished: frames may be handled
    bool draining = false;
    bool closed = false;
    Bucket bucket;
    std::int64_t last_typing_ms = 0;
    std::int64_t seen = 0;

    void send(std::string text) {
        if (auto s = session.lock()) s->send(std::move(text));
    }
    void close() {
        if (auto s = session.lock()) s->close();
    }
};

/// The open sockets of one visitor (all tabs), and the visitor's dialog once it exists.
struct WidgetService::Room {
    std::mutex mutex;
    std::string visitor_id;
    std::string dialog_id;
    std::vector<std::shared_ptr<Conn>> conns;
};

namespace {

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

std::string frame(json::object o) { return json::serialize(o); }

std::string error_frame(std::string_view code, std::string_view message, std::string_view id) {
    json::object o{{"type", "error"}, {"code", code}, {"message", message}};
    if (!id.empty()) o["id"] = id;
    return frame(std::move(o));
}

/// The message as the widget shows it; a client message carries the frame id it was sent with.
json::object message_json(const bots::Message& m) {
    json::object o{{"n", m.n}, {"from", m.from}, {"text", m.text}, {"created_at", m.created_at}};
    if (!m.buttons.empty()) o["buttons"] = m.buttons;
    if (const auto* e = m.payload.if_contains("external_id"); e && e->is_string()) {
        std::string_view ext = e->get_string();
        if (ext.rfind("w:", 0) == 0) o["id"] = ext.substr(2);
    }
    return o;
}

asio::awaitable<actions::ActionResult> run_action(const actions::ActionRegistry& registry, actions::ActionCall call) {
    auto initiate = [&registry](auto handler, actions::ActionCall c) {
        auto executor = asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        registry.run(std::move(c), [shared, executor](actions::ActionResult r) {
            asio::post(executor, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
        });
    };
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>, void(actions::ActionResult)>(
        std::move(initiate), asio::use_awaitable, std::move(call));
}

const std::vector<std::string>& upload_types() {
    static const std::vector<std::string> types = {
        "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "text/csv",
        "application/zip", "application/msword", "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"};
    return types;
}

/// The body starts the way files of this type start (so a page cannot be served back as an "image").
bool content_matches(std::string_view type, std::string_view body) {
    auto starts = [&](std::string_view magic) { return body.substr(0, magic.size()) == magic; };
    if (type == "image/png") return starts("\x89PNG\r\n\x1a\n");
    if (type == "image/jpeg") return starts("\xff\xd8\xff");
    if (type == "image/gif") return starts("GIF87a") || starts("GIF89a");
    if (type == "image/webp") return body.size() >= 12 && starts("RIFF") && body.substr(8, 4) == "WEBP";
    if (type == "application/pdf") return starts("%PDF-");
    if (type == "application/zip" || type.find("openxmlformats") != std::string_view::npos) return starts("PK\x03\x04");
    if (type == "application/msword" || type == "application/vnd.ms-excel") return starts("\xd0\xcf\x11\xe0");
    // text: no NUL byte in the first 8 KiB
    return body.substr(0, 8192).find('\0') == std::string_view::npos;
}

std::string safe_file_name(std::string_view name) {
    std::string out;
    for (char c : name.substr(0, kMaxFileNameBytes)) {
        out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') ? c : '_';
    }
    while (!out.empty() && out.front() == '.') out.erase(out.begin());
    return out.empty() ? std::string("file") : out;
}

}  // namespace

WidgetService::WidgetService(store::Store& store, const core::Clock& clock, const ChannelDirectory& channels,
                             bots::DialogService& dialogs, const actions::ActionRegistry& actions,
                             events::EventHub* hub, const auth::SecretKey& key, WidgetOptions options)
    : store_(store),
      clock_(clock),
      channels_(channels),
      dialogs_(dialogs),
      actions_(actions),
      hub_(hub),
      key_(key),
      options_(std::move(options)) {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
    while (!options_.public_base_url.empty() && options_.public_base_url.back() == '/') options_.public_base_url.pop_back();
}

WidgetService::~WidgetService() {
    stop();
    std::unique_lock lock(mutex_);
    idle_.wait_for(lock, std::chrono::seconds(5), [this] { return running_ == 0; });
}

// --- settings ------------------------------------------------------------------------------------------------

std::optional<WidgetChannel> WidgetService::widget_channel(std::string_view id) const {
    return channels_.find(id);
}

WidgetSettings WidgetService::load_settings(std::string_view channel_id) const {
    std::optional<std::string> text;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one("SELECT settings FROM widget_settings WHERE channel_id = ?", {std::string(channel_id)})) {
            text = row->text(0);
        }
    });
    if (!text) return WidgetSettings{};
    return WidgetSettings::from_json(json::parse(*text).as_object());
}

WidgetSettings WidgetService::settings(std::string_view bot_id, std::string_view channel_id) const {
    auto channel = widget_channel(channel_id);
    if (!channel || channel->bot_id != bot_id) {
        throw core::NotFound(fmt::format("bot '{}' has no widget channel '{}'", bot_id, channel_id), "channel_not_found");
    }
    return load_settings(channel_id);
}

asio::awaitable<WidgetSettings> WidgetService::put_settings(std::string bot_id, std::string channel_id,
                                                           WidgetSettings settings) {
    this->settings(bot_id, channel_id);  // 404
    std::string text = json::serialize(settings.to_json());
    std::int64_t now = clock_.now_ms();
    auto write = [channel_id, text, now](store::Tx& tx) {
        tx.exec("INSERT INTO widget_settings(channel_id, settings, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(channel_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                {channel_id, text, now});
    };
    co_await store::co_write(store_, std::move(write));
    co_return settings;
}

WidgetSettings WidgetService::public_settings(std::string_view channel_id, std::string_view origin) const {
    auto channel = widget_channel(channel_id);
    if (!channel || channel->disabled) {
        throw core::NotFound(fmt::format("no widget channel '{}'", channel_id), "channel_not_found");
    }
    WidgetSettings s = load_settings(channel_id);
    if (!origin_allowed(s.allowed_domains, origin)) {
        std::string host = host_of(origin);
        throw core::Forbidden(
            host.empty() ? std::string("this widget is limited to its allowed domains and the page sent no Origin")
                         : fmt::format("the widget of channel '{}' is not allowed on '{}'; add the domain to the "
                                       "widget's allowed_domains",
                                       channel_id, host),
            "origin_not_allowed");
    }
    return s;
}

// --- visitors ------------------------------------------------------------------------------------------------

std::string WidgetService::hash_token(std::string_view token) const {
    unsigned char out[32];
    crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(token.data()), token.size(), key_.data(),
                       key_.size());
    static const char* hex = "0123456789abcdef";
    std::string text;
    for (unsigned char c : out) {
        text += hex[c >> 4];
        text += hex[c & 15];
    }
    return text;
}

std::optional<WidgetService::Visitor> WidgetService::visitor_by_token(std::string_view channel_id,
                                                                      std::string_view token) const {
    if (token.empty() || token.size() > 128) return std::nullopt;
    std::optional<Visitor> out;
    std::string hash = hash_token(token);
    store_.read([&](store::Tx& tx) {
        auto row = tx.query_one("SELECT id, dialog_id, client_id FROM widget_visitors WHERE token_hash = ? AND "
                                "channel_id = ?",
                                {hash, std::string(channel_id)});
        if (row) out = Visitor{row->text(0), std::string(channel_id), {}, row->text(1), row->text(2)};
    });
    return out;
}

bool WidgetService::take_token(Bucket& bucket, double rate, double burst) {
    std::int64_t now = clock_.now_ms();
    if (bucket.last_ms == 0) {
        bucket.tokens = burst;
    } else {
        bucket.tokens = std::min(burst, bucket.tokens + static_cast<double>(now - bucket.last_ms) * rate / 1000.0);
    }
    bucket.last_ms = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
}

asio::awaitable<std::pair<WidgetService::Visitor, std::string>> WidgetService::create_visitor(std::string channel_id,
                                                                                             std::string bot_id,
                                                                                             std::string ip,
                                                                                             std::string language) {
    {
        std::lock_guard lock(mutex_);
        if (new_visitor_buckets_.size() > 100'000) new_visitor_buckets_.clear();
        const double per_minute = static_cast<double>(options_.max_new_visitors_per_minute_per_ip);
        if (!take_token(new_visitor_buckets_[ip], per_minute / 60.0, per_minute)) {
            throw core::RateLimited("too many new widget visitors from this address; try again in a minute",
                                    "rate_limited");
        }
    }
    Visitor v{core::new_id(), channel_id, bot_id, {}, {}};
    std::string token = "v1." + core::random_hex(24);
    std::int64_t now = clock_.now_ms();
    auto write = [v, hash = hash_token(token), ip, language, now](store::Tx& tx) {
        tx.exec("INSERT INTO widget_visitors(id, channel_id, token_hash, ip, language, created_at, last_seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                {v.id, v.channel_id, hash, ip, language, now, now});
    };
    co_await store::co_write(store_, std::move(write));
    {
        std::lock_guard lock(mutex_);
        ++stats_.visitors_created;
    }
    co_return std::make_pair(std::move(v), std::move(token));
}

asio::awaitable<std::string> WidgetService::ensure_dialog(Visitor& visitor, bool run_start) {
    auto guard = co_await visitor_locks_.lock(visitor.id);
    std::string params_text = "{}";
    std::string language;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one("SELECT dialog_id, client_id, params, language FROM widget_visitors WHERE id = ?",
                                    {visitor.id})) {
            visitor.dialog_id = row->text(0);
            visitor.client_id = row->text(1);
            params_text = row->text(2);
            language = row->text(3);
        }
    });
    if (!visitor.dialog_id.empty()) {
        // A dialog created by identify/params/upload before the visitor opened the chat has not run its start node.
        if (run_start && dialogs_.messages(visitor.dialog_id, 0, 1).empty()) {
            co_await dialogs_.run(visitor.dialog_id, bots::Trigger::start());
        }
        co_return visitor.dialog_id;
    }
    if (visitor.bot_id.empty()) {
        auto channel = widget_channel(visitor.channel_id);
        if (!channel) throw core::NotFound("the widget channel is gone", "channel_not_found");
        visitor.bot_id = channel->bot_id;
    }
    clients::NewClient client;
    // The widget's configured language wins; else the one the visitor's browser reported on its first connect.
    client.language = load_settings(visitor.channel_id).language;
    if (client.language.empty()) client.language = language;
    json::object params = json::parse(params_text).as_object();
    if (!params.empty()) client.fields["site_params"] = std::move(params);
    bots::DialogInfo dialog = co_await dialogs_.create(visitor.bot_id, visitor.channel_id, std::move(client));
    auto write = [id = visitor.id, dialog](store::Tx& tx) {
        tx.exec("UPDATE widget_visitors SET dialog_id = ?, client_id = ? WHERE id = ?", {dialog.id, dialog.client_id, id});
    };
    co_await store::co_write(store_, std::move(write));
    visitor.dialog_id = dialog.id;
    visitor.client_id = dialog.client_id;
    {
        std::lock_guard lock(mutex_);
        if (auto it = rooms_.find(visitor.id); it != rooms_.end()) {
            std::lock_guard room_lock(it->second->mutex);
            it->second->dialog_id = dialog.id;
            dialog_rooms_[dialog.id] = it->second;
            for (auto& c : it->second->conns) {
                std::lock_guard conn_lock(c->mutex);
                c->visitor.dialog_id = dialog.id;
                c->visitor.client_id = dialog.client_id;
            }
        }
    }
    if (run_start) co_await dialogs_.run(dialog.id, bots::Trigger::start());
    co_return dialog.id;
}

// --- sockets -------------------------------------------------------------------------------------------------

void WidgetService::attach(std::shared_ptr<http::WebSocketSession> session, const http::Request& request) {
    auto conn = std::make_shared<Conn>();
    conn->session = session;
    conn->channel_id = request.param("channel");
    conn->origin = std::string(request.header("origin"));
    if (conn->origin.empty()) conn->origin = std::string(request.header("referer"));
    conn->ip = request.remote_ip;
    if (auto lang = request.query_param("lang"); lang && valid_language(*lang)) conn->language = std::string(*lang);
    std::string token(request.query_param("token").value_or(""));
    std::int64_t since = 0;
    if (auto s = request.query_param("since")) {
        auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), since);
        if (ec != std::errc() || end != s->data() + s->size() || since < 0) since = 0;
    }
    session->on_message = [this, conn](std::string_view text) { on_frame(conn, text); };
    session->on_close = [this, conn] { leave_room(conn.get()); };
    bool started = false;
    {
        std::lock_guard lock(mutex_);
        started = executor_.has_value() && !stopping_;
        if (started) {
            if (conns_.size() > 1024 && conns_.size() >= 2 * stats_.sockets) {
                std::erase_if(conns_, [](const std::weak_ptr<Conn>& w) { return w.expired(); });
            }
            conns_.push_back(conn);
        }
    }
    if (!started) {
        session->send(error_frame("unavailable", "the widget service is not running", {}));
        session->close();
        return;
    }
    spawn(open(conn, std::move(token), since));
}

asio::awaitable<void> WidgetService::open(std::shared_ptr<Conn> conn, std::string token, std::int64_t since) {
    try {
        auto channel = widget_channel(conn->channel_id);
        if (!channel || channel->disabled) {
            throw core::NotFound(fmt::format("no widget channel '{}'", conn->channel_id), "channel_not_found");
        }
        public_settings(conn->channel_id, conn->origin);  // Forbidden origin_not_allowed
        std::optional<Visitor> visitor = visitor_by_token(conn->channel_id, token);
        bool issued = false;
        if (!visitor) {
            auto [created, new_token] = co_await create_visitor(conn->channel_id, channel->bot_id, conn->ip, conn->language);
            visitor = std::move(created);
            token = std::move(new_token);
            issued = true;
            since = 0;  // a new visitor has nothing to resume
        }
        visitor->bot_id = channel->bot_id;
        {
            std::lock_guard lock(conn->mutex);
            conn->visitor = *visitor;
        }
        // Join the visitor's room (the socket limit counts every tab of the visitor).
        std::shared_ptr<Room> room;
        {
            std::lock_guard lock(mutex_);
            auto& slot = rooms_[visitor->id];
            if (!slot) {
                slot = std::make_shared<Room>();
                slot->visitor_id = visitor->id;
            }
            room = slot;
            std::lock_guard room_lock(room->mutex);
            if (room->conns.size() >= options_.max_sockets_per_visitor) {
                if (room->conns.empty()) rooms_.erase(visitor->id);
                throw core::RateLimited(fmt::format("at most {} open widget connections per visitor",
                                                    options_.max_sockets_per_visitor),
                                        "too_many_sockets");
            }
            if (!visitor->dialog_id.empty()) {
                room->dialog_id = visitor->dialog_id;
                dialog_rooms_[visitor->dialog_id] = room;
            }
            conn->last_sent = since;
            room->conns.push_back(conn);
            ++stats_.sockets;
        }
        {
            std::lock_guard lock(conn->mutex);
            conn->room = room;
        }
        // `started`: the dialog has messages (else the widget sends `start` when the visitor opens the chat).
        bool started = !visitor->dialog_id.empty() && !dialogs_.messages(visitor->dialog_id, 0, 1).empty();
        json::object hello{{"type", "session"}, {"visitor", visitor->id}, {"started", started}};
        if (issued) hello["token"] = token;
        conn->send(frame(std::move(hello)));
        flush(*room);
        conn->send(frame(json::object{{"type", "ready"}}));
        bool start_drain = false;
        {
            std::lock_guard lock(conn->mutex);
            conn->ready = true;
            start_drain = !conn->inbox.empty() && !conn->draining && !conn->closed;
            if (start_drain) conn->draining = true;
        }
        if (start_drain) spawn(drain(conn));
    } catch (const core::Error& e) {
        send_error(*conn, e.code(), e.what());
        conn->close();
    } catch (const std::exception& e) {
        core::log_event(spdlog::level::err, "widget_open_failed", fmt::format(R"("error":{})", core::json_quote(e.what())));
        send_error(*conn, "internal", "the widget could not connect; try again");
        conn->close();
    }
}

void WidgetService::leave_room(Conn* conn) {
    std::shared_ptr<Room> room;
    {
        std::lock_guard lock(conn->mutex);
        conn->closed = true;
        conn->inbox.clear();
        room = std::move(conn->room);
    }
    if (!room) return;
    std::lock_guard lock(mutex_);
    std::lock_guard room_lock(room->mutex);
    auto it = std::find_if(room->conns.begin(), room->conns.end(), [conn](const auto& c) { return c.get() == conn; });
    if (it != room->conns.end()) {
        room->conns.erase(it);
        --stats_.sockets;
    }
    if (room->conns.empty()) {
        if (auto r = rooms_.find(room->visitor_id); r != rooms_.end() && r->second == room) rooms_.erase(r);
        if (!room->dialog_id.empty()) {
            if (auto d = dialog_rooms_.find(room->dialog_id); d != dialog_rooms_.end() && d->second == room) {
                dialog_rooms_.erase(d);
            }
        }
    }
}

bool WidgetService::flush(Room& room) {
    std::uint64_t pushed = 0;
    {
        std::lock_guard lock(room.mutex);
        if (room.conns.empty()) return false;
        if (room.dialog_id.empty()) return true;
        std::int64_t from = room.conns.front()->last_sent;
        for (const auto& c : room.conns) from = std::min(from, c->last_sent);
        std::size_t total = 0;
        while (total < kMaxHistoryMessages) {
            auto messages = dialogs_.messages(room.dialog_id, from, kHistoryPage);
            if (messages.empty()) break;
            for (const auto& c : room.conns) {
                json::array items;
                std::int64_t last = c->last_sent;
                for (const auto& m : messages) {
                    if (m.n <= c->last_sent) continue;
                    items.push_back(message_json(m));
                    last = m.n;
                }
                if (items.empty()) continue;
                c->last_sent = last;
                pushed += items.size();
                c->send(frame(json::object{{"type", "messages"}, {"items", std::move(items)}}));
            }
            total += messages.size();
            from = messages.back().n;
            if (messages.size() < kHistoryPage) break;
        }
    }
    std::lock_guard lock(mutex_);
    stats_.pushed += pushed;
    return true;
}

void WidgetService::send_error(Conn& conn, std::string_view code, std::string_view message, std::string_view id) {
    conn.send(error_frame(code, message, id));
}

void WidgetService::on_frame(const std::shared_ptr<Conn>& conn, std::string_view text) {
    if (text.size() > kMaxFrameBytes) {
        {
            std::lock_guard lock(mutex_);
            ++stats_.rejected_frames;
        }
        send_error(*conn, "frame_too_large", fmt::format("a frame is at most {} bytes", kMaxFrameBytes));
        conn->close();
        return;
    }
    bool start = false;
    {
        std::lock_guard lock(conn->mutex);
        if (conn->closed) return;
        if (conn->inbox.size() >= 64) {  // a client far ahead of the server: drop, the rate limit says why
            conn->send(error_frame("rate_limited", "too many frames at once; slow down", {}));
            return;
        }
        conn->inbox.emplace_back(text);
        start = conn->ready && !conn->draining;
        if (start) conn->draining = true;
    }
    if (start) spawn(drain(conn));
}

asio::awaitable<void> WidgetService::drain(std::shared_ptr<Conn> conn) {
    while (true) {
        std::string text;
        {
            std::lock_guard lock(conn->mutex);
            if (conn->inbox.empty() || conn->closed) {
                conn->draining = false;
                co_return;
            }
            text = std::move(conn->inbox.front());
            conn->inbox.pop_front();
        }
        std::string id;
        try {
            ClientFrame f = parse_client_frame(text);
            id = f.id;
            if (f.kind != ClientFrame::Kind::kPing) {
                std::lock_guard lock(conn->mutex);
                if (!take_token(conn->bucket, options_.frames_per_second, options_.frame_burst)) {
                    throw core::RateLimited(fmt::format("at most {} frames per second; this one was not handled, send "
                                                        "it again later",
                                                        options_.frames_per_second),
                                            "rate_limited");
                }
            }
            co_await handle(conn, std::move(f));
            std::lock_guard lock(mutex_);
            ++stats_.frames;
        } catch (const core::Error& e) {
            {
                std::lock_guard lock(mutex_);
                ++stats_.rejected_frames;
            }
            send_error(*conn, e.code(), e.what(), id);
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::err, "widget_frame_failed", fmt::format(R"("error":{})", core::json_quote(e.what())));
            send_error(*conn, "internal", "the message could not be handled; send it again", id);
        }
    }
}

asio::awaitable<void> WidgetService::handle(std::shared_ptr<Conn> conn, ClientFrame f) {
    Visitor visitor;
    std::shared_ptr<Room> room;
    {
        std::lock_guard lock(conn->mutex);
        visitor = conn->visitor;
        room = conn->room;
    }
    using Kind = ClientFrame::Kind;
    auto ack = [&](bool duplicate) {
        if (f.id.empty()) return;
        json::object o{{"type", "ack"}, {"id", f.id}};
        if (duplicate) o["duplicate"] = true;
        conn->send(frame(std::move(o)));
    };
    switch (f.kind) {
        case Kind::kPing:
            conn->send(R"({"type":"pong"})");
            co_return;
        case Kind::kMessage:
        case Kind::kButton: {
            std::string dialog = co_await ensure_dialog(visitor, false);
            bots::Trigger t;
            t.kind = bots::Trigger::Kind::kMessage;
            t.message = f.kind == Kind::kMessage ? scenario::ClientMessage::from_text(f.text)
                                                 : scenario::ClientMessage::from_button(f.button);
            t.external_id = "w:" + f.id;
            bots::TurnOutput out = co_await dialogs_.run(dialog, std::move(t));
            ack(out.duplicate);
            break;
        }
        case Kind::kStart: {
            co_await ensure_dialog(visitor, true);
            ack(false);
            break;
        }
        case Kind::kIdentify: {
            std::string dialog = co_await ensure_dialog(visitor, false);
            json::object values;
            for (const auto& kv : f.identity) values[kv.key()] = kv.value();
            actions::ActionCall call;
            call.action = "registered_users__set";
            call.params = json::object{{"values", std::move(values)}};
            call.dialog_id = dialog;
            call.client_id = visitor.client_id;
            actions::ActionResult r = co_await run_action(actions_, std::move(call));
            if (r.error) {
                throw core::BadRequest(fmt::format("the visitor could not be identified: {}", r.error->message),
                                       r.error->code == "bad_params" ? "invalid_identity" : r.error->code);
            }
            ack(false);
            break;
        }
        case Kind::kParams: {
            // Merged into what the visitor set before; the client card keeps them as `site_params`
            // ({{client.site_params.KEY}}); with an alias, that entry runs with them in its state.
            auto guard = co_await visitor_locks_.lock(visitor.id);
            json::object merged;
            store_.read([&](store::Tx& tx) {
                if (auto row = tx.query_one("SELECT params, dialog_id, client_id FROM widget_visitors WHERE id = ?",
                                            {visitor.id})) {
                    merged = json::parse(row->text(0)).as_object();
                    visitor.dialog_id = row->text(1);
                    visitor.client_id = row->text(2);
                }
            });
            for (const auto& kv : f.params) merged[kv.key()] = kv.value();
            std::string text = json::serialize(merged);
            if (text.size() > kMaxParamsBytes) {
                throw core::TooLarge(fmt::format("the visitor's params are larger than {} bytes", kMaxParamsBytes),
                                     "too_large", field("params"));
            }
            auto write = [id = visitor.id, text](store::Tx& tx) {
                tx.exec("UPDATE widget_visitors SET params = ? WHERE id = ?", {text, id});
            };
            co_await store::co_write(store_, std::move(write));
            guard.release();
            if (!visitor.dialog_id.empty()) {
                actions::ActionCall call;
                call.action = "registered_users__set";
                call.params = json::object{{"values", json::object{{"site_params", merged}}}};
                call.dialog_id = visitor.dialog_id;
                call.client_id = visitor.client_id;
                actions::ActionResult r = co_await run_action(actions_, std::move(call));
                if (r.error) throw core::BadRequest(r.error->message, "invalid_params");
            }
            if (!f.alias.empty()) {
                std::string dialog = co_await ensure_dialog(visitor, false);
                bots::Trigger t;
                t.kind = bots::Trigger::Kind::kAlias;
                t.alias = f.alias;
                t.params = f.params;
                bots::TurnOutput out = co_await dialogs_.run(dialog, std::move(t));
                if (out.error && out.error->code == "unknown_alias") {
                    throw core::NotFound(fmt::format("the bot has no entry with alias '{}'", f.alias), "alias_not_found");
                }
            }
            ack(false);
            break;
        }
        case Kind::kTyping: {
            std::int64_t now = clock_.now_ms();
            bool forward = false;
            {
                std::lock_guard lock(conn->mutex);
                forward = now - conn->last_typing_ms >= options_.typing_min_interval_ms;
                if (forward) conn->last_typing_ms = now;
            }
            if (forward && hub_ && !visitor.dialog_id.empty()) {
                hub_->publish("dialog.typing", json::object{{"dialog_id", visitor.dialog_id}, {"from", "client"}},
                              events::Audience::permission("operator", core::Action::kView));
            }
            co_return;
        }
        case Kind::kSeen: {
            std::int64_t previous = 0;
            {
                std::lock_guard lock(conn->mutex);
                previous = conn->seen;
                conn->seen = std::max(conn->seen, f.seen);
            }
            if (visitor.dialog_id.empty() || f.seen <= previous) co_return;
            // Read receipts: bot and operator messages shown to the visitor (at most 50 per frame).
            for (const auto& m : dialogs_.messages(visitor.dialog_id, previous, 50)) {
                if (m.n > f.seen) break;
                if (m.from == "bot" || m.from == "operator") co_await dialogs_.mark_delivery(visitor.dialog_id, m.n, "read");
            }
            co_return;
        }
    }
    if (room) flush(*room);
}

// --- uploads -------------------------------------------------------------------------------------------------

asio::awaitable<WidgetService::Upload> WidgetService::upload(UploadRequest in) {
    auto channel = widget_channel(in.channel_id);
    if (!channel || channel->disabled) {
        throw core::NotFound(fmt::format("no widget channel '{}'", in.channel_id), "channel_not_found");
    }
    public_settings(in.channel_id, in.origin);
    auto visitor = visitor_by_token(in.channel_id, in.token);
    if (!visitor) throw core::Unauthorized("unknown or missing visitor token", "invalid_token");
    visitor->bot_id = channel->bot_id;
    if (in.body.size() > options_.max_upload_bytes) {
        throw core::TooLarge(fmt::format("a file is at most {} bytes", options_.max_upload_bytes), "too_large");
    }
    if (in.body.empty()) throw core::BadRequest("the file is empty", "empty_file");
    std::string type = in.content_type.substr(0, in.content_type.find(';'));
    while (!type.empty() && type.back() == ' ') type.pop_back();
    for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto& types = upload_types();
    if (std::find(types.begin(), types.end(), type) == types.end()) {
        throw core::BadRequest(fmt::format("files of type '{}' are not accepted; send images, PDF, text or office "
                                           "documents",
                                           type.substr(0, 100)),
                               "unsupported_type");
    }
    if (!content_matches(type, in.body)) {
        throw core::BadRequest(fmt::format("the file's content is not {}", type), "type_mismatch");
    }
    {
        std::lock_guard lock(mutex_);
        if (upload_buckets_.size() > 100'000) upload_buckets_.clear();
        const double per_minute = static_cast<double>(options_.max_uploads_per_minute);
        if (!take_token(upload_buckets_[visitor->id], per_minute / 60.0, per_minute)) {
            throw core::RateLimited(fmt::format("at most {} files per minute", options_.max_uploads_per_minute),
                                    "rate_limited");
        }
    }
    std::string name = in.name.substr(0, kMaxFileNameBytes);
    std::erase_if(name, [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == '/' || c == '\\'; });
    if (name.empty()) name = "file";
    std::string dialog = co_await ensure_dialog(*visitor, false);
    Upload up;
    up.id = core::random_hex(16);
    up.name = name;
    up.content_type = type;
    up.size = in.body.size();
    up.url = fmt::format("/widget/files/{}/{}", up.id, safe_file_name(name));
    std::int64_t now = clock_.now_ms();
    auto write = [up, channel_id = in.channel_id, visitor_id = visitor->id, dialog, body = std::move(in.body),
                  now](store::Tx& tx) {
        tx.exec("INSERT INTO widget_files(id, channel_id, visitor_id, dialog_id, name, content_type, size, data, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {up.id, channel_id, visitor_id, dialog, up.name, up.content_type, static_cast<std::int64_t>(up.size),
                 store::Blob{body}, now});
    };
    co_await store::co_write(store_, std::move(write));
    std::string base = options_.public_base_url.empty() ? in.base_url : options_.public_base_url;
    bots::Trigger t;
    t.kind = bots::Trigger::Kind::kMessage;
    t.message = scenario::ClientMessage::from_text(fmt::format("[file] {}: {}{}", name, base, up.url));
    t.external_id = "w:file:" + up.id;
    co_await dialogs_.run(dialog, std::move(t));
    std::shared_ptr<Room> room;
    {
        std::lock_guard lock(mutex_);
        if (auto it = rooms_.find(visitor->id); it != rooms_.end()) room = it->second;
    }
    if (room) flush(*room);
    co_return up;
}

std::optional<WidgetService::File> WidgetService::file(std::string_view id) const {
    if (id.size() != 32 || id.find_first_not_of("0123456789abcdef") != std::string_view::npos) return std::nullopt;
    std::optional<File> out;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one("SELECT name, content_type, data FROM widget_files WHERE id = ?", {std::string(id)})) {
            out = File{row->text(0), row->text(1), row->text(2)};
        }
    });
    return out;
}

// --- dispatcher ----------------------------------------------------------------------------------------------

void WidgetService::spawn(asio::awaitable<void> task, std::optional<asio::any_io_executor> on) {
    asio::any_io_executor executor;
    {
        std::lock_guard lock(mutex_);
        if (!executor_) return;
        executor = on ? *on : *executor_;
        ++running_;
    }
    asio::co_spawn(executor, std::move(task), [this](std::exception_ptr error) {
        if (error) {
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                core::log_event(spdlog::level::err, "widget_task_failed", fmt::format(R"("error":{})", core::json_quote(e.what())));
            }
        }
        std::lock_guard lock(mutex_);
        --running_;
        idle_.notify_all();
    });
}

void WidgetService::start(asio::any_io_executor executor) {
    {
        std::lock_guard lock(mutex_);
        executor_ = executor;
    }
    spawn(dispatch_loop(), asio::make_strand(executor));
}

void WidgetService::stop() {
    if (stopping_.exchange(true)) return;
    std::vector<std::shared_ptr<Conn>> open;
    {
        std::lock_guard lock(mutex_);
        for (auto& w : conns_) {
            if (auto c = w.lock()) open.push_back(std::move(c));
        }
        conns_.clear();
    }
    for (auto& c : open) c->close();
}

void WidgetService::wait_stopped() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return running_ == 0; });
}

WidgetService::Stats WidgetService::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

asio::awaitable<void> WidgetService::sleep_ms(std::int64_t ms) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(std::chrono::milliseconds(ms));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> WidgetService::dispatch_loop() {
    // Runs on its own strand (start()) so that the completions of the delivery marks it launches in parallel
    // (posted to the same strand) cannot race the wait for them.
    auto strand = co_await asio::this_coro::executor;
    while (!stopping_) {
        std::vector<bots::DialogService::Delivery> deliveries;
        try {
            std::vector<std::string> ids = channels_.active_ids();
            if (!ids.empty()) deliveries = dialogs_.pending_deliveries(ids, options_.dispatch_batch);
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::err, "widget_dispatch_failed", fmt::format(R"("error":{})", core::json_quote(e.what())));
        }
        if (deliveries.empty()) {
            co_await sleep_ms(options_.dispatch_idle_ms);
            continue;
        }
        // Push per dialog (one flush sends every new message of the dialog), then record the outcome of each.
        std::map<std::string, bool> pushed;
        for (const auto& d : deliveries) {
            if (pushed.contains(d.dialog_id)) continue;
            std::shared_ptr<Room> room;
            {
                std::lock_guard lock(mutex_);
                if (auto it = dialog_rooms_.find(d.dialog_id); it != dialog_rooms_.end()) room = it->second;
            }
            pushed[d.dialog_id] = room && flush(*room);
        }
        auto remaining = std::make_shared<std::size_t>(deliveries.size());
        auto done = std::make_shared<asio::steady_timer>(strand, asio::steady_timer::time_point::max());
        std::uint64_t delivered = 0;
        for (const auto& d : deliveries) {
            bool online = pushed[d.dialog_id];
            delivered += online;
            asio::co_spawn(strand, dialogs_.mark_delivery(d.dialog_id, d.message.n, online ? "delivered" : "sent"),
                           asio::bind_executor(strand, [remaining, done](std::exception_ptr error) {
                               if (error) {
                                   try {
                                       std::rethrow_exception(error);
                                   } catch (const std::exception& e) {
                                       core::log_event(spdlog::level::warn, "widget_mark_failed",
                                                       fmt::format(R"("error":{})", core::json_quote(e.what())));
                                   }
                               }
                               if (--*remaining == 0) done->expires_at(asio::steady_timer::time_point::min());
                           }));
        }
        boost::system::error_code ec;
        if (*remaining > 0) co_await done->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        {
            std::lock_guard lock(mutex_);
            stats_.delivered += delivered;
            stats_.stored_for_later += deliveries.size() - delivered;
        }
        if (deliveries.size() < options_.dispatch_batch) co_await sleep_ms(options_.dispatch_idle_ms);
    }
}

}  // namespace parley::widget

// The channel runtime: inbound webhooks and Telegram long polling into the inbox, processing inbox events into bot
// turns and delivery reports, and the dispatcher that sends the outbox through each kind's Adapter with per-channel
// and per-chat token buckets, retries, backoff, Retry-After and dead letters.
#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "asio/offload.h"
#include "channels/channels.h"
#include "channels/internal/adapters.h"
#include "channels/internal/bot_api.h"
#include "channels/internal/stored.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "store/async.h"

namespace parley::channels {

namespace asio = boost::asio;
using asio::awaitable;

namespace {

constexpr std::int64_t kInboundRefreshMs = 60'000;  ///< last_inbound_at is rewritten at most this often
constexpr std::size_t kMaxChatBuckets = 10'000;     ///< idle chat buckets are pruned beyond this
/// Extra capacity of a chat's bucket: a message sent a little late (the dispatcher's round trip) lets the next one
/// go up to 5 % of an interval early, so lateness is not lost and the long-run rate stays the configured one.
constexpr double kChatTolerance = 0.05;

void log_error(std::string_view event, std::string_view channel, std::string_view error) {
    core::log_event(spdlog::level::warn, event,
                    fmt::format(R"("channel":{},"error":{})", core::json_quote(channel), core::json_quote(error)));
}

std::string chat_key(const std::string& channel, const std::string& chat) { return channel + "\n" + chat; }

/// Order of delivery statuses: a report never lowers a message's status (out-of-order reports).
int rank(std::string_view status) {
    if (status == "sent") return 1;
    if (status == "failed") return 2;
    if (status == "delivered") return 3;
    if (status == "read") return 4;
    return 0;
}

void refill(auto& b, double rate, double capacity, std::int64_t now) {
    if (b.last_ms == 0) {
        b.tokens = capacity;
        b.last_ms = now;
    }
    if (rate > 0 && now > b.last_ms) {
        b.tokens = std::min(capacity, b.tokens + static_cast<double>(now - b.last_ms) * rate / 1000.0);
    }
    b.last_ms = std::max(b.last_ms, now);
}

std::int64_t wait_of(const auto& b, double rate, std::int64_t now) {
    if (now < b.paused_until_ms) return b.paused_until_ms - now;
    if (rate <= 0 || b.tokens >= 1.0) return 0;
    return static_cast<std::int64_t>(std::ceil((1.0 - b.tokens) * 1000.0 / rate));
}

std::vector<scenario::ReplyButton> buttons_of(const json::array& list) {
    std::vector<scenario::ReplyButton> out;
    for (const auto& b : list) {
        if (!b.is_object()) continue;
        const auto& o = b.get_object();
        auto id = o.find("id");
        if (id == o.end() || !id->value().is_string()) continue;
        scenario::ReplyButton button;
        button.id = std::string(id->value().get_string());
        if (auto text = o.find("text"); text != o.end() && text->value().is_string()) {
            button.text = std::string(text->value().get_string());
        }
        out.push_back(std::move(button));
    }
    return out;
}

std::string in_list(std::size_t n) {
    std::string out = "(";
    for (std::size_t i = 0; i < n; ++i) out += i ? ", ?" : "?";
    return out + ")";
}

}  // namespace

// --- lifecycle -------------------------------------------------------------------------------------------------

void ChannelService::spawn(asio::any_io_executor executor, awaitable<void> task) {
    {
        std::lock_guard lock(mutex_);
        ++running_;
    }
    asio::co_spawn(executor, std::move(task), [this](std::exception_ptr error) {
        if (error) {
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                log_error("channel_task_failed", "", e.what());
            }
        }
        std::lock_guard lock(mutex_);
        if (--running_ == 0) idle_.notify_all();
    });
}

void ChannelService::start(asio::any_io_executor executor) {
    {
        std::lock_guard lock(mutex_);
        executor_ = executor;
        dispatch_strand_.emplace(asio::make_strand(executor));
        dispatch_timer_.emplace(*dispatch_strand_);
    }
    spawn(*dispatch_strand_, dispatch_loop());
    spawn(executor, recover_inbox());
    for (const auto& channel : load_active("telegram")) {
        if (channel.mode() == "polling") ensure_polling(channel.id);
    }
    for (const auto& kind : adapter_kinds()) {  // email: IMAP polling
        const Adapter* adapter = find_adapter(kind);
        if (!adapter || !adapter->transport()) continue;
        for (const auto& channel : load_active(kind)) ensure_transport_polling(channel.id);
    }
}

void ChannelService::stop() {
    stopping_ = true;
    wake_dispatcher();
}

void ChannelService::wait_stopped() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return running_ == 0; });
}

void ChannelService::wake_dispatcher() {
    dispatch_wake_ = true;
    std::lock_guard lock(mutex_);
    if (!dispatch_strand_ || running_ == 0) return;
    asio::post(*dispatch_strand_, [this] {
        if (dispatch_timer_) dispatch_timer_->cancel();
    });
}

awaitable<void> ChannelService::sleep_ms(std::int64_t ms) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!stopping_ && std::chrono::steady_clock::now() < until) {
        timer.expires_after(std::min<std::chrono::steady_clock::duration>(until - std::chrono::steady_clock::now(),
                                                                          std::chrono::milliseconds(50)));
        co_await timer.async_wait(asio::use_awaitable);
    }
}

// --- inbound ---------------------------------------------------------------------------------------------------

awaitable<std::vector<std::int64_t>> ChannelService::store_events(const std::string& channel_id,
                                                                  const std::vector<InboundEvent>& events) {
    struct Row {
        std::string key;
        std::int64_t sequence;
        std::string payload;
    };
    std::vector<Row> rows;
    for (const auto& e : events) {
        if (e.key.empty()) continue;  // nothing to keep (Viber's webhook check)
        rows.push_back(Row{e.key, e.sequence, json::serialize(e.to_json())});
    }
    if (rows.empty()) co_return std::vector<std::int64_t>{};
    std::int64_t now = clock_.now_ms();
    auto insert = [channel_id, rows = std::move(rows), now](store::Tx& tx) {
        std::vector<std::int64_t> fresh;
        std::int64_t next = -1;
        for (const auto& r : rows) {
            std::int64_t id = r.sequence;
            if (id < 0) {
                if (next < 0) {
                    next = tx.query_one("SELECT COALESCE(MAX(update_id), 0) + 1 FROM channel_inbox WHERE channel_id = ?",
                                        {channel_id})
                               ->integer(0);
                }
                id = next;
            }
            if (tx.exec("INSERT INTO channel_inbox(channel_id, update_id, event_key, payload, status, received_at) "
                        "VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                        {channel_id, id, r.key, r.payload, now}) > 0) {
                fresh.push_back(id);
                if (r.sequence < 0) ++next;
            }
        }
        return fresh;
    };
    std::size_t total = events.size();
    std::vector<std::int64_t> fresh = co_await store::co_write(store_, std::move(insert));
    std::lock_guard lock(mutex_);
    stats_.received += fresh.size();
    stats_.duplicates += total - std::min(total, fresh.size());
    co_return fresh;
}

awaitable<int> ChannelService::receive_webhook(std::string channel_id, WebhookRequest request) {
    if (request.body.size() > kMaxWebhookBodyBytes) {
        throw core::TooLarge(fmt::format("an update is at most {} bytes", kMaxWebhookBodyBytes), "too_large");
    }
    auto channel = load_cached(channel_id);
    const Adapter* adapter = channel ? find_adapter(channel->kind) : nullptr;
    if (!channel || !adapter || channel->status == "disabled") {
        throw core::NotFound("no active channel with this webhook", "channel_not_found");
    }
    adapter->verify(ref(*channel), request);                         // Unauthorized: nothing stored
    std::vector<InboundEvent> events = adapter->parse(request.body);  // BadRequest: nothing stored
    std::vector<std::int64_t> fresh = co_await store_events(channel_id, events);
    if (!fresh.empty() && options_.process_inbound) {
        spawn(co_await asio::this_coro::executor, process_all(channel_id, std::move(fresh)));
    }
    co_return 200;
}

std::string ChannelService::verify_webhook(std::string_view channel_id, const WebhookRequest& request) const {
    auto channel = load_cached(std::string(channel_id));
    const Adapter* adapter = channel ? find_adapter(channel->kind) : nullptr;
    if (!channel || !adapter || channel->status == "disabled") {
        throw core::NotFound("no active channel with this webhook", "channel_not_found");
    }
    return adapter->handshake(ref(*channel), request);
}

awaitable<void> ChannelService::recover_inbox() {
    std::vector<std::pair<std::string, std::int64_t>> rows;
    store_.read([&](store::Tx& tx) {
        for (const auto& row : tx.query("SELECT channel_id, update_id FROM channel_inbox WHERE status = 'pending' "
                                        "ORDER BY received_at, update_id")) {
            rows.emplace_back(row.text(0), row.integer(1));
        }
    });
    for (auto& [channel, update] : rows) {
        if (stopping_) break;
        co_await process(channel, update);
    }
}

std::string ChannelService::callback_data(const std::string& button_id, std::size_t max_bytes) const {
    if (button_id.size() <= max_bytes && (button_id.empty() || button_id[0] != '~')) return button_id;
    unsigned char hash[16];
    crypto_generichash(hash, sizeof hash, reinterpret_cast<const unsigned char*>(button_id.data()), button_id.size(),
                       nullptr, 0);
    char hex[sizeof hash * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    return std::string("~") + hex;
}

std::string ChannelService::resolve_callback(const std::string& dialog_id, const std::string& data,
                                             std::size_t max_bytes) const {
    if (data.empty() || data[0] != '~') return data;
    // A hashed id: look for the button among the dialog's bot messages, newest match wins.
    std::string found = data;
    std::int64_t after = 0;
    for (int page = 0; page < 20; ++page) {
        auto messages = dialogs_.messages(dialog_id, after, 500);
        for (const auto& m : messages) {
            for (const auto& b : buttons_of(m.buttons)) {
                if (callback_data(b.id, max_bytes) == data) found = b.id;
            }
            after = m.n;
        }
        if (messages.size() < 500) break;
    }
    return found;
}

awaitable<void> ChannelService::process_all(std::string channel_id, std::vector<std::int64_t> update_ids) {
    for (std::int64_t id : update_ids) {
        if (stopping_) break;
        co_await process(channel_id, id);
    }
}

awaitable<void> ChannelService::process(std::string channel_id, std::int64_t update_id) {
    std::string status = "done";
    std::string error;
    try {
        std::optional<store::Row> row;
        store_.read([&](store::Tx& tx) {
            row = tx.query_one("SELECT payload, status FROM channel_inbox WHERE channel_id = ? AND update_id = ?",
                               {channel_id, update_id});
        });
        if (!row || row->text(1) != "pending") co_return;
        // The registry cache (invalidated by every registry change): no SQLite read and no credential
        // decryption per inbound message.
        std::shared_ptr<const Stored> channel = load_cached(channel_id);
        if (!channel) co_return;
        const Adapter* adapter = find_adapter(channel->kind);
        InboundEvent event;
        if (!adapter) {
            status = "ignored";
        } else {
            try {
                json::value stored = core::parse_json(row->text(0));
                if (stored.is_object() && stored.get_object().contains("update_id")) {
                    // A raw Telegram update stored before events were normalised.
                    event = adapter->parse(row->text(0)).at(0);
                } else {
                    event = InboundEvent::from_json(stored);
                }
            } catch (const core::Error& e) {
                status = "invalid";
                error = e.what();
            }
        }
        if (status == "done") status = co_await process_event(*channel, event);
    } catch (const std::exception& e) {
        status = "failed";
        error = e.what();
        log_error("channel_update_failed", channel_id, error);
    }
    std::int64_t now = clock_.now_ms();
    auto mark = [channel_id, update_id, status, error, now](store::Tx& tx) {
        tx.exec("UPDATE channel_inbox SET status = ?, error = ?, processed_at = ? WHERE channel_id = ? AND "
                "update_id = ?",
                {status, error.empty() ? store::Value(nullptr) : store::Value(error), now, channel_id, update_id});
    };
    co_await store::co_write(store_, std::move(mark));
    std::lock_guard lock(mutex_);
    ++stats_.processed;
}

awaitable<std::string> ChannelService::process_event(const Stored& channel, const InboundEvent& event) {
    const Adapter* adapter = find_adapter(channel.kind);
    if (auto ack = adapter->acknowledge(ref(channel), event)) {
        ack->timeout_ms = options_.request_timeout_ms;
        co_await send(std::move(*ack));  // best effort (stops Telegram's button spinner)
    }
    if (event.type == InboundEvent::Type::kIgnored) co_return "ignored";
    if (event.type == InboundEvent::Type::kReceipt) {
        co_await apply_receipt(channel, event);
        co_return "done";
    }
    if (event.user_id.empty()) co_return "invalid";
    std::string user_key = channel.id + "\n" + event.user_id;
    auto guard = co_await user_locks_.lock(std::move(user_key));
    std::optional<std::string> dialog_id;
    std::string chat_id;
    std::int64_t last_inbound = 0;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one("SELECT dialog_id, chat_id, last_inbound_at FROM channel_identities WHERE "
                                  "channel_id = ? AND external_user = ?",
                                  {channel.id, event.user_id})) {
            dialog_id = r->text(0);
            chat_id = r->text(1);
            last_inbound = r->integer(2);
        }
    });
    if (dialog_id && !dialogs_.find(*dialog_id)) dialog_id.reset();
    if (event.type == InboundEvent::Type::kStart && dialog_id) co_return "ignored";  // already talking
    std::int64_t now = clock_.now_ms();
    std::string chat = event.chat_id.empty() ? event.user_id : event.chat_id;
    if (!dialog_id) {
        clients::NewClient client;
        client.name = event.name;
        client.language = event.language;
        client.email = event.email;  // email: one client card per address across threads and channels
        bots::DialogInfo dialog = co_await dialogs_.create(channel.bot_id, channel.id, std::move(client));
        dialog_id = dialog.id;
        chat_id.clear();
        last_inbound = 0;
    }
    if (chat_id != chat || now - last_inbound > kInboundRefreshMs) {
        auto link = [channel_id = channel.id, user = event.user_id, chat, id = *dialog_id, now](store::Tx& tx) {
            tx.exec("INSERT INTO channel_identities(channel_id, external_user, chat_id, dialog_id, created_at, "
                    "last_inbound_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel_id, external_user) DO UPDATE SET "
                    "chat_id = excluded.chat_id, dialog_id = excluded.dialog_id, last_inbound_at = "
                    "excluded.last_inbound_at",
                    {channel_id, user, chat, id, now, now});
        };
        co_await store::co_write(store_, std::move(link));
    }
    if (!event.thread.empty()) {  // email: the subject and Message-IDs replies are threaded under
        auto keep = [channel_id = channel.id, user = event.user_id, state = json::serialize(event.thread),
                     now](store::Tx& tx) {
            tx.exec("INSERT INTO channel_threads(channel_id, external_user, state, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (channel_id, external_user) DO UPDATE SET state = excluded.state, updated_at = "
                    "excluded.updated_at",
                    {channel_id, user, state, now});
        };
        co_await store::co_write(store_, std::move(keep));
    }
    bots::Trigger trigger;
    if (event.type == InboundEvent::Type::kStart) {
        trigger = bots::Trigger::start();
    } else {
        trigger.kind = bots::Trigger::Kind::kMessage;
        trigger.message = event.message;
        if (trigger.message.kind == scenario::ClientMessage::Kind::kButton) {
            trigger.message.button =
                resolve_callback(*dialog_id, trigger.message.button, adapter->limits().max_payload_bytes);
        }
        trigger.external_id = (channel.kind == "telegram" ? std::string("tg") : channel.kind) + ":" + event.key;
    }
    co_await dialogs_.run(*dialog_id, std::move(trigger));
    wake_dispatcher();
    co_return "done";
}

awaitable<void> ChannelService::apply_receipt(const Stored& channel, const InboundEvent& e) {
    std::int64_t at = e.timestamp_ms > 0 ? e.timestamp_ms : clock_.now_ms();
    struct Change {
        std::string dialog_id;
        std::int64_t n;
        std::string status;
    };
    auto write = [channel_id = channel.id, e, at](store::Tx& tx) {
        std::vector<Change> changed;
        store::Value delivered = e.receipt == "delivered" || e.receipt == "read" ? store::Value(at) : nullptr;
        store::Value read = e.receipt == "read" ? store::Value(at) : nullptr;
        store::Value failed = e.receipt == "failed" ? store::Value(at) : nullptr;
        store::Value error = e.error.empty() ? store::Value(nullptr) : store::Value(e.error);
        auto apply = [&](const std::string& message_id, const store::Row& row) {
            std::string old = row.text(2);
            std::string now_status = rank(e.receipt) > rank(old) ? e.receipt : old;
            tx.exec("UPDATE channel_messages SET status = ?, delivered_at = COALESCE(delivered_at, ?), read_at = "
                    "COALESCE(read_at, ?), failed_at = COALESCE(failed_at, ?), error = COALESCE(error, ?) WHERE "
                    "channel_id = ? AND message_id = ?",
                    {now_status, delivered, read, failed, error, channel_id, message_id});
            if (now_status != old && !row.is_null(0)) changed.push_back(Change{row.text(0), row.integer(1), now_status});
        };
        for (const auto& id : e.message_ids) {
            auto row = tx.query_one("SELECT dialog_id, n, status FROM channel_messages WHERE channel_id = ? AND "
                                    "message_id = ?",
                                    {channel_id, id});
            if (row) {
                apply(id, *row);
            } else {
                // The report overtook the record of the send: kept, and merged when the send is recorded.
                tx.exec("INSERT INTO channel_messages(channel_id, message_id, chat_id, status, delivered_at, read_at, "
                        "failed_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        {channel_id, id, e.chat_id.empty() ? store::Value(nullptr) : store::Value(e.chat_id), e.receipt,
                         delivered, read, failed, error});
            }
        }
        if (e.watermark_ms > 0 && !e.chat_id.empty()) {
            std::vector<std::pair<std::string, store::Row>> rows;
            for (auto& row : tx.query("SELECT dialog_id, n, status, message_id FROM channel_messages WHERE channel_id = "
                                      "? AND chat_id = ? AND sent_at <= ?",
                                      {channel_id, e.chat_id, e.watermark_ms})) {
                if (rank(row.text(2)) < rank(e.receipt)) rows.emplace_back(row.text(3), row);
            }
            for (const auto& [id, row] : rows) apply(id, row);
        }
        return changed;
    };
    std::vector<Change> changed = co_await store::co_write(store_, std::move(write));
    std::map<std::pair<std::string, std::int64_t>, std::string> best;
    for (auto& c : changed) {
        auto& s = best[{c.dialog_id, c.n}];
        if (rank(c.status) > rank(s)) s = c.status;
    }
    for (const auto& [key, status] : best) co_await dialogs_.mark_delivery(key.first, key.second, status);
    std::lock_guard lock(mutex_);
    ++stats_.receipts;
}

// --- Telegram long polling ---------------------------------------------------------------------------------------

void ChannelService::ensure_polling(const std::string& channel_id) {
    std::optional<asio::any_io_executor> executor;
    {
        std::lock_guard lock(mutex_);
        if (!executor_ || stopping_ || polling_[channel_id]) return;
        polling_[channel_id] = true;
        executor = executor_;
    }
    spawn(*executor, poll_loop(channel_id));
}

awaitable<void> ChannelService::poll_loop(std::string channel_id) {
    const Adapter* adapter = find_adapter("telegram");
    while (!stopping_) {
        std::optional<Stored> channel;
        try {
            channel = load(channel_id);
        } catch (const std::exception& e) {
            log_error("channel_unreadable", channel_id, e.what());
        }
        if (!channel || channel->status == "disabled" || channel->mode() != "polling") break;
        std::int64_t offset = store::read_value(store_, [&](store::Tx& tx) {
            return tx.query_one("SELECT COALESCE(MAX(update_id) + 1, 0) FROM channel_inbox WHERE channel_id = ?",
                                {channel_id})
                ->integer(0);
        });
        json::object args{{"offset", offset},
                          {"timeout", options_.poll_timeout_s},
                          {"allowed_updates", json::array{"message", "callback_query"}}};
        outbound::Response response = co_await call(*channel, "getUpdates", std::move(args),
                                                    (options_.poll_timeout_s + 10) * 1000);
        if (stopping_) break;
        std::int64_t retry_after = 0;
        std::string description;
        if (!internal::answer_ok(response, channel->token(), &retry_after, &description)) {
            std::string error = "getUpdates failed: " + description;
            if (channel->status != "error" || channel->last_error != error) {
                co_await set_status(channel_id, "error", std::move(error));
            }
            co_await sleep_ms(std::max(options_.poll_error_pause_ms, retry_after * 1000));
            continue;
        }
        if (channel->status == "error") co_await set_status(channel_id, "active", "");
        json::value body = json::parse(response.body);
        const json::value* result = body.as_object().if_contains("result");
        if (!result || !result->is_array()) continue;
        std::vector<InboundEvent> events;
        for (const auto& item : result->get_array()) {
            std::string payload = json::serialize(item);
            try {
                for (auto& e : adapter->parse(payload)) events.push_back(std::move(e));
            } catch (const core::Error&) {
                // Kept as ignored when it has an id at all, so the offset moves past it.
                if (item.is_object()) {
                    if (auto* id = item.get_object().if_contains("update_id"); id && id->is_int64() &&
                                                                               id->get_int64() >= 0) {
                        InboundEvent skipped;
                        skipped.key = std::to_string(id->get_int64());
                        skipped.sequence = id->get_int64();
                        events.push_back(std::move(skipped));
                    }
                }
            }
        }
        std::vector<std::int64_t> fresh = co_await store_events(channel_id, events);
        if (!fresh.empty() && options_.process_inbound) {
            spawn(co_await asio::this_coro::executor, process_all(channel_id, std::move(fresh)));
        }
    }
    std::lock_guard lock(mutex_);
    polling_[channel_id] = false;
}

// --- transports (email: IMAP polling, SMTP sending) --------------------------------------------------------------

TransportContext ChannelService::transport_context() const {
    TransportContext context;
    context.attachments_dir = options_.email_attachments_dir;
    context.allowlist = options_.transport_allowlist;
    context.timeout_ms = options_.transport_timeout_ms;
    context.cancelled = &stopping_;
    return context;
}

void ChannelService::ensure_transport_polling(const std::string& channel_id) {
    std::optional<asio::any_io_executor> executor;
    {
        std::lock_guard lock(mutex_);
        if (!executor_ || stopping_ || polling_[channel_id]) return;
        polling_[channel_id] = true;
        executor = executor_;
    }
    spawn(*executor, transport_poll_loop(channel_id));
}

awaitable<void> ChannelService::transport_poll_loop(std::string channel_id) {
    while (!stopping_) {
        std::optional<Stored> channel;
        try {
            channel = load(channel_id);
        } catch (const std::exception& e) {
            log_error("channel_unreadable", channel_id, e.what());
        }
        const Adapter* adapter = channel ? find_adapter(channel->kind) : nullptr;
        const Transport* transport = adapter ? adapter->transport() : nullptr;
        if (!channel || !transport || channel->status == "disabled") break;
        std::string cursor = store::read_value(store_, [&](store::Tx& tx) {
            auto row = tx.query_one("SELECT cursor FROM channel_poll_state WHERE channel_id = ?", {channel_id});
            return row ? row->text(0) : std::string();
        });
        ChannelRef channel_ref = ref(*channel);
        PollResult result;
        try {
            auto work = [transport, channel_ref, cursor, context = transport_context()] {
                return transport->poll(channel_ref, cursor, context);
            };
            result = co_await asio_util::co_offload(*transport_pool_, std::move(work));
        } catch (const std::exception& e) {
            result.error = e.what();
        }
        if (stopping_) break;  // what this poll fetched is fetched again: the cursor did not move
        // The events first, then the cursor: a crash in between re-fetches them, and their keys make them duplicates.
        if (!result.events.empty()) {
            std::vector<std::int64_t> fresh = co_await store_events(channel_id, result.events);
            if (!fresh.empty() && options_.process_inbound) {
                spawn(co_await asio::this_coro::executor, process_all(channel_id, std::move(fresh)));
            }
        }
        if (!result.cursor.empty() && result.cursor != cursor) {
            std::int64_t now = clock_.now_ms();
            auto save = [channel_id, next = result.cursor, now](store::Tx& tx) {
                tx.exec("INSERT INTO channel_poll_state(channel_id, cursor, updated_at) VALUES (?, ?, ?) ON CONFLICT "
                        "(channel_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                        {channel_id, next, now});
            };
            co_await store::co_write(store_, std::move(save));
        }
        std::string error = redact(*channel, result.error);
        if (!error.empty()) {
            log_error("channel_poll_failed", channel_id, error);
            if (channel->status != "error" || channel->last_error != error) {
                co_await set_status(channel_id, "error", std::move(error));
            }
        } else if (channel->status == "error") {
            co_await set_status(channel_id, "active", "");
        }
        std::int64_t interval = options_.transport_poll_interval_ms > 0 ? options_.transport_poll_interval_ms
                                                                        : transport->poll_interval_ms(channel_ref);
        co_await sleep_ms(interval);
    }
    std::lock_guard lock(mutex_);
    polling_[channel_id] = false;
}

awaitable<SendResult> ChannelService::transport_send(const Stored& channel, const OutboundContext& to,
                                                     const bots::DialogService::Delivery& d) {
    const Transport* transport = find_adapter(channel.kind)->transport();
    json::object thread;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one("SELECT state FROM channel_threads WHERE channel_id = ? AND external_user = ?",
                                    {channel.id, to.user_id})) {
            boost::system::error_code ec;
            json::value v = json::parse(row->text(0), ec);
            if (!ec && v.is_object()) thread = std::move(v.get_object());
        }
    });
    auto work = [transport, channel_ref = ref(channel), to, text = d.message.text,
                 buttons = buttons_of(d.message.buttons), thread = std::move(thread), context = transport_context()] {
        return transport->send(channel_ref, to, text, buttons, thread, context);
    };
    try {
        co_return co_await asio_util::co_offload(*transport_pool_, std::move(work));
    } catch (const std::exception& e) {
        SendResult failed;
        failed.outcome = SendResult::Outcome::kTransient;
        failed.error = e.what();
        co_return failed;
    }
}

// --- dispatcher ------------------------------------------------------------------------------------------------

std::int64_t ChannelService::try_take(const Stored& channel, const std::string& key) {
    const Adapter* adapter = find_adapter(channel.kind);
    AdapterLimits limits = adapter->limits();
    double rate = options_.bot_messages_per_second > 0 ? options_.bot_messages_per_second : limits.channel_per_second;
    double chat_rate =
        options_.chat_messages_per_second >= 0 ? options_.chat_messages_per_second : limits.chat_per_second;
    double chat_burst = std::max(1.0, limits.chat_burst) + kChatTolerance;
    std::int64_t now = clock_.now_ms();
    std::lock_guard lock(mutex_);
    if (chat_buckets_.size() > kMaxChatBuckets) {
        for (auto it = chat_buckets_.begin(); it != chat_buckets_.end();) {
            bool idle = now - it->second.last_ms > 60'000 && it->second.paused_until_ms < now;
            it = idle ? chat_buckets_.erase(it) : std::next(it);
        }
    }
    Bucket& b = buckets_[channel.id];
    refill(b, rate, std::max(1.0, rate), now);
    Bucket& c = chat_buckets_[key];
    refill(c, chat_rate, chat_burst, now);
    std::int64_t channel_wait = wait_of(b, rate, now);
    std::int64_t chat_wait = wait_of(c, chat_rate, now);
    if (channel_wait == 0 && chat_wait == 0) {
        if (rate > 0) b.tokens -= 1.0;
        if (chat_rate > 0) c.tokens -= 1.0;
        return 0;
    }
    // Negative: the whole channel waits (the dispatcher then skips its other dialogs this round).
    return channel_wait > 0 ? -std::max(channel_wait, chat_wait) : chat_wait;
}

awaitable<void> ChannelService::take_tokens(const Stored& channel, const std::string& key) {
    while (!stopping_) {
        std::int64_t wait = try_take(channel, key);
        if (wait == 0) co_return;
        co_await sleep_ms(std::abs(wait));
    }
}

void ChannelService::pause(const Stored& channel, const std::string& key, bool whole_channel, std::int64_t until) {
    std::lock_guard lock(mutex_);
    Bucket& b = whole_channel ? buckets_[channel.id] : chat_buckets_[key];
    b.paused_until_ms = std::max(b.paused_until_ms, until);
}

awaitable<void> ChannelService::dispatch_loop() {
    std::map<std::string, Stored> channels;
    std::uint64_t generation = 0;
    std::int64_t loaded_at = -1;
    while (!stopping_) {
        std::int64_t wait = options_.dispatch_idle_ms;
        try {
            std::int64_t now = clock_.now_ms();
            if (loaded_at < 0 || generation != registry_generation_ || now - loaded_at > 5'000) {
                generation = registry_generation_;
                loaded_at = now;
                channels.clear();
                for (const auto& kind : adapter_kinds()) {
                    for (auto& c : load_active(kind)) channels.emplace(c.id, std::move(c));
                }
            }
            // Per channel, so that a channel whose oldest messages all wait (a chat over its rate, a paused bot)
            // does not hide the other channels' messages behind them.
            std::vector<bots::DialogService::Delivery> due;
            for (const auto& [id, c] : channels) {
                for (auto& d : dialogs_.pending_deliveries({id}, options_.dispatch_batch)) due.push_back(std::move(d));
            }
            std::set<std::string> candidates;
            {
                std::lock_guard lock(mutex_);
                for (const auto& d : due) {
                    if (!in_flight_.count(d.dialog_id)) candidates.insert(d.dialog_id);
                }
            }
            std::map<std::pair<std::string, std::int64_t>, std::int64_t> next_at;
            std::map<std::string, Identity> identities;
            if (!candidates.empty()) {
                store::Params params(candidates.begin(), candidates.end());
                store_.read([&](store::Tx& tx) {
                    for (const auto& row : tx.query("SELECT dialog_id, n, next_at FROM channel_deliveries WHERE "
                                                    "dialog_id IN " + in_list(params.size()),
                                                    params)) {
                        next_at[{row.text(0), row.integer(1)}] = row.integer(2);
                    }
                    for (const auto& row : tx.query("SELECT dialog_id, external_user, chat_id, last_inbound_at FROM "
                                                    "channel_identities WHERE dialog_id IN " + in_list(params.size()),
                                                    params)) {
                        identities[row.text(0)] = Identity{row.text(1), row.text(2), row.integer(3)};
                    }
                });
            }
            std::set<std::string> blocked;  // dialogs whose earlier message is not out yet: keep per-chat order
            std::set<std::string> channels_waiting;
            now = clock_.now_ms();
            for (const auto& d : due) {
                if (stopping_) break;
                if (!candidates.count(d.dialog_id) || blocked.count(d.dialog_id)) continue;
                {
                    std::lock_guard lock(mutex_);
                    if (in_flight_.size() >= options_.max_in_flight) break;
                }
                auto channel = channels.find(d.channel);
                if (channel == channels.end()) continue;
                blocked.insert(d.dialog_id);
                if (channels_waiting.count(d.channel)) continue;
                auto when = next_at.find({d.dialog_id, d.message.n});
                if (when != next_at.end() && when->second > now) {
                    wait = std::min(wait, when->second - now);
                    continue;
                }
                auto identity = identities.find(d.dialog_id);
                if (identity != identities.end()) {
                    std::int64_t w = try_take(channel->second, chat_key(d.channel, identity->second.chat));
                    if (w != 0) {
                        wait = std::min(wait, std::abs(w));
                        if (w < 0) channels_waiting.insert(d.channel);
                        continue;
                    }
                }
                {
                    std::lock_guard lock(mutex_);
                    in_flight_.insert(d.dialog_id);
                }
                std::optional<Identity> who;
                if (identity != identities.end()) who = identity->second;
                spawn(*executor_, deliver(channel->second, d, std::move(who)));
            }
        } catch (const std::exception& e) {
            log_error("channel_dispatch_failed", "", e.what());
        }
        if (stopping_) break;
        if (!dispatch_wake_.exchange(false)) {
            dispatch_timer_->expires_after(std::chrono::milliseconds(std::max<std::int64_t>(wait, 1)));
            boost::system::error_code ec;
            co_await dispatch_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
            dispatch_wake_ = false;
        }
    }
}

awaitable<void> ChannelService::deliver(Stored channel, bots::DialogService::Delivery d,
                                        std::optional<Identity> identity) {
    try {
        if (!identity) {
            co_await finish(channel, d, "failed", "no chat is linked to this dialog", 0);
        } else {
            co_await deliver_parts(channel, d, *identity);
        }
    } catch (const std::exception& e) {
        log_error("channel_delivery_error", channel.id, e.what());
    }
    {
        std::lock_guard lock(mutex_);
        in_flight_.erase(d.dialog_id);
    }
    wake_dispatcher();
}

awaitable<void> ChannelService::finish(const Stored& channel, const bots::DialogService::Delivery& d,
                                       std::string outcome, std::string error, std::int64_t attempts) {
    if (!error.empty()) log_error("channel_delivery_" + outcome, channel.id, error);
    bool letter = outcome == "dead" || outcome == "failed";
    std::int64_t now = clock_.now_ms();
    auto write = [channel_id = channel.id, dialog = d.dialog_id, n = d.message.n, outcome, error, attempts, letter,
                  now, id = core::new_id()](store::Tx& tx) {
        tx.exec("DELETE FROM channel_deliveries WHERE dialog_id = ? AND n = ?", {dialog, n});
        if (letter) {
            tx.exec("INSERT INTO channel_dead_letters(id, channel_id, dialog_id, n, outcome, attempts, last_error, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dialog_id, n) DO UPDATE SET "
                    "channel_id = excluded.channel_id, outcome = excluded.outcome, attempts = excluded.attempts, "
                    "last_error = excluded.last_error, created_at = excluded.created_at",
                    {id, channel_id, dialog, n, outcome, attempts,
                     error.empty() ? store::Value(nullptr) : store::Value(error), now});
        }
    };
    co_await store::co_write(store_, std::move(write));
    co_await dialogs_.mark_delivery(d.dialog_id, d.message.n, outcome);
    if (outcome == "sent") {
        // A delivery report may have arrived while the parts went out (or before the send was recorded): it wins.
        std::string best = "sent";
        store_.read([&](store::Tx& tx) {
            for (const auto& row : tx.query("SELECT status FROM channel_messages WHERE dialog_id = ? AND n = ?",
                                            {d.dialog_id, d.message.n})) {
                if (rank(row.text(0)) > rank(best)) best = row.text(0);
            }
        });
        if (best != "sent") co_await dialogs_.mark_delivery(d.dialog_id, d.message.n, best);
    }
    std::lock_guard lock(mutex_);
    if (outcome == "sent") ++stats_.sent;
    if (outcome == "dead") ++stats_.dead;
    if (outcome == "failed") ++stats_.failed;
}

awaitable<void> ChannelService::record_sent(const Stored& channel, const bots::DialogService::Delivery& d,
                                            const std::string& chat_id, std::string message_id, std::size_t part) {
    if (message_id.empty()) {
        message_id = part == 0 ? fmt::format("{}:{}", d.dialog_id, d.message.n)
                               : fmt::format("{}:{}:{}", d.dialog_id, d.message.n, part);
    }
    std::int64_t now = clock_.now_ms();
    auto write = [channel_id = channel.id, message_id, dialog = d.dialog_id, n = d.message.n, chat_id,
                  now](store::Tx& tx) -> std::string {
        auto row = tx.query_one("SELECT status FROM channel_messages WHERE channel_id = ? AND message_id = ?",
                                {channel_id, message_id});
        if (!row) {
            tx.exec("INSERT INTO channel_messages(channel_id, message_id, dialog_id, n, chat_id, status, sent_at) "
                    "VALUES (?, ?, ?, ?, ?, 'sent', ?)",
                    {channel_id, message_id, dialog, n, chat_id, now});
            return "sent";
        }
        tx.exec("UPDATE channel_messages SET dialog_id = ?, n = ?, chat_id = ?, sent_at = ? WHERE channel_id = ? AND "
                "message_id = ?",
                {dialog, n, chat_id, now, channel_id, message_id});
        return row->text(0);  // a report that arrived before this record
    };
    co_await store::co_write(store_, std::move(write));
}

awaitable<bool> ChannelService::deliver_parts(const Stored& channel, const bots::DialogService::Delivery& d,
                                              const Identity& identity) {
    const Adapter* adapter = find_adapter(channel.kind);
    std::int64_t attempts = 0;
    std::int64_t parts_sent = 0;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one("SELECT attempts, parts_sent FROM channel_deliveries WHERE dialog_id = ? AND n = ?",
                                  {d.dialog_id, d.message.n})) {
            attempts = r->integer(0);
            parts_sent = r->integer(1);
        }
    });
    OutboundContext to;
    to.chat_id = identity.chat;
    to.user_id = identity.user;
    to.dialog_id = d.dialog_id;
    to.n = d.message.n;
    to.last_inbound_ms = identity.last_inbound_at;
    to.now_ms = clock_.now_ms();
    std::size_t max_payload = adapter->limits().max_payload_bytes;
    const Transport* transport = adapter->transport();  // email: one SMTP send instead of HTTP requests
    Rendered rendered;
    if (!transport) {
        rendered = adapter->render(ref(channel), to, d.message.text, buttons_of(d.message.buttons),
                                   [&](const std::string& id) { return callback_data(id, max_payload); });
    }
    if (!rendered.refused.empty()) {
        co_await finish(channel, d, "failed", rendered.refused, attempts);
        co_return true;
    }
    std::size_t parts = transport ? 1 : rendered.requests.size();
    std::string key = chat_key(channel.id, identity.chat);
    for (std::size_t i = static_cast<std::size_t>(parts_sent); i < parts; ++i) {
        if (i > static_cast<std::size_t>(parts_sent)) co_await take_tokens(channel, key);  // the first: dispatcher's
        if (stopping_) co_return false;
        SendResult result;
        if (transport) {
            result = co_await transport_send(channel, to, d);
        } else {
            outbound::Request request = rendered.requests[i];
            request.timeout_ms = options_.request_timeout_ms;
            outbound::Response response = co_await send(std::move(request));
            result = adapter->classify(response);
        }
        result.error = redact(channel, result.error);
        if (result.outcome == SendResult::Outcome::kOk) {
            co_await record_sent(channel, d, identity.chat, result.message_id, i);
            if (i + 1 < parts) {
                auto progress = [dialog = d.dialog_id, n = d.message.n, sent = static_cast<std::int64_t>(i + 1),
                                 attempts](store::Tx& tx) {
                    tx.exec("INSERT INTO channel_deliveries(dialog_id, n, attempts, parts_sent, next_at) "
                            "VALUES (?, ?, ?, ?, 0) ON CONFLICT (dialog_id, n) DO UPDATE SET parts_sent = "
                            "excluded.parts_sent",
                            {dialog, n, attempts, sent});
                };
                co_await store::co_write(store_, std::move(progress));
            }
            continue;
        }
        std::int64_t now = clock_.now_ms();
        std::int64_t when = 0;
        if (result.outcome == SendResult::Outcome::kRetryAfter) {
            when = now + std::max<std::int64_t>(result.retry_after_ms, 1);
            pause(channel, key, result.whole_channel, when);  // Telegram's flood limit applies to the whole bot
        } else if (result.outcome == SendResult::Outcome::kTransient) {
            ++attempts;
            if (attempts >= kMaxDeliveryAttempts) {
                co_await finish(channel, d, "dead", result.error, attempts);
                co_return true;
            }
            when = now + std::min(options_.backoff_max_ms, options_.backoff_base_ms << (attempts - 1));
        } else {
            // 400 chat not found, 403 blocked by the user, an expired token...: not retried, kept as a dead letter.
            co_await finish(channel, d, "failed", result.error, attempts);
            co_return true;
        }
        auto retry = [dialog = d.dialog_id, n = d.message.n, attempts, sent = static_cast<std::int64_t>(i), when,
                      error = result.error](store::Tx& tx) {
            tx.exec("INSERT INTO channel_deliveries(dialog_id, n, attempts, parts_sent, next_at, last_error) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dialog_id, n) DO UPDATE SET attempts = excluded.attempts, "
                    "parts_sent = excluded.parts_sent, next_at = excluded.next_at, last_error = excluded.last_error",
                    {dialog, n, attempts, sent, when, error});
        };
        co_await store::co_write(store_, std::move(retry));
        std::lock_guard lock(mutex_);
        ++stats_.retried;
        co_return false;
    }
    co_await finish(channel, d, "sent", "", attempts);
    co_return true;
}

}  // namespace parley::channels

// The channel runtime: inbound webhooks and long polling into the inbox, processing inbox rows into bot turns,
// and the dispatcher that sends the outbox through the Telegram Bot API.
#include <fmt/format.h>
#include <sodium.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <map>
#include <set>

#include "channels/channels.h"
#include "channels/telegram.h"
#include "channels/internal/bot_api.h"
#include "channels/internal/stored.h"
#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "store/async.h"

namespace parley::channels {

namespace asio = boost::asio;
using asio::awaitable;

namespace {

constexpr std::string_view kTelegram = "telegram";

void log_error(std::string_view event, std::string_view channel, std::string_view error) {
    core::log_event(spdlog::level::warn, event,
                    fmt::format(R"("channel":{},"error":{})", core::json_quote(channel), core::json_quote(error)));
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
    }
    spawn(executor, dispatch_loop());
    spawn(executor, recover_inbox());
    for (const auto& channel : load_active(kTelegram)) {
        if (channel.mode() == "polling") ensure_polling(channel.id);
    }
}

void ChannelService::stop() { stopping_ = true; }

void ChannelService::wait_stopped() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return running_ == 0; });
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

awaitable<bool> ChannelService::store_update(const std::string& channel_id, std::int64_t update_id,
                                             std::string payload) {
    std::int64_t now = clock_.now_ms();
    auto insert = [channel_id, update_id, payload = std::move(payload), now](store::Tx& tx) {
        return tx.exec("INSERT INTO channel_inbox(channel_id, update_id, payload, status, received_at) "
                       "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (channel_id, update_id) DO NOTHING",
                       {channel_id, update_id, payload, now}) > 0;
    };
    bool fresh = co_await store::co_write(store_, std::move(insert));
    std::lock_guard lock(mutex_);
    ++(fresh ? stats_.received : stats_.duplicates);
    co_return fresh;
}

awaitable<int> ChannelService::receive_webhook(std::string channel_id, std::string secret, std::string body) {
    if (body.size() > kMaxWebhookBodyBytes) {
        throw core::TooLarge(fmt::format("an update is at most {} bytes", kMaxWebhookBodyBytes), "too_large");
    }
    auto channel = load(channel_id);
    if (!channel || channel->kind != kTelegram || channel->status == "disabled") {
        throw core::NotFound("no active channel with this webhook", "channel_not_found");
    }
    if (secret.size() != channel->webhook_secret.size() ||
        sodium_memcmp(secret.data(), channel->webhook_secret.data(), secret.size()) != 0) {
        throw core::Unauthorized("the X-Telegram-Bot-Api-Secret-Token header is missing or wrong", "invalid_secret");
    }
    telegram::Update update = telegram::parse_update(body);  // BadRequest: nothing stored
    if (co_await store_update(channel_id, update.update_id, std::move(body))) {
        spawn(co_await asio::this_coro::executor, process(channel_id, update.update_id));
    }
    co_return 200;
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

std::string ChannelService::callback_data(const std::string& button_id) const {
    if (button_id.size() <= telegram::kMaxCallbackDataBytes && (button_id.empty() || button_id[0] != '~')) {
        return button_id;
    }
    unsigned char hash[16];
    crypto_generichash(hash, sizeof hash, reinterpret_cast<const unsigned char*>(button_id.data()), button_id.size(),
                       nullptr, 0);
    char hex[sizeof hash * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    return std::string("~") + hex;
}

std::string ChannelService::resolve_callback(const std::string& dialog_id, const std::string& data) const {
    if (data.empty() || data[0] != '~') return data;
    // A hashed id: look for the button among the dialog's bot messages, newest match wins.
    std::string found = data;
    std::int64_t after = 0;
    for (int page = 0; page < 20; ++page) {
        auto messages = dialogs_.messages(dialog_id, after, 500);
        for (const auto& m : messages) {
            for (const auto& b : m.buttons) {
                if (!b.is_object()) continue;
                auto id = b.get_object().find("id");
                if (id == b.get_object().end() || !id->value().is_string()) continue;
                std::string text(id->value().get_string());
                if (callback_data(text) == data) found = text;
            }
            after = m.n;
        }
        if (messages.size() < 500) break;
    }
    return found;
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
        auto channel = load(channel_id);
        if (!channel) co_return;
        telegram::Update update;
        try {
            update = telegram::parse_update(row->text(0));
        } catch (const core::Error& e) {
            status = "invalid";
            error = e.what();
        }
        if (status == "done" && !update.callback_query_id.empty()) {
            // Stops the button's loading indicator; best effort.
            json::object answer;
            answer["callback_query_id"] = update.callback_query_id;
            co_await call(*channel, "answerCallbackQuery", std::move(answer), options_.request_timeout_ms);
        }
        if (status == "done" && update.kind == telegram::Update::Kind::kIgnored) status = "ignored";
        if (status == "done") {
            std::string user_key = channel_id + "\n" + update.user_id;
            auto guard = co_await user_locks_.lock(std::move(user_key));
            std::optional<std::string> dialog_id;
            store_.read([&](store::Tx& tx) {
                if (auto r = tx.query_one("SELECT dialog_id FROM channel_identities WHERE channel_id = ? AND "
                                          "external_user = ?",
                                          {channel_id, update.user_id})) {
                    dialog_id = r->text(0);
                }
            });
            if (dialog_id && !dialogs_.find(*dialog_id)) dialog_id.reset();
            if (!dialog_id) {
                clients::NewClient client;
                client.name = update.first_name;
                if (!update.last_name.empty()) {
                    if (!client.name.empty()) client.name.push_back(' ');
                    client.name += update.last_name;
                }
                client.language = update.language;
                bots::DialogInfo dialog = co_await dialogs_.create(channel->bot_id, channel_id, std::move(client));
                dialog_id = dialog.id;
                std::int64_t now = clock_.now_ms();
                auto link = [channel_id, user = update.user_id, chat = update.chat_id, id = dialog.id,
                             now](store::Tx& tx) {
                    tx.exec("INSERT INTO channel_identities(channel_id, external_user, chat_id, dialog_id, created_at) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_id, external_user) DO UPDATE SET "
                            "chat_id = excluded.chat_id, dialog_id = excluded.dialog_id",
                            {channel_id, user, chat, id, now});
                };
                co_await store::co_write(store_, std::move(link));
            }
            bots::Trigger trigger;
            trigger.kind = bots::Trigger::Kind::kMessage;
            trigger.message = update.message;
            if (trigger.message.kind == scenario::ClientMessage::Kind::kButton) {
                trigger.message.button = resolve_callback(*dialog_id, trigger.message.button);
            }
            trigger.external_id = fmt::format("tg:{}", update_id);
            co_await dialogs_.run(*dialog_id, std::move(trigger));
        }
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
        for (const auto& item : result->get_array()) {
            std::string payload = json::serialize(item);
            std::int64_t update_id = -1;
            try {
                update_id = telegram::parse_update(payload).update_id;
            } catch (const core::Error&) {
                // Stored as invalid below when it has an id at all, so the offset moves past it.
                if (item.is_object()) {
                    if (auto* id = item.get_object().if_contains("update_id"); id && id->is_int64()) {
                        update_id = id->get_int64();
                    }
                }
            }
            if (update_id < 0) continue;
            if (co_await store_update(channel_id, update_id, std::move(payload))) {
                spawn(co_await asio::this_coro::executor, process(channel_id, update_id));
            }
        }
    }
    std::lock_guard lock(mutex_);
    polling_[channel_id] = false;
}

// --- dispatcher ------------------------------------------------------------------------------------------------

awaitable<void> ChannelService::take_token(const std::string& bot_id) {
    while (!stopping_) {
        std::int64_t wait = 0;
        {
            std::lock_guard lock(mutex_);
            Bucket& b = buckets_[bot_id];
            std::int64_t now = clock_.now_ms();
            double rate = options_.bot_messages_per_second;
            if (b.last_ms == 0) {
                b.tokens = rate;
                b.last_ms = now;
            }
            b.tokens = std::min(rate, b.tokens + static_cast<double>(now - b.last_ms) * rate / 1000.0);
            b.last_ms = now;
            if (now < b.paused_until_ms) {
                wait = b.paused_until_ms - now;
            } else if (b.tokens >= 1.0) {
                b.tokens -= 1.0;
                co_return;
            } else {
                wait = static_cast<std::int64_t>((1.0 - b.tokens) * 1000.0 / rate) + 1;
            }
        }
        co_await sleep_ms(wait);
    }
}

awaitable<void> ChannelService::dispatch_loop() {
    while (!stopping_) {
        bool progressed = false;
        try {
            std::map<std::string, Stored> channels;
            for (auto& c : load_active(kTelegram)) channels.emplace(c.id, std::move(c));
            std::vector<bots::DialogService::Delivery> due;
            if (!channels.empty()) {
                std::vector<std::string> ids;
                for (const auto& [id, c] : channels) ids.push_back(id);
                due = dialogs_.pending_deliveries(ids, options_.dispatch_batch);
            }
            std::map<std::pair<std::string, std::int64_t>, std::int64_t> next_at;
            if (!due.empty()) {
                store_.read([&](store::Tx& tx) {
                    for (const auto& row : tx.query("SELECT dialog_id, n, next_at FROM channel_deliveries")) {
                        next_at[{row.text(0), row.integer(1)}] = row.integer(2);
                    }
                });
            }
            std::set<std::string> blocked;  // dialogs whose earlier message is not out yet: keep per-chat order
            for (const auto& d : due) {
                if (stopping_) break;
                if (blocked.count(d.dialog_id)) continue;
                auto channel = channels.find(d.channel);
                if (channel == channels.end()) continue;
                auto when = next_at.find({d.dialog_id, d.message.n});
                if (when != next_at.end() && when->second > clock_.now_ms()) {
                    blocked.insert(d.dialog_id);
                    continue;
                }
                if (co_await deliver(channel->second, d)) {
                    progressed = true;
                } else {
                    blocked.insert(d.dialog_id);
                }
            }
        } catch (const std::exception& e) {
            log_error("channel_dispatch_failed", "", e.what());
        }
        if (!progressed) co_await sleep_ms(options_.dispatch_idle_ms);
    }
}

awaitable<bool> ChannelService::deliver(const Stored& channel, const bots::DialogService::Delivery& d) {
    std::optional<std::string> chat_id;
    std::int64_t attempts = 0;
    std::int64_t parts_sent = 0;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one("SELECT chat_id FROM channel_identities WHERE dialog_id = ?", {d.dialog_id})) {
            chat_id = r->text(0);
        }
        if (auto r = tx.query_one("SELECT attempts, parts_sent FROM channel_deliveries WHERE dialog_id = ? AND n = ?",
                                  {d.dialog_id, d.message.n})) {
            attempts = r->integer(0);
            parts_sent = r->integer(1);
        }
    });
    auto finish = [&](std::string outcome, std::string error) -> awaitable<void> {
        if (!error.empty()) log_error("channel_delivery_" + outcome, channel.id, error);
        co_await dialogs_.mark_delivery(d.dialog_id, d.message.n, outcome);
        auto clear = [dialog = d.dialog_id, n = d.message.n](store::Tx& tx) {
            tx.exec("DELETE FROM channel_deliveries WHERE dialog_id = ? AND n = ?", {dialog, n});
        };
        co_await store::co_write(store_, std::move(clear));
    };
    if (!chat_id) {
        co_await finish("failed", "no Telegram chat is linked to this dialog");
        co_return true;
    }
    auto bodies = telegram::render(*chat_id, d.message.text, d.message.buttons,
                                   [this](const std::string& id) { return callback_data(id); });
    for (std::size_t i = static_cast<std::size_t>(parts_sent); i < bodies.size(); ++i) {
        co_await take_token(channel.bot_id);
        if (stopping_) co_return false;
        outbound::Response response = co_await call(channel, "sendMessage", bodies[i], options_.request_timeout_ms);
        std::int64_t retry_after = 0;
        std::string description;
        if (internal::answer_ok(response, channel.token(), &retry_after, &description)) {
            if (i + 1 < bodies.size()) {
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
        if (response.status == 429) {
            when = now + retry_after * 1000;
            std::lock_guard lock(mutex_);
            buckets_[channel.bot_id].paused_until_ms = when;  // Telegram's flood limit applies to the whole bot
        } else if (response.status == 0 || response.status >= 500) {
            ++attempts;
            if (attempts >= kMaxDeliveryAttempts) {
                co_await finish("dead", description);
                std::lock_guard lock(mutex_);
                ++stats_.dead;
                co_return true;
            }
            when = now + std::min(options_.backoff_max_ms, options_.backoff_base_ms << (attempts - 1));
        } else {
            co_await finish("failed", description);  // 400 chat not found, 403 blocked by the user: not retried
            co_return true;
        }
        auto retry = [dialog = d.dialog_id, n = d.message.n, attempts, sent = static_cast<std::int64_t>(i), when,
                      description](store::Tx& tx) {
            tx.exec("INSERT INTO channel_deliveries(dialog_id, n, attempts, parts_sent, next_at, last_error) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dialog_id, n) DO UPDATE SET attempts = excluded.attempts, "
                    "parts_sent = excluded.parts_sent, next_at = excluded.next_at, last_error = excluded.last_error",
                    {dialog, n, attempts, sent, when, description});
        };
        co_await store::co_write(store_, std::move(retry));
        std::lock_guard lock(mutex_);
        ++stats_.retried;
        co_return false;
    }
    co_await finish("sent", "");
    std::lock_guard lock(mutex_);
    ++stats_.sent;
    co_return true;
}

}  // namespace parley::channels

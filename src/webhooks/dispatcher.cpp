// The delivery path: the EventHub listener's queue, the ingest worker that persists deliveries, the dispatcher
// that claims due deliveries and sends them through the outbound client, retries with backoff, and pruning.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <map>
#include <random>
#include <set>

#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "outbound/outbound.h"
#include "store/async.h"
#include "webhooks/webhooks.h"

namespace parley::webhooks {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;

namespace {

/// How long a claimed delivery is reserved beyond its request timeout: if the process dies mid-send, the
/// delivery becomes due again when the lease ends.
constexpr std::int64_t kLeaseGraceMs = 60'000;
constexpr std::size_t kIngestBatch = 1'000;
constexpr std::size_t kMaxDedupEntries = 100'000;
constexpr std::size_t kPruneBatch = 1'000;

/// outbound::Client::send as an awaitable that resumes on the caller's executor.
awaitable<outbound::Response> send_async(outbound::Client& client, outbound::Request request) {
    return asio::async_initiate<const asio::use_awaitable_t<>, void(outbound::Response)>(
        [&client](auto handler, outbound::Request r) {
            auto executor = asio::get_associated_executor(handler);
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            client.send(std::move(r), [shared, executor](outbound::Response response) {
                asio::post(executor, [shared, response = std::move(response)]() mutable { (*shared)(std::move(response)); });
            });
        },
        asio::use_awaitable, std::move(request));
}

/// At most kMaxResponseBytesKept bytes of a receiver's answer, as valid UTF-8 (other bytes become '?').
std::string keep_text(std::string_view text) {
    std::string out;
    out.reserve(std::min(text.size(), kMaxResponseBytesKept));
    std::size_t i = 0;
    while (i < text.size()) {
        auto c = static_cast<unsigned char>(text[i]);
        std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool valid = len > 0 && i + len <= text.size();
        for (std::size_t k = 1; valid && k < len; ++k) valid = (static_cast<unsigned char>(text[i + k]) >> 6) == 0x2;
        if (c < 0x20 && c != '\n' && c != '\t') valid = false;
        std::size_t take = valid ? len : 1;
        if (out.size() + (valid ? len : 1) > kMaxResponseBytesKept) break;
        if (valid) {
            out.append(text.substr(i, len));
        } else {
            out.push_back('?');
        }
        i += take;
    }
    return out;
}

void log_failure(std::string_view event, std::string_view what) {
    core::log_event(spdlog::level::warn, event, fmt::format(R"("error":{})", core::json_quote(what)));
}

}  // namespace

struct WebhookService::Claimed {
    std::string id;
    std::string subscription_id;
    std::string event_type;
    std::string payload;
    int attempts = 0;
    std::string url;
    std::string sealed_secret;
};

WebhookService::WebhookService(store::Store& store, const core::Clock& clock, outbound::Client& client,
                               auth::SecretKey key, WebhookOptions options)
    : store_(store), clock_(clock), client_(client), key_(key), options_(std::move(options)) {
    if (options_.backoff_ms.empty()) options_.backoff_ms = {10'000};
    options_.max_attempts = std::clamp(options_.max_attempts, 1, kMaxAttemptsLimit);
    options_.jitter = std::clamp(options_.jitter, 0.0, 0.9);
    options_.max_in_flight = std::max<std::size_t>(options_.max_in_flight, 1);
    options_.claim_batch = std::max<std::size_t>(options_.claim_batch, 1);
    options_.idle_poll_ms = std::max<std::int64_t>(options_.idle_poll_ms, 1);
}

WebhookService::~WebhookService() {
    stop();
    wait_stopped();
}

WebhookStats WebhookService::stats() const {
    return WebhookStats{events_seen_.load(), events_dropped_.load(), deliveries_created_.load(),
                        delivered_.load(), attempts_failed_.load(), dead_.load()};
}

// --- lifecycle ----------------------------------------------------------------------------------------------------

void WebhookService::spawn(awaitable<void> task) {
    {
        std::lock_guard lock(mutex_);
        ++running_;
    }
    asio::co_spawn(*strand_, std::move(task), [this](std::exception_ptr error) {
        if (error) {
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                log_failure("webhook_task_failed", e.what());
            }
        }
        std::lock_guard lock(mutex_);
        if (--running_ == 0) idle_.notify_all();
    });
}

void WebhookService::start(asio::any_io_executor executor) {
    {
        std::lock_guard lock(mutex_);
        if (strand_) return;
        strand_.emplace(asio::make_strand(executor));
        ingest_timer_.emplace(*strand_);
        dispatch_timer_.emplace(*strand_);
    }
    spawn(ingest_loop());
    spawn(dispatch_loop());
}

void WebhookService::stop() {
    stopping_ = true;
    std::lock_guard lock(mutex_);
    if (!strand_) return;
    asio::post(*strand_, [this] {
        ingest_timer_->cancel();
        dispatch_timer_->cancel();
    });
}

void WebhookService::wait_stopped() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return running_ == 0; });
}

void WebhookService::wake() {
    dispatch_wake_ = true;
    std::lock_guard lock(mutex_);
    if (!strand_ || stopping_) return;
    asio::post(*strand_, [this] { dispatch_timer_->cancel(); });
}

// --- the listener and the ingest worker -------------------------------------------------------------------------

void WebhookService::on_event(std::uint64_t hub_id, const std::string& type, const std::string& text) {
    if (stopping_ || !is_source_type(type)) return;
    {
        std::lock_guard lock(mutex_);
        if (queue_.size() >= kMaxQueuedEvents) {
            ++events_dropped_;
            return;
        }
        queue_.push_back(Queued{hub_id, type, text});
        if (ingest_wake_.exchange(true) || !strand_) return;
        asio::post(*strand_, [this] { ingest_timer_->cancel(); });
    }
}

awaitable<void> WebhookService::ingest_loop() {
    while (!stopping_) {
        std::vector<Queued> batch;
        {
            std::lock_guard lock(mutex_);
            while (!queue_.empty() && batch.size() < kIngestBatch) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            if (batch.empty()) ingest_wake_ = false;  // the next on_event posts a wake-up
        }
        if (!batch.empty()) {
            try {
                co_await ingest(std::move(batch));
            } catch (const std::exception& e) {
                log_failure("webhook_ingest_failed", e.what());
            }
            continue;
        }
        ingest_timer_->expires_after(std::chrono::seconds(1));
        boost::system::error_code ec;
        co_await ingest_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
}

awaitable<void> WebhookService::ingest(std::vector<Queued> batch) {
    struct Target {
        std::string id;
        std::vector<std::string> events;
    };
    std::vector<Target> targets;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query("SELECT id, events FROM webhook_subscriptions WHERE enabled = 1")) {
            Target t{r.text(0), {}};
            json::value events = json::parse(r.text(1));
            for (const auto& v : events.as_array()) t.events.emplace_back(v.as_string());
            targets.push_back(std::move(t));
        }
    });
    struct Row {
        std::string id, subscription_id, event_id, event_type, payload;
    };
    std::vector<Row> rows;
    std::int64_t now = clock_.now_ms();
    for (const auto& q : batch) {
        std::vector<MappedEvent> mapped = map_event(q.type, q.text);
        if (mapped.empty()) continue;
        std::string& last = last_key_[mapped.front().entity];
        if (last == mapped.front().key) continue;  // the same change published to another audience
        last = mapped.front().key;
        if (last_key_.size() > kMaxDedupEntries) last_key_.clear();
        for (auto& m : mapped) {
            ++events_seen_;
            std::string event_id = core::new_id();
            json::object body{{"id", event_id}, {"type", m.type}, {"created_at", core::format_time(now)},
                              {"data", m.data}};
            std::string payload = json::serialize(body);
            if (payload.size() > kMaxPayloadBytes) {
                body["data"] = json::object{{"dialog_id", m.entity}, {"truncated", true}};
                payload = json::serialize(body);
            }
            for (const auto& t : targets) {
                bool wanted = std::any_of(t.events.begin(), t.events.end(),
                                          [&](const std::string& e) { return e == "*" || e == m.type; });
                if (wanted) rows.push_back(Row{core::new_id(), t.id, event_id, m.type, payload});
            }
        }
    }
    if (rows.empty()) co_return;
    auto write = [rows = std::move(rows), now](store::Tx& tx) {
        std::map<std::string, std::int64_t> pending;
        std::size_t inserted = 0;
        for (const auto& r : rows) {
            auto it = pending.find(r.subscription_id);
            if (it == pending.end()) {
                std::int64_t n = tx.query_one("SELECT COUNT(*) FROM webhook_deliveries WHERE subscription_id = ? AND "
                                              "state = 'pending'",
                                              {r.subscription_id})
                                     ->integer(0);
                it = pending.emplace(r.subscription_id, n).first;
            }
            if (it->second >= kMaxPendingPerSubscription) continue;
            // A subscription deleted meanwhile: its row is gone and the foreign key refuses; skip it.
            if (!tx.query_one("SELECT 1 FROM webhook_subscriptions WHERE id = ?", {r.subscription_id})) continue;
            tx.exec("INSERT INTO webhook_deliveries(id, subscription_id, event_id, event_type, payload, state, attempts, "
                    "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    {r.id, r.subscription_id, r.event_id, r.event_type, r.payload, now, now});
            ++it->second;
            ++inserted;
        }
        return std::pair<std::size_t, std::size_t>{inserted, rows.size() - inserted};
    };
    auto [inserted, dropped] = co_await store::co_write(store_, std::move(write));
    deliveries_created_ += inserted;
    if (dropped > 0) {
        events_dropped_ += dropped;
        core::log_event(spdlog::level::warn, "webhook_backlog_full", fmt::format(R"("dropped":{})", dropped));
    }
    if (inserted > 0) wake();
}

// --- the dispatcher -------------------------------------------------------------------------------------------------

std::int64_t WebhookService::backoff_after(int attempts) {
    std::size_t index = std::min<std::size_t>(static_cast<std::size_t>(std::max(attempts, 1)), options_.backoff_ms.size()) - 1;
    double base = static_cast<double>(options_.backoff_ms[index]);
    if (options_.jitter <= 0) return static_cast<std::int64_t>(base);
    static thread_local std::mt19937_64 random{std::random_device{}()};
    std::uniform_real_distribution<double> factor(1.0 - options_.jitter, 1.0 + options_.jitter);
    return std::max<std::int64_t>(1, static_cast<std::int64_t>(base * factor(random)));
}

awaitable<void> WebhookService::dispatch_loop() {
    std::int64_t last_prune = std::numeric_limits<std::int64_t>::min() / 2;
    while (!stopping_) {
        std::int64_t wait = options_.idle_poll_ms;
        try {
            std::int64_t now = clock_.now_ms();
            if (now - last_prune >= options_.prune_every_ms) {
                last_prune = now;
                co_await prune();
            }
            std::size_t room = options_.max_in_flight > in_flight_ ? options_.max_in_flight - in_flight_ : 0;
            if (room > 0) {
                std::size_t limit = std::min(room, options_.claim_batch);
                // Look first with a read (no write transaction when nothing is due), then claim in a write that
                // re-checks each row, so a claim never races a redeliver or a delete.
                std::vector<std::string> due;
                std::optional<std::int64_t> next_due;
                store_.read([&](store::Tx& tx) {
                    for (const auto& r : tx.query(
                             "SELECT d.id, d.next_attempt_at FROM webhook_deliveries d JOIN webhook_subscriptions s ON "
                             "s.id = d.subscription_id WHERE d.state = 'pending' AND (s.enabled = 1 OR d.event_type = "
                             "'ping') ORDER BY d.next_attempt_at LIMIT ?",
                             {static_cast<std::int64_t>(limit)})) {
                        if (r.integer(1) <= now) {
                            due.push_back(r.text(0));
                        } else {
                            next_due = r.integer(1);
                            break;
                        }
                    }
                });
                if (!due.empty()) {
                    std::int64_t lease = now + options_.timeout_ms + kLeaseGraceMs;
                    auto claim = [due, now, lease](store::Tx& tx) {
                        std::vector<Claimed> out;
                        for (const auto& id : due) {
                            auto r = tx.query_one(
                                "SELECT d.id, d.subscription_id, d.event_type, d.payload, d.attempts, s.url, s.secret "
                                "FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id "
                                "WHERE d.id = ? AND d.state = 'pending' AND d.next_attempt_at <= ?",
                                {id, now});
                            if (!r) continue;
                            tx.exec("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?", {lease, id});
                            out.push_back(Claimed{r->text(0), r->text(1), r->text(2), r->text(3),
                                                  static_cast<int>(r->integer(4)), r->text(5), r->text(6)});
                        }
                        return out;
                    };
                    std::vector<Claimed> claimed = co_await store::co_write(store_, std::move(claim));
                    for (auto& c : claimed) {
                        ++in_flight_;
                        spawn(deliver(std::move(c)));
                    }
                    if (due.size() == limit) wait = 0;  // more may be due: look again at once
                } else if (next_due) {
                    wait = std::min(wait, *next_due - now);
                }
            }
        } catch (const std::exception& e) {
            log_failure("webhook_dispatch_failed", e.what());
        }
        if (stopping_) break;
        if (wait <= 0) continue;
        if (!dispatch_wake_.exchange(false)) {
            dispatch_timer_->expires_after(std::chrono::milliseconds(wait));
            boost::system::error_code ec;
            co_await dispatch_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
            dispatch_wake_ = false;
        }
    }
}

awaitable<void> WebhookService::deliver(Claimed c) {
    struct Leave {
        WebhookService& s;
        ~Leave() {
            --s.in_flight_;
            s.wake();
        }
    } leave{*this};
    try {
        std::int64_t started = clock_.now_ms();
        outbound::Response response;
        std::string secret;
        try {
            secret = open_secret(c.sealed_secret);
        } catch (const std::exception& e) {
            response.error = outbound::Error{outbound::ErrorCode::kBadRequest, "the signing secret cannot be decrypted"};
        }
        if (!response.error) {
            std::string timestamp = std::to_string(started / 1000);
            outbound::Request request;
            request.method = "POST";
            request.url = c.url;
            request.body = c.payload;
            request.content_type = "application/json";
            request.headers = {{"X-Parley-Event", c.event_type},
                               {"X-Parley-Delivery", c.id},
                               {"X-Parley-Timestamp", timestamp},
                               {"X-Parley-Signature", signature(secret, timestamp, c.payload)}};
            request.timeout_ms = options_.timeout_ms;
            request.max_redirects = 0;  // a redirect is an answer, not a delivery: the URL should be fixed
            request.max_response_bytes = 64 * 1024;
            response = co_await send_async(client_, std::move(request));
        }
        std::int64_t now = clock_.now_ms();
        if (response.error && response.error->code == outbound::ErrorCode::kCancelled) {
            // Shutting down: not the receiver's fault. Release the lease so a restart sends it at once.
            auto release = [id = c.id, now](store::Tx& tx) {
                tx.exec("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ? AND state = 'pending'", {now, id});
            };
            co_await store::co_write(store_, std::move(release));
            co_return;
        }
        bool ok = !response.error && response.status >= 200 && response.status < 300;
        int attempts = c.attempts + 1;
        std::string state = "delivered";
        std::int64_t next = 0;
        std::string error;
        if (!ok) {
            ++attempts_failed_;
            error = response.error ? fmt::format("{}: {}", outbound::error_code_name(response.error->code),
                                                 response.error->message)
                                   : fmt::format("HTTP {}", response.status);
            if (attempts >= options_.max_attempts) {
                state = "failed";
            } else {
                state = "pending";
                std::int64_t delay = backoff_after(attempts);
                if (response.status == 429 || response.status == 503) {
                    if (auto after = parse_retry_after(response.header("retry-after"), now)) {
                        delay = std::clamp<std::int64_t>(*after, 1'000, kMaxRetryAfterMs);
                    }
                }
                next = now + delay;
            }
        }
        store::Value status = response.error ? store::Value(nullptr) : store::Value(std::int64_t{response.status});
        auto record = [id = c.id, state, attempts, next, status, error = keep_text(error),
                       body = keep_text(response.body), now](store::Tx& tx) {
            return tx.exec("UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_status = ?, "
                           "last_error = ?, last_response = ?, last_attempt_at = ?, delivered_at = ? "
                           "WHERE id = ? AND state = 'pending'",
                           {state, std::int64_t{attempts}, next, status, error, body, now,
                            state == "delivered" ? now : std::int64_t{0}, id});
        };
        co_await store::co_write(store_, std::move(record));
        if (state == "delivered") ++delivered_;
        if (state == "failed") {
            ++dead_;
            core::log_event(spdlog::level::warn, "webhook_delivery_failed",
                            fmt::format(R"("delivery":{},"subscription":{},"attempts":{},"error":{})",
                                        core::json_quote(c.id), core::json_quote(c.subscription_id), attempts,
                                        core::json_quote(error)));
        }
    } catch (const std::exception& e) {
        // The lease ends and the delivery is tried again.
        log_failure("webhook_deliver_failed", e.what());
    }
}

awaitable<std::size_t> WebhookService::prune() {
    std::int64_t now = clock_.now_ms();
    std::int64_t delivered_before = now - std::int64_t{kDeliveredRetentionDays} * 86'400'000;
    std::int64_t failed_before = now - std::int64_t{kFailedRetentionDays} * 86'400'000;
    auto write = [delivered_before, failed_before](store::Tx& tx) {
        return static_cast<std::size_t>(tx.exec(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE (state = 'delivered' "
            "AND last_attempt_at < ?) OR (state = 'failed' AND last_attempt_at < ?) LIMIT ?)",
            {delivered_before, failed_before, static_cast<std::int64_t>(kPruneBatch)}));
    };
    co_return co_await store::co_write(store_, std::move(write));
}

}  // namespace parley::webhooks

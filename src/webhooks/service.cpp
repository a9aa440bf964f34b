// Webhook subscriptions (validation, encrypted secrets, audit) and the delivery log's API side.
#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "auth/audit.h"
#include "auth/internal/crypto.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "store/async.h"
#include "webhooks/webhooks.h"

namespace parley::webhooks {

namespace json = boost::json;
using boost::asio::awaitable;

namespace {

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

json::value time_or_null(std::int64_t ms) { return ms > 0 ? json::value(core::format_time(ms)) : json::value(nullptr); }

std::string validate_url(std::string url) {
    if (url.size() > kMaxUrlBytes) {
        throw core::BadRequest(fmt::format("'url' is longer than {} bytes", kMaxUrlBytes), "invalid_url", field("url"));
    }
    bool clean = std::none_of(url.begin(), url.end(),
                              [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; });
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!clean || !parsed) {
        throw core::BadRequest("'url' must be an absolute http:// or https:// URL", "invalid_url", field("url"));
    }
    std::string scheme(parsed->scheme());
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
    if (scheme != "http" && scheme != "https") {
        throw core::BadRequest("'url' must use http or https", "invalid_url", field("url"));
    }
    if (!parsed->has_authority() || parsed->encoded_host().empty()) {
        throw core::BadRequest("'url' must name a host", "invalid_url", field("url"));
    }
    if (parsed->has_userinfo()) {
        throw core::BadRequest("'url' must not carry credentials (verify the X-Parley-Signature header instead)",
                               "invalid_url", field("url"));
    }
    if (parsed->has_fragment()) {
        throw core::BadRequest("'url' must not have a #fragment", "invalid_url", field("url"));
    }
    return url;
}

std::vector<std::string> validate_events(const json::value& value) {
    if (!value.is_array()) throw core::BadRequest("'events' must be an array of event types", "wrong_type", field("events"));
    const auto& array = value.as_array();
    if (array.empty()) throw core::BadRequest("'events' must name at least one event type or \"*\"", "invalid_events", field("events"));
    if (array.size() > kMaxEventTypes) {
        throw core::BadRequest(fmt::format("'events' has more than {} entries", kMaxEventTypes), "invalid_events",
                               field("events"));
    }
    std::vector<std::string> out;
    for (const auto& v : array) {
        if (!v.is_string()) throw core::BadRequest("'events' must be an array of strings", "wrong_type", field("events"));
        std::string name(v.as_string());
        const auto& known = event_types();
        if (name != "*" && std::find(known.begin(), known.end(), name) == known.end()) {
            std::string list;
            for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
            throw core::BadRequest(fmt::format("unknown event type '{}' (known: {}, or \"*\")", name.substr(0, 64), list),
                                   "unknown_event_type", json::array{json::object{{"field", "events"}, {"value", name.substr(0, 64)}}});
        }
        if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
    }
    return out;
}

std::vector<std::string> events_from_text(const std::string& text) {
    std::vector<std::string> out;
    json::value parsed = json::parse(text);
    for (const auto& v : parsed.as_array()) out.emplace_back(v.as_string());
    return out;
}

std::string events_to_text(const std::vector<std::string>& events) {
    json::array a;
    for (const auto& e : events) a.emplace_back(e);
    return json::serialize(a);
}

constexpr std::string_view kSubscriptionColumns =
    "id, url, events, enabled, description, created_at, updated_at, secret_rotated_at, created_by";

Subscription subscription_from_row(const store::Row& r) {
    Subscription s;
    s.id = r.text(0);
    s.url = r.text(1);
    s.events = events_from_text(r.text(2));
    s.enabled = r.integer(3) != 0;
    s.description = r.text(4);
    s.created_at = r.integer(5);
    s.updated_at = r.integer(6);
    s.secret_rotated_at = r.integer(7);
    s.created_by = r.text(8);
    return s;
}

constexpr std::string_view kDeliveryColumns =
    "id, subscription_id, event_id, event_type, state, attempts, next_attempt_at, last_status, last_error, "
    "last_response, last_attempt_at, delivered_at, created_at, payload";

Delivery delivery_from_row(const store::Row& r) {
    Delivery d;
    d.id = r.text(0);
    d.subscription_id = r.text(1);
    d.event_id = r.text(2);
    d.event_type = r.text(3);
    d.state = r.text(4);
    d.attempts = static_cast<int>(r.integer(5));
    d.next_attempt_at = r.integer(6);
    if (!r.is_null(7)) d.last_status = static_cast<int>(r.integer(7));
    d.last_error = r.text(8);
    d.last_response = r.text(9);
    d.last_attempt_at = r.integer(10);
    d.delivered_at = r.integer(11);
    d.created_at = r.integer(12);
    d.payload = r.text(13);
    return d;
}

std::optional<Delivery> find_delivery(store::Tx& tx, const std::string& subscription_id, const std::string& id) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM webhook_deliveries WHERE id = ? AND subscription_id = ?",
                                        kDeliveryColumns),
                            {id, subscription_id});
    if (!row) return std::nullopt;
    return delivery_from_row(*row);
}

std::string new_secret() { return "whsec_" + core::random_hex(32); }

}  // namespace

// --- JSON forms ---------------------------------------------------------------------------------------------------

json::object Subscription::to_json() const {
    json::array e;
    for (const auto& x : events) e.emplace_back(x);
    return json::object{{"id", id},
                        {"url", url},
                        {"events", std::move(e)},
                        {"enabled", enabled},
                        {"description", description},
                        {"created_by", created_by.empty() ? json::value(nullptr) : json::value(created_by)},
                        {"created_at", time_or_null(created_at)},
                        {"updated_at", time_or_null(updated_at)},
                        {"secret_rotated_at", time_or_null(secret_rotated_at)}};
}

json::object Delivery::to_json(bool with_payload) const {
    json::object out{{"id", id},
                     {"subscription_id", subscription_id},
                     {"event_id", event_id},
                     {"event_type", event_type},
                     {"state", state},
                     {"attempts", attempts},
                     {"next_attempt_at", state == "pending" ? time_or_null(next_attempt_at) : json::value(nullptr)},
                     {"last_status", last_status ? json::value(*last_status) : json::value(nullptr)},
                     {"last_error", last_error.empty() ? json::value(nullptr) : json::value(last_error)},
                     {"last_response", last_response.empty() ? json::value(nullptr) : json::value(last_response)},
                     {"last_attempt_at", time_or_null(last_attempt_at)},
                     {"delivered_at", time_or_null(delivered_at)},
                     {"created_at", time_or_null(created_at)}};
    if (with_payload) {
        boost::system::error_code ec;
        json::value parsed = json::parse(payload, ec);
        out["payload"] = ec ? json::value(payload) : std::move(parsed);
    }
    return out;
}

SubscriptionInput SubscriptionInput::from_json(const json::object& body, bool creating) {
    core::reject_unknown_fields(body, {"url", "events", "enabled", "description"});
    SubscriptionInput in;
    if (creating) {
        in.url = validate_url(std::string(core::required_string(body, "url")));
    } else if (auto url = core::optional_string(body, "url")) {
        in.url = validate_url(std::move(*url));
    }
    if (const json::value* events = body.if_contains("events"); events && !events->is_null()) {
        in.events = validate_events(*events);
    } else if (creating) {
        in.events = std::vector<std::string>{"*"};
    }
    in.enabled = core::optional_bool(body, "enabled");
    if (creating && !in.enabled) in.enabled = true;
    in.description = core::optional_string(body, "description");
    if (in.description && in.description->size() > kMaxDescriptionBytes) {
        throw core::BadRequest(fmt::format("'description' is longer than {} bytes", kMaxDescriptionBytes),
                               "invalid_description", field("description"));
    }
    if (creating && !in.description) in.description = "";
    return in;
}

// --- migrations ---------------------------------------------------------------------------------------------------

std::vector<store::Migration> migrations() {
    return {store::Migration{"webhooks", 1, "subscriptions and deliveries", R"SQL(
CREATE TABLE webhook_subscriptions (
    id                TEXT PRIMARY KEY,
    url               TEXT NOT NULL,
    events            TEXT NOT NULL,             -- JSON array of event types, or ["*"]
    enabled           INTEGER NOT NULL DEFAULT 1,
    description       TEXT NOT NULL DEFAULT '',
    secret            BLOB NOT NULL,             -- nonce || crypto_secretbox(secret) under the instance key
    created_by        TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    secret_rotated_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,            -- X-Parley-Delivery; time-ordered
    subscription_id TEXT NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL,               -- the payload's id (shared by every subscription's delivery)
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,               -- the exact body
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,            -- due time while pending (a claimed delivery: its lease end)
    last_status     INTEGER,
    last_error      TEXT NOT NULL DEFAULT '',
    last_response   TEXT NOT NULL DEFAULT '',
    last_attempt_at INTEGER NOT NULL DEFAULT 0,
    delivered_at    INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries(subscription_id, state, id);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries(state, last_attempt_at);
)SQL"}};
}

// --- secrets ------------------------------------------------------------------------------------------------------

std::string WebhookService::seal_secret(std::string_view secret) const { return auth::internal::seal(key_, secret); }

std::string WebhookService::open_secret(std::string_view blob) const {
    return auth::internal::open_sealed(key_, blob);
}

// --- subscriptions ------------------------------------------------------------------------------------------------

awaitable<std::pair<Subscription, std::string>> WebhookService::create(const core::Principal& who,
                                                                       SubscriptionInput input) {
    Subscription s;
    s.id = core::new_id();
    s.url = *input.url;
    s.events = *input.events;
    s.enabled = *input.enabled;
    s.description = *input.description;
    s.created_at = s.updated_at = s.secret_rotated_at = clock_.now_ms();
    s.created_by = who.user_id;
    std::string secret = new_secret();
    std::string sealed = seal_secret(secret);
    const core::Principal* actor = &who;
    auto write = [s, sealed, actor](store::Tx& tx) {
        auto count = tx.query_one("SELECT COUNT(*) FROM webhook_subscriptions")->integer(0);
        if (count >= static_cast<std::int64_t>(kMaxSubscriptions)) {
            throw core::Conflict(fmt::format("an instance has at most {} webhook subscriptions", kMaxSubscriptions),
                                 "too_many_subscriptions");
        }
        tx.exec("INSERT INTO webhook_subscriptions(id, url, events, enabled, description, secret, created_by, "
                "created_at, updated_at, secret_rotated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {s.id, s.url, events_to_text(s.events), std::int64_t{s.enabled}, s.description, store::Blob{sealed},
                 s.created_by.empty() ? store::Value(nullptr) : store::Value(s.created_by), s.created_at,
                 s.updated_at, s.secret_rotated_at});
        auth::record_audit(tx, s.created_at,
                           auth::AuditRecord{actor, "webhook.create", s.id,
                                             json::object{{"url", s.url}, {"events", json::parse(events_to_text(s.events))}},
                                             ""});
    };
    co_await store::co_write(store_, std::move(write));
    co_return std::pair{std::move(s), std::move(secret)};
}

std::vector<Subscription> WebhookService::list(std::optional<std::string> cursor, std::size_t limit) {
    std::vector<Subscription> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& r : tx.query(fmt::format("SELECT {} FROM webhook_subscriptions WHERE id > ? ORDER BY id LIMIT ?",
                                                  kSubscriptionColumns),
                                      {cursor.value_or(""), static_cast<std::int64_t>(limit)})) {
            out.push_back(subscription_from_row(r));
        }
    });
    return out;
}

Subscription WebhookService::get(const std::string& id) {
    std::optional<Subscription> out;
    store_.read([&](store::Tx& tx) {
        if (auto r = tx.query_one(fmt::format("SELECT {} FROM webhook_subscriptions WHERE id = ?", kSubscriptionColumns),
                                  {id})) {
            out = subscription_from_row(*r);
        }
    });
    if (!out) throw core::NotFound(fmt::format("no webhook subscription '{}'", id.substr(0, 64)), "webhook_not_found");
    return *out;
}

awaitable<Subscription> WebhookService::update(const core::Principal& who, std::string id, SubscriptionInput input) {
    std::int64_t now = clock_.now_ms();
    const core::Principal* actor = &who;
    auto write = [id, input, now, actor](store::Tx& tx) -> Subscription {
        auto r = tx.query_one(fmt::format("SELECT {} FROM webhook_subscriptions WHERE id = ?", kSubscriptionColumns), {id});
        if (!r) throw core::NotFound(fmt::format("no webhook subscription '{}'", id.substr(0, 64)), "webhook_not_found");
        Subscription s = subscription_from_row(*r);
        json::object changed;
        if (input.url) s.url = *input.url, changed["url"] = s.url;
        if (input.events) s.events = *input.events, changed["events"] = json::parse(events_to_text(s.events));
        if (input.enabled) s.enabled = *input.enabled, changed["enabled"] = s.enabled;
        if (input.description) s.description = *input.description, changed["description"] = true;
        s.updated_at = now;
        tx.exec("UPDATE webhook_subscriptions SET url = ?, events = ?, enabled = ?, description = ?, updated_at = ? "
                "WHERE id = ?",
                {s.url, events_to_text(s.events), std::int64_t{s.enabled}, s.description, now, id});
        auth::record_audit(tx, now, auth::AuditRecord{actor, "webhook.update", id, std::move(changed), ""});
        return s;
    };
    co_return co_await store::co_write(store_, std::move(write));
}

awaitable<void> WebhookService::remove(const core::Principal& who, std::string id) {
    std::int64_t now = clock_.now_ms();
    const core::Principal* actor = &who;
    auto write = [id, now, actor](store::Tx& tx) {
        if (tx.exec("DELETE FROM webhook_subscriptions WHERE id = ?", {id}) == 0) {
            throw core::NotFound(fmt::format("no webhook subscription '{}'", id.substr(0, 64)), "webhook_not_found");
        }
        auth::record_audit(tx, now, auth::AuditRecord{actor, "webhook.delete", id, {}, ""});
    };
    co_await store::co_write(store_, std::move(write));
}

awaitable<std::pair<Subscription, std::string>> WebhookService::rotate_secret(const core::Principal& who,
                                                                              std::string id) {
    std::string secret = new_secret();
    std::string sealed = seal_secret(secret);
    std::int64_t now = clock_.now_ms();
    const core::Principal* actor = &who;
    auto write = [id, sealed, now, actor](store::Tx& tx) {
        if (tx.exec("UPDATE webhook_subscriptions SET secret = ?, secret_rotated_at = ?, updated_at = ? WHERE id = ?",
                    {store::Blob{sealed}, now, now, id}) == 0) {
            throw core::NotFound(fmt::format("no webhook subscription '{}'", id.substr(0, 64)), "webhook_not_found");
        }
        auth::record_audit(tx, now, auth::AuditRecord{actor, "webhook.rotate_secret", id, {}, ""});
    };
    co_await store::co_write(store_, std::move(write));
    co_return std::pair{get(id), std::move(secret)};
}

// --- the delivery log ---------------------------------------------------------------------------------------------

awaitable<Delivery> WebhookService::ping(const core::Principal& who, std::string id) {
    Subscription s = get(id);
    std::int64_t now = clock_.now_ms();
    Delivery d;
    d.id = core::new_id();
    d.subscription_id = s.id;
    d.event_id = core::new_id();
    d.event_type = "ping";
    d.state = "pending";
    d.next_attempt_at = now;
    d.created_at = now;
    d.payload = json::serialize(json::object{
        {"id", d.event_id},
        {"type", "ping"},
        {"created_at", core::format_time(now)},
        {"data", json::object{{"subscription_id", s.id}, {"url", s.url}, {"requested_by", who.user_id}}}});
    auto write = [d](store::Tx& tx) {
        tx.exec("INSERT INTO webhook_deliveries(id, subscription_id, event_id, event_type, payload, state, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                {d.id, d.subscription_id, d.event_id, d.event_type, d.payload, d.next_attempt_at, d.created_at});
    };
    co_await store::co_write(store_, std::move(write));
    ++deliveries_created_;
    wake();
    co_return d;
}

std::vector<Delivery> WebhookService::deliveries(const std::string& subscription_id, std::optional<std::string> state,
                                                 std::optional<std::string> cursor, std::size_t limit) {
    if (state && *state != "pending" && *state != "delivered" && *state != "failed") {
        throw core::BadRequest("'state' must be pending, delivered or failed", "invalid_query", field("state"));
    }
    get(subscription_id);  // 404 for an unknown subscription
    std::vector<Delivery> out;
    store_.read([&](store::Tx& tx) {
        std::string sql = fmt::format("SELECT {} FROM webhook_deliveries WHERE subscription_id = ?", kDeliveryColumns);
        store::Params params{subscription_id};
        if (state) sql += " AND state = ?", params.emplace_back(*state);
        if (cursor) sql += " AND id < ?", params.emplace_back(*cursor);
        sql += " ORDER BY id DESC LIMIT ?";
        params.emplace_back(static_cast<std::int64_t>(limit));
        for (const auto& r : tx.query(sql, params)) out.push_back(delivery_from_row(r));
    });
    return out;
}

Delivery WebhookService::delivery(const std::string& subscription_id, const std::string& delivery_id) {
    std::optional<Delivery> out;
    store_.read([&](store::Tx& tx) { out = find_delivery(tx, subscription_id, delivery_id); });
    if (!out) throw core::NotFound(fmt::format("no delivery '{}' of this subscription", delivery_id.substr(0, 64)), "delivery_not_found");
    return *out;
}

awaitable<Delivery> WebhookService::redeliver(const core::Principal& who, std::string subscription_id,
                                              std::string delivery_id) {
    std::int64_t now = clock_.now_ms();
    const core::Principal* actor = &who;
    auto write = [subscription_id, delivery_id, now, actor](store::Tx& tx) -> Delivery {
        auto d = find_delivery(tx, subscription_id, delivery_id);
        if (!d) throw core::NotFound(fmt::format("no delivery '{}' of this subscription", delivery_id.substr(0, 64)), "delivery_not_found");
        if (d->state == "pending") throw core::Conflict("the delivery is still pending", "delivery_pending");
        tx.exec("UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, delivered_at = 0 "
                "WHERE id = ?",
                {now, delivery_id});
        auth::record_audit(tx, now, auth::AuditRecord{actor, "webhook.redeliver", subscription_id,
                                                      json::object{{"delivery_id", delivery_id}}, ""});
        return *find_delivery(tx, subscription_id, delivery_id);
    };
    Delivery d = co_await store::co_write(store_, std::move(write));
    wake();
    co_return d;
}

}  // namespace parley::webhooks

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "channels/channels.h"
#include "channels/telegram.h"
#include "channels/internal/adapters.h"
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

constexpr std::string_view kChannelColumns =
    "id, bot_id, kind, credentials, api_base_url, status, last_error, webhook_secret, created_at, updated_at";

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

/// crypto_secretbox with a random nonce: nonce || ciphertext.
std::string seal(const auth::SecretKey& key, std::string_view plain) {
    std::string out(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plain.size(), '\0');
    auto* nonce = reinterpret_cast<unsigned char*>(out.data());
    randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES, reinterpret_cast<const unsigned char*>(plain.data()),
                          plain.size(), nonce, key.data());
    return out;
}

std::string open_sealed(const auth::SecretKey& key, std::string_view blob) {
    if (blob.size() < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
        throw std::runtime_error("channel credentials are truncated");
    }
    std::string out(blob.size() - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES, '\0');
    const auto* nonce = reinterpret_cast<const unsigned char*>(blob.data());
    if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(out.data()), nonce + crypto_secretbox_NONCEBYTES,
                                   blob.size() - crypto_secretbox_NONCEBYTES, nonce, key.data()) != 0) {
        throw std::runtime_error("channel credentials cannot be decrypted with this instance's secret key");
    }
    return out;
}

std::string validate_base_url(std::string url) {
    if (url.size() > kMaxApiBaseUrlBytes) {
        throw core::BadRequest(fmt::format("'api_base_url' is longer than {} bytes", kMaxApiBaseUrlBytes),
                               "invalid_api_base_url", field("api_base_url"));
    }
    bool scheme = url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
    bool clean = std::none_of(url.begin(), url.end(), [](char c) {
        return static_cast<unsigned char>(c) <= ' ' || c == '?' || c == '#' || c == 0x7f;
    });
    std::size_t host_start = url.find("//") + 2;
    if (!scheme || !clean || url.size() <= host_start || url[host_start] == '/') {
        throw core::BadRequest("'api_base_url' must be an http:// or https:// URL without query or fragment",
                               "invalid_api_base_url", field("api_base_url"));
    }
    while (!url.empty() && url.back() == '/') url.pop_back();
    return url;
}

/// Checks a kind's credentials (400 naming the field); returns them normalised.
json::object validate_credentials(std::string_view kind, const json::object& in) {
    if (const Adapter* adapter = find_adapter(kind)) return adapter->validate_credentials(in);
    if (in.size() > kMaxCredentialKeys) {
        throw core::BadRequest(fmt::format("'credentials' has more than {} keys", kMaxCredentialKeys),
                               "invalid_credentials", field("credentials"));
    }
    for (const auto& kv : in) {
        bool key_ok = !kv.key().empty() && kv.key().size() <= 64 &&
                      std::all_of(kv.key().begin(), kv.key().end(), [](char c) {
                          return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
                      });
        if (!key_ok || !kv.value().is_string() || kv.value().get_string().size() > kMaxCredentialValueBytes) {
            throw core::BadRequest(fmt::format("credentials are string values of at most {} bytes under keys "
                                               "[A-Za-z0-9_.-]{{1,64}}",
                                               kMaxCredentialValueBytes),
                                   "invalid_credentials", field("credentials"));
        }
    }
    return in;
}

}  // namespace

const std::vector<std::string>& channel_kinds() {
    static const std::vector<std::string> kinds = {"telegram", "viber",  "whatsapp", "messenger", "instagram",
                                                   "email",    "widget", "custom",   "sms"};
    return kinds;
}

json::object Channel::to_json() const {
    json::array keys;
    for (const auto& k : credential_keys) keys.emplace_back(k);
    json::object out{{"id", id},
                     {"bot_id", bot_id},
                     {"kind", kind},
                     {"credentials_set", keys},
                     {"api_base_url", api_base_url},
                     {"status", status},
                     {"last_error", last_error.empty() ? json::value(nullptr) : json::value(last_error)},
                     {"created_at", core::format_time(created_at)},
                     {"updated_at", core::format_time(updated_at)}};
    if (!mode.empty()) out["mode"] = mode;
    if (has_adapter && mode != "polling" && kind != "email") out["webhook_path"] = "/hooks/" + id;  // email polls
    return out;
}

std::vector<store::Migration> migrations() {
    return {{"channels", 1, "channels, inbox, identities, delivery state",
             R"(
CREATE TABLE channels (
  id TEXT PRIMARY KEY,
  bot_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  credentials BLOB NOT NULL,
  api_base_url TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'error', 'disabled')),
  last_error TEXT,
  webhook_secret TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX channels_by_bot ON channels(bot_id, id);
CREATE TABLE channel_inbox (
  channel_id TEXT NOT NULL,
  update_id INTEGER NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL,
  error TEXT,
  received_at INTEGER NOT NULL,
  processed_at INTEGER,
  PRIMARY KEY (channel_id, update_id)
);
CREATE INDEX channel_inbox_pending ON channel_inbox(status, received_at);
CREATE TABLE channel_identities (
  channel_id TEXT NOT NULL,
  external_user TEXT NOT NULL,
  chat_id TEXT NOT NULL,
  dialog_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (channel_id, external_user)
);
CREATE INDEX channel_identities_by_dialog ON channel_identities(dialog_id);
CREATE TABLE channel_deliveries (
  dialog_id TEXT NOT NULL,
  n INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  parts_sent INTEGER NOT NULL,
  next_at INTEGER NOT NULL,
  last_error TEXT,
  PRIMARY KEY (dialog_id, n)
);
)"},
            {"channels", 2, "event keys, last inbound time, sent messages with receipts, dead letters",
             R"(
ALTER TABLE channel_inbox ADD COLUMN event_key TEXT;
CREATE UNIQUE INDEX channel_inbox_by_key ON channel_inbox(channel_id, event_key);
ALTER TABLE channel_identities ADD COLUMN last_inbound_at INTEGER NOT NULL DEFAULT 0;
CREATE TABLE channel_messages (
  channel_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  dialog_id TEXT,
  n INTEGER,
  chat_id TEXT,
  status TEXT NOT NULL,
  sent_at INTEGER,
  delivered_at INTEGER,
  read_at INTEGER,
  failed_at INTEGER,
  error TEXT,
  PRIMARY KEY (channel_id, message_id)
);
CREATE INDEX channel_messages_by_dialog ON channel_messages(dialog_id, n);
CREATE INDEX channel_messages_by_chat ON channel_messages(channel_id, chat_id, sent_at);
CREATE TABLE channel_dead_letters (
  id TEXT PRIMARY KEY,
  channel_id TEXT NOT NULL,
  dialog_id TEXT NOT NULL,
  n INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  UNIQUE (dialog_id, n)
);
CREATE INDEX channel_dead_letters_by_channel ON channel_dead_letters(channel_id, id);
)"},
            // Kinds with a Transport (email): conversation state for replies and the poll cursor.
            {"channel_transport", 1, "thread state of replies, poll cursors",
             R"(
CREATE TABLE channel_threads (
  channel_id TEXT NOT NULL,
  external_user TEXT NOT NULL,
  state TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (channel_id, external_user)
);
CREATE TABLE channel_poll_state (
  channel_id TEXT PRIMARY KEY,
  cursor TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
)"}};
}

ChannelService::ChannelService(store::Store& store, const core::Clock& clock, bots::BotService& bots,
                               bots::DialogService& dialogs, outbound::Client& client, const auth::SecretKey& key,
                               ChannelOptions options)
    : store_(store), clock_(clock), bots_(bots), dialogs_(dialogs), client_(client), key_(key),
      options_(std::move(options)) {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
    transport_pool_ = std::make_unique<asio::thread_pool>(std::max<std::size_t>(1, options_.transport_threads));
    while (!options_.public_base_url.empty() && options_.public_base_url.back() == '/') {
        options_.public_base_url.pop_back();
    }
}

ChannelService::~ChannelService() {
    stopping_ = true;  // not stop(): the executor (and the dispatcher's strand) may already be gone
    // Bounded: if the executor was stopped first, the loops never resume (the io_context destroys their frames).
    std::unique_lock lock(mutex_);
    idle_.wait_for(lock, std::chrono::seconds(5), [this] { return running_ == 0; });
}

// --- registry --------------------------------------------------------------------------------------------------

std::optional<ChannelService::Stored> ChannelService::load(std::string_view id) const {
    std::optional<store::Row> row;
    store_.read([&](store::Tx& tx) {
        row = tx.query_one(fmt::format("SELECT {} FROM channels WHERE id = ?", kChannelColumns), {std::string(id)});
    });
    if (!row) return std::nullopt;
    Stored s{row->text(0), row->text(1), row->text(2), {}, row->text(4), row->text(5), row->text(6), row->text(7),
             row->integer(8), row->integer(9)};
    s.credentials = json::parse(open_sealed(key_, row->text(3))).as_object();
    return s;
}

std::shared_ptr<const ChannelService::Stored> ChannelService::load_cached(const std::string& id) const {
    std::int64_t now = clock_.now_ms();
    std::uint64_t generation = registry_generation_;
    {
        std::lock_guard lock(mutex_);
        auto it = cache_.find(id);
        if (it != cache_.end() && it->second.generation == generation && now - it->second.loaded_at < 5'000) {
            return it->second.channel;
        }
    }
    auto loaded = load(id);
    std::shared_ptr<const Stored> channel = loaded ? std::make_shared<const Stored>(std::move(*loaded)) : nullptr;
    std::lock_guard lock(mutex_);
    if (cache_.size() > 10'000) cache_.clear();
    if (channel) cache_[id] = Cached{channel, generation, now};  // unknown ids are not cached (no growth by probing)
    return channel;
}

std::vector<ChannelService::Stored> ChannelService::load_active(std::string_view kind) const {
    std::vector<std::string> ids;
    store_.read([&](store::Tx& tx) {
        for (const auto& row : tx.query("SELECT id FROM channels WHERE kind = ? AND status <> 'disabled' ORDER BY id",
                                         {std::string(kind)})) {
            ids.push_back(row.text(0));
        }
    });
    std::vector<Stored> out;
    for (const auto& id : ids) {
        try {
            if (auto s = load(id)) out.push_back(std::move(*s));
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::err, "channel_unreadable",
                            fmt::format(R"("channel":{},"error":{})", core::json_quote(id), core::json_quote(e.what())));
        }
    }
    return out;
}

awaitable<Channel> ChannelService::create(std::string bot_id, NewChannel in) {
    bots_.get(bot_id);  // NotFound bot_not_found
    const auto& kinds = channel_kinds();
    if (std::find(kinds.begin(), kinds.end(), in.kind) == kinds.end()) {
        throw core::BadRequest("'kind' must be one of telegram, viber, whatsapp, messenger, instagram, email, "
                               "widget, custom, sms",
                               "invalid_kind", field("kind"));
    }
    const Adapter* adapter = find_adapter(in.kind);
    Stored s;
    s.id = core::new_id();
    s.bot_id = bot_id;
    s.kind = in.kind;
    s.credentials = validate_credentials(in.kind, in.credentials);
    if (!in.api_base_url && adapter && adapter->default_api_base_url().empty() && !adapter->transport()) {
        throw core::BadRequest(fmt::format("'api_base_url' is required for {} channels (the endpoint Parley posts "
                                           "replies to)",
                                           in.kind),
                               "invalid_api_base_url", field("api_base_url"));
    }
    s.api_base_url = in.api_base_url ? validate_base_url(*in.api_base_url)
                                     : (adapter ? adapter->default_api_base_url() : std::string());
    s.status = "active";
    s.webhook_secret = core::random_hex(32);
    s.created_at = s.updated_at = clock_.now_ms();
    std::string sealed = seal(key_, json::serialize(s.credentials));
    auto insert = [s, sealed](store::Tx& tx) {
        tx.exec("INSERT INTO channels(id, bot_id, kind, credentials, api_base_url, status, last_error, webhook_secret, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'active', NULL, ?, ?, ?)",
                {s.id, s.bot_id, s.kind, store::Blob{sealed}, s.api_base_url, s.webhook_secret, s.created_at,
                 s.updated_at});
    };
    co_await store::co_write(store_, std::move(insert));
    ++registry_generation_;
    co_await connect(s);
    co_return get(bot_id, s.id);
}

std::vector<Channel> ChannelService::list(std::string_view bot_id, std::optional<std::string> cursor,
                                          std::size_t limit, std::optional<std::string>* next_cursor) const {
    std::vector<std::string> ids;
    store_.read([&](store::Tx& tx) {
        for (const auto& row : tx.query("SELECT id FROM channels WHERE bot_id = ? AND id > ? ORDER BY id LIMIT ?",
                                        {std::string(bot_id), cursor.value_or(""),
                                         static_cast<std::int64_t>(limit + 1)})) {
            ids.push_back(row.text(0));
        }
    });
    *next_cursor = std::nullopt;
    if (ids.size() > limit) {
        ids.resize(limit);
        *next_cursor = ids.back();
    }
    std::vector<Channel> out;
    for (const auto& id : ids) {
        if (auto s = load(id)) out.push_back(s->view());
    }
    return out;
}

Channel ChannelService::get(std::string_view bot_id, std::string_view id) const {
    auto s = load(id);
    if (!s || s->bot_id != bot_id) {
        throw core::NotFound(fmt::format("no channel '{}' of bot '{}'", id, bot_id), "channel_not_found");
    }
    return s->view();
}

std::optional<Channel> ChannelService::find(std::string_view id) const {
    auto s = load(id);
    if (!s) return std::nullopt;
    return s->view();
}

std::vector<Channel> ChannelService::list_kind(std::string_view kind) const {
    std::vector<Channel> out;
    for (auto& s : load_active(kind)) out.push_back(s.view());
    return out;
}

awaitable<Channel> ChannelService::update(std::string bot_id, std::string id, ChannelPatch patch) {
    auto s = load(id);
    if (!s || s->bot_id != bot_id) {
        throw core::NotFound(fmt::format("no channel '{}' of bot '{}'", id, bot_id), "channel_not_found");
    }
    if (patch.credentials) s->credentials = validate_credentials(s->kind, *patch.credentials);
    if (patch.api_base_url) s->api_base_url = validate_base_url(*patch.api_base_url);
    if (patch.status) {
        if (*patch.status != "active" && *patch.status != "disabled") {
            throw core::BadRequest("'status' must be active or disabled", "invalid_status", field("status"));
        }
        s->status = *patch.status;
        s->last_error.clear();
    }
    s->updated_at = clock_.now_ms();
    std::string sealed = seal(key_, json::serialize(s->credentials));
    Stored row = *s;
    auto write = [row, sealed](store::Tx& tx) {
        tx.exec("UPDATE channels SET credentials = ?, api_base_url = ?, status = ?, last_error = ?, updated_at = ? "
                "WHERE id = ?",
                {store::Blob{sealed}, row.api_base_url, row.status,
                 row.last_error.empty() ? store::Value(nullptr) : store::Value(row.last_error), row.updated_at,
                 row.id});
    };
    co_await store::co_write(store_, std::move(write));
    ++registry_generation_;
    if (s->status != "disabled") co_await connect(*s);
    co_return get(bot_id, id);
}

awaitable<void> ChannelService::remove(std::string bot_id, std::string id) {
    auto s = load(id);
    if (!s || s->bot_id != bot_id) {
        throw core::NotFound(fmt::format("no channel '{}' of bot '{}'", id, bot_id), "channel_not_found");
    }
    if (const Adapter* adapter = find_adapter(s->kind)) {
        if (auto request = adapter->disconnect(ref(*s))) co_await send(std::move(*request));  // best effort
    }
    auto erase = [id](store::Tx& tx) {
        tx.exec("DELETE FROM channel_deliveries WHERE dialog_id IN "
                "(SELECT dialog_id FROM channel_identities WHERE channel_id = ?)",
                {id});
        tx.exec("DELETE FROM channel_messages WHERE channel_id = ?", {id});
        tx.exec("DELETE FROM channel_dead_letters WHERE channel_id = ?", {id});
        tx.exec("DELETE FROM channel_identities WHERE channel_id = ?", {id});
        tx.exec("DELETE FROM channel_inbox WHERE channel_id = ?", {id});
        tx.exec("DELETE FROM channel_threads WHERE channel_id = ?", {id});
        tx.exec("DELETE FROM channel_poll_state WHERE channel_id = ?", {id});
        tx.exec("DELETE FROM channels WHERE id = ?", {id});
    };
    co_await store::co_write(store_, std::move(erase));
    ++registry_generation_;
}

awaitable<void> ChannelService::set_status(std::string id, std::string status, std::string error) {
    std::int64_t now = clock_.now_ms();
    auto write = [id, status, error, now](store::Tx& tx) {
        tx.exec("UPDATE channels SET status = ?, last_error = ?, updated_at = ? WHERE id = ? AND status <> 'disabled'",
                {status, error.empty() ? store::Value(nullptr) : store::Value(error), now, id});
    };
    co_await store::co_write(store_, std::move(write));
    ++registry_generation_;
}

awaitable<outbound::Response> ChannelService::send(outbound::Request req) {
    req.timeout_ms = std::min<std::int64_t>(req.timeout_ms, outbound::kMaxTimeoutMs);
    auto initiate = [this](auto handler, outbound::Request request) {
        auto executor = asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        client_.send(std::move(request), [shared, executor](outbound::Response response) {
            asio::post(executor, [shared, response = std::move(response)]() mutable { (*shared)(std::move(response)); });
        });
    };
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>, void(outbound::Response)>(
        initiate, asio::use_awaitable, std::move(req));
}

awaitable<outbound::Response> ChannelService::call(const Stored& channel, std::string method, json::object args,
                                                   std::int64_t timeout_ms) {
    outbound::Request req = internal::telegram_call(ref(channel), method, args, timeout_ms);
    co_return co_await send(std::move(req));
}

ChannelRef ChannelService::ref(const Stored& s) const {
    ChannelRef r;
    r.id = s.id;
    r.bot_id = s.bot_id;
    if (s.kind == "viber") {  // only Viber shows a sender name (credentials.sender_name, else the bot's)
        try {
            r.bot_name = bots_.get(s.bot_id).name;
        } catch (const core::Error&) {
            // A channel whose bot is gone still renders: the sender name falls back to "Parley".
        }
    }
    r.kind = s.kind;
    r.credentials = s.credentials;
    r.api_base_url = s.api_base_url;
    r.webhook_secret = s.webhook_secret;
    r.webhook_url = fmt::format("{}/hooks/{}", options_.public_base_url, s.id);
    return r;
}

std::string ChannelService::redact(const Stored& channel, std::string text) const {
    for (const auto& kv : channel.credentials) {
        if (!kv.value().is_string() || kv.value().get_string().size() < 6) continue;
        std::string secret(kv.value().get_string());
        std::string label = kv.key() == "token" ? "<token>" : "<" + std::string(kv.key()) + ">";
        for (std::size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
            text.replace(at, secret.size(), label);
        }
    }
    return text;
}

ChannelService::Stored ChannelService::load_owned(std::string_view bot_id, std::string_view id) const {
    auto s = load(id);
    if (!s || s->bot_id != bot_id) {
        throw core::NotFound(fmt::format("no channel '{}' of bot '{}'", id, bot_id), "channel_not_found");
    }
    return std::move(*s);
}

awaitable<void> ChannelService::connect(Stored channel) {
    const Adapter* adapter = find_adapter(channel.kind);
    if (!adapter) co_return;  // email, widget, sms: served by other modules
    if (auto request = adapter->connect(ref(channel))) {
        std::string what = request->url.substr(request->url.rfind('/') + 1);
        request->timeout_ms = options_.request_timeout_ms;
        outbound::Response response = co_await send(std::move(*request));
        SendResult result = adapter->classify(response);
        bool ok = result.outcome == SendResult::Outcome::kOk;
        std::string status = ok ? "active" : "error";
        std::string error = ok ? std::string() : redact(channel, what + " failed: " + result.error);
        co_await set_status(channel.id, std::move(status), std::move(error));
    } else if (channel.status == "error") {
        co_await set_status(channel.id, "active", "");
    }
    if (channel.mode() == "polling") ensure_polling(channel.id);
    if (adapter->transport()) ensure_transport_polling(channel.id);  // email: IMAP polling
}

// --- delivery reports and dead letters -------------------------------------------------------------------------

json::object ChannelService::Receipt::to_json() const {
    auto time = [](std::int64_t ms) { return ms ? json::value(core::format_time(ms)) : json::value(nullptr); };
    return json::object{{"message_id", message_id},
                        {"dialog_id", dialog_id.empty() ? json::value(nullptr) : json::value(dialog_id)},
                        {"n", dialog_id.empty() ? json::value(nullptr) : json::value(n)},
                        {"chat_id", chat_id.empty() ? json::value(nullptr) : json::value(chat_id)},
                        {"status", status},
                        {"sent_at", time(sent_at)},
                        {"delivered_at", time(delivered_at)},
                        {"read_at", time(read_at)},
                        {"failed_at", time(failed_at)},
                        {"error", error.empty() ? json::value(nullptr) : json::value(error)}};
}

std::vector<ChannelService::Receipt> ChannelService::receipts(std::string_view bot_id, std::string_view channel_id,
                                                             std::optional<std::string> dialog_id, std::int64_t after,
                                                             std::size_t limit,
                                                             std::optional<std::int64_t>* next) const {
    load_owned(bot_id, channel_id);
    std::vector<Receipt> out;
    store_.read([&](store::Tx& tx) {
        std::string sql =
            "SELECT rowid, message_id, dialog_id, n, chat_id, status, sent_at, delivered_at, read_at, failed_at, error "
            "FROM channel_messages WHERE channel_id = ? AND rowid > ?";
        store::Params params{std::string(channel_id), after};
        if (dialog_id) {
            sql += " AND dialog_id = ?";
            params.emplace_back(*dialog_id);
        }
        sql += " ORDER BY rowid LIMIT ?";
        params.emplace_back(static_cast<std::int64_t>(limit + 1));
        for (const auto& row : tx.query(sql, params)) {
            Receipt r;
            r.seq = row.integer(0);
            r.message_id = row.text(1);
            r.dialog_id = row.is_null(2) ? "" : row.text(2);
            r.n = row.is_null(3) ? 0 : row.integer(3);
            r.chat_id = row.is_null(4) ? "" : row.text(4);
            r.status = row.text(5);
            r.sent_at = row.is_null(6) ? 0 : row.integer(6);
            r.delivered_at = row.is_null(7) ? 0 : row.integer(7);
            r.read_at = row.is_null(8) ? 0 : row.integer(8);
            r.failed_at = row.is_null(9) ? 0 : row.integer(9);
            r.error = row.is_null(10) ? "" : row.text(10);
            out.push_back(std::move(r));
        }
    });
    *next = std::nullopt;
    if (out.size() > limit) {
        out.resize(limit);
        *next = out.back().seq;
    }
    return out;
}

json::object ChannelService::DeadLetter::to_json() const {
    return json::object{{"id", id},
                        {"channel_id", channel_id},
                        {"dialog_id", dialog_id},
                        {"n", n},
                        {"outcome", outcome},
                        {"attempts", attempts},
                        {"last_error", last_error.empty() ? json::value(nullptr) : json::value(last_error)},
                        {"text", text},
                        {"created_at", core::format_time(created_at)}};
}

namespace {

constexpr std::string_view kLetterColumns =
    "l.id, l.channel_id, l.dialog_id, l.n, l.outcome, l.attempts, l.last_error, l.created_at, "
    "COALESCE(m.text, '')";

ChannelService::DeadLetter letter_of(const store::Row& row) {
    ChannelService::DeadLetter l;
    l.id = row.text(0);
    l.channel_id = row.text(1);
    l.dialog_id = row.text(2);
    l.n = row.integer(3);
    l.outcome = row.text(4);
    l.attempts = row.integer(5);
    l.last_error = row.is_null(6) ? "" : row.text(6);
    l.created_at = row.integer(7);
    l.text = row.text(8);
    return l;
}

}  // namespace

std::vector<ChannelService::DeadLetter> ChannelService::dead_letters(std::string_view bot_id,
                                                                     std::string_view channel_id,
                                                                     std::optional<std::string> cursor,
                                                                     std::size_t limit,
                                                                     std::optional<std::string>* next_cursor) const {
    load_owned(bot_id, channel_id);
    std::vector<DeadLetter> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& row :
             tx.query(fmt::format("SELECT {} FROM channel_dead_letters l LEFT JOIN messages m ON m.dialog_id = "
                                  "l.dialog_id AND m.n = l.n WHERE l.channel_id = ? AND l.id > ? ORDER BY l.id LIMIT ?",
                                  kLetterColumns),
                      {std::string(channel_id), cursor.value_or(""), static_cast<std::int64_t>(limit + 1)})) {
            out.push_back(letter_of(row));
        }
    });
    *next_cursor = std::nullopt;
    if (out.size() > limit) {
        out.resize(limit);
        *next_cursor = out.back().id;
    }
    return out;
}

awaitable<ChannelService::DeadLetter> ChannelService::retry_dead_letter(std::string bot_id, std::string channel_id,
                                                                       std::string letter_id) {
    load_owned(bot_id, channel_id);
    auto take = [channel_id, letter_id](store::Tx& tx) -> std::optional<DeadLetter> {
        auto row = tx.query_one(fmt::format("SELECT {} FROM channel_dead_letters l LEFT JOIN messages m ON "
                                            "m.dialog_id = l.dialog_id AND m.n = l.n WHERE l.id = ? AND "
                                            "l.channel_id = ?",
                                            kLetterColumns),
                                {letter_id, channel_id});
        if (!row) return std::nullopt;
        DeadLetter l = letter_of(*row);
        tx.exec("DELETE FROM channel_dead_letters WHERE id = ?", {letter_id});
        tx.exec("DELETE FROM channel_deliveries WHERE dialog_id = ? AND n = ?", {l.dialog_id, l.n});
        return l;
    };
    std::optional<DeadLetter> letter = co_await store::co_write(store_, std::move(take));
    if (!letter) throw core::NotFound(fmt::format("no dead letter '{}'", letter_id), "dead_letter_not_found");
    co_await dialogs_.mark_delivery(letter->dialog_id, letter->n, "pending");
    wake_dispatcher();
    co_return *letter;
}

awaitable<void> ChannelService::discard_dead_letter(std::string bot_id, std::string channel_id,
                                                    std::string letter_id) {
    load_owned(bot_id, channel_id);
    auto erase = [channel_id, letter_id](store::Tx& tx) {
        return tx.exec("DELETE FROM channel_dead_letters WHERE id = ? AND channel_id = ?", {letter_id, channel_id}) > 0;
    };
    if (!co_await store::co_write(store_, std::move(erase))) {
        throw core::NotFound(fmt::format("no dead letter '{}'", letter_id), "dead_letter_not_found");
    }
}

ChannelService::AttachmentFile ChannelService::attachment(std::string_view bot_id, std::string_view channel_id,
                                                          std::string_view name) const {
    load_owned(bot_id, channel_id);
    // Names are what the email adapter wrote: 32 hex digits, optionally "-" and [A-Za-z0-9._-] (never "..").
    bool safe = name.size() >= 32 && name.size() <= 140 && name.find("..") == std::string_view::npos &&
                std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
                });
    std::string path = fmt::format("{}/{}/{}", options_.email_attachments_dir, channel_id, name);
    std::error_code ec;
    if (!safe || options_.email_attachments_dir.empty() || name.ends_with(".type") ||
        !std::filesystem::is_regular_file(path, ec)) {
        throw core::NotFound(fmt::format("no attachment '{}'", name), "attachment_not_found");
    }
    AttachmentFile file;
    file.path = path;
    file.filename = name.size() > 33 ? std::string(name.substr(33)) : std::string(name);
    std::ifstream type(path + ".type");
    std::getline(type, file.content_type);
    bool type_ok = !file.content_type.empty() && file.content_type.size() < 128 &&
                   std::all_of(file.content_type.begin(), file.content_type.end(), [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '-' ||
                              c == '+' || c == '_';
                   });
    if (!type_ok) file.content_type = "application/octet-stream";
    return file;
}

ChannelService::Stats ChannelService::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

}  // namespace parley::channels

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
#include <set>

#include "channels/channels.h"
#include "channels/telegram.h"
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

constexpr std::string_view kTelegram = "telegram";
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

std::string default_base_url(std::string_view kind) {
    if (kind == "telegram") return "https://api.telegram.org";
    if (kind == "viber") return "https://chatapi.viber.com";
    if (kind == "whatsapp" || kind == "messenger" || kind == "instagram") return "https://graph.facebook.com";
    return {};
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

bool valid_token(std::string_view token) {
    std::size_t colon = token.find(':');
    if (colon == 0 || colon == std::string_view::npos || colon > 20 || token.size() > 256 || colon + 1 == token.size()) {
        return false;
    }
    for (std::size_t i = 0; i < token.size(); ++i) {
        char c = token[i];
        if (i < colon && (c < '0' || c > '9')) return false;
        if (i > colon && !(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
    }
    return true;
}

/// Checks a kind's credentials (400 naming the field); returns them normalised.
json::object validate_credentials(std::string_view kind, const json::object& in) {
    if (kind == kTelegram) {
        core::reject_unknown_fields(in, {"token", "mode"});
        std::string token(core::required_string(in, "token"));
        if (!valid_token(token)) {
            throw core::BadRequest("'credentials.token' must be a Telegram bot token like 123456:ABC-def",
                                   "invalid_credentials", field("credentials.token"));
        }
        std::string mode = core::optional_string(in, "mode").value_or("webhook");
        if (mode != "webhook" && mode != "polling") {
            throw core::BadRequest("'credentials.mode' must be webhook or polling", "invalid_credentials",
                                   field("credentials.mode"));
        }
        return json::object{{"token", token}, {"mode", mode}};
    }
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
    if (kind == kTelegram && mode == "webhook") out["webhook_path"] = "/hooks/" + id;
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
)"}};
}

ChannelService::ChannelService(store::Store& store, const core::Clock& clock, bots::BotService& bots,
                               bots::DialogService& dialogs, outbound::Client& client, const auth::SecretKey& key,
                               ChannelOptions options)
    : store_(store), clock_(clock), bots_(bots), dialogs_(dialogs), client_(client), key_(key),
      options_(std::move(options)) {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
    while (!options_.public_base_url.empty() && options_.public_base_url.back() == '/') {
        options_.public_base_url.pop_back();
    }
}

ChannelService::~ChannelService() {
    stop();
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
    Stored s;
    s.id = core::new_id();
    s.bot_id = bot_id;
    s.kind = in.kind;
    s.credentials = validate_credentials(in.kind, in.credentials);
    s.api_base_url = in.api_base_url ? validate_base_url(*in.api_base_url) : default_base_url(in.kind);
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
    if (s->status != "disabled") co_await connect(*s);
    co_return get(bot_id, id);
}

awaitable<void> ChannelService::remove(std::string bot_id, std::string id) {
    auto s = load(id);
    if (!s || s->bot_id != bot_id) {
        throw core::NotFound(fmt::format("no channel '{}' of bot '{}'", id, bot_id), "channel_not_found");
    }
    if (s->kind == kTelegram && s->mode() == "webhook") {
        co_await call(*s, "deleteWebhook", {}, options_.request_timeout_ms);  // best effort
    }
    auto erase = [id](store::Tx& tx) {
        tx.exec("DELETE FROM channel_deliveries WHERE dialog_id IN "
                "(SELECT dialog_id FROM channel_identities WHERE channel_id = ?)",
                {id});
        tx.exec("DELETE FROM channel_identities WHERE channel_id = ?", {id});
        tx.exec("DELETE FROM channel_inbox WHERE channel_id = ?", {id});
        tx.exec("DELETE FROM channels WHERE id = ?", {id});
    };
    co_await store::co_write(store_, std::move(erase));
}

awaitable<void> ChannelService::set_status(std::string id, std::string status, std::string error) {
    std::int64_t now = clock_.now_ms();
    auto write = [id, status, error, now](store::Tx& tx) {
        tx.exec("UPDATE channels SET status = ?, last_error = ?, updated_at = ? WHERE id = ? AND status <> 'disabled'",
                {status, error.empty() ? store::Value(nullptr) : store::Value(error), now, id});
    };
    co_await store::co_write(store_, std::move(write));
}

awaitable<outbound::Response> ChannelService::call(const Stored& channel, std::string method, json::object args,
                                                   std::int64_t timeout_ms) {
    outbound::Request req;
    req.method = "POST";
    req.url = fmt::format("{}/bot{}/{}", channel.api_base_url, channel.token(), method);
    req.body = json::serialize(args);
    req.content_type = "application/json";
    req.timeout_ms = std::min<std::int64_t>(timeout_ms, outbound::kMaxTimeoutMs);
    req.max_redirects = 0;
    req.max_response_bytes = 8 * 1024 * 1024;
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

awaitable<void> ChannelService::connect(Stored channel) {
    if (channel.kind != kTelegram) co_return;  // other adapters: future work (README)
    if (channel.mode() == "polling") {
        auto response = co_await call(channel, "deleteWebhook", {}, options_.request_timeout_ms);
        std::int64_t retry_after = 0;
        std::string description;
        bool ok = internal::answer_ok(response, channel.token(), &retry_after, &description);
        std::string status = ok ? "active" : "error";
        std::string error = ok ? std::string() : "deleteWebhook failed: " + description;
        co_await set_status(channel.id, std::move(status), std::move(error));
        ensure_polling(channel.id);
        co_return;
    }
    json::object args{{"url", fmt::format("{}/hooks/{}", options_.public_base_url, channel.id)},
                      {"secret_token", channel.webhook_secret},
                      {"allowed_updates", json::array{"message", "callback_query"}}};
    auto response = co_await call(channel, "setWebhook", std::move(args), options_.request_timeout_ms);
    std::int64_t retry_after = 0;
    std::string description;
    bool ok = internal::answer_ok(response, channel.token(), &retry_after, &description);
    std::string status = ok ? "active" : "error";
    std::string error = ok ? std::string() : "setWebhook failed: " + description;
    co_await set_status(channel.id, std::move(status), std::move(error));
}

ChannelService::Stats ChannelService::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

}  // namespace parley::channels

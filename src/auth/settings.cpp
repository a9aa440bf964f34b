#include "auth/settings.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "auth/audit.h"
#include "auth/internal/crypto.h"
#include "core/error.h"
#include "store/async.h"

namespace parley::auth {

namespace json = boost::json;

namespace {

struct Default {
    std::string_view key;
    json::value (*make)();
};

const std::vector<Default>& defaults() {
    static const std::vector<Default> list = {
        {kSettingOutboundAllowlist, [] { return json::value(json::array{}); }},
        {kSettingPasswordRecoveryEnabled, [] { return json::value(true); }},
    };
    return list;
}

std::optional<json::value> default_of(std::string_view key) {
    for (const auto& d : defaults()) {
        if (d.key == key) return d.make();
    }
    return std::nullopt;
}

SettingInfo info_from_row(const store::Row& row) {
    // key, value, secret, updated_by, updated_at
    SettingInfo info;
    info.key = row.text(0);
    info.secret = row.integer(2) != 0;
    if (!info.secret) {
        boost::system::error_code ec;
        auto value = json::parse(row.text(1), ec);
        info.value = ec ? json::value(nullptr) : std::move(value);
    }
    info.updated_by = row.opt_text(3);
    info.updated_at = row.integer(4);
    return info;
}

}  // namespace

bool is_valid_setting_key(std::string_view key) {
    if (key.empty() || key.size() > 64) return false;
    for (char c : key) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

SettingsService::SettingsService(store::Store& store, const core::Clock& clock, SecretKey key,
                                 std::int64_t cache_ttl_ms)
    : store_(store), clock_(clock), key_(key), cache_ttl_ms_(cache_ttl_ms) {}

std::optional<json::value> SettingsService::load(std::string_view key) const {
    std::optional<store::Row> row;
    store_.read([&](store::Tx& tx) {
        row = tx.query_one("SELECT value, secret_value, secret FROM instance_settings WHERE key = ?",
                           {std::string(key)});
    });
    if (!row) return default_of(key);
    std::string text = row->integer(2) != 0 ? internal::open_sealed(key_, row->text(1)) : row->text(0);
    boost::system::error_code ec;
    auto value = json::parse(text, ec);
    if (ec) return std::nullopt;
    return value;
}

std::optional<json::value> SettingsService::get(std::string_view key) const {
    const std::int64_t now = clock_.now_ms();
    {
        std::lock_guard lock(mutex_);
        auto it = cache_.find(std::string(key));
        if (it != cache_.end() && now - it->second.loaded_at < cache_ttl_ms_) return it->second.value;
    }
    auto value = load(key);
    std::lock_guard lock(mutex_);
    cache_[std::string(key)] = Cached{value, now};
    return value;
}

void SettingsService::invalidate(const std::string& key) {
    std::lock_guard lock(mutex_);
    cache_.erase(key);
}

boost::asio::awaitable<SettingInfo> SettingsService::set(std::string key, json::value value, bool secret,
                                                         const core::Principal* actor, std::string ip) {
    if (!is_valid_setting_key(key)) {
        throw core::BadRequest("setting keys must match [a-z0-9_.-]{1,64}", "invalid_key",
                               json::array{json::object{{"field", "key"}}});
    }
    std::string text = json::serialize(value);
    if (text.size() > kMaxValueBytes) {
        throw core::TooLarge(fmt::format("a setting value may hold at most {} bytes of JSON", kMaxValueBytes),
                             "too_large", json::array{json::object{{"field", "value"}}});
    }
    if (key == kSettingPasswordRecoveryEnabled && !value.is_bool()) {
        throw core::BadRequest("'password_recovery_enabled' must be true or false", "wrong_type",
                               json::array{json::object{{"field", "value"}}});
    }
    if (key == kSettingOutboundAllowlist) {
        bool ok = value.is_array();
        if (ok) {
            for (const auto& item : value.as_array()) ok = ok && item.is_string() && !item.as_string().empty();
        }
        if (!ok) {
            throw core::BadRequest("'outbound_allowlist' must be a list of host names and CIDR ranges", "wrong_type",
                                   json::array{json::object{{"field", "value"}}});
        }
    }
    const std::int64_t now = clock_.now_ms();
    store::Value plain = nullptr;
    store::Value sealed = nullptr;
    if (secret) {
        sealed = store::Blob{internal::seal(key_, text)};
    } else {
        plain = text;
    }
    std::optional<core::Principal> who = actor ? std::optional<core::Principal>(*actor) : std::nullopt;
    store::Value updated_by = nullptr;
    if (who) updated_by = who->user_id;
    auto change = [=](store::Tx& tx) {
        tx.exec("DELETE FROM instance_settings WHERE key = ?", {key});
        tx.exec("INSERT INTO instance_settings(key, value, secret_value, secret, updated_by, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                {key, plain, sealed, static_cast<std::int64_t>(secret ? 1 : 0), updated_by, now});
        json::object details{{"secret", secret}};
        if (!secret) details["value"] = value;
        record_audit(tx, now, {who ? &*who : nullptr, "setting.set", key, details, ip});
    };
    co_await store::co_write(store_, std::move(change));
    invalidate(key);
    SettingInfo info;
    info.key = key;
    info.secret = secret;
    if (!secret) info.value = std::move(value);
    if (who) info.updated_by = who->user_id;
    info.updated_at = now;
    co_return info;
}

boost::asio::awaitable<void> SettingsService::remove(std::string key, const core::Principal* actor, std::string ip) {
    if (!is_valid_setting_key(key)) {
        throw core::BadRequest("setting keys must match [a-z0-9_.-]{1,64}", "invalid_key",
                               json::array{json::object{{"field", "key"}}});
    }
    const std::int64_t now = clock_.now_ms();
    std::optional<core::Principal> who = actor ? std::optional<core::Principal>(*actor) : std::nullopt;
    auto change = [=](store::Tx& tx) {
        if (tx.exec("DELETE FROM instance_settings WHERE key = ?", {key}) == 0) {
            throw core::NotFound(fmt::format("no stored setting '{}'", key), "setting_not_found");
        }
        record_audit(tx, now, {who ? &*who : nullptr, "setting.delete", key, {}, ip});
    };
    co_await store::co_write(store_, std::move(change));
    invalidate(key);
}

std::vector<SettingInfo> SettingsService::list() const {
    std::vector<SettingInfo> out;
    store_.read([&](store::Tx& tx) {
        for (const auto& row :
             tx.query("SELECT key, value, secret, updated_by, updated_at FROM instance_settings ORDER BY key")) {
            out.push_back(info_from_row(row));
        }
    });
    for (const auto& d : defaults()) {
        bool stored = false;
        for (const auto& s : out) stored = stored || s.key == d.key;
        if (!stored) {
            SettingInfo info;
            info.key = std::string(d.key);
            info.value = d.make();
            info.is_default = true;
            out.push_back(std::move(info));
        }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
    return out;
}

std::optional<SettingInfo> SettingsService::describe(std::string_view key) const {
    std::optional<SettingInfo> out;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one("SELECT key, value, secret, updated_by, updated_at FROM instance_settings "
                                    "WHERE key = ?",
                                    {std::string(key)})) {
            out = info_from_row(*row);
        }
    });
    if (!out) {
        if (auto value = default_of(key)) {
            out = SettingInfo{std::string(key), false, std::move(value), true, std::nullopt, 0};
        }
    }
    return out;
}

std::optional<std::string> SettingsService::raw_row_for_test(std::string_view key) const {
    std::optional<std::string> out;
    store_.read([&](store::Tx& tx) {
        if (auto row = tx.query_one("SELECT value, secret_value FROM instance_settings WHERE key = ?",
                                    {std::string(key)})) {
            out = row->text(0) + row->text(1);
        }
    });
    return out;
}

}  // namespace parley::auth

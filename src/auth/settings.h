/// Instance settings: key → JSON value, with secret values encrypted at rest (libsodium secretbox, key in
/// `<data_dir>/secret.key`) and never returned by the API. Other modules read settings through the small
/// InstanceSettings interface (templates' `{{instance_settings.KEY}}`, the SSRF guard's `outbound_allowlist`).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "auth/secret_key.h"
#include "core/clock.h"
#include "core/principal.h"
#include "store/store.h"

namespace parley::auth {

/// Read access to instance settings, decrypted. What feature modules depend on (and fake in tests).
/// Implementations are thread-safe.
class InstanceSettings {
public:
    virtual ~InstanceSettings() = default;
    /// The value of `key` (secrets decrypted), the built-in default when unset, nullopt when neither.
    virtual std::optional<boost::json::value> get(std::string_view key) const = 0;
};

/// Settings whose value applies when nobody has set them.
inline constexpr std::string_view kSettingPasswordRecoveryEnabled = "password_recovery_enabled";  ///< default true
inline constexpr std::string_view kSettingOutboundAllowlist = "outbound_allowlist";                ///< default []

/// Keys: `[a-z0-9_.-]{1,64}`.
bool is_valid_setting_key(std::string_view key);

/// What the API shows of one setting: the value for plain settings, only `set: true` for secrets.
struct SettingInfo {
    std::string key;
    bool secret = false;
    std::optional<boost::json::value> value;  ///< empty for secrets
    bool is_default = false;                  ///< not stored: the built-in default
    std::optional<std::string> updated_by;
    std::int64_t updated_at = 0;
};

/// The settings store. Reads (get) are served from an in-memory cache that a local write invalidates at once
/// and that expires after `cache_ttl_ms` so changes made by other nodes are seen soon. Writes are coroutines
/// that go through the store's writer (store::co_write) and record an audit entry in the same transaction.
/// Thread-safety: every method may be called from any thread; the cache is guarded by a mutex.
class SettingsService final : public InstanceSettings {
public:
    static constexpr std::size_t kMaxValueBytes = 64 * 1024;

    SettingsService(store::Store& store, const core::Clock& clock, SecretKey key,
                    std::int64_t cache_ttl_ms = 5'000);

    std::optional<boost::json::value> get(std::string_view key) const override;

    /// Stores `value` (plain JSON or, when `secret`, encrypted). Throws BadRequest `invalid_key`, TooLarge
    /// (value over 64 KB serialized). `actor` is recorded in updated_by and the audit log.
    boost::asio::awaitable<SettingInfo> set(std::string key, boost::json::value value, bool secret,
                                            const core::Principal* actor, std::string ip);
    /// Deletes a stored setting (its default applies again). Throws NotFound when not stored.
    boost::asio::awaitable<void> remove(std::string key, const core::Principal* actor, std::string ip);

    /// Every stored setting plus unset defaults, by key; secrets without their value.
    std::vector<SettingInfo> list() const;
    /// One setting as the API shows it; nullopt when neither stored nor defaulted.
    std::optional<SettingInfo> describe(std::string_view key) const;

    /// The raw stored row's value columns, for tests that check encryption at rest.
    std::optional<std::string> raw_row_for_test(std::string_view key) const;

private:
    struct Cached {
        std::optional<boost::json::value> value;
        std::int64_t loaded_at;
    };
    std::optional<boost::json::value> load(std::string_view key) const;
    void invalidate(const std::string& key);

    store::Store& store_;
    const core::Clock& clock_;
    SecretKey key_;
    std::int64_t cache_ttl_ms_;
    mutable std::mutex mutex_;
    mutable std::unordered_map<std::string, Cached> cache_;  // guarded by mutex_
};

}  // namespace parley::auth

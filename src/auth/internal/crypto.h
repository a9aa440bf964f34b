/// Cryptographic helpers of the auth module, all on libsodium: token hashing, argon2id password hashes and
/// secretbox encryption of secret settings with the instance key.
#pragma once

#include <array>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>

#include "auth/secret_key.h"

namespace parley::auth::internal {

/// SHA-256 of `text` as 64 lowercase hex characters. Tokens are stored only in this form. Thread-safe.
std::string sha256_hex(std::string_view text);

/// Constant-time comparison of two equal-length strings (false when lengths differ).
bool equal_constant_time(std::string_view a, std::string_view b);

/// Argon2id cost parameters. Production uses libsodium's INTERACTIVE limits; tests pass the minimums.
struct PasswordCost {
    unsigned long long opslimit;
    std::size_t memlimit;

    static PasswordCost interactive();
    static PasswordCost minimal();  ///< fastest parameters libsodium accepts (tests only)
};

/// Hashes and verifies passwords (argon2id, libsodium's self-describing `$argon2id$...` strings).
/// CPU- and memory-heavy by design (~50 ms, 64 MB at INTERACTIVE). Thread-safe; stateless apart from the cost.
class PasswordHasher {
public:
    explicit PasswordHasher(PasswordCost cost);

    std::string hash(std::string_view password) const;
    bool verify(std::string_view stored_hash, std::string_view password) const;
    /// Whether a stored hash was made with other parameters (upgraded on the next successful login).
    bool needs_rehash(std::string_view stored_hash) const;

    /// A hash of a random password at the same cost, verified against when the e-mail is unknown so that a
    /// failed login takes the same time whether or not the account exists.
    /// Made on first use (one argon2id hash costs ~50-100 ms: not paid at start-up).
    const std::string& dummy_hash() const;

private:
    PasswordCost cost_;
    mutable std::once_flag dummy_once_;
    mutable std::string dummy_hash_;
};

/// nonce ‖ crypto_secretbox_easy(plaintext). Thread-safe.
std::string seal(const SecretKey& key, std::string_view plaintext);

/// Inverse of seal(); throws std::runtime_error when the blob was not sealed with `key` or was altered.
std::string open_sealed(const SecretKey& key, std::string_view blob);

}  // namespace parley::auth::internal

/// The instance key that encrypts secrets at rest (secret settings; channel credentials may reuse it).
#pragma once

#include <array>
#include <string>

namespace parley::auth {

/// 32 bytes for libsodium's crypto_secretbox.
using SecretKey = std::array<unsigned char, 32>;

/// Reads `<data_dir>/secret.key`, creating it (mode 0600, 32 random bytes) when missing. Throws
/// std::runtime_error when the file exists but cannot be read or does not hold exactly 32 bytes: the server must
/// refuse to start rather than make existing secrets undecryptable. Call once at start-up.
SecretKey load_or_create_secret_key(const std::string& data_dir);

}  // namespace parley::auth

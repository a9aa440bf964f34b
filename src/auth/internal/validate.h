/// Input normalisation and validation shared by the auth services and routes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace parley::auth::internal {

/// Trims and lower-cases an e-mail address; nullopt when it is not a plausible address (one '@', non-empty
/// local part ≤ 64 bytes, a domain of letters, digits, '-' and '.', at most 254 bytes in all).
std::optional<std::string> normalize_email(std::string_view raw);

/// Trimmed display name; nullopt when empty, over 200 bytes or containing control characters.
std::optional<std::string> normalize_name(std::string_view raw);

/// A language tag such as "en", "uk", "pt-BR": letters, digits and '-', 2 to 16 bytes.
bool is_valid_language(std::string_view tag);

/// A 64-character lowercase hex token (sessions and reset tokens); API tokens are "pat_" + 64 hex.
bool is_hex_token(std::string_view text);

}  // namespace parley::auth::internal

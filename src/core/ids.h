/// Identifiers and random secrets.
#pragma once

#include <cstdint>
#include <string>

namespace parley::core {

/// A new 26-character id: 48 bits of milliseconds then 80 random bits, Crockford base32. Ids sort by creation
/// time, so cursors over ids page in creation order. Thread-safe.
std::string new_id();

/// The smallest id new_id() can make at `ms` (ids sort by time): `id < id_floor(t)` selects ids made before t.
std::string id_floor(std::int64_t ms);

/// `bytes` cryptographically random bytes as lowercase hex (tokens, secrets). Thread-safe.
std::string random_hex(std::size_t bytes);

/// Whether `id` has the shape new_id() produces (cheap check before a lookup).
bool looks_like_id(std::string_view id);

}  // namespace parley::core

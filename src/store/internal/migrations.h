/// Schema migrations: the schema_migrations table, the refusal of databases this binary does not understand,
/// and applying what is pending.
#pragma once

#include <cstdint>
#include <vector>

#include "store/internal/connection.h"
#include "store/store.h"

namespace parley::store::internal {

/// Creates schema_migrations if needed, refuses (StoreError kSchema) a database holding a module unknown to
/// `known` or a version newer than the newest known for its module, then applies each pending migration in
/// (module, version) order, each in its own transaction, recorded with `now_ms` as applied_at.
/// Also refuses a malformed `known` (versions not numbered 1, 2, 3... per module). Runs on `writer` only.
void migrate(Connection& writer, const std::vector<Migration>& known, std::int64_t now_ms);

}  // namespace parley::store::internal

#include "customdata/customdata.h"

namespace parley::customdata {

std::vector<store::Migration> migrations() {
    return {
        {"customdata", 1, "models",
         R"sql(
CREATE TABLE cd_models (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    label       TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    fields      TEXT NOT NULL DEFAULT '[]',   -- JSON array of field definitions (column = field id)
    groups_json TEXT NOT NULL DEFAULT '[]',
    display     TEXT NOT NULL DEFAULT '{}',
    access      TEXT NOT NULL DEFAULT '{}',   -- right -> [role]
    next_column INTEGER NOT NULL DEFAULT 1,   -- next field id number; never reused
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
)sql"},
        // Background full-text indexing: every record with rid <= indexed_upto is in the model's FTS index (kept
        // in step by the triggers), no record above it is; the indexer moves the watermark forward in batches.
        {"customdata", 2, "search_state",
         R"sql(
CREATE TABLE cd_search_state (
    model_id     TEXT PRIMARY KEY,
    indexed_upto INTEGER NOT NULL DEFAULT 0
);
)sql"},
    };
}

}  // namespace parley::customdata

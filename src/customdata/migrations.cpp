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
    };
}

}  // namespace parley::customdata

/// Record queries → SQL: filters (typed by the model), sort with keyset cursors, and full-text search.
#pragma once

#include <optional>
#include <string>

#include "customdata/customdata.h"

namespace parley::customdata::internal {

/// One SELECT over a model's records. Columns: select_columns(model), then the sort key when `keyed`.
struct SqlQuery {
    std::string sql;
    store::Params params;
    bool keyed = false;        ///< the last column is the sort key (cursor material)
    bool nothing = false;      ///< the search has no words: the answer is empty without asking the database
    std::string sort_spec;     ///< normalised sort ("id", "-amount", "relevance"), part of cursors
};

/// Builds the query. With `paged`, applies query.cursor and LIMIT query.limit + 1. BadRequest (`invalid_filter`,
/// `invalid_sort`, `invalid_cursor`, `invalid_query`) names the bad parameter.
SqlQuery build_query(const Model& model, const RecordQuery& query, bool paged);

/// The cursor that continues after `row` (a row of a keyed/unkeyed SqlQuery result).
std::string cursor_after(const Model& model, const SqlQuery& query, const store::Row& row);

/// The FTS5 MATCH expression for user words (each word quoted, the last also a prefix), or "" when `q` has no
/// word characters.
std::string fts_expression(std::string_view q);

/// Parses a record id ("42"); nullopt when it is not one.
std::optional<std::int64_t> parse_record_id(std::string_view id);

}  // namespace parley::customdata::internal

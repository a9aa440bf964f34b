/// Record writes and CSV import/export inside a store transaction (shared by the service, the routes and the
/// actions). Every function takes the model snapshot read in the same transaction.
#pragma once

#include <functional>
#include <string>

#include "customdata/customdata.h"

namespace parley::customdata::internal {

/// Validates `values` (API form; `lenient` also parses strings for non-text fields) and inserts a record.
/// Throws core::Unprocessable `invalid_record` listing every problem, core::Conflict `duplicate_value`.
json::object insert_record(store::Tx& tx, const Model& model, const json::object& values, bool lenient,
                           std::int64_t now_ms);
/// Partial update: only the given fields change; null clears. NotFound `record_not_found`.
json::object update_record(store::Tx& tx, const Model& model, std::int64_t rid, const json::object& values,
                           bool lenient, std::int64_t now_ms);
/// Conflict `record_referenced` when a reference field of some model points at the record.
void delete_record(store::Tx& tx, const Model& model, std::int64_t rid);
std::optional<json::object> find_record(store::Tx& tx, const Model& model, std::int64_t rid);

/// Thrown inside the import transaction when an all-or-nothing import found errors, so that the savepoint
/// rolls everything back; carries the answer.
struct ImportRolledBack {
    ImportResult result;
};

/// Reads `source` from its start and writes rows. Header problems throw core::BadRequest `invalid_header`,
/// an unreadable encoding `unsupported_encoding`, an empty file `empty_file`.
/// Full-text indexing is left to the background indexer, unless at most `inline_index_rows` records are then
/// pending: those are indexed before returning (small imports are searchable at once).
ImportResult run_import(store::Tx& tx, const Model& model, CsvSource& source, const ImportOptions& options,
                        std::int64_t now_ms, std::size_t inline_index_rows);

/// Streams the query's rows as CSV to `sink` in chunks of about 64 KiB; returns the number of rows.
std::size_t run_export(store::Tx& tx, const Model& model, const RecordQuery& query,
                       const std::function<void(std::string_view)>& sink, bool bom);

}  // namespace parley::customdata::internal

/// Models as stored (the `cd_models` row), the per-model records table DDL (columns, indexes, full-text index
/// and its triggers), and parsing of the API's model and field definitions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "customdata/customdata.h"

namespace parley::customdata::internal {

/// Collects every problem of one definition so the answer lists them all (422 with details).
class Problems {
public:
    void add(std::string field, std::string message);
    bool empty() const { return details_.empty(); }
    /// Throws core::Unprocessable(code) listing the problems, when there are any.
    void throw_if_any(const std::string& code, const std::string& what) const;
    const json::array& details() const { return details_; }

private:
    json::array details_;
};

bool is_valid_model_name(std::string_view name);
bool is_valid_field_name(std::string_view name);

/// A field definition from the API. The reference target is returned by name in `reference_name` (resolved to
/// an id inside the write transaction). `path` prefixes problem locations ("fields[2]").
Field parse_field_spec(const json::object& spec, const std::string& path, Problems& problems,
                       std::string& reference_name);

/// Applies name/label/description/groups/display/access from `spec` to `model` (used by create and update).
void apply_model_settings(Model& model, const json::object& spec, Problems& problems);

/// Cross-checks a whole model: unique field names, groups of fields exist, display columns name fields,
/// defaults satisfy the rules, limits.
void check_model(const Model& model, Problems& problems);

/// Storage (cd_models row) ↔ Model.
std::optional<Model> load_model(store::Tx& tx, std::string_view name);
std::optional<Model> load_model_by_id(store::Tx& tx, std::string_view id);
Model require_model(store::Tx& tx, std::string_view name);  ///< NotFound `model_not_found`
std::vector<Model> load_models(store::Tx& tx);
std::map<std::string, std::string> model_names(store::Tx& tx);  ///< id → name
void insert_model(store::Tx& tx, const Model& model);
void save_model(store::Tx& tx, const Model& model);

/// Records table DDL.
void create_records_table(store::Tx& tx, const Model& model);
void drop_records_table(store::Tx& tx, const Model& model);
/// Creates/drops indexes so that exactly the wanted ones exist. UNIQUE conflicts on existing data throw
/// core::Conflict `duplicate_values` naming the field.
void sync_indexes(store::Tx& tx, const Model& model);
/// Drops the search triggers (before DDL that touches columns).
void drop_search_triggers(store::Tx& tx, const Model& model);
/// The FTS5 table options of every model: contentless, Unicode case/diacritics folding, and a prefix index of
/// three-character prefixes (the autocomplete queries: `"word" "abc"*` would otherwise merge the doclists of every
/// term starting with "abc").
inline constexpr const char* kFtsOptions =
    "body, content='', tokenize='unicode61 remove_diacritics 2', prefix='3'";
/// Once per start: gives models from before background indexing their `cd_search_state` row (watermark = last
/// id: their triggers indexed everything) and guarded triggers; rebuilds the full-text index of every model
/// created before the prefix index existed. Returns how many indexes were rebuilt.
std::size_t upgrade_search_indexes(store::Tx& tx);
/// Recreates the search triggers; with `rebuild`, also empties and refills the full-text index (needed when
/// the set of searchable fields changed) with the rows up to the watermark (the rest stay pending).
///
/// Watermark invariant (`cd_search_state.indexed_upto`): every record with rid <= indexed_upto is in the index
/// with its current text, no record above it is. Triggers keep rows below it in step; an insert of exactly
/// indexed_upto + 1 is indexed inline and moves the watermark; everything else above it waits for
/// index_search_batch, which indexes current values and moves the watermark in the same transaction (a crash
/// loses both or neither: nothing is indexed twice or missed).
void install_search(store::Tx& tx, const Model& model, bool rebuild);
/// Drops only the insert trigger (an import: new rows stay pending for the background indexer; the update and
/// delete triggers keep handling rows below the watermark). install_search puts it back.
void drop_insert_search_trigger(store::Tx& tx, const Model& model);
/// The highest record id the table has used (max(rid) or the AUTOINCREMENT sequence).
std::int64_t last_record_id(store::Tx& tx, const Model& model);
std::int64_t indexed_upto(store::Tx& tx, const Model& model);
/// Records waiting for the background indexer (0 when the model has no searchable field).
std::int64_t search_pending(store::Tx& tx, const Model& model);
/// Indexes up to `max_rows` pending records of the model (ascending rid) and moves its watermark; returns how
/// many records it indexed (0: nothing was pending).
std::int64_t index_search_batch(store::Tx& tx, std::string_view model_id, std::int64_t max_rows);
/// The searchable expression over `prefix` ("new." / "old." / "t.") columns; "" when nothing is searchable.
std::string search_expression(const Model& model, std::string_view prefix);

/// "t.rid, t.created_at, t.updated_at, t.f1, …" — the column order row_to_record expects.
std::string select_columns(const Model& model);
json::object row_to_record(const Model& model, const store::Row& row);

/// Maps a UNIQUE constraint failure on a records table to core::Conflict naming the field; rethrows others.
[[noreturn]] void rethrow_constraint(const Model& model, const store::StoreError& error);

}  // namespace parley::customdata::internal

/// Custom Data: integrator-defined models (typed fields, validation, display settings, per-model access),
/// their records (CRUD, filters, sort, cursor pages, full-text search in Ukrainian and English), streaming
/// CSV import/export, the HTTP routes under /api/v1/custom-data and the `custom_modules__*` scenario actions.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/principal.h"
#include "customdata/csv.h"
#include "store/store.h"

namespace parley::core {
class Clock;
}
namespace parley::http {
class Router;
}
namespace parley::actions {
class ActionRegistry;
}

namespace parley::customdata {

namespace json = boost::json;

/// Limits (documented in README.md; each is enforced with a clear 4xx).
inline constexpr std::size_t kMaxModels = 1000;
inline constexpr std::size_t kMaxFields = 200;
inline constexpr std::size_t kMaxNameBytes = 64;
inline constexpr std::size_t kMaxLabelBytes = 200;
inline constexpr std::size_t kMaxDescriptionBytes = 2000;
inline constexpr std::size_t kMaxSelectOptions = 500;
inline constexpr std::size_t kMaxOptionBytes = 200;
inline constexpr std::size_t kMaxPatternBytes = 500;
inline constexpr std::size_t kMaxTextBytes = 64 * 1024;    ///< one text value
inline constexpr std::size_t kMaxJsonValueBytes = 64 * 1024;  ///< one json value, serialized
inline constexpr std::size_t kMaxDisplayBytes = 64 * 1024;   ///< display settings of one model, serialized
inline constexpr std::size_t kMaxFilters = 20;
inline constexpr std::size_t kMaxInValues = 100;
inline constexpr std::size_t kMaxSearchBytes = 200;        ///< `q`
inline constexpr std::size_t kMaxSearchTerms = 16;
inline constexpr std::size_t kMaxImportErrors = 1000;      ///< errors listed per import (more are counted)
inline constexpr std::size_t kMaxExportBytes = 256u << 20;  ///< one HTTP export answer (in-process: no limit)
inline constexpr std::size_t kMaxActionLimit = 50;         ///< custom_modules__search `limit`
/// Background full-text indexing: records per indexer transaction (≈ 7 µs each: one batch holds the single
/// writer for ≈ 35 ms, so other writes wait at most that long behind it).
inline constexpr std::size_t kIndexBatchRows = 5000;
/// An import that leaves at most this many records pending indexes them inline before it commits (≈ 70 ms at
/// most), so small imports — the UI's and the API's usual case — are searchable the moment they answer; larger
/// ones leave the indexing to the background indexer.
inline constexpr std::size_t kImportInlineIndexRows = 10000;
/// The indexer also looks for pending records this often when nobody woke it (e.g. after a restart).
inline constexpr std::chrono::milliseconds kIndexerPoll{2000};

enum class FieldType { kText, kNumber, kBoolean, kDate, kDatetime, kJson, kSelect, kReference };
std::string_view field_type_name(FieldType type);
std::optional<FieldType> parse_field_type(std::string_view text);

/// One typed field of a model. `id` ("f7") is stable for the field's life and names its column, so renaming a
/// field touches no data.
struct Field {
    std::string id;
    std::string name;  ///< `[a-z][a-z0-9_]{0,63}`, unique in the model, not id/created_at/updated_at
    FieldType type = FieldType::kText;
    std::string label;
    std::string description;
    std::string group;  ///< name of one of the model's groups, or ""
    bool required = false;
    bool unique = false;
    bool indexed = false;     ///< a plain SQL index (unique and reference fields are always indexed)
    bool searchable = false;  ///< part of the full-text index (text fields: default true)
    std::optional<json::value> default_value;  ///< API form, already validated
    std::vector<std::string> options;         ///< select
    std::string reference_model_id;           ///< reference: the target model's id
    std::optional<double> min, max;           ///< number
    std::optional<std::int64_t> min_length, max_length;  ///< text: characters (code points)
    std::optional<std::string> pattern;       ///< text/select: ICU regex, searched (anchor with ^…$)

    bool has_index() const { return unique || indexed || type == FieldType::kReference; }
};

/// The five rights a model's access list can narrow. view/export need custom_data.view, edit/import need
/// custom_data.edit, delete needs custom_data.delete; a non-empty role list additionally requires one of its
/// roles (administrators always pass).
enum class Right { kView, kEdit, kDelete, kImport, kExport };
std::string_view right_name(Right right);

/// A model: a user-defined table. Immutable snapshot of one version; thread-compatible.
struct Model {
    std::string id;
    std::string name;  ///< `[a-z][a-z0-9_-]{0,63}`; `{model}` in paths
    std::string label;
    std::string description;
    std::vector<Field> fields;
    json::array groups;    ///< [{"name", "label"}] for the form
    json::object display;  ///< {"list": {"columns": [...], "sort": "..."}, "form": {"order": [...]}, ...}
    std::map<Right, std::vector<std::string>> access;  ///< right → roles; absent/empty: module permission suffices
    std::int64_t next_column = 1;
    std::int64_t version = 1;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;

    const Field* field(std::string_view name) const;
    /// The records table (`cdr_<id>`) and its full-text index (`cdr_<id>_fts`).
    std::string table() const;
    std::string fts_table() const;
    bool allows(Right right, const core::Principal& principal) const;
};

enum class FilterOp { kEq, kNe, kGt, kGte, kLt, kLte, kContains, kIn };
std::optional<FilterOp> parse_filter_op(std::string_view text);

/// One filter term; values are in text form (as in a URL or a CSV cell) and typed by the field at query time.
/// `in` has one or more values, every other operator exactly one.
struct Condition {
    std::string field;
    FilterOp op = FilterOp::kEq;
    std::vector<std::string> values;
};

struct RecordQuery {
    std::vector<Condition> filters;
    std::string sort;    ///< "FIELD"/"-FIELD" (also id, created_at, updated_at) or "relevance" (needs q); "" = id,
                         ///< or newest first (-id) with q
    std::string q;       ///< full-text words (all must match); a last word of 3+ characters also matches as a prefix
    std::size_t limit = 50;
    std::string cursor;  ///< from a previous page's next_cursor
};

struct RecordPage {
    json::array items;
    std::optional<std::string> next_cursor;
};

enum class ImportMode { kAllOrNothing, kSkipBadRows };

struct ImportOptions {
    ImportMode mode = ImportMode::kAllOrNothing;
    CsvOptions csv;
    /// Header text → field name ("" ignores the column). Headers not listed map to the field of the same name
    /// (or, failing that, the field whose label equals the header, ignoring case); `id` updates that record;
    /// `created_at` and `updated_at` are ignored (so an export imports back).
    std::map<std::string, std::string> mapping;
};

struct ImportError {
    std::size_t row = 0;   ///< data rows counted from 1; the header is not a row
    std::size_t line = 0;  ///< physical line in the file where the row starts
    std::string field;     ///< "" for a problem of the whole row
    std::string message;
};

struct ImportResult {
    ImportMode mode = ImportMode::kAllOrNothing;
    std::size_t rows = 0;      ///< data rows read
    std::size_t imported = 0;  ///< rows written (created + updated); 0 when an all-or-nothing import failed
    std::size_t created = 0;
    std::size_t updated = 0;
    std::size_t failed = 0;    ///< rows with at least one error
    std::vector<ImportError> errors;  ///< at most kMaxImportErrors
    std::size_t error_count = 0;      ///< every error found (errors lists the first kMaxImportErrors)
    bool rolled_back = false;  ///< all-or-nothing and errors: nothing was written
    /// Records of the model not yet in the full-text index when the import committed (the background indexer
    /// adds them shortly; filters see them at once, `q` once indexed).
    std::size_t index_pending = 0;

    json::object to_json() const;
};

struct CustomDataOptions {
    unsigned bulk_threads = 1;  ///< threads for exports (long reads never occupy HTTP worker threads)
    /// Run the background full-text indexer thread. false: nothing indexes pending records until
    /// index_search_batch/drain_search_index is called (tests simulating a stopped indexer).
    bool background_indexing = true;
    std::size_t index_batch_rows = kIndexBatchRows;
    std::size_t import_inline_index_rows = kImportInlineIndexRows;  ///< 0: every import indexes in the background
};

/// The Custom Data service. Thread-safety: every method may be called from any thread. Reads run on the
/// caller's thread through store.read (short: one model row and one page of records); writes run on the
/// store's writer thread (coroutine methods resume on the caller's executor once durable); exports from HTTP
/// run on the service's own bulk thread pool; full-text indexing of imported records runs on the service's
/// indexer thread (batches through write_sync). Owns that pool and that thread (both joined by the destructor);
/// the store and clock outlive it.
class CustomDataService {
public:
    CustomDataService(store::Store& store, core::Clock& clock, CustomDataOptions options = {});
    ~CustomDataService();
    CustomDataService(const CustomDataService&) = delete;
    CustomDataService& operator=(const CustomDataService&) = delete;

    // --- models -------------------------------------------------------------------------------------------
    /// `{"name", "label"?, "description"?, "fields": [...], "groups"?, "display"?, "access"?}` → 201 model.
    boost::asio::awaitable<Model> create_model(json::object spec);
    std::vector<Model> list_models();
    Model get_model(std::string_view name);  ///< NotFound
    std::optional<Model> find_model(std::string_view name);
    /// model_to_json with reference targets named (reads the model names when the model has references).
    json::object model_json(const Model& model);
    /// Changes name/label/description/groups/display/access (not fields).
    boost::asio::awaitable<Model> update_model(std::string model, json::object patch);
    /// Drops the model and all its records. Conflict when another model's reference field points at it.
    boost::asio::awaitable<void> delete_model(std::string model);

    // --- fields (editing a model never loses data by accident) -------------------------------------------
    boost::asio::awaitable<Model> add_field(std::string model, json::object field);
    /// Renames, retypes (every existing value is converted or the change is refused with 422), and changes
    /// options/rules/flags/labels. Adding `required` needs every record to have a value (or a default to fill).
    boost::asio::awaitable<Model> update_field(std::string model, std::string field, json::object patch);
    /// Removing a field that holds values needs `force` (409 `field_has_data` otherwise).
    boost::asio::awaitable<Model> remove_field(std::string model, std::string field, bool force);

    // --- records ------------------------------------------------------------------------------------------
    boost::asio::awaitable<json::object> create_record(std::string model, json::object values);
    json::object get_record(std::string_view model, std::string_view id);  ///< NotFound
    boost::asio::awaitable<json::object> update_record(std::string model, std::string id, json::object values);
    boost::asio::awaitable<void> delete_record(std::string model, std::string id);
    RecordPage list_records(std::string_view model, const RecordQuery& query);

    /// Callback forms for actions (`done` runs on the writer thread): create (id empty) or update a record.
    /// `lenient` parses strings for non-text fields ("42" for a number), as template-rendered params are text.
    void write_record_async(std::string model, std::string id, json::object values, bool lenient,
                            std::function<void(std::exception_ptr, json::object)> done);

    // --- CSV ----------------------------------------------------------------------------------------------
    /// Imports `body` (owned for the duration) inside one write transaction.
    boost::asio::awaitable<ImportResult> import_csv(std::string model, std::string body, ImportOptions options);
    /// In-process import streamed from `source` (any size); blocks until durable. Never call on an Asio
    /// worker thread. Header problems and a wrong encoding throw core::BadRequest.
    ImportResult import_csv_sync(std::string_view model, CsvSource& source, const ImportOptions& options);
    /// Streams the filtered records as CSV (header `id,<fields…>,created_at,updated_at`, CRLF) to `sink` in
    /// chunks, on the calling thread, from one read snapshot. `query.limit`/`cursor` are ignored. Returns rows.
    std::size_t export_csv(std::string_view model, const RecordQuery& query,
                           const std::function<void(std::string_view)>& sink, bool bom = false);
    /// export_csv on the bulk pool, collected into one string of at most kMaxExportBytes (TooLarge beyond).
    boost::asio::awaitable<std::string> export_csv_text(std::string model, RecordQuery query, bool bom);

    // --- background full-text indexing -------------------------------------------------------------------
    /// Records of `model` not yet in its full-text index (imported moments ago): `q` finds them once this is 0;
    /// filters and reads see them at once. Also `index_pending` in the model JSON and the import report.
    std::int64_t index_pending(std::string_view model);
    /// Indexes one batch (at most `index_batch_rows`) of the next model with pending records, round robin, in
    /// its own write transaction; blocks until durable (never call on an Asio worker). Returns the records
    /// indexed; 0 when nothing is pending anywhere. Safe alongside the indexer thread (the watermark moves in
    /// the same transaction as the index, on the single writer).
    std::size_t index_search_batch();
    /// index_search_batch until nothing is pending; returns the records indexed (tests, benchmarks).
    std::size_t drain_search_index();
    /// Waits until no model has pending records (the indexer thread drains them; without it this drains on the
    /// calling thread). Polls every 5 ms; false when `timeout` passed first.
    bool wait_search_indexed(std::chrono::milliseconds timeout);
    /// Wakes the indexer thread (called after writes that may leave records pending).
    void kick_indexer();
    /// Stops and joins the indexer thread (a batch in flight commits first; pending records stay pending for
    /// the next start). Idempotent; the destructor calls it. Call before closing the store.
    void stop_indexer();

    store::Store& store() { return store_; }
    core::Clock& clock() { return clock_; }

private:
    void indexer_main();

    store::Store& store_;
    core::Clock& clock_;
    CustomDataOptions options_;
    boost::asio::thread_pool bulk_;
    std::mutex indexer_mutex_;
    std::condition_variable indexer_cv_;
    bool indexer_kicked_ = false;           ///< guarded by indexer_mutex_
    std::string indexer_last_model_;        ///< round robin position; guarded by indexer_mutex_
    std::atomic<bool> indexer_stop_{false};
    std::thread indexer_;  ///< last member: started after the others exist
};

/// The module's schema (module name "customdata"); records tables are created at run time per model.
std::vector<store::Migration> migrations();

/// Routes under /api/v1/custom-data (see docs/api/customdata.yaml).
void register_routes(http::Router& router, CustomDataService& service);

/// `custom_modules__get`, `custom_modules__set`, `custom_modules__search`.
void register_actions(actions::ActionRegistry& registry, CustomDataService& service);

/// Model / field / record JSON (API form).
json::object model_to_json(const Model& model, const std::map<std::string, std::string>& model_names = {});

/// Parses the query string of GET .../records and .../export: `filter[FIELD][OP]=V` (also `filter[FIELD]=V`
/// for eq), `sort`, `q`, `cursor` (and `limit` when `with_limit`). BadRequest naming the bad parameter.
RecordQuery parse_record_query(const std::vector<std::pair<std::string, std::string>>& params, bool with_limit);

}  // namespace parley::customdata

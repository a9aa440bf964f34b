#include <fmt/format.h>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <set>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "customdata/customdata.h"
#include "customdata/internal/query.h"
#include "customdata/internal/records.h"
#include "customdata/internal/schema.h"
#include "customdata/internal/values.h"
#include "store/async.h"

namespace parley::customdata {

namespace asio = boost::asio;
using namespace internal;

namespace {

const std::set<std::string_view> kModelKeys = {"name", "label", "description", "fields", "groups", "display", "access"};

void reject_keys(const json::object& body, const std::set<std::string_view>& allowed, const char* what) {
    for (const auto& [key, value] : body) {
        if (!allowed.count(std::string_view(key.data(), key.size()))) {
            throw core::BadRequest(fmt::format("'{}' is not a {} setting", std::string_view(key).substr(0, 64), what),
                                   "unknown_field", json::array{json::object{{"field", std::string_view(key)}}});
        }
    }
}

std::int64_t require_rid(const Model& model, std::string_view id) {
    auto rid = parse_record_id(id);
    if (!rid) throw core::NotFound(fmt::format("no record '{}' in model '{}'", id.substr(0, 40), model.name), "record_not_found");
    return *rid;
}

/// Resolves the reference target names collected while parsing field specs.
void resolve_references(store::Tx& tx, Model& model, const std::vector<std::pair<std::size_t, std::string>>& refs) {
    Problems problems;
    for (const auto& [index, name] : refs) {
        if (name == model.name) {
            model.fields[index].reference_model_id = model.id;
            continue;
        }
        auto target = load_model(tx, name);
        if (!target) {
            problems.add(fmt::format("fields[{}].model", index), fmt::format("there is no model named '{}'", name));
            continue;
        }
        model.fields[index].reference_model_id = target->id;
    }
    problems.throw_if_any("invalid_model", "the model is invalid");
}

/// Renames `from` to `to` in display.list.columns and display.form.order (to == "" removes it).
void rename_in_display(Model& model, const std::string& from, const std::string& to) {
    auto fix = [&](json::value* list) {
        if (!list || !list->is_array()) return;
        json::array out;
        for (const auto& v : list->get_array()) {
            if (v.is_string() && v.get_string() == from) {
                if (!to.empty()) out.emplace_back(to);
            } else {
                out.push_back(v);
            }
        }
        *list = std::move(out);
    };
    if (auto* l = model.display.if_contains("list"); l && l->is_object()) fix(l->get_object().if_contains("columns"));
    if (auto* f = model.display.if_contains("form"); f && f->is_object()) fix(f->get_object().if_contains("order"));
}

void check_not_referenced(store::Tx& tx, const Model& model) {
    for (const auto& other : load_models(tx)) {
        if (other.id == model.id) continue;
        for (const auto& f : other.fields) {
            if (f.type == FieldType::kReference && f.reference_model_id == model.id) {
                throw core::Conflict(fmt::format("field '{}' of model '{}' refers to model '{}'", f.name, other.name,
                                                 model.name),
                                     "model_referenced", json::array{json::object{{"model", other.name}, {"field", f.name}}});
            }
        }
    }
}

/// Runs `fn` on the pool and resumes the awaiting coroutine on its own executor with the result.
template <typename R, typename F>
asio::awaitable<R> offload(asio::thread_pool& pool, F fn) {
    return asio::async_initiate<const asio::use_awaitable_t<>, void(std::exception_ptr, R)>(
        [&pool](auto handler, F fn) {
            auto executor = asio::get_associated_executor(handler);
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            asio::post(pool, [shared, executor, fn = std::move(fn)]() mutable {
                std::exception_ptr error;
                auto result = std::make_shared<R>();
                try {
                    *result = fn();
                } catch (...) {
                    error = std::current_exception();
                }
                asio::post(executor, [shared, error, result]() mutable { (*shared)(error, std::move(*result)); });
            });
        },
        asio::use_awaitable, std::move(fn));
}

}  // namespace

CustomDataService::CustomDataService(store::Store& store, core::Clock& clock, CustomDataOptions options)
    : store_(store), clock_(clock), options_(options), bulk_(std::max(1u, options.bulk_threads)) {
    // Once per data dir (a no-op afterwards): models from before background indexing get their watermark, and
    // full-text indexes of older models get the prefix index. Runs before the server answers, from the thread
    // that constructs the service.
    std::size_t rebuilt = 0;
    store_.write_sync([&rebuilt](store::Tx& tx) { rebuilt = internal::upgrade_search_indexes(tx); });
    if (rebuilt > 0) {
        core::log_event(spdlog::level::info, "customdata_search_upgraded", fmt::format(R"("models":{})", rebuilt));
    }
    // The indexer starts by looking for records left pending by the previous run (a crash or a stop mid-way).
    if (options_.background_indexing) indexer_ = std::thread([this] { indexer_main(); });
}

CustomDataService::~CustomDataService() {
    stop_indexer();
    bulk_.stop();
    bulk_.join();
}

// --- background full-text indexing -----------------------------------------------------------------------------

void CustomDataService::stop_indexer() {
    {
        std::lock_guard lock(indexer_mutex_);
        indexer_stop_ = true;
    }
    indexer_cv_.notify_all();
    if (indexer_.joinable()) indexer_.join();
}

void CustomDataService::kick_indexer() {
    {
        std::lock_guard lock(indexer_mutex_);
        indexer_kicked_ = true;
    }
    indexer_cv_.notify_one();
}

void CustomDataService::indexer_main() {
    std::unique_lock lock(indexer_mutex_);
    while (!indexer_stop_) {
        indexer_kicked_ = false;
        lock.unlock();
        try {
            while (!indexer_stop_ && index_search_batch() > 0) {
            }
        } catch (const std::exception& e) {
            // The store refused a batch (disk full, …): nothing moved; retry after the poll interval.
            core::log_event(spdlog::level::warn, "customdata_indexer_failed",
                            fmt::format(R"("error":{})", core::json_quote(e.what())));
        }
        lock.lock();
        indexer_cv_.wait_for(lock, kIndexerPoll, [this] { return indexer_stop_ || indexer_kicked_; });
    }
}

std::int64_t CustomDataService::index_pending(std::string_view model_name) {
    return store::read_value(store_, [&](store::Tx& tx) { return search_pending(tx, require_model(tx, model_name)); });
}

std::size_t CustomDataService::index_search_batch() {
    // Which models have pending records (a read: the writer is not held while looking).
    auto pending = store::read_value(store_, [](store::Tx& tx) {
        std::vector<std::string> ids;
        for (const auto& model : load_models(tx)) {
            if (search_pending(tx, model) > 0) ids.push_back(model.id);
        }
        return ids;
    });
    if (pending.empty()) return 0;
    std::sort(pending.begin(), pending.end());
    {
        // Round robin: start after the model indexed last, so one big import does not starve other models.
        std::lock_guard lock(indexer_mutex_);
        auto after = std::upper_bound(pending.begin(), pending.end(), indexer_last_model_);
        std::rotate(pending.begin(), after, pending.end());
    }
    const auto batch = static_cast<std::int64_t>(std::max<std::size_t>(1, options_.index_batch_rows));
    for (const auto& id : pending) {
        std::int64_t indexed = 0;
        store_.write_sync([&indexed, &id, batch](store::Tx& tx) { indexed = internal::index_search_batch(tx, id, batch); });
        {
            std::lock_guard lock(indexer_mutex_);
            indexer_last_model_ = id;
        }
        if (indexed > 0) return static_cast<std::size_t>(indexed);
    }
    return 0;
}

std::size_t CustomDataService::drain_search_index() {
    std::size_t total = 0;
    while (std::size_t n = index_search_batch()) total += n;
    return total;
}

bool CustomDataService::wait_search_indexed(std::chrono::milliseconds timeout) {
    if (!options_.background_indexing) {
        drain_search_index();
        return true;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        bool pending = store::read_value(store_, [](store::Tx& tx) {
            for (const auto& model : load_models(tx)) {
                if (search_pending(tx, model) > 0) return true;
            }
            return false;
        });
        if (!pending) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        kick_indexer();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

// --- models ----------------------------------------------------------------------------------------------------

asio::awaitable<Model> CustomDataService::create_model(json::object spec) {
    reject_keys(spec, kModelKeys, "model");
    Problems problems;
    Model model;
    model.id = core::new_id();
    model.created_at = model.updated_at = clock_.now_ms();
    if (!spec.contains("name")) problems.add("name", "is required");
    apply_model_settings(model, spec, problems);
    std::vector<std::pair<std::size_t, std::string>> refs;
    if (auto* fields = spec.if_contains("fields"); fields && !fields->is_null()) {
        if (!fields->is_array()) {
            problems.add("fields", "must be a list of field definitions");
        } else {
            if (fields->get_array().size() > kMaxFields) {
                throw core::Unprocessable(fmt::format("a model has at most {} fields", kMaxFields), "invalid_model",
                                          json::array{json::object{{"field", "fields"}}});
            }
            for (std::size_t i = 0; i < fields->get_array().size(); ++i) {
                const auto& item = fields->get_array()[i];
                std::string path = fmt::format("fields[{}]", i);
                if (!item.is_object()) {
                    problems.add(path, "must be an object");
                    continue;
                }
                std::string ref;
                Field f = parse_field_spec(item.get_object(), path, problems, ref);
                f.id = fmt::format("f{}", model.next_column++);
                if (!ref.empty()) refs.emplace_back(model.fields.size(), ref);
                model.fields.push_back(std::move(f));
            }
        }
    }
    check_model(model, problems);
    problems.throw_if_any("invalid_model", "the model is invalid");
    auto fn = [model, refs](store::Tx& tx) mutable -> Model {
        if (load_model(tx, model.name)) {
            throw core::Conflict(fmt::format("a model named '{}' already exists", model.name), "model_exists",
                                 json::array{json::object{{"field", "name"}}});
        }
        if (tx.query_one("SELECT count(*) FROM cd_models")->integer(0) >= static_cast<std::int64_t>(kMaxModels)) {
            throw core::Conflict(fmt::format("there are already {} models", kMaxModels), "too_many_models");
        }
        resolve_references(tx, model, refs);
        insert_model(tx, model);
        create_records_table(tx, model);
        return model;
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

std::vector<Model> CustomDataService::list_models() {
    return store::read_value(store_, [](store::Tx& tx) { return load_models(tx); });
}

Model CustomDataService::get_model(std::string_view name) {
    return store::read_value(store_, [&](store::Tx& tx) { return require_model(tx, name); });
}

std::optional<Model> CustomDataService::find_model(std::string_view name) {
    return store::read_value(store_, [&](store::Tx& tx) { return load_model(tx, name); });
}

json::object CustomDataService::model_json(const Model& model) {
    bool has_reference = false;
    for (const auto& f : model.fields) has_reference |= f.type == FieldType::kReference;
    std::map<std::string, std::string> names;
    std::int64_t pending = 0;
    store_.read([&](store::Tx& tx) {
        if (has_reference) names = model_names(tx);
        // A model deleted meanwhile (a DELETE racing this answer) simply shows nothing pending.
        if (tx.query_one("SELECT 1 FROM cd_models WHERE id = ?", {model.id})) pending = search_pending(tx, model);
    });
    json::object out = model_to_json(model, names);
    out["index_pending"] = pending;
    return out;
}

asio::awaitable<Model> CustomDataService::update_model(std::string name, json::object patch) {
    reject_keys(patch, {"name", "label", "description", "groups", "display", "access"}, "model");
    const std::int64_t now = clock_.now_ms();
    auto fn = [name, patch, now](store::Tx& tx) -> Model {
        Model model = require_model(tx, name);
        const std::string old_name = model.name;
        Problems problems;
        apply_model_settings(model, patch, problems);
        check_model(model, problems);
        problems.throw_if_any("invalid_model", "the model is invalid");
        if (model.name != old_name && load_model(tx, model.name)) {
            throw core::Conflict(fmt::format("a model named '{}' already exists", model.name), "model_exists",
                                 json::array{json::object{{"field", "name"}}});
        }
        model.version += 1;
        model.updated_at = now;
        save_model(tx, model);
        return model;
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

asio::awaitable<void> CustomDataService::delete_model(std::string name) {
    auto fn = [name](store::Tx& tx) {
        Model model = require_model(tx, name);
        check_not_referenced(tx, model);
        drop_records_table(tx, model);
        tx.exec("DELETE FROM cd_models WHERE id = ?", {model.id});
    };
    co_await store::co_write(store_, std::move(fn));
}

// --- fields ----------------------------------------------------------------------------------------------------

asio::awaitable<Model> CustomDataService::add_field(std::string name, json::object spec) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [name, spec, now](store::Tx& tx) -> Model {
        Model model = require_model(tx, name);
        Problems problems;
        std::string ref;
        Field f = parse_field_spec(spec, "", problems, ref);
        problems.throw_if_any("invalid_field", "the field is invalid");
        if (model.fields.size() >= kMaxFields) {
            throw core::Unprocessable(fmt::format("a model has at most {} fields", kMaxFields), "too_many_fields");
        }
        f.id = fmt::format("f{}", model.next_column++);
        model.fields.push_back(f);
        if (!ref.empty()) resolve_references(tx, model, {{model.fields.size() - 1, ref}});
        check_model(model, problems);
        problems.throw_if_any("invalid_field", "the field is invalid");
        const Field& added = model.fields.back();
        const std::string table = model.table();
        tx.exec(fmt::format("ALTER TABLE {} ADD COLUMN {}", table, added.id));
        if (added.default_value) {
            store::Value v;
            value_from_json(added, *added.default_value, false, v);
            tx.exec(fmt::format("UPDATE {} SET {} = ?", table, added.id), {v});
        } else if (added.required && tx.query_one(fmt::format("SELECT 1 FROM {} LIMIT 1", table))) {
            throw core::Unprocessable(
                fmt::format("'{}' is required but existing records have no value: give it a default", added.name),
                "field_needs_default", json::array{json::object{{"field", "default"}}});
        }
        sync_indexes(tx, model);
        if (added.searchable) install_search(tx, model, true);
        model.version += 1;
        model.updated_at = now;
        save_model(tx, model);
        return model;
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

asio::awaitable<Model> CustomDataService::update_field(std::string name, std::string field_name, json::object patch) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [name, field_name, patch, now](store::Tx& tx) -> Model {
        Model model = require_model(tx, name);
        std::size_t index = model.fields.size();
        for (std::size_t i = 0; i < model.fields.size(); ++i) {
            if (model.fields[i].name == field_name) index = i;
        }
        if (index == model.fields.size()) {
            throw core::NotFound(fmt::format("model '{}' has no field '{}'", model.name, field_name.substr(0, 64)),
                                 "field_not_found");
        }
        const Field old = model.fields[index];
        // The new definition: the old one in API form with the patch on top.
        json::object merged = model_to_json(model, model_names(tx)).at("fields").as_array()[index].as_object();
        merged["indexed"] = old.indexed;
        if (old.type == FieldType::kReference && patch.contains("type") && !patch.contains("model")) merged.erase("model");
        if (patch.contains("type")) {
            // Type-specific settings of the old type do not carry over to a new type.
            for (auto key : {"options", "min", "max", "min_length", "max_length", "pattern", "searchable"}) {
                if (!patch.contains(key)) merged.erase(key);
            }
            if (!patch.contains("model") && patch.at("type") != "reference") merged.erase("model");
            if (!patch.contains("default")) merged.erase("default");
        }
        for (const auto& [key, value] : patch) merged[key] = value;
        Problems problems;
        std::string ref;
        Field f = parse_field_spec(merged, "", problems, ref);
        problems.throw_if_any("invalid_field", "the field is invalid");
        f.id = old.id;
        model.fields[index] = f;
        if (!ref.empty()) resolve_references(tx, model, {{index, ref}});
        if (f.name != old.name) rename_in_display(model, old.name, f.name);
        check_model(model, problems);
        problems.throw_if_any("invalid_field", "the field is invalid");
        const Field& now_field = model.fields[index];
        const std::string table = model.table();

        // Existing values must fit the new type and rules; a retype converts them through their text form.
        const bool retype = now_field.type != old.type;
        const bool rules_changed = retype || now_field.options != old.options || now_field.min != old.min ||
                                   now_field.max != old.max || now_field.min_length != old.min_length ||
                                   now_field.max_length != old.max_length || now_field.pattern != old.pattern ||
                                   now_field.reference_model_id != old.reference_model_id;
        drop_search_triggers(tx, model);
        if (rules_changed) {
            Validator validator(model);
            json::array bad;
            std::size_t bad_count = 0;
            std::vector<std::pair<std::int64_t, store::Value>> converted;
            tx.for_each(fmt::format("SELECT rid, {0} FROM {1} WHERE {0} IS NOT NULL", old.id, table), {},
                        [&](const store::Row& row) {
                            store::Value v = row[1];
                            std::optional<std::string> error;
                            if (retype) {
                                std::string text;
                                append_value_text(old, row[1], text);
                                error = value_from_text(now_field, text, v);
                            }
                            if (!error && !std::holds_alternative<std::nullptr_t>(v)) error = validator.check(index, v);
                            if (!error && now_field.type == FieldType::kReference &&
                                now_field.reference_model_id != old.reference_model_id) {
                                Model target;
                                target.id = now_field.reference_model_id;
                                if (!tx.query_one(fmt::format("SELECT 1 FROM {} WHERE rid = ?", target.table()), {v})) {
                                    error = "no such record in the referenced model";
                                }
                            }
                            if (error) {
                                ++bad_count;
                                if (bad.size() < 20) {
                                    bad.push_back(json::object{{"id", std::to_string(row.integer(0))},
                                                               {"field", now_field.name},
                                                               {"message", *error}});
                                }
                            } else if (retype) {
                                converted.emplace_back(row.integer(0), std::move(v));
                            }
                            return true;
                        });
            if (bad_count > 0) {
                throw core::Unprocessable(
                    fmt::format("{} existing record(s) have a value of '{}' that does not fit the new definition",
                                bad_count, now_field.name),
                    "incompatible_values", std::move(bad));
            }
            for (auto& [rid, v] : converted) {
                tx.exec(fmt::format("UPDATE {} SET {} = ? WHERE rid = ?", table, now_field.id), {v, rid});
            }
        }
        if (now_field.required && !old.required) {
            bool empty = tx.query_one(fmt::format("SELECT 1 FROM {} WHERE {} IS NULL LIMIT 1", table, now_field.id))
                             .has_value();
            if (empty && now_field.default_value) {
                store::Value v;
                value_from_json(now_field, *now_field.default_value, false, v);
                tx.exec(fmt::format("UPDATE {0} SET {1} = ? WHERE {1} IS NULL", table, now_field.id), {v});
            } else if (empty) {
                throw core::Unprocessable(
                    fmt::format("some records have no '{}': give the field a default to fill them", now_field.name),
                    "field_has_empty_values", json::array{json::object{{"field", now_field.name}}});
            }
        }
        sync_indexes(tx, model);
        install_search(tx, model, retype || now_field.searchable != old.searchable);
        model.version += 1;
        model.updated_at = now;
        save_model(tx, model);
        return model;
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

asio::awaitable<Model> CustomDataService::remove_field(std::string name, std::string field_name, bool force) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [name, field_name, force, now](store::Tx& tx) -> Model {
        Model model = require_model(tx, name);
        auto it = std::find_if(model.fields.begin(), model.fields.end(),
                               [&](const Field& f) { return f.name == field_name; });
        if (it == model.fields.end()) {
            throw core::NotFound(fmt::format("model '{}' has no field '{}'", model.name, field_name.substr(0, 64)),
                                 "field_not_found");
        }
        const Field removed = *it;
        const std::string table = model.table();
        if (!force && tx.query_one(fmt::format("SELECT 1 FROM {} WHERE {} IS NOT NULL LIMIT 1", table, removed.id))) {
            throw core::Conflict(
                fmt::format("records hold values of '{}'; remove it with force=true to drop them", removed.name),
                "field_has_data", json::array{json::object{{"field", removed.name}}});
        }
        drop_search_triggers(tx, model);
        model.fields.erase(it);
        rename_in_display(model, removed.name, "");
        sync_indexes(tx, model);
        tx.exec(fmt::format("ALTER TABLE {} DROP COLUMN {}", table, removed.id));
        install_search(tx, model, removed.searchable);
        model.version += 1;
        model.updated_at = now;
        save_model(tx, model);
        return model;
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

// --- records ---------------------------------------------------------------------------------------------------

asio::awaitable<json::object> CustomDataService::create_record(std::string model, json::object values) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [model, values, now](store::Tx& tx) -> json::object {
        return insert_record(tx, require_model(tx, model), values, false, now);
    };
    json::object record = co_await store::co_write(store_, std::move(fn));
    kick_indexer();  // indexed inline unless an import's records are still pending (then it queues behind them)
    co_return record;
}

json::object CustomDataService::get_record(std::string_view model_name, std::string_view id) {
    return store::read_value(store_, [&](store::Tx& tx) {
        Model model = require_model(tx, model_name);
        auto record = find_record(tx, model, require_rid(model, id));
        if (!record) {
            throw core::NotFound(fmt::format("no record '{}' in model '{}'", id.substr(0, 40), model.name),
                                 "record_not_found");
        }
        return std::move(*record);
    });
}

asio::awaitable<json::object> CustomDataService::update_record(std::string model, std::string id, json::object values) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [model, id, values, now](store::Tx& tx) -> json::object {
        Model m = require_model(tx, model);
        return internal::update_record(tx, m, require_rid(m, id), values, false, now);
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

asio::awaitable<void> CustomDataService::delete_record(std::string model, std::string id) {
    auto fn = [model, id](store::Tx& tx) {
        Model m = require_model(tx, model);
        internal::delete_record(tx, m, require_rid(m, id));
    };
    co_await store::co_write(store_, std::move(fn));
}

RecordPage CustomDataService::list_records(std::string_view model_name, const RecordQuery& query) {
    return store::read_value(store_, [&](store::Tx& tx) {
        Model model = require_model(tx, model_name);
        SqlQuery sql = build_query(model, query, true);
        RecordPage page;
        if (sql.nothing) return page;
        auto rows = tx.query(sql.sql, sql.params);
        const std::size_t limit = query.limit;
        for (std::size_t i = 0; i < rows.size() && i < limit; ++i) page.items.push_back(row_to_record(model, rows[i]));
        if (rows.size() > limit) page.next_cursor = cursor_after(model, sql, rows[limit - 1]);
        return page;
    });
}

void CustomDataService::write_record_async(std::string model, std::string id, json::object values, bool lenient,
                                           std::function<void(std::exception_ptr, json::object)> done) {
    const std::int64_t now = clock_.now_ms();
    auto result = std::make_shared<json::object>();
    store_.write(
        [model, id, values, lenient, now, result](store::Tx& tx) {
            Model m = require_model(tx, model);
            if (id.empty()) {
                *result = insert_record(tx, m, values, lenient, now);
            } else {
                *result = internal::update_record(tx, m, require_rid(m, id), values, lenient, now);
            }
        },
        [this, result, created = id.empty(), done = std::move(done)](std::exception_ptr error) {
            if (!error && created) kick_indexer();
            done(error, std::move(*result));
        });
}

// --- CSV -------------------------------------------------------------------------------------------------------

asio::awaitable<ImportResult> CustomDataService::import_csv(std::string model, std::string body, ImportOptions options) {
    const std::int64_t now = clock_.now_ms();
    auto text = std::make_shared<const std::string>(std::move(body));
    const std::size_t inline_rows = options_.import_inline_index_rows;
    auto fn = [model, text, options, now, inline_rows](store::Tx& tx) -> ImportResult {
        StringCsvSource source(*text);
        return run_import(tx, require_model(tx, model), source, options, now, inline_rows);
    };
    std::optional<ImportResult> result;
    try {
        result = co_await store::co_write(store_, std::move(fn));
    } catch (const ImportRolledBack& rolled_back) {
        co_return rolled_back.result;
    }
    kick_indexer();
    co_return std::move(*result);
}

ImportResult CustomDataService::import_csv_sync(std::string_view model, CsvSource& source, const ImportOptions& options) {
    const std::int64_t now = clock_.now_ms();
    ImportResult result;
    try {
        store_.write_sync([&](store::Tx& tx) { result = run_import(tx, require_model(tx, model), source, options, now,
                                                          options_.import_inline_index_rows);
        });
    } catch (const ImportRolledBack& rolled_back) {
        return rolled_back.result;
    }
    kick_indexer();
    return result;
}

std::size_t CustomDataService::export_csv(std::string_view model, const RecordQuery& query,
                                          const std::function<void(std::string_view)>& sink, bool bom) {
    return store::read_value(store_, [&](store::Tx& tx) {
        return run_export(tx, require_model(tx, model), query, sink, bom);
    });
}

asio::awaitable<std::string> CustomDataService::export_csv_text(std::string model, RecordQuery query, bool bom) {
    auto fn = [this, model, query, bom]() -> std::string {
        std::string out;
        export_csv(model, query,
                   [&out](std::string_view chunk) {
                       if (out.size() + chunk.size() > kMaxExportBytes) {
                           throw core::TooLarge(fmt::format("the export is larger than {} MiB: narrow it with filters",
                                                            kMaxExportBytes >> 20),
                                                "export_too_large");
                       }
                       out.append(chunk);
                   },
                   bom);
        return out;
    };
    co_return co_await offload<std::string>(bulk_, std::move(fn));
}

json::object ImportResult::to_json() const {
    json::array list;
    for (const auto& e : errors) {
        list.push_back(json::object{{"row", e.row}, {"line", e.line}, {"field", e.field}, {"message", e.message}});
    }
    return json::object{{"imported", imported},
                        {"created", created},
                        {"updated", updated},
                        {"rows", rows},
                        {"failed", failed},
                        {"mode", mode == ImportMode::kAllOrNothing ? "all_or_nothing" : "skip_bad_rows"},
                        {"rolled_back", rolled_back},
                        {"errors", std::move(list)},
                        {"errors_truncated", error_count > errors.size()},
                        {"index_pending", index_pending}};
}

}  // namespace parley::customdata

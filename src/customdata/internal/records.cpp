#include "customdata/internal/records.h"

#include <fmt/format.h>

#include <charconv>
#include <set>

#include "core/error.h"
#include "core/template.h"
#include "customdata/internal/query.h"
#include "customdata/internal/schema.h"
#include "customdata/internal/values.h"

namespace parley::customdata::internal {

namespace {

bool read_only_key(std::string_view key) { return key == "id" || key == "created_at" || key == "updated_at"; }

/// The table of the model a reference field points at.
std::string target_table(const std::string& model_id) {
    Model target;
    target.id = model_id;
    return target.table();
}

bool reference_exists(store::Tx& tx, const Field& f, const store::Value& v) {
    return tx.query_one(fmt::format("SELECT 1 FROM {} WHERE rid = ?", target_table(f.reference_model_id)), {v})
        .has_value();
}

/// The field a UNIQUE violation names ("" when none).
std::string conflict_field(const Model& model, const store::StoreError& e) {
    try {
        rethrow_constraint(model, e);
    } catch (const core::Conflict& c) {
        if (!c.details().empty()) {
            if (auto* f = c.details().front().as_object().if_contains("field")) return std::string(f->as_string());
        }
    }
    return {};
}

/// Validates and converts the given values; `out[i]` holds the stored value of field i, `given[i]` whether it
/// was in `values`.
void convert_values(store::Tx& tx, const Model& model, const Validator& validator, const json::object& values,
                    bool lenient, bool apply_defaults, std::vector<store::Value>& out, std::vector<bool>& given,
                    Problems& problems) {
    const std::size_t n = model.fields.size();
    out.assign(n, nullptr);
    given.assign(n, false);
    for (const auto& [key, value] : values) {
        std::string_view k(key.data(), key.size());
        if (read_only_key(k)) continue;
        std::size_t index = n;
        for (std::size_t i = 0; i < n; ++i) {
            if (model.fields[i].name == k) {
                index = i;
                break;
            }
        }
        if (index == n) {
            problems.add(std::string(k.substr(0, 64)), fmt::format("is not a field of model '{}'", model.name));
            continue;
        }
        if (auto error = value_from_json(model.fields[index], value, lenient, out[index])) {
            problems.add(model.fields[index].name, *error);
            out[index] = nullptr;
            continue;
        }
        given[index] = true;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const Field& f = model.fields[i];
        if (!given[i] && apply_defaults && f.default_value) value_from_json(f, *f.default_value, false, out[i]);
        if (std::holds_alternative<std::nullptr_t>(out[i])) continue;
        if (auto error = validator.check(i, out[i])) {
            problems.add(f.name, *error);
        } else if (f.type == FieldType::kReference && (given[i] || apply_defaults) && !reference_exists(tx, f, out[i])) {
            problems.add(f.name, fmt::format("no record {} in the referenced model", std::get<std::int64_t>(out[i])));
        }
    }
}

json::object record_from_values(const Model& model, std::int64_t rid, std::int64_t created, std::int64_t updated,
                                const std::vector<store::Value>& values) {
    json::object out;
    out["id"] = std::to_string(rid);
    for (std::size_t i = 0; i < model.fields.size(); ++i) out[model.fields[i].name] = value_to_json(model.fields[i], values[i]);
    out["created_at"] = format_datetime(created);
    out["updated_at"] = format_datetime(updated);
    return out;
}

std::string insert_sql(const Model& model) {
    std::string cols = "created_at, updated_at";
    std::string marks = "?, ?";
    for (const auto& f : model.fields) {
        cols += ", " + f.id;
        marks += ", ?";
    }
    // No RETURNING: it makes SQLite keep a statement journal per insert (6x slower imports).
    return fmt::format("INSERT INTO {} ({}) VALUES ({})", model.table(), cols, marks);
}

bool text_like(FieldType t) { return t == FieldType::kText || t == FieldType::kSelect || t == FieldType::kJson; }

}  // namespace

std::optional<json::object> find_record(store::Tx& tx, const Model& model, std::int64_t rid) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM {} t WHERE t.rid = ?", select_columns(model), model.table()), {rid});
    if (!row) return std::nullopt;
    return row_to_record(model, *row);
}

json::object insert_record(store::Tx& tx, const Model& model, const json::object& values, bool lenient,
                           std::int64_t now_ms) {
    Validator validator(model);
    Problems problems;
    std::vector<store::Value> converted;
    std::vector<bool> given;
    convert_values(tx, model, validator, values, lenient, true, converted, given, problems);
    for (std::size_t i = 0; i < model.fields.size(); ++i) {
        if (model.fields[i].required && std::holds_alternative<std::nullptr_t>(converted[i])) {
            problems.add(model.fields[i].name, "is required");
        }
    }
    problems.throw_if_any("invalid_record", "the record is invalid");
    store::Params params;
    params.reserve(converted.size() + 2);
    params.emplace_back(now_ms);
    params.emplace_back(now_ms);
    for (auto& v : converted) params.push_back(v);
    std::int64_t rid = 0;
    try {
        tx.exec(insert_sql(model), params);
        rid = tx.query_one("SELECT last_insert_rowid()")->integer(0);
    } catch (const store::StoreError& e) {
        rethrow_constraint(model, e);
    }
    return record_from_values(model, rid, now_ms, now_ms, converted);
}

json::object update_record(store::Tx& tx, const Model& model, std::int64_t rid, const json::object& values,
                           bool lenient, std::int64_t now_ms) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM {} t WHERE t.rid = ?", select_columns(model), model.table()), {rid});
    if (!row) throw core::NotFound(fmt::format("no record {} in model '{}'", rid, model.name), "record_not_found");
    Validator validator(model);
    Problems problems;
    std::vector<store::Value> converted;
    std::vector<bool> given;
    convert_values(tx, model, validator, values, lenient, false, converted, given, problems);
    std::vector<store::Value> merged;
    for (std::size_t i = 0; i < model.fields.size(); ++i) {
        merged.push_back(given[i] ? converted[i] : (*row)[3 + i]);
        if (given[i] && model.fields[i].required && std::holds_alternative<std::nullptr_t>(converted[i])) {
            problems.add(model.fields[i].name, "is required");
        }
    }
    problems.throw_if_any("invalid_record", "the record is invalid");
    std::string sets = "updated_at = ?";
    store::Params params{now_ms};
    for (std::size_t i = 0; i < model.fields.size(); ++i) {
        if (!given[i]) continue;
        sets += fmt::format(", {} = ?", model.fields[i].id);
        params.push_back(converted[i]);
    }
    params.emplace_back(rid);
    try {
        tx.exec(fmt::format("UPDATE {} SET {} WHERE rid = ?", model.table(), sets), params);
    } catch (const store::StoreError& e) {
        rethrow_constraint(model, e);
    }
    return record_from_values(model, rid, row->integer(1), now_ms, merged);
}

void delete_record(store::Tx& tx, const Model& model, std::int64_t rid) {
    for (const auto& other : load_models(tx)) {
        for (const auto& f : other.fields) {
            if (f.type != FieldType::kReference || f.reference_model_id != model.id) continue;
            if (tx.query_one(fmt::format("SELECT 1 FROM {} WHERE {} = ? LIMIT 1", other.table(), f.id), {rid})) {
                throw core::Conflict(
                    fmt::format("record {} is referenced by '{}' of model '{}'", rid, f.name, other.name),
                    "record_referenced", json::array{json::object{{"model", other.name}, {"field", f.name}}});
            }
        }
    }
    if (tx.exec(fmt::format("DELETE FROM {} WHERE rid = ?", model.table()), {rid}) == 0) {
        throw core::NotFound(fmt::format("no record {} in model '{}'", rid, model.name), "record_not_found");
    }
}

ImportResult run_import(store::Tx& tx, const Model& model, CsvSource& source, const ImportOptions& options,
                        std::int64_t now_ms, std::size_t inline_index_rows) {
    ImportResult result;
    result.mode = options.mode;
    source.rewind();
    CsvReader reader(source, options.csv);
    CsvRow header;
    if (!reader.next(header)) {
        if (reader.fatal_error()) throw core::BadRequest(*reader.fatal_error(), "unsupported_encoding");
        throw core::BadRequest("the CSV file is empty: the first row must name the fields", "empty_file");
    }
    if (header.error) {
        throw core::BadRequest(fmt::format("the header row is malformed: {}", *header.error), "invalid_header");
    }

    // Header → fields.
    const std::size_t n = model.fields.size();
    constexpr std::size_t kIgnore = static_cast<std::size_t>(-1);
    constexpr std::size_t kIdColumn = static_cast<std::size_t>(-2);
    std::vector<std::size_t> column_field(header.cells.size(), kIgnore);
    std::vector<bool> mapped(n, false);
    bool has_id = false;
    json::array header_problems;
    for (std::size_t c = 0; c < header.cells.size(); ++c) {
        std::string name = header.cells[c];
        while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
        while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.erase(0, 1);
        std::string target = name;
        if (auto it = options.mapping.find(name); it != options.mapping.end()) {
            target = it->second;
            if (target.empty()) continue;
        } else if (name == "created_at" || name == "updated_at") {
            continue;
        }
        if (target == "id") {
            if (has_id) header_problems.push_back(json::object{{"column", name}, {"message", "'id' appears twice"}});
            has_id = true;
            column_field[c] = kIdColumn;
            continue;
        }
        std::size_t index = kIgnore;
        for (std::size_t i = 0; i < n; ++i) {
            if (model.fields[i].name == target) index = i;
        }
        if (index == kIgnore && !options.mapping.count(name)) {
            std::string lower = core::utf8_lower(target);
            for (std::size_t i = 0; i < n; ++i) {
                if (core::utf8_lower(model.fields[i].label) == lower) index = i;
            }
        }
        if (index == kIgnore) {
            header_problems.push_back(json::object{
                {"column", name.substr(0, 200)},
                {"message", fmt::format("'{}' is not a field of model '{}' (map it with map[{}]=FIELD, or ignore "
                                        "it with map[{}]=)",
                                        target.substr(0, 64), model.name, name.substr(0, 64), name.substr(0, 64))}});
            continue;
        }
        if (mapped[index]) {
            header_problems.push_back(json::object{
                {"column", name.substr(0, 200)},
                {"message", fmt::format("field '{}' already has a column", model.fields[index].name)}});
            continue;
        }
        mapped[index] = true;
        column_field[c] = index;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const Field& f = model.fields[i];
        if (f.required && !mapped[i] && !f.default_value && !has_id) {
            header_problems.push_back(json::object{
                {"column", f.name}, {"message", fmt::format("required field '{}' has no column", f.name)}});
        }
    }
    if (!header_problems.empty()) {
        std::string first(header_problems.front().as_object().at("message").as_string());
        throw core::BadRequest("the header row does not match the model: " + first, "invalid_header",
                               std::move(header_problems));
    }

    // Defaults for unmapped fields, converted once.
    Validator validator(model);
    std::vector<store::Value> defaults(n, nullptr);
    for (std::size_t i = 0; i < n; ++i) {
        if (!mapped[i] && model.fields[i].default_value) {
            value_from_json(model.fields[i], *model.fields[i].default_value, false, defaults[i]);
        }
    }
    const std::string insert = insert_sql(model);
    std::string update = fmt::format("UPDATE {} SET updated_at = ?", model.table());
    for (std::size_t i = 0; i < n; ++i) {
        if (mapped[i]) update += fmt::format(", {} = ?", model.fields[i].id);
    }
    update += " WHERE rid = ?";

    auto add_error = [&](std::size_t row, std::size_t line, std::string field, std::string message) {
        ++result.error_count;
        if (result.errors.size() < kMaxImportErrors) {
            result.errors.push_back(ImportError{row, line, std::move(field), std::move(message)});
        }
    };
    auto field_of_column = [&](std::size_t c) -> std::string {
        if (c >= column_field.size()) return {};
        if (column_field[c] == kIdColumn) return "id";
        if (column_field[c] == kIgnore) return {};
        return model.fields[column_field[c]].name;
    };

    // Full-text indexing is not done here: without the insert trigger the new rows stay above the model's
    // watermark, and the background indexer indexes them in batches after the import commits (the import is
    // bounded by the row inserts alone). Rows updated by id keep their index in step through the update trigger
    // (rows below the watermark) or are indexed later as they are then (rows above it).
    const bool searchable = !search_expression(model, "").empty();
    if (searchable) drop_insert_search_trigger(tx, model);

    CsvRow row;
    std::vector<store::Value> values(n);
    store::Params params;
    params.reserve(n + 3);
    std::size_t row_number = 0;
    while (reader.next(row)) {
        ++row_number;
        result.rows = row_number;
        bool bad = false;
        if (row.error) {
            add_error(row_number, row.line, row.error_column ? field_of_column(*row.error_column) : std::string(),
                      *row.error);
            bad = true;
        } else if (row.cells.size() != header.cells.size()) {
            add_error(row_number, row.line, "",
                      fmt::format("the row has {} cells, the header has {}", row.cells.size(), header.cells.size()));
            bad = true;
        }
        std::optional<std::int64_t> rid;
        if (!bad) {
            values = defaults;
            for (std::size_t c = 0; c < row.cells.size(); ++c) {
                const std::size_t index = column_field[c];
                if (index == kIgnore) continue;
                std::string_view text = row.cells[c];
                if (index == kIdColumn) {
                    if (text.empty()) continue;
                    rid = parse_record_id(text);
                    if (!rid) {
                        add_error(row_number, row.line, "id", fmt::format("'{}' is not a record id", text.substr(0, 40)));
                        bad = true;
                    }
                    continue;
                }
                const Field& f = model.fields[index];
                // Undo the export's formula escaping ('=SUM(…) → =SUM(…)).
                if (text_like(f.type) && text.size() > 1 && text[0] == '\'' && is_formula_like(text.substr(1))) {
                    text.remove_prefix(1);
                }
                if (auto error = value_from_text(f, text, values[index])) {
                    add_error(row_number, row.line, f.name, *error);
                    bad = true;
                    continue;
                }
                if (std::holds_alternative<std::nullptr_t>(values[index])) {
                    if (f.required) {
                        add_error(row_number, row.line, f.name, "is required");
                        bad = true;
                    }
                    continue;
                }
                if (auto error = validator.check(index, values[index])) {
                    add_error(row_number, row.line, f.name, *error);
                    bad = true;
                } else if (f.type == FieldType::kReference && !reference_exists(tx, f, values[index])) {
                    add_error(row_number, row.line, f.name,
                              fmt::format("no record {} in the referenced model", std::get<std::int64_t>(values[index])));
                    bad = true;
                }
            }
            if (!rid && !bad) {
                for (std::size_t i = 0; i < n; ++i) {
                    if (!mapped[i] && model.fields[i].required && std::holds_alternative<std::nullptr_t>(values[i])) {
                        add_error(row_number, row.line, model.fields[i].name, "is required");
                        bad = true;
                    }
                }
            }
        }
        if (!bad) {
            params.clear();
            params.emplace_back(now_ms);
            try {
                if (rid) {
                    for (std::size_t i = 0; i < n; ++i) {
                        if (mapped[i]) params.push_back(values[i]);
                    }
                    params.emplace_back(*rid);
                    if (tx.exec(update, params) == 0) {
                        add_error(row_number, row.line, "id", fmt::format("no record {} in model '{}'", *rid, model.name));
                        bad = true;
                    } else {
                        ++result.updated;
                    }
                } else {
                    params.emplace_back(now_ms);
                    for (auto& v : values) params.push_back(v);
                    tx.exec(insert, params);
                    ++result.created;
                }
            } catch (const store::StoreError& e) {
                if (e.kind() != store::StoreError::Kind::kConstraint) throw;
                std::string field = conflict_field(model, e);
                add_error(row_number, row.line, field,
                          field.empty() ? "conflicts with an existing record" : "another record already has this value");
                bad = true;
            }
        }
        if (bad) {
            ++result.failed;
            if (options.mode == ImportMode::kAllOrNothing && result.errors.size() >= kMaxImportErrors) break;
        }
    }
    result.imported = result.created + result.updated;
    if (options.mode == ImportMode::kAllOrNothing && result.failed > 0) {
        result.rolled_back = true;
        result.imported = result.created = result.updated = 0;
        throw ImportRolledBack{std::move(result)};  // the savepoint rollback also restores the trigger
    }
    if (searchable) {
        install_search(tx, model, false);
        auto pending = static_cast<std::size_t>(search_pending(tx, model));
        if (pending > 0 && pending <= inline_index_rows) {
            index_search_batch(tx, model.id, static_cast<std::int64_t>(inline_index_rows));
            pending = static_cast<std::size_t>(search_pending(tx, model));
        }
        result.index_pending = pending;
    }
    return result;
}

std::size_t run_export(store::Tx& tx, const Model& model, const RecordQuery& query,
                       const std::function<void(std::string_view)>& sink, bool bom) {
    RecordQuery q = query;
    q.cursor.clear();
    SqlQuery sql = build_query(model, q, false);
    constexpr std::size_t kChunk = 64 * 1024;
    std::string out;
    out.reserve(kChunk + 4096);
    if (bom) out.append("\xEF\xBB\xBF");
    out.append("id");
    for (const auto& f : model.fields) {
        out.push_back(',');
        append_csv_cell(out, f.name, true);
    }
    out.append(",created_at,updated_at\r\n");
    std::size_t rows = 0;
    if (sql.nothing) {
        sink(out);
        return 0;
    }
    std::string cell;
    tx.for_each(sql.sql, sql.params, [&](const store::Row& row) {
        char buf[24];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, row.integer(0));
        out.append(buf, end);
        for (std::size_t i = 0; i < model.fields.size(); ++i) {
            out.push_back(',');
            const Field& f = model.fields[i];
            cell.clear();
            append_value_text(f, row[3 + i], cell);
            append_csv_cell(out, cell, text_like(f.type));
        }
        out.push_back(',');
        append_datetime(out, row.integer(1));
        out.push_back(',');
        append_datetime(out, row.integer(2));
        out.append("\r\n");
        ++rows;
        if (out.size() >= kChunk) {
            sink(out);
            out.clear();
        }
        return true;
    });
    if (!out.empty()) sink(out);
    return rows;
}

}  // namespace parley::customdata::internal

#include "customdata/internal/schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "customdata/csv.h"
#include "customdata/internal/values.h"

namespace parley::customdata {

std::string_view field_type_name(FieldType type) {
    switch (type) {
        case FieldType::kText: return "text";
        case FieldType::kNumber: return "number";
        case FieldType::kBoolean: return "boolean";
        case FieldType::kDate: return "date";
        case FieldType::kDatetime: return "datetime";
        case FieldType::kJson: return "json";
        case FieldType::kSelect: return "select";
        case FieldType::kReference: return "reference";
    }
    return "text";
}

std::optional<FieldType> parse_field_type(std::string_view text) {
    for (auto t : {FieldType::kText, FieldType::kNumber, FieldType::kBoolean, FieldType::kDate, FieldType::kDatetime,
                   FieldType::kJson, FieldType::kSelect, FieldType::kReference}) {
        if (field_type_name(t) == text) return t;
    }
    return std::nullopt;
}

std::string_view right_name(Right right) {
    switch (right) {
        case Right::kView: return "view";
        case Right::kEdit: return "edit";
        case Right::kDelete: return "delete";
        case Right::kImport: return "import";
        case Right::kExport: return "export";
    }
    return "view";
}

const Field* Model::field(std::string_view field_name) const {
    for (const auto& f : fields) {
        if (f.name == field_name) return &f;
    }
    return nullptr;
}

std::string Model::table() const {
    std::string out = "cdr_";
    for (char c : id) out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    return out;
}

std::string Model::fts_table() const { return table() + "_fts"; }

bool Model::allows(Right right, const core::Principal& principal) const {
    if (principal.has_role(auth::kRoleAdministrator)) return true;
    auto it = access.find(right);
    if (it == access.end() || it->second.empty()) return true;
    for (const auto& role : it->second) {
        if (principal.has_role(role)) return true;
    }
    return false;
}

std::optional<FilterOp> parse_filter_op(std::string_view text) {
    static const std::pair<std::string_view, FilterOp> kOps[] = {
        {"eq", FilterOp::kEq},   {"ne", FilterOp::kNe},   {"gt", FilterOp::kGt},
        {"gte", FilterOp::kGte}, {"lt", FilterOp::kLt},   {"lte", FilterOp::kLte},
        {"contains", FilterOp::kContains}, {"in", FilterOp::kIn}};
    for (const auto& [name, op] : kOps) {
        if (name == text) return op;
    }
    return std::nullopt;
}

namespace {

constexpr Right kRights[] = {Right::kView, Right::kEdit, Right::kDelete, Right::kImport, Right::kExport};

json::object field_to_json(const Field& f, bool storage, const std::map<std::string, std::string>& names) {
    json::object o{{"id", f.id},
                   {"name", f.name},
                   {"type", field_type_name(f.type)},
                   {"label", f.label},
                   {"description", f.description},
                   {"group", f.group},
                   {"required", f.required},
                   {"unique", f.unique},
                   {"indexed", f.has_index()},
                   {"searchable", f.searchable},
                   {"default", f.default_value ? *f.default_value : json::value(nullptr)}};
    if (storage) o["indexed"] = f.indexed;
    if (f.type == FieldType::kSelect) {
        json::array opts;
        for (const auto& s : f.options) opts.emplace_back(s);
        o["options"] = std::move(opts);
    }
    if (f.type == FieldType::kReference) {
        if (storage) {
            o["model_id"] = f.reference_model_id;
        } else {
            auto it = names.find(f.reference_model_id);
            o["model"] = it == names.end() ? json::value(nullptr) : json::value(it->second);
        }
    }
    if (f.min) o["min"] = *f.min;
    if (f.max) o["max"] = *f.max;
    if (f.min_length) o["min_length"] = *f.min_length;
    if (f.max_length) o["max_length"] = *f.max_length;
    if (f.pattern) o["pattern"] = *f.pattern;
    return o;
}

std::string str(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

bool flag(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    return v && v->is_bool() && v->get_bool();
}

std::optional<double> num(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    if (!v || !v->is_number()) return std::nullopt;
    return v->to_number<double>();
}

std::optional<std::int64_t> whole(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    if (!v || !v->is_int64()) return std::nullopt;
    return v->get_int64();
}

Field field_from_storage(const json::object& o) {
    Field f;
    f.id = str(o, "id");
    f.name = str(o, "name");
    f.type = parse_field_type(str(o, "type")).value_or(FieldType::kText);
    f.label = str(o, "label");
    f.description = str(o, "description");
    f.group = str(o, "group");
    f.required = flag(o, "required");
    f.unique = flag(o, "unique");
    f.indexed = flag(o, "indexed");
    f.searchable = flag(o, "searchable");
    if (auto* d = o.if_contains("default"); d && !d->is_null()) f.default_value = *d;
    if (auto* opts = o.if_contains("options"); opts && opts->is_array()) {
        for (const auto& s : opts->get_array()) {
            if (s.is_string()) f.options.emplace_back(s.get_string());
        }
    }
    f.reference_model_id = str(o, "model_id");
    f.min = num(o, "min");
    f.max = num(o, "max");
    f.min_length = whole(o, "min_length");
    f.max_length = whole(o, "max_length");
    if (auto* p = o.if_contains("pattern"); p && p->is_string()) f.pattern = std::string(p->get_string());
    return f;
}

constexpr const char* kModelColumns =
    "id, name, label, description, fields, groups_json, display, access, next_column, version, created_at, updated_at";

Model model_from_row(const store::Row& row) {
    Model m;
    m.id = row.text(0);
    m.name = row.text(1);
    m.label = row.text(2);
    m.description = row.text(3);
    json::value fields = json::parse(row.text(4));
    for (const auto& f : fields.as_array()) m.fields.push_back(field_from_storage(f.as_object()));
    json::value groups = json::parse(row.text(5));
    if (groups.is_array()) m.groups = std::move(groups.get_array());
    json::value display = json::parse(row.text(6));
    if (display.is_object()) m.display = std::move(display.get_object());
    json::value access = json::parse(row.text(7));
    for (const auto& [key, roles] : access.as_object()) {
        for (auto r : kRights) {
            if (right_name(r) == std::string_view(key.data(), key.size())) {
                for (const auto& role : roles.as_array()) m.access[r].emplace_back(role.as_string());
            }
        }
    }
    m.next_column = row.integer(8);
    m.version = row.integer(9);
    m.created_at = row.integer(10);
    m.updated_at = row.integer(11);
    return m;
}

store::Params model_params(const Model& m) {
    json::array fields;
    for (const auto& f : m.fields) fields.push_back(field_to_json(f, true, {}));
    json::object access;
    for (const auto& [right, roles] : m.access) {
        json::array list;
        for (const auto& r : roles) list.emplace_back(r);
        access[right_name(right)] = std::move(list);
    }
    return {m.id,
            m.name,
            m.label,
            m.description,
            json::serialize(fields),
            json::serialize(m.groups),
            json::serialize(m.display),
            json::serialize(access),
            m.next_column,
            m.version,
            m.created_at,
            m.updated_at};
}

bool is_identifier(std::string_view s, bool allow_dash) {
    if (s.empty() || s.size() > kMaxNameBytes || s[0] < 'a' || s[0] > 'z') return false;
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (allow_dash && c == '-');
        if (!ok) return false;
    }
    return true;
}

std::string bounded_text(const json::object& spec, std::string_view key, std::size_t max, const std::string& path,
                         internal::Problems& problems) {
    auto* v = spec.if_contains(key);
    if (!v || v->is_null()) return {};
    if (!v->is_string()) {
        problems.add(path + std::string(key), "must be a string");
        return {};
    }
    std::string s(v->get_string());
    if (s.size() > max) problems.add(path + std::string(key), fmt::format("is longer than {} bytes", max));
    if (!valid_utf8(s)) problems.add(path + std::string(key), "is not valid UTF-8");
    return s;
}

bool bool_key(const json::object& spec, std::string_view key, const std::string& path, internal::Problems& problems) {
    auto* v = spec.if_contains(key);
    if (!v || v->is_null()) return false;
    if (!v->is_bool()) {
        problems.add(path + std::string(key), "must be true or false");
        return false;
    }
    return v->get_bool();
}

}  // namespace

json::object model_to_json(const Model& m, const std::map<std::string, std::string>& names) {
    json::array fields;
    for (const auto& f : m.fields) fields.push_back(field_to_json(f, false, names));
    json::object access;
    for (auto r : kRights) {
        json::array list;
        if (auto it = m.access.find(r); it != m.access.end()) {
            for (const auto& role : it->second) list.emplace_back(role);
        }
        access[right_name(r)] = std::move(list);
    }
    return json::object{{"id", m.id},
                        {"name", m.name},
                        {"label", m.label},
                        {"description", m.description},
                        {"fields", std::move(fields)},
                        {"groups", m.groups},
                        {"display", m.display},
                        {"access", std::move(access)},
                        {"version", m.version},
                        {"created_at", internal::format_datetime(m.created_at)},
                        {"updated_at", internal::format_datetime(m.updated_at)}};
}

namespace internal {

void Problems::add(std::string field, std::string message) {
    details_.push_back(json::object{{"field", std::move(field)}, {"message", std::move(message)}});
}

void Problems::throw_if_any(const std::string& code, const std::string& what) const {
    if (details_.empty()) return;
    const auto& first = details_.front().as_object();
    std::string message = fmt::format("{}: {} {}", what, std::string_view(first.at("field").as_string()),
                                      std::string_view(first.at("message").as_string()));
    if (details_.size() > 1) message += fmt::format(" (and {} more problems)", details_.size() - 1);
    throw core::Unprocessable(message, code, details_);
}

bool is_valid_model_name(std::string_view name) { return is_identifier(name, true); }

bool is_valid_field_name(std::string_view name) {
    return is_identifier(name, false) && name != "id" && name != "created_at" && name != "updated_at" && name != "rid";
}

Field parse_field_spec(const json::object& spec, const std::string& path, Problems& problems,
                       std::string& reference_name) {
    static const std::set<std::string_view> kKeys = {
        "id", "name", "type", "label", "description", "group", "required", "unique", "indexed", "searchable",
        "default", "options", "model", "min", "max", "min_length", "max_length", "pattern"};
    const std::string p = path.empty() ? "" : path + ".";
    for (const auto& [key, value] : spec) {
        if (!kKeys.count(std::string_view(key.data(), key.size()))) {
            problems.add(p + std::string(key), "is not a field setting");
        }
    }
    Field f;
    f.name = bounded_text(spec, "name", kMaxNameBytes, p, problems);
    if (!is_valid_field_name(f.name)) {
        problems.add(p + "name",
                     "must match [a-z][a-z0-9_]{0,63} and not be id, created_at or updated_at");
    }
    std::string type = bounded_text(spec, "type", 32, p, problems);
    if (auto t = parse_field_type(type)) {
        f.type = *t;
    } else {
        problems.add(p + "type", "must be one of text, number, boolean, date, datetime, json, select, reference");
    }
    f.label = bounded_text(spec, "label", kMaxLabelBytes, p, problems);
    if (f.label.empty()) f.label = f.name;
    f.description = bounded_text(spec, "description", kMaxDescriptionBytes, p, problems);
    f.group = bounded_text(spec, "group", kMaxNameBytes, p, problems);
    f.required = bool_key(spec, "required", p, problems);
    f.unique = bool_key(spec, "unique", p, problems);
    f.indexed = bool_key(spec, "indexed", p, problems);
    if (auto* s = spec.if_contains("searchable"); s && !s->is_null()) {
        f.searchable = bool_key(spec, "searchable", p, problems);
    } else {
        f.searchable = f.type == FieldType::kText;
    }
    if (f.searchable && f.type != FieldType::kText && f.type != FieldType::kSelect) {
        problems.add(p + "searchable", "only text and select fields can be searchable");
    }
    if (f.unique && (f.type == FieldType::kJson || f.type == FieldType::kBoolean)) {
        problems.add(p + "unique", "json and boolean fields cannot be unique");
    }
    if (auto* opts = spec.if_contains("options"); opts && !opts->is_null()) {
        if (f.type != FieldType::kSelect) {
            problems.add(p + "options", "only select fields have options");
        } else if (!opts->is_array()) {
            problems.add(p + "options", "must be a list of strings");
        } else {
            std::set<std::string> seen;
            for (const auto& o : opts->get_array()) {
                if (!o.is_string() || o.get_string().empty() || o.get_string().size() > kMaxOptionBytes) {
                    problems.add(p + "options", fmt::format("each option is a non-empty string of at most {} bytes",
                                                            kMaxOptionBytes));
                    break;
                }
                std::string s(o.get_string());
                if (!seen.insert(s).second) problems.add(p + "options", fmt::format("'{}' is listed twice", s));
                f.options.push_back(std::move(s));
            }
            if (f.options.size() > kMaxSelectOptions) {
                problems.add(p + "options", fmt::format("at most {} options", kMaxSelectOptions));
            }
        }
    }
    if (f.type == FieldType::kSelect && f.options.empty()) problems.add(p + "options", "a select field needs options");
    reference_name = bounded_text(spec, "model", kMaxNameBytes, p, problems);
    if (f.type == FieldType::kReference && reference_name.empty()) {
        problems.add(p + "model", "a reference field names the model it points to");
    } else if (f.type != FieldType::kReference && !reference_name.empty()) {
        problems.add(p + "model", "only reference fields name a model");
    }
    for (auto key : {"min", "max"}) {
        auto* v = spec.if_contains(key);
        if (!v || v->is_null()) continue;
        if (f.type != FieldType::kNumber) {
            problems.add(p + key, "only number fields have min/max");
        } else if (!v->is_number()) {
            problems.add(p + key, "must be a number");
        } else {
            (std::string_view(key) == "min" ? f.min : f.max) = v->to_number<double>();
        }
    }
    if (f.min && f.max && *f.min > *f.max) problems.add(p + "min", "is greater than max");
    for (auto key : {"min_length", "max_length"}) {
        auto* v = spec.if_contains(key);
        if (!v || v->is_null()) continue;
        if (f.type != FieldType::kText) {
            problems.add(p + key, "only text fields have min_length/max_length");
        } else if (!v->is_int64() || v->get_int64() < 0 || v->get_int64() > static_cast<std::int64_t>(kMaxTextBytes)) {
            problems.add(p + key, fmt::format("must be a whole number from 0 to {}", kMaxTextBytes));
        } else {
            (std::string_view(key) == "min_length" ? f.min_length : f.max_length) = v->get_int64();
        }
    }
    if (f.min_length && f.max_length && *f.min_length > *f.max_length) {
        problems.add(p + "min_length", "is greater than max_length");
    }
    if (auto* v = spec.if_contains("pattern"); v && !v->is_null()) {
        if (f.type != FieldType::kText && f.type != FieldType::kSelect) {
            problems.add(p + "pattern", "only text fields have a pattern");
        } else if (!v->is_string()) {
            problems.add(p + "pattern", "must be a string");
        } else if (auto error = Validator::pattern_error(std::string_view(v->get_string()))) {
            problems.add(p + "pattern", *error);
        } else {
            f.pattern = std::string(v->get_string());
        }
    }
    if (auto* v = spec.if_contains("default"); v && !v->is_null()) f.default_value = *v;  // checked in check_model
    return f;
}

void apply_model_settings(Model& model, const json::object& spec, Problems& problems) {
    if (spec.contains("name")) {
        model.name = bounded_text(spec, "name", kMaxNameBytes, "", problems);
        if (!is_valid_model_name(model.name)) problems.add("name", "must match [a-z][a-z0-9_-]{0,63}");
    }
    if (spec.contains("label")) model.label = bounded_text(spec, "label", kMaxLabelBytes, "", problems);
    if (model.label.empty()) model.label = model.name;
    if (spec.contains("description")) {
        model.description = bounded_text(spec, "description", kMaxDescriptionBytes, "", problems);
    }
    if (auto* g = spec.if_contains("groups"); g && !g->is_null()) {
        model.groups.clear();
        if (!g->is_array()) {
            problems.add("groups", "must be a list of {\"name\", \"label\"}");
        } else {
            std::set<std::string> seen;
            for (std::size_t i = 0; i < g->get_array().size(); ++i) {
                const auto& item = g->get_array()[i];
                std::string path = fmt::format("groups[{}]", i);
                if (!item.is_object()) {
                    problems.add(path, "must be an object {\"name\", \"label\"}");
                    continue;
                }
                const auto& o = item.get_object();
                for (const auto& [k, v] : o) {
                    if (k != "name" && k != "label") problems.add(path + "." + std::string(k), "is not a group setting");
                }
                std::string name = bounded_text(o, "name", kMaxNameBytes, path + ".", problems);
                if (!is_identifier(name, false)) problems.add(path + ".name", "must match [a-z][a-z0-9_]{0,63}");
                if (!seen.insert(name).second) problems.add(path + ".name", "is used twice");
                std::string label = bounded_text(o, "label", kMaxLabelBytes, path + ".", problems);
                model.groups.push_back(json::object{{"name", name}, {"label", label.empty() ? name : label}});
            }
        }
    }
    if (auto* d = spec.if_contains("display"); d && !d->is_null()) {
        if (!d->is_object()) {
            problems.add("display", "must be an object");
        } else if (json::serialize(*d).size() > kMaxDisplayBytes) {
            problems.add("display", fmt::format("is larger than {} bytes", kMaxDisplayBytes));
        } else {
            model.display = d->get_object();
        }
    }
    if (auto* a = spec.if_contains("access"); a && !a->is_null()) {
        model.access.clear();
        if (!a->is_object()) {
            problems.add("access", "must be an object of right → list of roles");
        } else {
            for (const auto& [key, roles] : a->get_object()) {
                std::optional<Right> right;
                for (auto r : kRights) {
                    if (right_name(r) == std::string_view(key.data(), key.size())) right = r;
                }
                std::string path = "access." + std::string(key);
                if (!right) {
                    problems.add(path, "is not a right (view, edit, delete, import, export)");
                    continue;
                }
                if (!roles.is_array()) {
                    problems.add(path, "must be a list of role names");
                    continue;
                }
                for (const auto& role : roles.get_array()) {
                    if (!role.is_string() || !auth::is_valid_role_name(std::string_view(role.get_string()))) {
                        problems.add(path, "role names match [a-z0-9_-]{1,64}");
                        break;
                    }
                    model.access[*right].emplace_back(role.get_string());
                }
            }
        }
    }
}

void check_model(const Model& model, Problems& problems) {
    if (model.fields.size() > kMaxFields) problems.add("fields", fmt::format("a model has at most {} fields", kMaxFields));
    std::set<std::string> names;
    std::set<std::string> groups;
    for (const auto& g : model.groups) groups.insert(std::string(g.as_object().at("name").as_string()));
    Validator validator(model);
    for (std::size_t i = 0; i < model.fields.size(); ++i) {
        const auto& f = model.fields[i];
        std::string path = fmt::format("fields[{}]", i);
        if (!names.insert(f.name).second) problems.add(path + ".name", fmt::format("'{}' is used twice", f.name));
        if (!f.group.empty() && !groups.count(f.group)) {
            problems.add(path + ".group", fmt::format("'{}' is not one of the model's groups", f.group));
        }
        if (f.default_value) {
            store::Value v;
            auto error = value_from_json(f, *f.default_value, false, v);
            if (!error) error = validator.check(i, v);
            if (error) problems.add(path + ".default", *error);
        }
    }
    auto check_names = [&](const json::value* list, const std::string& path) {
        if (!list) return;
        if (!list->is_array()) {
            problems.add(path, "must be a list of field names");
            return;
        }
        for (const auto& n : list->get_array()) {
            if (!n.is_string()) {
                problems.add(path, "must be a list of field names");
                return;
            }
            std::string_view s(n.get_string());
            if (!model.field(s) && s != "id" && s != "created_at" && s != "updated_at") {
                problems.add(path, fmt::format("'{}' is not a field of the model", s));
            }
        }
    };
    if (auto* list = model.display.if_contains("list"); list && list->is_object()) {
        check_names(list->get_object().if_contains("columns"), "display.list.columns");
    }
    if (auto* form = model.display.if_contains("form"); form && form->is_object()) {
        check_names(form->get_object().if_contains("order"), "display.form.order");
    }
}

std::optional<Model> load_model_by_id(store::Tx& tx, std::string_view id) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM cd_models WHERE id = ?", kModelColumns), {std::string(id)});
    if (!row) return std::nullopt;
    return model_from_row(*row);
}

std::optional<Model> load_model(store::Tx& tx, std::string_view name) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM cd_models WHERE name = ?", kModelColumns), {std::string(name)});
    if (!row) return std::nullopt;
    return model_from_row(*row);
}

Model require_model(store::Tx& tx, std::string_view name) {
    auto m = load_model(tx, name);
    if (!m) {
        throw core::NotFound(fmt::format("no model named '{}'", name.substr(0, 64)), "model_not_found",
                             json::array{json::object{{"field", "model"}}});
    }
    return std::move(*m);
}

std::vector<Model> load_models(store::Tx& tx) {
    std::vector<Model> out;
    for (const auto& row : tx.query(fmt::format("SELECT {} FROM cd_models ORDER BY name", kModelColumns))) {
        out.push_back(model_from_row(row));
    }
    return out;
}

std::map<std::string, std::string> model_names(store::Tx& tx) {
    std::map<std::string, std::string> out;
    for (const auto& row : tx.query("SELECT id, name FROM cd_models")) out[row.text(0)] = row.text(1);
    return out;
}

void insert_model(store::Tx& tx, const Model& model) {
    tx.exec(fmt::format("INSERT INTO cd_models ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kModelColumns),
            model_params(model));
}

void save_model(store::Tx& tx, const Model& model) {
    auto params = model_params(model);
    params.push_back(model.id);
    tx.exec(
        "UPDATE cd_models SET id = ?, name = ?, label = ?, description = ?, fields = ?, groups_json = ?, display = ?, "
        "access = ?, next_column = ?, version = ?, created_at = ?, updated_at = ? WHERE id = ?",
        params);
}

void create_records_table(store::Tx& tx, const Model& model) {
    std::string sql = fmt::format(
        "CREATE TABLE {} (rid INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL, "
        "updated_at INTEGER NOT NULL",
        model.table());
    for (const auto& f : model.fields) sql += ", " + f.id;
    sql += ")";
    tx.exec(sql);
    tx.exec(fmt::format("CREATE VIRTUAL TABLE {} USING fts5({})", model.fts_table(), kFtsOptions));
    tx.exec(fmt::format("CREATE INDEX {0}_created ON {0}(created_at)", model.table()));
    tx.exec("INSERT OR REPLACE INTO cd_search_state (model_id, indexed_upto) VALUES (?, 0)", {model.id});
    sync_indexes(tx, model);
    install_search(tx, model, false);
}

void drop_records_table(store::Tx& tx, const Model& model) {
    drop_search_triggers(tx, model);
    tx.exec(fmt::format("DROP TABLE IF EXISTS {}", model.fts_table()));
    tx.exec(fmt::format("DROP TABLE IF EXISTS {}", model.table()));
    tx.exec("DELETE FROM cd_search_state WHERE model_id = ?", {model.id});
}

void sync_indexes(store::Tx& tx, const Model& model) {
    const std::string table = model.table();
    std::set<std::string> wanted;
    for (const auto& f : model.fields) {
        if (f.has_index()) wanted.insert(fmt::format("{}_{}_{}", table, f.id, f.unique ? "u" : "i"));
    }
    std::set<std::string> existing;
    for (const auto& row :
         tx.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", {table})) {
        existing.insert(row.text(0));
    }
    existing.erase(table + "_created");
    for (const auto& name : existing) {
        if (!wanted.count(name)) tx.exec(fmt::format("DROP INDEX {}", name));
    }
    for (const auto& f : model.fields) {
        if (!f.has_index()) continue;
        std::string name = fmt::format("{}_{}_{}", table, f.id, f.unique ? "u" : "i");
        if (existing.count(name)) continue;
        try {
            tx.exec(fmt::format("CREATE {}INDEX {} ON {}({})", f.unique ? "UNIQUE " : "", name, table, f.id));
        } catch (const store::StoreError& e) {
            if (e.kind() != store::StoreError::Kind::kConstraint) throw;
            throw core::Conflict(fmt::format("'{}' cannot be unique: some records share a value", f.name),
                                 "duplicate_values", json::array{json::object{{"field", f.name}}});
        }
    }
}

std::string search_expression(const Model& model, std::string_view prefix) {
    std::string expr;
    for (const auto& f : model.fields) {
        if (!f.searchable) continue;
        if (!expr.empty()) expr += " || ' ' || ";
        expr += fmt::format("coalesce({}{}, '')", prefix, f.id);
    }
    return expr;
}

std::size_t upgrade_search_indexes(store::Tx& tx) {
    std::size_t rebuilt = 0;
    for (const auto& model : load_models(tx)) {
        // Models from before background indexing were indexed completely by their triggers.
        if (!tx.query_one("SELECT 1 FROM cd_search_state WHERE model_id = ?", {model.id})) {
            tx.exec("INSERT INTO cd_search_state (model_id, indexed_upto) VALUES (?, ?)",
                    {model.id, last_record_id(tx, model)});
            install_search(tx, model, false);  // the triggers gain their watermark guards
        }
        auto row = tx.query_one("SELECT sql FROM sqlite_master WHERE name = ?", {model.fts_table()});
        if (row && row->text(0).find("prefix=") != std::string::npos) continue;
        install_search(tx, model, true);
        ++rebuilt;
    }
    return rebuilt;
}

std::int64_t last_record_id(store::Tx& tx, const Model& model) {
    std::int64_t last = tx.query_one(fmt::format("SELECT coalesce(max(rid), 0) FROM {}", model.table()))->integer(0);
    if (auto seq = tx.query_one("SELECT seq FROM sqlite_sequence WHERE name = ?", {model.table()})) {
        last = std::max(last, seq->integer(0));
    }
    return last;
}

std::int64_t indexed_upto(store::Tx& tx, const Model& model) {
    auto row = tx.query_one("SELECT indexed_upto FROM cd_search_state WHERE model_id = ?", {model.id});
    return row ? row->integer(0) : 0;
}

std::int64_t search_pending(store::Tx& tx, const Model& model) {
    if (search_expression(model, "").empty()) return 0;
    const std::int64_t upto = indexed_upto(tx, model);
    // Rows above the watermark: an O(log n) bound (exact unless pending rows were deleted before indexing).
    auto first = tx.query_one(fmt::format("SELECT rid FROM {} WHERE rid > ? ORDER BY rid LIMIT 1", model.table()), {upto});
    if (!first) return 0;
    auto last = tx.query_one(fmt::format("SELECT max(rid) FROM {}", model.table()));
    return last->integer(0) - first->integer(0) + 1;
}

std::int64_t index_search_batch(store::Tx& tx, std::string_view model_id, std::int64_t max_rows) {
    auto model = load_model_by_id(tx, model_id);
    if (!model) return 0;
    auto state = tx.query_one("SELECT indexed_upto FROM cd_search_state WHERE model_id = ?", {model->id});
    if (!state) return 0;
    const std::int64_t upto = state->integer(0);
    const std::string table = model->table();
    auto hi = tx.query_one(
        fmt::format("SELECT count(*), max(rid) FROM (SELECT rid FROM {} WHERE rid > ? ORDER BY rid LIMIT ?)", table),
        {upto, std::max<std::int64_t>(1, max_rows)});
    const std::int64_t rows = hi ? hi->integer(0) : 0;
    std::int64_t to = rows > 0 ? hi->integer(1) : upto;
    if (rows > 0) {
        const std::string expr = search_expression(*model, "");
        if (!expr.empty()) {
            // Current values: a pending row updated since its import is indexed as it is now (the update trigger
            // skips rows above the watermark); a deleted one is simply absent.
            tx.exec(fmt::format("INSERT INTO {}(rowid, body) SELECT rid, {} FROM {} WHERE rid > ? AND rid <= ?",
                                model->fts_table(), expr, table),
                    {upto, to});
        }
    }
    // Caught up: ids above the last row that no row holds any more (records deleted before they were indexed)
    // are passed over too, so the next single insert is indexed inline again.
    if (!tx.query_one(fmt::format("SELECT 1 FROM {} WHERE rid > ? LIMIT 1", table), {to})) {
        to = std::max(to, last_record_id(tx, *model));
    }
    if (to != upto) tx.exec("UPDATE cd_search_state SET indexed_upto = ? WHERE model_id = ?", {to, model->id});
    return rows;
}

void drop_search_triggers(store::Tx& tx, const Model& model) {
    for (auto suffix : {"ai", "ad", "au"}) tx.exec(fmt::format("DROP TRIGGER IF EXISTS {}_{}", model.table(), suffix));
}

void drop_insert_search_trigger(store::Tx& tx, const Model& model) {
    tx.exec(fmt::format("DROP TRIGGER IF EXISTS {}_ai", model.table()));
}

void install_search(store::Tx& tx, const Model& model, bool rebuild) {
    const std::string table = model.table();
    const std::string fts = model.fts_table();
    drop_search_triggers(tx, model);
    if (rebuild) {
        tx.exec(fmt::format("DROP TABLE IF EXISTS {}", fts));
        tx.exec(fmt::format("CREATE VIRTUAL TABLE {} USING fts5({})", fts, kFtsOptions));
    }
    std::string new_expr = search_expression(model, "new.");
    if (new_expr.empty()) return;
    std::string old_expr = search_expression(model, "old.");
    // The model id is new_id()'s hex/alphanumeric text (it already names the table), safe as a literal.
    const std::string upto = fmt::format("(SELECT indexed_upto FROM cd_search_state WHERE model_id = '{}')", model.id);
    if (rebuild) {
        // Only the rows below the watermark: the ones above are the background indexer's.
        tx.exec(fmt::format("INSERT INTO {}(rowid, body) SELECT rid, {} FROM {} WHERE rid <= {}", fts,
                            search_expression(model, ""), table, upto));
    }
    std::string columns;
    for (const auto& f : model.fields) {
        if (!f.searchable) continue;
        if (!columns.empty()) columns += ", ";
        columns += f.id;
    }
    // A single insert right after the watermark (nothing pending) is indexed inline and moves the watermark;
    // any other insert stays pending for the indexer. Updates and deletes touch the index only for rows below
    // the watermark (contentless FTS5 needs the old text to delete); rows above it are indexed later as they
    // are then.
    tx.exec(fmt::format("CREATE TRIGGER {0}_ai AFTER INSERT ON {0} WHEN new.rid = {3} + 1 BEGIN "
                        "INSERT INTO {1}(rowid, body) VALUES (new.rid, {2}); "
                        "UPDATE cd_search_state SET indexed_upto = new.rid WHERE model_id = '{4}'; END",
                        table, fts, new_expr, upto, model.id));
    tx.exec(fmt::format("CREATE TRIGGER {0}_ad AFTER DELETE ON {0} WHEN old.rid <= {3} BEGIN "
                        "INSERT INTO {1}({1}, rowid, body) VALUES ('delete', old.rid, {2}); END",
                        table, fts, old_expr, upto));
    tx.exec(fmt::format("CREATE TRIGGER {0}_au AFTER UPDATE OF {3} ON {0} WHEN old.rid <= {5} BEGIN "
                        "INSERT INTO {1}({1}, rowid, body) VALUES ('delete', old.rid, {2}); "
                        "INSERT INTO {1}(rowid, body) VALUES (new.rid, {4}); END",
                        table, fts, old_expr, columns, new_expr, upto));
}

std::string select_columns(const Model& model) {
    std::string out = "t.rid, t.created_at, t.updated_at";
    for (const auto& f : model.fields) out += ", t." + f.id;
    return out;
}

json::object row_to_record(const Model& model, const store::Row& row) {
    json::object out;
    out.reserve(model.fields.size() + 3);
    out["id"] = std::to_string(row.integer(0));
    for (std::size_t i = 0; i < model.fields.size(); ++i) {
        out[model.fields[i].name] = value_to_json(model.fields[i], row[3 + i]);
    }
    out["created_at"] = format_datetime(row.integer(1));
    out["updated_at"] = format_datetime(row.integer(2));
    return out;
}

void rethrow_constraint(const Model& model, const store::StoreError& error) {
    if (error.kind() != store::StoreError::Kind::kConstraint) throw error;
    std::string_view message = error.what();
    std::string prefix = model.table() + ".";
    auto at = message.find(prefix);
    if (at != std::string_view::npos) {
        std::string_view rest = message.substr(at + prefix.size());
        std::size_t n = 0;
        while (n < rest.size() && ((rest[n] >= 'a' && rest[n] <= 'z') || (rest[n] >= '0' && rest[n] <= '9'))) ++n;
        std::string column(rest.substr(0, n));
        for (const auto& f : model.fields) {
            if (f.id == column) {
                throw core::Conflict(fmt::format("another record already has this '{}'", f.name), "duplicate_value",
                                     json::array{json::object{{"field", f.name}, {"message", "must be unique"}}});
            }
        }
    }
    throw core::Conflict("the record conflicts with an existing one", "conflict");
}

}  // namespace internal
}  // namespace parley::customdata

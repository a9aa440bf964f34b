#include <fmt/format.h>

#include <charconv>

#include "actions/actions.h"
#include "core/error.h"
#include "core/template.h"
#include "customdata/customdata.h"

namespace parley::customdata {

namespace {

using actions::ActionCall;
using actions::ActionDone;
using actions::ActionResult;

/// Thrown for params the scenario got wrong; becomes event `error` with code `bad_params`.
struct BadParams : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string string_param(const json::object& params, std::string_view key, bool required) {
    auto* v = params.if_contains(key);
    if (!v || v->is_null() || (v->is_string() && v->get_string().empty())) {
        if (required) throw BadParams(fmt::format("param '{}' is required", key));
        return {};
    }
    if (v->is_string()) return std::string(v->get_string());
    if (v->is_int64() || v->is_uint64()) return json::serialize(*v);
    throw BadParams(fmt::format("param '{}' must be a string", key));
}

std::string text_of(const json::value& v) {
    std::string out;
    core::append_value_text(v, out);
    return out;
}

/// `{"field": value}` (eq) or `{"field": {"gte": 1, "in": [..]}}` → conditions.
std::vector<Condition> conditions_of(const json::value* filter) {
    std::vector<Condition> out;
    if (!filter || filter->is_null()) return out;
    if (filter->is_string() && filter->get_string().empty()) return out;
    if (!filter->is_object()) throw BadParams("param 'filter' must be an object of field → value");
    for (const auto& [field, spec] : filter->get_object()) {
        if (spec.is_object()) {
            for (const auto& [op_name, value] : spec.get_object()) {
                auto op = parse_filter_op(std::string_view(op_name));
                if (!op) throw BadParams(fmt::format("'{}' is not a filter operator", std::string_view(op_name)));
                Condition c{std::string(field), *op, {}};
                if (*op == FilterOp::kIn && value.is_array()) {
                    for (const auto& item : value.get_array()) c.values.push_back(text_of(item));
                } else if (*op == FilterOp::kIn) {
                    std::string list = text_of(value);
                    std::size_t start = 0;
                    for (;;) {
                        auto comma = list.find(',', start);
                        c.values.push_back(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
                        if (comma == std::string::npos) break;
                        start = comma + 1;
                    }
                } else {
                    c.values.push_back(text_of(value));
                }
                out.push_back(std::move(c));
            }
        } else {
            out.push_back(Condition{std::string(field), FilterOp::kEq, {text_of(spec)}});
        }
        if (out.size() > kMaxFilters) throw BadParams(fmt::format("at most {} filters", kMaxFilters));
    }
    return out;
}

std::size_t limit_param(const json::object& params, std::size_t fallback) {
    auto* v = params.if_contains("limit");
    if (!v || v->is_null() || (v->is_string() && v->get_string().empty())) return fallback;
    std::int64_t n = 0;
    if (v->is_int64()) {
        n = v->get_int64();
    } else if (v->is_string()) {
        std::string_view s(v->get_string());
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
        if (ec != std::errc() || end != s.data() + s.size()) n = 0;
    }
    if (n < 1 || n > static_cast<std::int64_t>(kMaxActionLimit)) {
        throw BadParams(fmt::format("param 'limit' must be a whole number from 1 to {}", kMaxActionLimit));
    }
    return static_cast<std::size_t>(n);
}

void reject_unknown(const json::object& params, std::initializer_list<std::string_view> allowed) {
    for (const auto& [key, value] : params) {
        bool ok = false;
        for (auto a : allowed) ok |= a == std::string_view(key);
        if (!ok) throw BadParams(fmt::format("'{}' is not a param of this action", std::string_view(key).substr(0, 64)));
    }
}

/// Runs `body` and turns wrong params and request errors into an `error` result.
template <typename F>
void guarded(const ActionDone& done, F body) {
    try {
        body();
    } catch (const BadParams& e) {
        done(ActionResult::failure("bad_params", e.what()));
    } catch (const core::NotFound& e) {
        done(ActionResult::failure(e.code(), e.what()));
    } catch (const core::Error& e) {
        done(ActionResult::failure(e.code(), e.what()));
    }
}

/// Saves a record in state: under `save_as`, or (without it) its fields merged in plus `record_id`.
void save_record(json::object& state, const json::object& params, const json::object& record) {
    std::string save_as = string_param(params, "save_as", false);
    if (!save_as.empty()) {
        state[save_as] = record;
        return;
    }
    for (const auto& [key, value] : record) {
        if (key == "id") {
            state["record_id"] = value;
        } else if (key != "created_at" && key != "updated_at") {
            state[key] = value;
        }
    }
}

json::object schema(std::initializer_list<std::pair<std::string_view, std::string_view>> props,
                    std::initializer_list<std::string_view> required) {
    json::object properties;
    for (const auto& [name, type] : props) properties[name] = json::object{{"type", type}};
    json::array req;
    for (auto r : required) req.emplace_back(r);
    return json::object{{"type", "object"}, {"properties", std::move(properties)}, {"required", std::move(req)}};
}

class GetAction final : public actions::BasicAction {
public:
    explicit GetAction(CustomDataService& service)
        : BasicAction("custom_modules__get",
                      schema({{"model", "string"}, {"id", "string"}, {"filter", "object"}, {"sort", "string"},
                              {"save_as", "string"}},
                             {"model"}),
                      {"found", "not_found"}),
          service_(service) {}

    void run(ActionCall call, ActionDone done) override {
        guarded(done, [&] {
            const auto& p = call.params;
            reject_unknown(p, {"model", "id", "filter", "sort", "save_as"});
            std::string model = string_param(p, "model", true);
            std::string id = string_param(p, "id", false);
            std::optional<json::object> record;
            if (!id.empty()) {
                try {
                    record = service_.get_record(model, id);
                } catch (const core::NotFound& e) {
                    if (e.code() != "record_not_found") throw;
                }
            } else {
                RecordQuery q;
                q.filters = conditions_of(p.if_contains("filter"));
                if (q.filters.empty()) throw BadParams("give param 'id' or a non-empty 'filter'");
                q.sort = string_param(p, "sort", false);
                q.limit = 1;
                RecordPage page = service_.list_records(model, q);
                if (!page.items.empty()) record = page.items.front().as_object();
            }
            ActionResult result;
            if (!record) {
                result.event = "not_found";
            } else {
                result.event = "found";
                save_record(result.state, p, *record);
            }
            done(std::move(result));
        });
    }

private:
    CustomDataService& service_;
};

class SetAction final : public actions::BasicAction {
public:
    explicit SetAction(CustomDataService& service)
        : BasicAction("custom_modules__set",
                      schema({{"model", "string"}, {"id", "string"}, {"values", "object"}, {"save_id_as", "string"},
                              {"save_as", "string"}},
                             {"model", "values"}),
                      {"success", "error"}),
          service_(service) {}

    void run(ActionCall call, ActionDone done) override {
        guarded(done, [&] {
            const auto& p = call.params;
            reject_unknown(p, {"model", "id", "values", "save_id_as", "save_as"});
            std::string model = string_param(p, "model", true);
            std::string id = string_param(p, "id", false);
            auto* values = p.if_contains("values");
            if (!values || !values->is_object()) throw BadParams("param 'values' must be an object of field → value");
            std::string save_id_as = string_param(p, "save_id_as", false);
            if (save_id_as.empty()) save_id_as = "record_id";
            std::string save_as = string_param(p, "save_as", false);
            service_.write_record_async(
                std::move(model), std::move(id), values->get_object(), true,
                [done, save_id_as, save_as](std::exception_ptr error, json::object record) {
                    if (error) {
                        try {
                            std::rethrow_exception(error);
                        } catch (const core::Error& e) {
                            done(ActionResult::failure(e.code(), e.what()));
                        } catch (const std::exception& e) {
                            done(ActionResult::failure("store_error", e.what()));
                        }
                        return;
                    }
                    ActionResult result;
                    result.event = "success";
                    result.state[save_id_as] = record.at("id");
                    if (!save_as.empty()) result.state[save_as] = std::move(record);
                    done(std::move(result));
                });
        });
    }

private:
    CustomDataService& service_;
};

class SearchAction final : public actions::BasicAction {
public:
    explicit SearchAction(CustomDataService& service)
        : BasicAction("custom_modules__search",
                      schema({{"model", "string"}, {"q", "string"}, {"filter", "object"}, {"sort", "string"},
                              {"limit", "integer"}, {"save_as", "string"}},
                             {"model"}),
                      {"found", "not_found"}),
          service_(service) {}

    void run(ActionCall call, ActionDone done) override {
        guarded(done, [&] {
            const auto& p = call.params;
            reject_unknown(p, {"model", "q", "filter", "sort", "limit", "save_as"});
            std::string model = string_param(p, "model", true);
            RecordQuery q;
            q.q = string_param(p, "q", false);
            if (q.q.size() > kMaxSearchBytes) {
                // Long client text: search by its beginning, cut at a character boundary.
                q.q.resize(kMaxSearchBytes);
                while (!q.q.empty() && (static_cast<unsigned char>(q.q.back()) & 0xC0) == 0x80) q.q.pop_back();
                if (!q.q.empty() && static_cast<unsigned char>(q.q.back()) >= 0xC0) q.q.pop_back();
            }
            q.filters = conditions_of(p.if_contains("filter"));
            q.sort = string_param(p, "sort", false);
            // Bots search small tables (FAQ, shops) by several words: best matches first by default.
            if (q.sort.empty() && !q.q.empty()) q.sort = "relevance";
            q.limit = limit_param(p, 10);
            std::string save_as = string_param(p, "save_as", false);
            if (save_as.empty()) save_as = "records";
            RecordPage page = service_.list_records(model, q);
            ActionResult result;
            result.event = page.items.empty() ? "not_found" : "found";
            result.state[save_as + "_count"] = page.items.size();
            result.state[save_as] = std::move(page.items);
            done(std::move(result));
        });
    }

private:
    CustomDataService& service_;
};

}  // namespace

void register_actions(actions::ActionRegistry& registry, CustomDataService& service) {
    registry.add(std::make_shared<GetAction>(service));
    registry.add(std::make_shared<SetAction>(service));
    registry.add(std::make_shared<SearchAction>(service));
}

}  // namespace parley::customdata

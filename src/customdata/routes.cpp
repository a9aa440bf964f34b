#include <fmt/format.h>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "customdata/customdata.h"
#include "http/http.h"

namespace parley::customdata {

using core::Action;
using http::Access;
using http::Method;
using http::Request;
using http::Response;
namespace asio = boost::asio;

namespace {

constexpr const char* kBase = "/api/v1/custom-data/models";

Access need(Action action) { return Access::need(std::string(auth::kModuleCustomData), action); }

/// The model named in the path, after checking the caller's roles against its access list for `right`.
Model model_for(CustomDataService& service, const Request& req, Right right) {
    Model model = service.get_model(req.param("model"));
    if (!model.allows(right, req.user())) {
        throw core::Forbidden(fmt::format("your roles may not {} model '{}'", right_name(right), model.name), "forbidden",
                              json::array{json::object{{"model", model.name}, {"right", right_name(right)}}});
    }
    return model;
}

json::object body_object(const Request& req) { return req.json(); }

bool flag_param(const Request& req, std::string_view name) {
    auto v = req.query_param(name);
    if (!v) return false;
    if (*v == "true" || *v == "1" || v->empty()) return true;
    if (*v == "false" || *v == "0") return false;
    throw core::BadRequest(fmt::format("'{}' must be true or false", name), "invalid_query",
                           json::array{json::object{{"field", name}}});
}

ImportOptions import_options(const Request& req) {
    ImportOptions options;
    if (auto mode = req.query_param("mode")) {
        if (*mode == "all_or_nothing") {
            options.mode = ImportMode::kAllOrNothing;
        } else if (*mode == "skip_bad_rows") {
            options.mode = ImportMode::kSkipBadRows;
        } else {
            throw core::BadRequest("'mode' is all_or_nothing (default) or skip_bad_rows", "invalid_query",
                                   json::array{json::object{{"field", "mode"}}});
        }
    }
    if (auto d = req.query_param("delimiter")) {
        if (*d == "," || *d == ";" || *d == "|") {
            options.csv.delimiter = (*d)[0];
        } else if (*d == "tab" || *d == "\t") {
            options.csv.delimiter = '\t';
        } else {
            throw core::BadRequest("'delimiter' is one of , ; | tab", "invalid_query",
                                   json::array{json::object{{"field", "delimiter"}}});
        }
    }
    if (auto e = req.query_param("encoding")) {
        if (*e == "utf-8" || *e == "utf8") {
            options.csv.encoding = CsvEncoding::kUtf8;
        } else if (*e == "windows-1251" || *e == "cp1251") {
            options.csv.encoding = CsvEncoding::kWindows1251;
        } else {
            throw core::BadRequest("'encoding' is utf-8 (default) or windows-1251", "invalid_query",
                                   json::array{json::object{{"field", "encoding"}}});
        }
    }
    for (const auto& [key, value] : req.query) {
        if (key.rfind("map[", 0) != 0) continue;
        if (key.size() < 6 || key.back() != ']') {
            throw core::BadRequest("a column mapping is map[HEADER]=FIELD", "invalid_query",
                                   json::array{json::object{{"field", key.substr(0, 80)}}});
        }
        options.mapping[key.substr(4, key.size() - 5)] = value;
    }
    return options;
}

}  // namespace

void register_routes(http::Router& router, CustomDataService& service) {
    CustomDataService* s = &service;
    const std::string base = kBase;

    // --- models ------------------------------------------------------------------------------------------------
    router.add(Method::kPost, base, need(Action::kEdit), [s](Request& req) -> asio::awaitable<Response> {
        Model model = co_await s->create_model(body_object(req));
        co_return Response::json(s->model_json(model), 201);
    });

    router.add(Method::kGet, base, need(Action::kView), [s](Request& req) -> asio::awaitable<Response> {
        json::array items;
        for (const auto& m : s->list_models()) {
            if (m.allows(Right::kView, req.user())) items.push_back(s->model_json(m));
        }
        co_return Response::json(json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
    });

    router.add(Method::kGet, base + "/{model}", need(Action::kView), [s](Request& req) -> asio::awaitable<Response> {
        co_return Response::json(s->model_json(model_for(*s, req, Right::kView)));
    });

    router.add(Method::kPatch, base + "/{model}", need(Action::kEdit), [s](Request& req) -> asio::awaitable<Response> {
        Model current = model_for(*s, req, Right::kEdit);
        Model model = co_await s->update_model(current.name, body_object(req));
        co_return Response::json(s->model_json(model));
    });

    router.add(Method::kDelete, base + "/{model}", need(Action::kDelete), [s](Request& req) -> asio::awaitable<Response> {
        Model current = model_for(*s, req, Right::kDelete);
        co_await s->delete_model(current.name);
        co_return Response::no_content();
    });

    // --- fields ------------------------------------------------------------------------------------------------
    router.add(Method::kPost, base + "/{model}/fields", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model current = model_for(*s, req, Right::kEdit);
                   Model model = co_await s->add_field(current.name, body_object(req));
                   co_return Response::json(s->model_json(model), 201);
               });

    router.add(Method::kPatch, base + "/{model}/fields/{field}", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model current = model_for(*s, req, Right::kEdit);
                   Model model = co_await s->update_field(current.name, req.param("field"), body_object(req));
                   co_return Response::json(s->model_json(model));
               });

    router.add(Method::kDelete, base + "/{model}/fields/{field}", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model current = model_for(*s, req, Right::kEdit);
                   co_await s->remove_field(current.name, req.param("field"), flag_param(req, "force"));
                   co_return Response::no_content();
               });

    // --- records -----------------------------------------------------------------------------------------------
    router.add(Method::kPost, base + "/{model}/records", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model model = model_for(*s, req, Right::kEdit);
                   json::object record = co_await s->create_record(model.name, body_object(req));
                   co_return Response::json(record, 201);
               });

    router.add(Method::kGet, base + "/{model}/records", need(Action::kView),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model model = model_for(*s, req, Right::kView);
                   RecordPage page = s->list_records(model.name, parse_record_query(req.query, true));
                   co_return Response::json(json::object{
                       {"items", std::move(page.items)},
                       {"next_cursor", page.next_cursor ? json::value(*page.next_cursor) : json::value(nullptr)}});
               });

    router.add(Method::kGet, base + "/{model}/records/{id}", need(Action::kView),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model model = model_for(*s, req, Right::kView);
                   co_return Response::json(s->get_record(model.name, req.param("id")));
               });

    router.add(Method::kPatch, base + "/{model}/records/{id}", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model model = model_for(*s, req, Right::kEdit);
                   json::object record = co_await s->update_record(model.name, req.param("id"), body_object(req));
                   co_return Response::json(record);
               });

    router.add(Method::kDelete, base + "/{model}/records/{id}", need(Action::kDelete),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model model = model_for(*s, req, Right::kDelete);
                   co_await s->delete_record(model.name, req.param("id"));
                   co_return Response::no_content();
               });

    // --- CSV ---------------------------------------------------------------------------------------------------
    router.add(Method::kPost, base + "/{model}/import", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model model = model_for(*s, req, Right::kImport);
                   ImportOptions options = import_options(req);
                   if (req.body.empty()) {
                       throw core::BadRequest("the body is empty: send the CSV file as the request body", "empty_file");
                   }
                   ImportResult result = co_await s->import_csv(model.name, std::move(req.body), options);
                   json::object body = result.to_json();
                   if (!result.rolled_back) co_return Response::json(body);
                   // All-or-nothing with bad rows: nothing was written. The answer is both the CONTRACT error
                   // body and the import report.
                   const auto& first = result.errors.front();
                   json::array details;
                   for (const auto& e : result.errors) {
                       details.push_back(json::object{{"row", e.row}, {"field", e.field}, {"message", e.message}});
                   }
                   body["error"] = json::object{
                       {"code", "import_failed"},
                       {"message", fmt::format("{} of {} rows are invalid (first: row {}{}: {}); nothing was imported",
                                               result.failed, result.rows, first.row,
                                               first.field.empty() ? "" : ", field " + first.field, first.message)},
                       {"details", std::move(details)}};
                   co_return Response::json(body, 422);
               });

    router.add(Method::kGet, base + "/{model}/export", need(Action::kView),
               [s](Request& req) -> asio::awaitable<Response> {
                   Model model = model_for(*s, req, Right::kExport);
                   RecordQuery query = parse_record_query(req.query, false);
                   std::string csv = co_await s->export_csv_text(model.name, std::move(query), flag_param(req, "bom"));
                   Response r = Response::text(std::move(csv), "text/csv; charset=utf-8");
                   r.headers.emplace_back("Content-Disposition",
                                          fmt::format("attachment; filename=\"{}.csv\"", model.name));
                   co_return r;
               });
}

}  // namespace parley::customdata

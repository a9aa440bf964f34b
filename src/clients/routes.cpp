// The HTTP routes of the client directory (docs/api/clients.yaml). Permission module `clients`: view for reads,
// search, export and search by file; edit for writes; delete for deletions.
#include <fmt/format.h>

#include "auth/permissions.h"
#include "clients/clients.h"
#include "clients/internal/file_list.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"

namespace parley::clients {

namespace {

using http::Method;
using http::Request;
using http::Response;
using Awaitable = boost::asio::awaitable<Response>;

json::array detail(std::string_view field) { return json::array{json::object{{"field", field}}}; }

/// `filter[FIELD][OP]=V`, `filter[FIELD]=V`, `segment=`, `topic=`, `channel=`, `match=`, `q=` from the query.
ClientFilter filter_from_query(const Request& req, std::initializer_list<std::string_view> extra) {
    ClientFilter f;
    for (const auto& [key, value] : req.query) {
        std::string_view k = key;
        if (k.rfind("filter[", 0) == 0) {
            auto close = k.find(']');
            if (close == std::string_view::npos) {
                throw core::BadRequest(fmt::format("'{}' is not filter[FIELD] or filter[FIELD][OP]", k), "invalid_filter",
                                       detail(k));
            }
            Condition c;
            c.field = std::string(k.substr(7, close - 7));
            std::string_view rest = k.substr(close + 1);
            if (!rest.empty()) {
                if (rest.size() < 3 || rest.front() != '[' || rest.back() != ']') {
                    throw core::BadRequest(fmt::format("'{}' is not filter[FIELD][OP]", k), "invalid_filter", detail(k));
                }
                auto op = parse_filter_op(rest.substr(1, rest.size() - 2));
                if (!op) {
                    throw core::BadRequest(fmt::format("unknown operator in '{}' (eq ne gt gte lt lte contains in exists)", k),
                                           "invalid_filter", detail(k));
                }
                c.op = *op;
            }
            c.value = json::string(value);
            f.conditions.push_back(std::move(c));
            if (f.conditions.size() > kMaxConditions) {
                throw core::BadRequest(fmt::format("at most {} filters", kMaxConditions), "invalid_filter", detail("filter"));
            }
        } else if (k == "segment" || k == "topic" || k == "channel") {
            f.conditions.push_back(Condition{std::string(k), FilterOp::kEq, json::string(value)});
        } else if (k == "match") {
            if (value != "all" && value != "any") throw core::BadRequest("'match' is all or any", "invalid_query", detail(k));
            f.any = value == "any";
        } else if (k == "q") {
            if (value.size() > 200) throw core::BadRequest("'q' is longer than 200 bytes", "invalid_query", detail(k));
            f.q = value;
        } else {
            bool known = false;
            for (auto e : extra) known = known || e == k;
            if (!known) throw core::BadRequest(fmt::format("unknown query parameter '{}'", k), "invalid_query", detail(k));
        }
    }
    return f;
}

ClientQuery query_from_request(const Request& req) {
    ClientQuery q;
    q.filter = filter_from_query(req, {"sort", "cursor", "limit"});
    q.limit = http::page_limit(req);
    q.sort = http::query_text(req, "sort", 32).value_or("-id");
    q.cursor = http::query_text(req, "cursor", 512);
    return q;
}

json::object page_json(ClientPage page) { return http::page(std::move(page.items), page.next_cursor); }

bool flag(const Request& req, std::string_view name) {
    auto v = req.query_param(name);
    if (!v || v->empty() || *v == "false" || *v == "0") return false;
    if (*v == "true" || *v == "1") return true;
    throw core::BadRequest(fmt::format("'{}' is true or false", name), "invalid_query", detail(name));
}

std::optional<std::string> cursor_param(const Request& req) {
    auto c = http::query_text(req, "cursor", 64);
    if (c && !core::looks_like_id(*c)) {
        throw core::BadRequest("'cursor' is not a cursor this listing handed out", "invalid_cursor", detail("cursor"));
    }
    return c;
}

}  // namespace

void register_routes(http::Router& router, ClientDirectory& directory) {
    ClientDirectory* d = &directory;
    const std::string module(auth::kModuleClients);
    const auto view = http::Access::need(module, core::Action::kView);
    const auto edit = http::Access::need(module, core::Action::kEdit);
    const auto del = http::Access::need(module, core::Action::kDelete);
    const std::string base = "/api/v1/clients";

    // ---- cards ----
    router.add(Method::kGet, base, view, [d](Request& req) -> Awaitable {
        co_return Response::json(page_json(d->list(query_from_request(req))));
    });
    router.add(Method::kPost, base + "/query", view, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        core::reject_unknown_fields(body, {"filter", "sort", "cursor", "limit"});
        ClientQuery q;
        if (const auto* f = body.if_contains("filter")) q.filter = parse_filter(*f);
        q.sort = core::optional_string(body, "sort").value_or("-id");
        q.cursor = core::optional_string(body, "cursor");
        auto limit = core::optional_int(body, "limit").value_or(static_cast<std::int64_t>(http::kDefaultPageLimit));
        if (limit < 1 || limit > static_cast<std::int64_t>(http::kMaxPageLimit)) {
            throw core::BadRequest(fmt::format("'limit' is 1 to {}", http::kMaxPageLimit), "invalid_limit", detail("limit"));
        }
        q.limit = static_cast<std::size_t>(limit);
        co_return Response::json(page_json(d->list(q)));
    });
    router.add(Method::kGet, base + "/count", view, [d](Request& req) -> Awaitable {
        ClientFilter f = filter_from_query(req, {});
        co_return Response::json(json::object{{"count", d->count(f)}});
    });
    router.add(Method::kPost, base, edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        auto [card, created] = co_await d->create(std::move(body), req.principal);
        co_return Response::json(card, created ? 201 : 200);
    });
    router.add(Method::kGet, base + "/export", view, [d](Request& req) -> Awaitable {
        ExportOptions options;
        options.bom = flag(req, "bom");
        if (auto delim = req.query_param("delimiter"); delim && !delim->empty()) {
            if (*delim == ",") options.delimiter = ',';
            else if (*delim == ";") options.delimiter = ';';
            else if (*delim == "tab") options.delimiter = '\t';
            else throw core::BadRequest("'delimiter' is ',', ';' or 'tab'", "invalid_query", detail("delimiter"));
        }
        ClientFilter f = filter_from_query(req, {"bom", "delimiter"});
        std::string csv = co_await d->export_csv_text(std::move(f), options);
        Response r = Response::text(std::move(csv), "text/csv; charset=utf-8");
        r.headers.emplace_back("Content-Disposition", "attachment; filename=\"clients.csv\"");
        co_return r;
    });
    router.add(Method::kPost, base + "/search-by-file", view, [d](Request& req) -> Awaitable {
        auto kind = parse_list_kind(req.query_param("by").value_or("auto"));
        if (!kind) throw core::BadRequest("'by' is auto, phone, email or id", "invalid_query", detail("by"));
        std::string_view text = req.body;
        if (auto file = internal::multipart_file(req.header("content-type"), req.body)) text = *file;
        if (text.empty()) throw core::BadRequest("the file is empty", "empty_file");
        FileSearchResult result = d->search_by_file(text, *kind);
        std::vector<std::string> ids;
        for (const auto& m : result.matched) ids.push_back(m.client_id);
        co_return Response::json(result.to_json(d->brief_cards(ids)));
    });
    router.add(Method::kGet, base + "/merges", view, [d](Request& req) -> Awaitable {
        std::size_t limit = http::page_limit(req);
        auto client = http::query_text(req, "client_id", 64);
        co_return Response::json(page_json(d->merges(client, cursor_param(req), limit)));
    });

    // ---- client fields ----
    router.add(Method::kGet, base + "/fields", view, [d](Request&) -> Awaitable {
        json::array items;
        for (const auto& f : d->fields()) items.push_back(f.to_json());
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kPost, base + "/fields", edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        ClientField f = co_await d->create_field(std::move(body));
        co_return Response::json(f.to_json(), 201);
    });
    router.add(Method::kPatch, base + "/fields/{name}", edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        std::string name = req.param("name");
        ClientField f = co_await d->update_field(std::move(name), std::move(body));
        co_return Response::json(f.to_json());
    });
    router.add(Method::kDelete, base + "/fields/{name}", del, [d](Request& req) -> Awaitable {
        std::string name = req.param("name");
        bool purge = flag(req, "purge");
        std::int64_t purged = co_await d->remove_field(std::move(name), purge);
        co_return Response::json(json::object{{"deleted", true}, {"purged", purged}});
    });

    // ---- segments ----
    router.add(Method::kGet, base + "/segments", view, [d](Request&) -> Awaitable {
        json::array items;
        for (const auto& s : d->segments()) items.push_back(s.to_json());
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kPost, base + "/segments", edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        Segment s = co_await d->create_segment(std::move(body));
        co_return Response::json(s.to_json(), 201);
    });
    auto require_segment = [d](const std::string& name) {
        auto s = d->segment(name);
        if (!s) throw core::NotFound(fmt::format("no segment '{}'", name), "segment_not_found");
        return *s;
    };
    router.add(Method::kGet, base + "/segments/{segment}", view, [d, require_segment](Request& req) -> Awaitable {
        Segment s = require_segment(req.param("segment"));
        json::object out = s.to_json();
        out["count"] = d->count(s.filter);
        co_return Response::json(out);
    });
    router.add(Method::kPatch, base + "/segments/{segment}", edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        std::string name = req.param("segment");
        Segment s = co_await d->update_segment(std::move(name), std::move(body));
        co_return Response::json(s.to_json());
    });
    router.add(Method::kDelete, base + "/segments/{segment}", del, [d](Request& req) -> Awaitable {
        std::string name = req.param("segment");
        co_await d->remove_segment(std::move(name));
        co_return Response::no_content();
    });
    router.add(Method::kGet, base + "/segments/{segment}/clients", view, [d, require_segment](Request& req) -> Awaitable {
        Segment s = require_segment(req.param("segment"));
        ClientQuery q = query_from_request(req);
        q.filter.conditions.push_back(Condition{"segment", FilterOp::kEq, json::string(s.name)});
        co_return Response::json(page_json(d->list(q)));
    });
    router.add(Method::kGet, base + "/segments/{segment}/count", view, [d, require_segment](Request& req) -> Awaitable {
        Segment s = require_segment(req.param("segment"));
        co_return Response::json(json::object{{"segment", s.name}, {"count", d->count(s.filter)}});
    });

    // ---- topics ----
    router.add(Method::kGet, base + "/topics", view, [d](Request&) -> Awaitable {
        json::array items;
        for (const auto& t : d->topics()) items.push_back(t.to_json());
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kPost, base + "/topics", edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        Topic t = co_await d->create_topic(std::move(body));
        co_return Response::json(t.to_json(), 201);
    });
    router.add(Method::kGet, base + "/topics/{topic}", view, [d](Request& req) -> Awaitable {
        for (const auto& t : d->topics()) {
            if (t.name == req.param("topic")) co_return Response::json(t.to_json());
        }
        throw core::NotFound(fmt::format("no topic '{}'", req.param("topic")), "topic_not_found");
    });
    router.add(Method::kPatch, base + "/topics/{topic}", edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        std::string name = req.param("topic");
        Topic t = co_await d->update_topic(std::move(name), std::move(body));
        co_return Response::json(t.to_json());
    });
    router.add(Method::kDelete, base + "/topics/{topic}", del, [d](Request& req) -> Awaitable {
        std::string name = req.param("topic");
        co_await d->remove_topic(std::move(name));
        co_return Response::no_content();
    });
    router.add(Method::kGet, base + "/topics/{topic}/subscribers", view, [d](Request& req) -> Awaitable {
        std::size_t limit = http::page_limit(req);
        co_return Response::json(page_json(d->subscribers(req.param("topic"), cursor_param(req), limit)));
    });

    // ---- one card ----
    router.add(Method::kGet, base + "/{id}", view, [d](Request& req) -> Awaitable {
        auto card = d->card(req.param("id"));
        if (!card) throw core::NotFound(fmt::format("no client '{}'", req.param("id")), "client_not_found");
        co_return Response::json(*card);
    });
    router.add(Method::kPatch, base + "/{id}", edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        std::string id = req.param("id");
        json::object card = co_await d->update(std::move(id), std::move(body), req.principal);
        co_return Response::json(card);
    });
    router.add(Method::kDelete, base + "/{id}", del, [d](Request& req) -> Awaitable {
        std::string id = req.param("id");
        json::object out = co_await d->remove(std::move(id), req.principal);
        co_return Response::json(out);
    });
    router.add(Method::kPost, base + "/{id}/merge", edit, [d](Request& req) -> Awaitable {
        json::object body = req.json();
        core::reject_unknown_fields(body, {"client_ids"});
        const json::array* list = core::optional_array(body, "client_ids");
        if (!list) throw core::BadRequest("'client_ids' is required", "missing_field", detail("client_ids"));
        std::vector<std::string> ids;
        for (const auto& v : *list) {
            if (!v.is_string()) throw core::BadRequest("'client_ids' lists ids", "wrong_type", detail("client_ids"));
            ids.emplace_back(v.get_string());
        }
        std::string target = req.param("id");
        MergeOutcome out = co_await d->merge(std::move(target), std::move(ids), req.principal);
        json::array merged, already;
        for (const auto& m : out.merged) merged.emplace_back(m);
        for (const auto& a : out.already) already.emplace_back(a);
        co_return Response::json(json::object{{"client", std::move(out.client)},
                                              {"merged", std::move(merged)},
                                              {"already_merged", std::move(already)},
                                              {"moved", std::move(out.moved)}});
    });
    router.add(Method::kGet, base + "/{id}/channels", view, [d](Request& req) -> Awaitable {
        co_return Response::json(http::page(d->channels(req.param("id")), std::nullopt));
    });
    router.add(Method::kGet, base + "/{id}/subscriptions", view, [d](Request& req) -> Awaitable {
        co_return Response::json(http::page(d->subscriptions(req.param("id")), std::nullopt));
    });
    router.add(Method::kPut, base + "/{id}/subscriptions/{topic}", edit, [d](Request& req) -> Awaitable {
        std::string id = req.param("id"), topic = req.param("topic");
        json::object out = co_await d->set_subscription(std::move(id), std::move(topic), true);
        co_return Response::json(out);
    });
    router.add(Method::kDelete, base + "/{id}/subscriptions/{topic}", edit, [d](Request& req) -> Awaitable {
        std::string id = req.param("id"), topic = req.param("topic");
        json::object out = co_await d->set_subscription(std::move(id), std::move(topic), false);
        co_return Response::json(out);
    });
}

}  // namespace parley::clients

#include <fmt/format.h>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"
#include "knowledge/internal/multipart.h"
#include "knowledge/knowledge.h"

namespace parley::knowledge {

using core::Action;
using http::Access;
using http::Method;
using http::Request;
using http::Response;
namespace asio = boost::asio;

namespace {

Access need(Action action) { return Access::need(std::string(auth::kModuleKnowledge), action); }

/// The uploaded file: the `file` part of a multipart/form-data body (an optional `name` part names the
/// document), or — for scripts — the raw body with `?name=`.
Upload upload_from(Request& req, bool* named = nullptr) {
    Upload upload;
    if (named) *named = false;
    std::string_view type = req.header("content-type");
    if (type.substr(0, 10) == "multipart/" || type.substr(0, 10) == "Multipart/") {
        std::vector<internal::Part> parts;
        try {
            parts = internal::parse_multipart(req.body, internal::multipart_boundary(type));
        } catch (const internal::MultipartError& e) {
            throw core::BadRequest(e.what(), "invalid_multipart");
        }
        const internal::Part* file = nullptr;
        for (const auto& p : parts) {
            if (p.name == "file") file = &p;
        }
        if (!file) {
            for (const auto& p : parts) {
                if (!p.filename.empty()) {
                    file = &p;
                    break;
                }
            }
        }
        if (!file) throw core::BadRequest("the form has no 'file' part", "missing_file", json::array{json::object{{"field", "file"}}});
        upload.name = file->filename;
        upload.content_type = file->content_type;
        upload.content.assign(file->body);
        for (const auto& p : parts) {
            if (p.name == "name" && p.filename.empty() && !p.body.empty()) {
                upload.name.assign(p.body.substr(0, 1000));
                if (named) *named = true;
            }
        }
        req.body.clear();
        return upload;
    }
    if (type.rfind("application/json", 0) == 0) {
        throw core::BadRequest("send the document as multipart/form-data with a 'file' part", "invalid_multipart");
    }
    upload.name = std::string(http::query_text(req, "name", kMaxNameBytes).value_or(""));
    if (named) *named = !upload.name.empty();
    upload.content_type = std::string(type.substr(0, 200));
    upload.content = std::move(req.body);
    return upload;
}

std::size_t k_of(const json::object& body, std::size_t fallback) {
    auto k = core::optional_int(body, "k");
    if (!k) return fallback;
    if (*k < 1 || *k > static_cast<std::int64_t>(kMaxK)) {
        throw core::BadRequest(fmt::format("'k' must be a whole number from 1 to {}", kMaxK), "invalid_field",
                               json::array{json::object{{"field", "k"}}});
    }
    return static_cast<std::size_t>(*k);
}

}  // namespace

void register_routes(http::Router& router, KnowledgeService& service) {
    KnowledgeService* s = &service;
    const std::string bases = "/api/v1/knowledge-bases";
    const std::string agents = "/api/v1/agents";

    // --- knowledge bases -------------------------------------------------------------------------------------
    router.add(Method::kPost, bases, need(Action::kEdit), [s](Request& req) -> asio::awaitable<Response> {
        KnowledgeBase kb = co_await s->create_base(req.json());
        co_return Response::json(s->base_json(kb), 201);
    });
    router.add(Method::kGet, bases, need(Action::kView), [s](Request&) -> asio::awaitable<Response> {
        json::array items;
        for (const auto& kb : s->list_bases()) items.push_back(s->base_json(kb));
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kGet, bases + "/{kb}", need(Action::kView), [s](Request& req) -> asio::awaitable<Response> {
        co_return Response::json(s->base_json(s->get_base(req.param("kb"))));
    });
    router.add(Method::kPatch, bases + "/{kb}", need(Action::kEdit), [s](Request& req) -> asio::awaitable<Response> {
        KnowledgeBase kb = co_await s->update_base(req.param("kb"), req.json());
        co_return Response::json(s->base_json(kb));
    });
    router.add(Method::kDelete, bases + "/{kb}", need(Action::kDelete), [s](Request& req) -> asio::awaitable<Response> {
        co_await s->delete_base(req.param("kb"));
        co_return Response::no_content();
    });

    // --- documents -------------------------------------------------------------------------------------------
    router.add(Method::kPost, bases + "/{kb}/documents", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   s->get_base(req.param("kb"));  // 404 before reading the upload
                   Document doc = co_await s->add_document(req.param("kb"), upload_from(req));
                   co_return Response::json(s->document_json(doc), 201);
               });
    router.add(Method::kGet, bases + "/{kb}/documents", need(Action::kView),
               [s](Request& req) -> asio::awaitable<Response> {
                   std::size_t limit = http::page_limit(req);
                   std::string cursor(req.query_param("cursor").value_or(""));
                   DocumentPage page = s->list_documents(req.param("kb"), cursor, limit);
                   json::array items;
                   for (const auto& d : page.items) items.push_back(s->document_json(d));
                   co_return Response::json(http::page(std::move(items), page.next_cursor));
               });
    router.add(Method::kGet, bases + "/{kb}/documents/{doc}", need(Action::kView),
               [s](Request& req) -> asio::awaitable<Response> {
                   co_return Response::json(s->document_json(s->get_document(req.param("kb"), req.param("doc"))));
               });
    router.add(Method::kPut, bases + "/{kb}/documents/{doc}", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   s->get_document(req.param("kb"), req.param("doc"));
                   // A re-upload keeps the document's name unless the form (or ?name=) names it.
                   bool named = false;
                   Upload upload = upload_from(req, &named);
                   if (!named) upload.name.clear();
                   Document doc = co_await s->replace_document(req.param("kb"), req.param("doc"), std::move(upload));
                   co_return Response::json(s->document_json(doc));
               });
    router.add(Method::kPatch, bases + "/{kb}/documents/{doc}", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   json::object body = req.json();
                   core::reject_unknown_fields(body, {"name"});
                   Document doc = co_await s->rename_document(req.param("kb"), req.param("doc"),
                                                              std::string(core::required_string(body, "name")));
                   co_return Response::json(s->document_json(doc));
               });
    router.add(Method::kPost, bases + "/{kb}/documents/{doc}/reindex", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Document doc = co_await s->reindex_document(req.param("kb"), req.param("doc"));
                   co_return Response::json(s->document_json(doc));
               });
    router.add(Method::kDelete, bases + "/{kb}/documents/{doc}", need(Action::kDelete),
               [s](Request& req) -> asio::awaitable<Response> {
                   co_await s->delete_document(req.param("kb"), req.param("doc"));
                   co_return Response::no_content();
               });
    router.add(Method::kGet, bases + "/{kb}/documents/{doc}/chunks", need(Action::kView),
               [s](Request& req) -> asio::awaitable<Response> {
                   std::size_t limit = http::page_limit(req);
                   std::int64_t after = -1;
                   if (auto c = http::query_int(req, "cursor", 0, INT64_MAX - 1)) after = *c;
                   auto chunks = s->document_chunks(req.param("kb"), req.param("doc"), after, limit + 1);
                   std::optional<std::string> next;
                   if (chunks.size() > limit) {
                       chunks.resize(limit);
                       next = std::to_string(chunks.back().chunk);
                   }
                   json::array items;
                   for (const auto& c : chunks) {
                       json::object o = hit_json(c);
                       o.erase("score");
                       items.push_back(std::move(o));
                   }
                   co_return Response::json(http::page(std::move(items), next));
               });

    // --- search ------------------------------------------------------------------------------------------------
    router.add(Method::kPost, bases + "/{kb}/search", need(Action::kView),
               [s](Request& req) -> asio::awaitable<Response> {
                   KnowledgeBase kb = s->get_base(req.param("kb"));
                   json::object body = req.json();
                   core::reject_unknown_fields(body, {"query", "k"});
                   std::string query(core::required_string(body, "query"));
                   std::vector<std::string> kb_ids{kb.id};
                   std::size_t k = k_of(body, 5);
                   auto hits = co_await s->search_hybrid(std::move(kb_ids), std::move(query), k);
                   json::array results;
                   for (const auto& h : hits) results.push_back(hit_json(h));
                   co_return Response::json(json::object{{"results", std::move(results)}});
               });

    // --- sync sources (seed "KB Plugin") ------------------------------------------------------------------------
    const std::string sources = bases + "/{kb}/sources";
    router.add(Method::kPost, sources, need(Action::kEdit), [s](Request& req) -> asio::awaitable<Response> {
        Source src = co_await s->create_source(req.param("kb"), req.json());
        co_return Response::json(s->source_json(src), 201);
    });
    router.add(Method::kGet, sources, need(Action::kView), [s](Request& req) -> asio::awaitable<Response> {
        json::array items;
        for (const auto& src : s->list_sources(req.param("kb"))) items.push_back(s->source_json(src));
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kGet, sources + "/{source}", need(Action::kView), [s](Request& req) -> asio::awaitable<Response> {
        co_return Response::json(s->source_json(s->get_source(req.param("kb"), req.param("source"))));
    });
    router.add(Method::kPatch, sources + "/{source}", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Source src = co_await s->update_source(req.param("kb"), req.param("source"), req.json());
                   co_return Response::json(s->source_json(src));
               });
    router.add(Method::kDelete, sources + "/{source}", need(Action::kDelete),
               [s](Request& req) -> asio::awaitable<Response> {
                   co_await s->delete_source(req.param("kb"), req.param("source"));
                   co_return Response::no_content();
               });
    router.add(Method::kPost, sources + "/{source}/activate", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Source src = co_await s->set_source_active(req.param("kb"), req.param("source"), true);
                   co_return Response::json(s->source_json(src));
               });
    router.add(Method::kPost, sources + "/{source}/deactivate", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Source src = co_await s->set_source_active(req.param("kb"), req.param("source"), false);
                   co_return Response::json(s->source_json(src));
               });
    router.add(Method::kPost, sources + "/{source}/sync", need(Action::kEdit),
               [s](Request& req) -> asio::awaitable<Response> {
                   Source src = co_await s->sync_now(req.param("kb"), req.param("source"));
                   co_return Response::json(s->source_json(src), 202);
               });

    // --- agents ------------------------------------------------------------------------------------------------
    router.add(Method::kPost, agents, need(Action::kEdit), [s](Request& req) -> asio::awaitable<Response> {
        Agent agent = co_await s->create_agent(req.json());
        co_return Response::json(s->agent_json(agent), 201);
    });
    router.add(Method::kGet, agents, need(Action::kView), [s](Request&) -> asio::awaitable<Response> {
        json::array items;
        for (const auto& a : s->list_agents()) items.push_back(s->agent_json(a));
        co_return Response::json(http::page(std::move(items), std::nullopt));
    });
    router.add(Method::kGet, agents + "/{name}", need(Action::kView), [s](Request& req) -> asio::awaitable<Response> {
        co_return Response::json(s->agent_json(s->get_agent(req.param("name"))));
    });
    router.add(Method::kPatch, agents + "/{name}", need(Action::kEdit), [s](Request& req) -> asio::awaitable<Response> {
        Agent agent = co_await s->update_agent(req.param("name"), req.json());
        co_return Response::json(s->agent_json(agent));
    });
    router.add(Method::kDelete, agents + "/{name}", need(Action::kDelete),
               [s](Request& req) -> asio::awaitable<Response> {
                   co_await s->delete_agent(req.param("name"));
                   co_return Response::no_content();
               });
    router.add(Method::kGet, agents + "/{name}/usage", need(Action::kView),
               [s](Request& req) -> asio::awaitable<Response> {
                   std::string from(http::query_text(req, "from", 10).value_or(""));
                   std::string to(http::query_text(req, "to", 10).value_or(""));
                   Agent agent = s->get_agent(req.param("name"));
                   auto days = s->agent_usage(agent.id, from, to);
                   json::array items;
                   UsageDay total;
                   for (const auto& d : days) {
                       total.asks += d.asks;
                       total.provider_calls += d.provider_calls;
                       total.errors += d.errors;
                       total.input_tokens += d.input_tokens;
                       total.output_tokens += d.output_tokens;
                       items.push_back(json::object{{"day", d.day},
                                                    {"asks", d.asks},
                                                    {"provider_calls", d.provider_calls},
                                                    {"errors", d.errors},
                                                    {"input_tokens", d.input_tokens},
                                                    {"output_tokens", d.output_tokens}});
                   }
                   co_return Response::json(json::object{
                       {"agent", agent.name},
                       {"totals", json::object{{"asks", total.asks},
                                               {"provider_calls", total.provider_calls},
                                               {"errors", total.errors},
                                               {"input_tokens", total.input_tokens},
                                               {"output_tokens", total.output_tokens}}},
                       {"days", std::move(items)}});
               });
    router.add(Method::kPost, agents + "/{name}/ask", need(Action::kView), [s](Request& req) -> asio::awaitable<Response> {
        json::object body = req.json();
        core::reject_unknown_fields(body, {"input", "variables"});
        AskRequest ask;
        ask.agent = req.param("name");
        ask.input = std::string(core::required_string(body, "input"));
        if (auto* v = body.if_contains("variables"); v && !v->is_null()) {
            if (!v->is_object()) {
                throw core::BadRequest("'variables' must be an object", "wrong_type",
                                       json::array{json::object{{"field", "variables"}}});
            }
            ask.variables = v->get_object();
        }
        AskResult result = co_await s->ask(std::move(ask));
        co_return Response::json(ask_json(result));
    });
}

}  // namespace parley::knowledge

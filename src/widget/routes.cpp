// The widget's HTTP surface: the admin settings API, and the public script, config, WebSocket, upload and files.
#include <fmt/format.h>
#include <sodium.h>

#include "auth/permissions.h"
#include "core/error.h"
#include "core/json.h"
#include "http/http.h"
#include "widget/widget.h"

namespace parley::widget {

namespace {

using http::Access;
using http::Method;
using http::Request;
using http::Response;
using Awaitable = boost::asio::awaitable<Response>;

/// Origin of the page: the Origin header, else the Referer (same-origin GETs send no Origin).
std::string page_origin(const Request& req) {
    std::string origin(req.header("origin"));
    if (origin.empty() || origin == "null") origin = std::string(req.header("referer"));
    return origin;
}

/// Public answers can be read by the page that embeds the widget (errors too, so it can show why).
Response with_cors(Response r, const Request& req) {
    std::string origin(req.header("origin"));
    if (!origin.empty()) {
        r.headers.emplace_back("Access-Control-Allow-Origin", origin);
        r.headers.emplace_back("Vary", "Origin");
    }
    return r;
}

Response error_response(const core::Error& e) { return Response::error(e.status(), e.code(), e.what(), e.details()); }

}  // namespace

std::string_view widget_script_text();  // widget_js.cpp (generated from web/widget/widget.js)

std::string_view widget_script() { return widget_script_text(); }

const std::string& widget_script_etag() {
    static const std::string etag = [] {
        std::string_view text = widget_script();
        unsigned char out[16];
        crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(text.data()), text.size(), nullptr, 0);
        std::string tag = "\"";
        static const char* hex = "0123456789abcdef";
        for (unsigned char c : out) {
            tag += hex[c >> 4];
            tag += hex[c & 15];
        }
        return tag + "\"";
    }();
    return etag;
}

void register_routes(http::Router& router, WidgetService& widget) {
    WidgetService* w = &widget;
    const std::string module(auth::kModuleChannels);

    // --- admin -------------------------------------------------------------------------------------------------
    router.add(Method::kGet, "/api/v1/bots/{bot}/channels/{id}/widget", Access::need(module, core::Action::kView),
               [w](Request& req) -> Awaitable {
                   co_return Response::json(w->settings(req.param("bot"), req.param("id")).to_json());
               });
    router.add(Method::kPut, "/api/v1/bots/{bot}/channels/{id}/widget", Access::need(module, core::Action::kEdit),
               [w](Request& req) -> Awaitable {
                   w->settings(req.param("bot"), req.param("id"));  // 404 before validating
                   if (req.body.size() > kMaxSettingsBytes) {
                       throw core::TooLarge(fmt::format("widget settings are at most {} bytes", kMaxSettingsBytes));
                   }
                   WidgetSettings s = WidgetSettings::from_json(req.json());
                   WidgetSettings saved = co_await w->put_settings(req.param("bot"), req.param("id"), std::move(s));
                   co_return Response::json(saved.to_json());
               });

    // --- public ------------------------------------------------------------------------------------------------
    router.add(Method::kGet, "/widget.js", Access::open(), [](Request& req) -> Awaitable {
        Response r;
        if (req.header("if-none-match") == widget_script_etag()) {
            r.status = 304;
            r.content_type.clear();
        } else {
            r = Response::text(std::string(widget_script()), "application/javascript; charset=utf-8");
        }
        r.headers.emplace_back("ETag", widget_script_etag());
        // Unversioned URL embedded in customers' pages: short freshness, then a cheap revalidation.
        r.headers.emplace_back("Cache-Control", "public, max-age=300, must-revalidate");
        r.headers.emplace_back("X-Content-Type-Options", "nosniff");
        co_return r;
    });
    router.add(Method::kGet, "/widget/{channel}/config", Access::open(), [w](Request& req) -> Awaitable {
        try {
            WidgetSettings s = w->public_settings(req.param("channel"), page_origin(req));
            json::object out = s.public_json();
            out["channel"] = req.param("channel");
            out["ws_path"] = fmt::format("/widget/{}/ws", req.param("channel"));
            out["upload_path"] = fmt::format("/widget/{}/upload", req.param("channel"));
            out["limits"] = json::object{{"max_upload_bytes", kMaxUploadBytes},
                                         {"max_text_bytes", kMaxTextBytes},
                                         {"max_frame_bytes", kMaxFrameBytes}};
            Response r = Response::json(out);
            r.headers.emplace_back("Cache-Control", "no-cache");
            co_return with_cors(std::move(r), req);
        } catch (const core::Error& e) {
            co_return with_cors(error_response(e), req);
        }
    });
    router.websocket("/widget/{channel}/ws", Access::open(),
                     [w](std::shared_ptr<http::WebSocketSession> session, const Request& req) {
                         w->attach(std::move(session), req);
                     });
    router.add(Method::kOptions, "/widget/{channel}/upload", Access::open(), [](Request& req) -> Awaitable {
        Response r = Response::no_content();
        r.headers.emplace_back("Access-Control-Allow-Methods", "POST");
        r.headers.emplace_back("Access-Control-Allow-Headers", "Content-Type, X-File-Name");
        r.headers.emplace_back("Access-Control-Max-Age", "600");
        co_return with_cors(std::move(r), req);
    });
    router.add(Method::kPost, "/widget/{channel}/upload", Access::open(), [w](Request& req) -> Awaitable {
        try {
            WidgetService::UploadRequest in;
            in.channel_id = req.param("channel");
            in.origin = page_origin(req);
            in.token = std::string(req.query_param("token").value_or(""));
            in.name = std::string(req.query_param("name").value_or(req.header("x-file-name")));
            in.content_type = std::string(req.header("content-type"));
            in.body = std::move(req.body);
            in.base_url = fmt::format("http://{}", req.header("host"));
            WidgetService::Upload up = co_await w->upload(std::move(in));
            co_return with_cors(Response::json(json::object{{"id", up.id},
                                                            {"url", up.url},
                                                            {"name", up.name},
                                                            {"content_type", up.content_type},
                                                            {"size", up.size}},
                                               201),
                                req);
        } catch (const core::Error& e) {
            co_return with_cors(error_response(e), req);
        }
    });
    router.add(Method::kGet, "/widget/files/{id}/{name}", Access::open(), [w](Request& req) -> Awaitable {
        auto file = w->file(req.param("id"));
        if (!file) throw core::NotFound("no such file", "file_not_found");
        bool inline_ok = file->content_type.rfind("image/", 0) == 0 || file->content_type == "application/pdf";
        Response r = Response::text(std::move(file->data), file->content_type);
        r.headers.emplace_back("Content-Disposition", inline_ok ? "inline" : "attachment");
        r.headers.emplace_back("X-Content-Type-Options", "nosniff");
        r.headers.emplace_back("Content-Security-Policy", "default-src 'none'; sandbox");
        r.headers.emplace_back("Cache-Control", "private, max-age=86400");
        r.headers.emplace_back("Cross-Origin-Resource-Policy", "cross-origin");
        co_return r;
    });
}

}  // namespace parley::widget

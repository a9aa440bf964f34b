// Request accessors and Response builders (http.h).
#include <boost/json/serialize.hpp>

#include <stdexcept>

#include "core/error.h"
#include "core/json.h"
#include "http/http.h"

namespace parley::http {

std::string_view method_name(Method method) {
    switch (method) {
        case Method::kGet: return "GET";
        case Method::kPost: return "POST";
        case Method::kPut: return "PUT";
        case Method::kPatch: return "PATCH";
        case Method::kDelete: return "DELETE";
        case Method::kHead: return "HEAD";
        case Method::kOptions: return "OPTIONS";
        case Method::kOther: return "OTHER";
    }
    return "OTHER";
}

std::string_view Request::header(std::string_view lower_name) const {
    for (const auto& [name, value] : headers) {
        if (name == lower_name) return value;
    }
    return {};
}

const std::string& Request::param(std::string_view name) const {
    for (const auto& [key, value] : params) {
        if (key == name) return value;
    }
    throw std::out_of_range("route has no path parameter '" + std::string(name) + "'");
}

std::optional<std::string_view> Request::query_param(std::string_view name) const {
    for (const auto& [key, value] : query) {
        if (key == name) return std::string_view(value);
    }
    return std::nullopt;
}

boost::json::object Request::json() const {
    core::JsonLimits limits;
    limits.max_bytes = max_json_bytes;
    return core::parse_json_object(body, limits);
}

const core::Principal& Request::user() const {
    if (principal == nullptr) throw core::Unauthorized("sign-in required");
    return *principal;
}

Response Response::json(const boost::json::value& value, int status) {
    Response response;
    response.status = status;
    response.body = boost::json::serialize(value);
    return response;
}

Response Response::raw_json(std::string body, int status) {
    Response response;
    response.status = status;
    response.body = std::move(body);
    return response;
}

Response Response::text(std::string body, std::string content_type, int status) {
    Response response;
    response.status = status;
    response.body = std::move(body);
    response.content_type = std::move(content_type);
    return response;
}

Response Response::no_content() {
    Response response;
    response.status = 204;
    response.content_type.clear();
    return response;
}

Response Response::error(int status, std::string_view code, std::string_view message,
                         const boost::json::array& details) {
    std::string body;
    body.reserve(64 + code.size() + message.size());
    body += R"({"error":{"code":)";
    body += core::json_quote(code);
    body += R"(,"message":)";
    body += core::json_quote(message);
    body += R"(,"details":)";
    body += boost::json::serialize(details);
    body += "}}";
    return raw_json(std::move(body), status);
}

}  // namespace parley::http

#include "knowledge/openai.h"

#include <fmt/format.h>

#include "core/json.h"
#include "outbound/outbound.h"

namespace parley::knowledge {

std::string chat_request_body(const ChatRequest& request) {
    json::array messages;
    for (const auto& m : request.messages) messages.push_back(json::object{{"role", m.role}, {"content", m.content}});
    return json::serialize(json::object{{"model", request.model},
                                        {"messages", std::move(messages)},
                                        {"temperature", request.temperature},
                                        {"max_tokens", request.max_tokens}});
}

ChatResult parse_chat_response(int status, const std::string& body) {
    ChatResult r;
    json::value v;
    boost::system::error_code ec;
    v = json::parse(body, ec);
    if (status < 200 || status > 299) {
        std::string message;
        if (!ec && v.is_object()) {
            if (auto* e = v.as_object().if_contains("error"); e && e->is_object()) {
                if (auto* m = e->as_object().if_contains("message"); m && m->is_string()) message = m->as_string();
            }
        }
        r.error = fmt::format("HTTP {}{}{}", status, message.empty() ? "" : ": ", message.substr(0, 300));
        return r;
    }
    if (ec || !v.is_object()) {
        r.error = "the provider answered something that is not JSON";
        return r;
    }
    const auto* choices = v.as_object().if_contains("choices");
    if (choices && choices->is_array() && !choices->as_array().empty()) {
        const auto& first = choices->as_array().front();
        if (first.is_object()) {
            if (auto* msg = first.as_object().if_contains("message"); msg && msg->is_object()) {
                if (auto* c = msg->as_object().if_contains("content"); c && c->is_string()) {
                    r.text = std::string(c->as_string());
                    if (!r.text.empty()) return r;
                }
            }
        }
    }
    r.error = "the provider's answer has no choices[0].message.content";
    return r;
}

void OpenAiChatClient::chat(ChatRequest request, std::function<void(ChatResult)> done) {
    outbound::Request http;
    http.method = "POST";
    std::string base = request.base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    http.url = base + "/chat/completions";
    http.content_type = "application/json";
    if (!request.api_key.empty()) http.headers.emplace_back("authorization", "Bearer " + request.api_key);
    http.body = chat_request_body(request);
    http.timeout_ms = request.timeout_ms;
    http.max_response_bytes = kMaxProviderResponseBytes;
    client_.send(std::move(http), [done = std::move(done)](outbound::Response response) {
        if (response.error) {
            done(ChatResult{"", fmt::format("{}: {}", outbound::error_code_name(response.error->code),
                                            response.error->message)});
            return;
        }
        done(parse_chat_response(response.status, response.body));
    });
}

}  // namespace parley::knowledge

#include "knowledge/providers.h"

#include <fmt/format.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <ctime>
#include <iomanip>
#include <locale>
#include <set>
#include <sstream>
#include <thread>

#include "outbound/outbound.h"

namespace parley::knowledge {

namespace asio = boost::asio;

namespace {

std::int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::int64_t system_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string trimmed_base(std::string_view base) {
    std::string out(base);
    while (!out.empty() && out.back() == '/') out.pop_back();
    return out;
}

/// A non-negative integer member, or nullopt.
std::optional<std::int64_t> count_of(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    if (!v) return std::nullopt;
    if (v->is_int64() && v->get_int64() >= 0) return v->get_int64();
    if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
        return static_cast<std::int64_t>(v->get_uint64());
    }
    return std::nullopt;
}

/// `error.message` (and `error.type`) of an error body in either provider's shape.
std::string error_message(const json::value& v) {
    if (!v.is_object()) return {};
    auto* e = v.as_object().if_contains("error");
    if (!e) return {};
    if (e->is_string()) return std::string(e->get_string()).substr(0, 300);
    if (!e->is_object()) return {};
    std::string type, message;
    if (auto* t = e->as_object().if_contains("type"); t && t->is_string()) type = t->get_string();
    if (auto* m = e->as_object().if_contains("message"); m && m->is_string()) message = m->get_string();
    message = message.substr(0, 300);
    if (!type.empty() && !message.empty()) return fmt::format("{} ({})", message, type.substr(0, 60));
    return message.empty() ? type.substr(0, 60) : message;
}

std::string http_error(int status, const json::value& v) {
    std::string message = error_message(v);
    return fmt::format("HTTP {}{}{}", status, message.empty() ? "" : ": ", message);
}

std::string transport_error(const outbound::Response& response) {
    return fmt::format("{}: {}", outbound::error_code_name(response.error->code), response.error->message);
}

}  // namespace

// --- retries --------------------------------------------------------------------------------------------------

struct ProviderClient::State {
    State(outbound::Client& c, RetryPolicy r) : client(c), retry(r), guard(asio::make_work_guard(io)) {}

    outbound::Client& client;
    RetryPolicy retry;
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> guard;
    std::thread thread;
    std::mutex mutex;  ///< guards stopping, timers
    bool stopping = false;
    std::set<std::shared_ptr<asio::steady_timer>> timers;
};

namespace {

using State = ProviderClient::State;

bool retryable(const outbound::Response& r) {
    if (r.error) {
        return r.error->code == outbound::ErrorCode::kConnectFailed || r.error->code == outbound::ErrorCode::kNetworkError;
    }
    return r.status == 429 || r.status >= 500;
}

/// Sends `request`, retrying per the policy within the budget that ends at `deadline` (steady ms).
void send_with_retries(std::shared_ptr<State> state, outbound::Request request, std::int64_t deadline, int attempt,
                       std::function<void(outbound::Response)> done) {
    outbound::Request attempt_request = request;
    attempt_request.timeout_ms = std::max<std::int64_t>(1, deadline - steady_ms());
    state->client.send(std::move(attempt_request), [state, request = std::move(request), deadline, attempt,
                                                    done = std::move(done)](outbound::Response response) mutable {
        if (!retryable(response) || attempt + 1 >= state->retry.max_attempts) return done(std::move(response));
        std::int64_t wait = state->retry.backoff_ms << attempt;
        if (!response.error) {
            if (auto ra = retry_after_ms(response.header("retry-after-ms"), response.header("retry-after"), system_ms())) {
                wait = *ra;
            }
        }
        if (wait > state->retry.max_retry_after_ms || steady_ms() + wait + 50 >= deadline) {
            return done(std::move(response));  // not worth waiting: report this answer
        }
        std::unique_lock lock(state->mutex);
        if (state->stopping) {
            lock.unlock();
            return done(std::move(response));
        }
        auto timer = std::make_shared<asio::steady_timer>(state->io, std::chrono::milliseconds(wait));
        state->timers.insert(timer);
        lock.unlock();
        auto last = std::make_shared<outbound::Response>(std::move(response));
        timer->async_wait([state, timer, last, request = std::move(request), deadline, attempt,
                           done = std::move(done)](boost::system::error_code ec) mutable {
            bool stopping = false;
            {
                std::lock_guard guard(state->mutex);
                state->timers.erase(timer);
                stopping = state->stopping;
            }
            if (ec || stopping) return done(std::move(*last));
            send_with_retries(state, std::move(request), deadline, attempt + 1, std::move(done));
        });
    });
}

}  // namespace

ProviderClient::ProviderClient(outbound::Client& client, RetryPolicy retry)
    : state_(std::make_shared<State>(client, retry)) {
    state_->thread = std::thread([state = state_.get()] { state->io.run(); });
}

ProviderClient::~ProviderClient() {
    {
        std::lock_guard lock(state_->mutex);
        state_->stopping = true;
        for (const auto& t : state_->timers) t->cancel();
    }
    state_->guard.reset();
    state_->thread.join();
}

void ProviderClient::chat(ChatRequest request, std::function<void(ChatResult)> done) {
    outbound::Request http;
    http.method = "POST";
    http.content_type = "application/json";
    http.max_response_bytes = kMaxProviderResponseBytes;
    const bool anthropic = request.provider == "anthropic";
    if (anthropic) {
        http.url = anthropic_url(request.base_url);
        if (!request.api_key.empty()) http.headers.emplace_back("x-api-key", request.api_key);
        http.headers.emplace_back("anthropic-version", std::string(kAnthropicVersion));
        http.body = anthropic_request_body(request);
    } else {
        http.url = trimmed_base(request.base_url) + "/chat/completions";
        if (!request.api_key.empty()) http.headers.emplace_back("authorization", "Bearer " + request.api_key);
        http.body = chat_request_body(request);
    }
    const std::int64_t deadline = steady_ms() + std::max<std::int64_t>(1, request.timeout_ms);
    send_with_retries(state_, std::move(http), deadline, 0,
                      [anthropic, done = std::move(done)](outbound::Response response) {
                          if (response.error) return done(ChatResult{"", transport_error(response), std::nullopt});
                          done(anthropic ? parse_anthropic_response(response.status, response.body)
                                         : parse_chat_response(response.status, response.body));
                      });
}

void ProviderClient::embed(EmbeddingRequest request, std::function<void(EmbeddingResult)> done) {
    outbound::Request http;
    http.method = "POST";
    http.content_type = "application/json";
    http.max_response_bytes = kMaxEmbeddingResponseBytes;
    http.url = trimmed_base(request.base_url) + "/embeddings";
    if (!request.api_key.empty()) http.headers.emplace_back("authorization", "Bearer " + request.api_key);
    http.body = embeddings_request_body(request);
    const std::size_t expected = request.inputs.size();
    const std::int64_t deadline = steady_ms() + std::max<std::int64_t>(1, request.timeout_ms);
    send_with_retries(state_, std::move(http), deadline, 0,
                      [expected, done = std::move(done)](outbound::Response response) {
                          if (response.error) {
                              EmbeddingResult r;
                              r.error = transport_error(response);
                              return done(std::move(r));
                          }
                          done(parse_embeddings_response(response.status, response.body, expected));
                      });
}

// --- OpenAI-compatible chat -----------------------------------------------------------------------------------

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
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) v = nullptr;
    if (status < 200 || status > 299) {
        r.error = http_error(status, v);
        return r;
    }
    if (!v.is_object()) {
        r.error = "the provider answered something that is not a JSON object";
        return r;
    }
    if (auto* u = v.as_object().if_contains("usage"); u && u->is_object()) {
        auto in = count_of(u->as_object(), "prompt_tokens");
        auto out = count_of(u->as_object(), "completion_tokens");
        if (in || out) r.usage = TokenUsage{in.value_or(0), out.value_or(0)};
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

// --- Anthropic Messages ---------------------------------------------------------------------------------------

std::string anthropic_url(std::string_view base_url) {
    std::string base = trimmed_base(base_url);
    if (base.size() >= 3 && base.compare(base.size() - 3, 3, "/v1") == 0) return base + "/messages";
    return base + "/v1/messages";
}

std::string anthropic_request_body(const ChatRequest& request) {
    std::string system;
    json::array messages;
    for (const auto& m : request.messages) {
        if (m.role == "system") {
            if (!system.empty()) system += "\n\n";
            system += m.content;
            continue;
        }
        messages.push_back(json::object{{"role", m.role == "assistant" ? "assistant" : "user"}, {"content", m.content}});
    }
    json::object body{{"model", request.model},
                      {"max_tokens", request.max_tokens},
                      {"messages", std::move(messages)},
                      {"temperature", request.temperature}};
    if (!system.empty()) body["system"] = system;
    return json::serialize(body);
}

ChatResult parse_anthropic_response(int status, const std::string& body) {
    ChatResult r;
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) v = nullptr;
    if (status < 200 || status > 299) {
        r.error = http_error(status, v);
        return r;
    }
    if (!v.is_object()) {
        r.error = "the provider answered something that is not a JSON object";
        return r;
    }
    const auto& o = v.as_object();
    if (auto* t = o.if_contains("type"); t && t->is_string() && t->get_string() == "error") {
        std::string message = error_message(v);
        r.error = "the provider answered an error" + (message.empty() ? std::string() : ": " + message);
        return r;
    }
    if (auto* u = o.if_contains("usage"); u && u->is_object()) {
        const auto& usage = u->as_object();
        auto in = count_of(usage, "input_tokens");
        auto out = count_of(usage, "output_tokens");
        if (in || out) {
            // Prompt caching reports the cached part of the input separately; it is input all the same.
            std::int64_t input = in.value_or(0);
            for (auto key : {"cache_creation_input_tokens", "cache_read_input_tokens"}) {
                if (auto c = count_of(usage, key); c && *c <= INT64_MAX - input) input += *c;
            }
            r.usage = TokenUsage{input, out.value_or(0)};
        }
    }
    const auto* content = o.if_contains("content");
    if (!content || !content->is_array()) {
        r.error = "the provider's answer has no content blocks";
        return r;
    }
    for (const auto& block : content->as_array()) {
        if (!block.is_object()) continue;
        const auto& b = block.as_object();
        auto* type = b.if_contains("type");
        auto* text = b.if_contains("text");
        if (type && type->is_string() && type->get_string() == "text" && text && text->is_string()) {
            r.text += text->get_string();
        }
    }
    if (r.text.empty()) r.error = "the provider's answer has no text content block";
    return r;
}

// --- embeddings -----------------------------------------------------------------------------------------------

std::string embeddings_request_body(const EmbeddingRequest& request) {
    json::array inputs;
    for (const auto& s : request.inputs) inputs.emplace_back(s);
    json::object body{{"model", request.model}, {"input", std::move(inputs)}, {"encoding_format", "float"}};
    if (request.dimensions) body["dimensions"] = *request.dimensions;
    return json::serialize(body);
}

EmbeddingResult parse_embeddings_response(int status, const std::string& body, std::size_t expected) {
    EmbeddingResult r;
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) v = nullptr;
    if (status < 200 || status > 299) {
        r.error = http_error(status, v);
        return r;
    }
    auto fail = [&](std::string message) {
        r.vectors.clear();
        r.error = std::move(message);
        return r;
    };
    if (!v.is_object()) return fail("the provider answered something that is not a JSON object");
    const auto* data = v.as_object().if_contains("data");
    if (!data || !data->is_array()) return fail("the provider's answer has no 'data' array");
    if (data->as_array().size() != expected) {
        return fail(fmt::format("the provider returned {} embeddings for {} inputs", data->as_array().size(), expected));
    }
    r.vectors.resize(expected);
    std::vector<bool> seen(expected, false);
    std::size_t dims = 0;
    std::size_t position = 0;
    for (const auto& item : data->as_array()) {
        if (!item.is_object()) return fail("an item of 'data' is not an object");
        const auto& o = item.as_object();
        std::size_t index = position++;
        if (auto* i = o.if_contains("index")) {
            if (!i->is_int64() || i->get_int64() < 0 || static_cast<std::size_t>(i->get_int64()) >= expected) {
                return fail("an embedding has an index out of range");
            }
            index = static_cast<std::size_t>(i->get_int64());
        }
        if (seen[index]) return fail("two embeddings have the same index");
        seen[index] = true;
        const auto* e = o.if_contains("embedding");
        if (!e || !e->is_array()) return fail("an item of 'data' has no 'embedding' array");
        const auto& values = e->as_array();
        if (values.empty() || values.size() > kMaxEmbeddingDims) {
            return fail(fmt::format("an embedding has {} values (1 to {} expected)", values.size(), kMaxEmbeddingDims));
        }
        if (dims == 0) dims = values.size();
        if (values.size() != dims) return fail("the embeddings have different lengths");
        auto& out = r.vectors[index];
        out.reserve(dims);
        for (const auto& x : values) {
            if (!x.is_number()) return fail("an embedding holds a value that is not a number");
            double d = x.to_number<double>();
            if (!std::isfinite(d) || std::fabs(d) > 1e30) return fail("an embedding holds a value out of range");
            out.push_back(static_cast<float>(d));
        }
    }
    if (auto* u = v.as_object().if_contains("usage"); u && u->is_object()) {
        r.input_tokens = count_of(u->as_object(), "prompt_tokens").value_or(0);
    }
    return r;
}

// --- retry-after ----------------------------------------------------------------------------------------------

std::optional<std::int64_t> retry_after_ms(std::string_view ms_header, std::string_view header, std::int64_t now_ms) {
    auto trim = [](std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
        return s;
    };
    auto digits = [](std::string_view s) -> std::optional<std::int64_t> {
        if (s.empty() || s.size() > 12) return std::nullopt;
        std::int64_t n = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return std::nullopt;
            n = n * 10 + (c - '0');
        }
        return n;
    };
    ms_header = trim(ms_header);
    if (!ms_header.empty()) {
        // OpenAI sends fractional milliseconds ("1234.5").
        auto dot = ms_header.find('.');
        if (auto n = digits(ms_header.substr(0, dot))) return *n;
    }
    header = trim(header);
    if (header.empty()) return std::nullopt;
    if (auto n = digits(header)) return *n * 1000;
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    if (header.size() > 64) return std::nullopt;
    std::tm tm{};
    std::istringstream in{std::string(header)};
    in.imbue(std::locale::classic());
    in >> std::get_time(&tm, "%a, %d %b %Y %H:%M:%S GMT");
    if (in.fail()) return std::nullopt;
    std::time_t at = timegm(&tm);
    if (at == static_cast<std::time_t>(-1)) return std::nullopt;
    return std::max<std::int64_t>(0, static_cast<std::int64_t>(at) * 1000 - now_ms);
}

}  // namespace parley::knowledge

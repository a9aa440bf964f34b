/// The AI providers of Fastline Pro over the shared outbound HTTP client (asynchronous, SSRF guard on every
/// connection): OpenAI-compatible chat (POST {base_url}/chat/completions — OpenAI, Azure's compatible endpoint,
/// Gemini's OpenAI endpoint, vLLM, Ollama, llama.cpp server), Anthropic Messages (POST {base}/v1/messages) and
/// OpenAI-compatible embeddings (POST {base_url}/embeddings), with per-attempt timeouts and retries on 429 and
/// 5xx that honour `retry-after`. The response parsers are exposed for tests and fuzzing.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "knowledge/knowledge.h"

namespace parley::outbound {
class Client;
struct Response;
}  // namespace parley::outbound

namespace parley::knowledge {

inline constexpr std::size_t kMaxProviderResponseBytes = 4u << 20;
/// Embedding responses are larger (64 vectors × up to 4096 floats as JSON text).
inline constexpr std::size_t kMaxEmbeddingResponseBytes = 32u << 20;
inline constexpr std::string_view kAnthropicVersion = "2023-06-01";

/// How provider calls are retried: up to `max_attempts` in all, on 429, 5xx (and Anthropic's 529), and on
/// connection failures; the wait is the answer's `retry-after-ms` / `retry-after` (seconds or an HTTP date)
/// when given, else `backoff_ms` doubled per attempt. A wait longer than `max_retry_after_ms`, or one that
/// would end after the request's `timeout_ms` (the budget of the whole call), ends the call with the error.
struct RetryPolicy {
    int max_attempts = 3;
    std::int64_t backoff_ms = 500;
    std::int64_t max_retry_after_ms = 20'000;
};

/// The provider client: LlmClient (dispatching on ChatRequest::provider) and Embedder.
/// Thread-safety: chat() and embed() may be called from any thread; `done` runs on the outbound client's
/// thread or on this client's timer thread (retries), exactly once — with error "cancelled" when the client
/// is destroyed while a retry waits. Owns one timer thread; the outbound client outlives this object.
class ProviderClient final : public LlmClient, public Embedder {
public:
    explicit ProviderClient(outbound::Client& client, RetryPolicy retry = {});
    ~ProviderClient() override;
    ProviderClient(const ProviderClient&) = delete;
    ProviderClient& operator=(const ProviderClient&) = delete;

    void chat(ChatRequest request, std::function<void(ChatResult)> done) override;
    void embed(EmbeddingRequest request, std::function<void(EmbeddingResult)> done) override;

    struct State;  ///< shared with in-flight callbacks (public for the implementation's helpers)

private:
    std::shared_ptr<State> state_;
};

/// The former name of the provider client (app wiring constructs it with the outbound client).
using OpenAiChatClient = ProviderClient;

// --- request bodies and response parsers (exposed for tests and fuzzing) ---------------------------------------

/// The request body of an OpenAI-compatible chat completion.
std::string chat_request_body(const ChatRequest& request);
/// The answer text (and usage) from a chat completion response body, or an error message.
ChatResult parse_chat_response(int status, const std::string& body);

/// The request body of an Anthropic Messages call: system messages joined into `system`, the rest as
/// `messages` (user/assistant).
std::string anthropic_request_body(const ChatRequest& request);
/// The text blocks of a Messages response joined (and usage), or an error message.
ChatResult parse_anthropic_response(int status, const std::string& body);
/// The Messages endpoint for a base URL: {base}/v1/messages ({base} may already end in /v1).
std::string anthropic_url(std::string_view base_url);

std::string embeddings_request_body(const EmbeddingRequest& request);
/// The vectors (ordered by `index`) of an embeddings response for `expected` inputs, or an error: wrong count,
/// missing or non-numeric values, vectors of different or zero length or over kMaxEmbeddingDims.
EmbeddingResult parse_embeddings_response(int status, const std::string& body, std::size_t expected);

/// Milliseconds to wait from `retry-after-ms` or `retry-after` (delta seconds or an IMF-fixdate, relative to
/// `now_ms`); nullopt when absent or unparsable.
std::optional<std::int64_t> retry_after_ms(std::string_view retry_after_ms_header, std::string_view retry_after_header,
                                           std::int64_t now_ms);

}  // namespace parley::knowledge

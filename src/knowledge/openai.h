/// The OpenAI-compatible chat provider (OpenAI, Azure's compatible endpoint, Gemini's OpenAI endpoint, vLLM,
/// Ollama, llama.cpp server): POST {base_url}/chat/completions through the shared outbound HTTP client, so
/// calls are asynchronous and pass the SSRF guard like every other outbound request.
#pragma once

#include <string>

#include "knowledge/knowledge.h"

namespace parley::outbound {
class Client;
}

namespace parley::knowledge {

inline constexpr std::size_t kMaxProviderResponseBytes = 4u << 20;

/// Thread-safety: chat() may be called from any thread; `done` runs on the outbound client's thread (it only
/// moves the answer on). The outbound client outlives this object.
class OpenAiChatClient final : public LlmClient {
public:
    explicit OpenAiChatClient(outbound::Client& client) : client_(client) {}
    void chat(ChatRequest request, std::function<void(ChatResult)> done) override;

private:
    outbound::Client& client_;
};

/// The request body of a chat completion (exposed for tests).
std::string chat_request_body(const ChatRequest& request);
/// The answer text from a chat completion response body, or an error message.
ChatResult parse_chat_response(int status, const std::string& body);

}  // namespace parley::knowledge

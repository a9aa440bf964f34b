// Fuzz target: the AI provider response parsers of the knowledge module (OpenAI-compatible chat, Anthropic
// Messages, OpenAI-compatible embeddings), the retry-after parser and the URL source check. The first byte
// picks the parser and the status class; the rest is the answer body (or header). Invariants: an error or a
// result, never both missing; embeddings match the expected count with equal, bounded, finite vectors.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "knowledge/internal/sources.h"
#include "knowledge/providers.h"

using namespace parley::knowledge;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t selector = data[0];
    std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
    static const int kStatuses[] = {200, 201, 400, 401, 429, 500, 503, 529};
    const int status = kStatuses[(selector >> 3) & 7];
    switch (selector % 5) {
        case 0: {
            auto r = parse_chat_response(status, body);
            if (r.error.empty() == r.text.empty()) __builtin_trap();
            if (r.usage && (r.usage->input_tokens < 0 || r.usage->output_tokens < 0)) __builtin_trap();
            break;
        }
        case 1: {
            auto r = parse_anthropic_response(status, body);
            if (r.error.empty() == r.text.empty()) __builtin_trap();
            if (r.usage && (r.usage->input_tokens < 0 || r.usage->output_tokens < 0)) __builtin_trap();
            break;
        }
        case 2: {
            const std::size_t expected = (selector >> 6) + 1;
            auto r = parse_embeddings_response(status, body, expected);
            if (r.error.empty()) {
                if (r.vectors.size() != expected) __builtin_trap();
                for (const auto& v : r.vectors) {
                    if (v.empty() || v.size() > kMaxEmbeddingDims || v.size() != r.vectors[0].size()) __builtin_trap();
                    for (float x : v) {
                        if (!std::isfinite(x)) __builtin_trap();
                    }
                }
            } else if (!r.vectors.empty()) {
                __builtin_trap();
            }
            break;
        }
        case 3: {
            auto split = body.find('\n');
            std::string ms = split == std::string::npos ? std::string() : body.substr(0, split);
            std::string header = split == std::string::npos ? body : body.substr(split + 1);
            auto wait = retry_after_ms(ms, header, 1'700'000'000'000);
            if (wait && *wait < 0) __builtin_trap();
            break;
        }
        default: {
            auto why = internal::check_source_url(body);
            if (why.empty() && body.rfind("http://", 0) != 0 && body.rfind("https://", 0) != 0) __builtin_trap();
            break;
        }
    }
    return 0;
}

/// Fastline Pro: knowledge bases (documents uploaded, extracted, chunked and indexed in the background),
/// retrieval in Ukrainian and English (BM25 over two SQLite FTS5 indexes fused by reciprocal rank), AI agents
/// that answer from their knowledge bases (the built-in extractive answerer, or an LLM provider), the HTTP
/// routes under /api/v1/knowledge-bases and /api/v1/agents, and the scenario action `action_fastline_pro`.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace parley::core {
class Clock;
}
namespace parley::http {
class Router;
}
namespace parley::actions {
class ActionRegistry;
}
namespace parley::auth {
class InstanceSettings;
}

namespace parley::knowledge {

namespace json = boost::json;

namespace internal {
class DfCache;
}

/// Limits (documented in README.md; each is enforced with a clear 4xx).
inline constexpr std::size_t kMaxDocumentBytes = 15u << 20;  ///< one uploaded file (413 beyond)
inline constexpr std::size_t kMaxNameBytes = 200;            ///< knowledge base and document names
inline constexpr std::size_t kMaxDescriptionBytes = 2000;
inline constexpr std::size_t kMaxKnowledgeBases = 1000;
inline constexpr std::size_t kMaxDocumentsPerBase = 10'000;
inline constexpr std::size_t kMaxQueryBytes = 2000;           ///< search query and agent input
inline constexpr std::size_t kMaxQueryTerms = 32;             ///< distinct terms a query is reduced to
inline constexpr std::size_t kMaxK = 50;                      ///< results of one search
inline constexpr std::size_t kMinChunkSize = 100;             ///< characters
inline constexpr std::size_t kMaxChunkSize = 8000;
inline constexpr std::size_t kMaxAgents = 1000;
inline constexpr std::size_t kMaxAgentBases = 20;             ///< knowledge bases one agent reads
inline constexpr std::size_t kMaxPromptBytes = 16 * 1024;
inline constexpr std::size_t kMaxPhrases = 100;               ///< configured escalation phrases
inline constexpr std::size_t kMaxPhraseBytes = 200;
inline constexpr std::size_t kMaxAnswerChars = 700;           ///< extractive answers (code points)

/// How a knowledge base cuts its documents into chunks. Changing it re-indexes every document of the base.
struct Chunking {
    std::size_t size = 800;          ///< target characters per chunk (kMinChunkSize..kMaxChunkSize)
    std::size_t overlap = 100;       ///< characters repeated from the previous chunk (< size / 2)
    bool split_on_headings = true;   ///< a heading starts a new chunk; the chunk remembers its section
    bool split_on_paragraphs = true; ///< chunks end at paragraph ends where possible
};

struct KnowledgeBase {
    std::string id;
    std::string name;  ///< unique; `{kb}` in paths is the id or the name
    std::string description;
    Chunking chunking;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
};

enum class DocumentStatus { kQueued, kProcessing, kReady, kError };
std::string_view status_name(DocumentStatus status);

struct Document {
    std::string id;
    std::string kb_id;
    std::string name;
    std::string format;        ///< txt md html csv pdf docx (detected from the content)
    std::string content_type;  ///< as declared by the uploader
    std::int64_t size = 0;     ///< bytes of the uploaded file
    DocumentStatus status = DocumentStatus::kQueued;
    std::optional<std::string> error;  ///< why it failed (status error)
    std::int64_t chunks = 0;
    std::int64_t revision = 1;  ///< +1 on every re-upload or re-index
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    std::optional<std::int64_t> indexed_at;
    std::optional<int> progress;  ///< 0..100 while queued or processing (this node's ingestion)
};

struct DocumentPage {
    std::vector<Document> items;
    std::optional<std::string> next_cursor;
};

/// An uploaded file.
struct Upload {
    std::string name;          ///< file name (a document name may be given instead)
    std::string content_type;  ///< declared type (advisory only: the content decides)
    std::string content;
};

/// One retrieved passage.
struct SearchHit {
    std::string document_id;
    std::string document_name;
    std::string kb_id;
    std::int64_t chunk = 0;  ///< the chunk's position in its document, from 0
    std::string heading;     ///< the chunk's section, may be empty
    std::string text;
    double score = 0;        ///< 0..1: fused rank and how much of the query the passage covers
};

/// When an agent hands the conversation to a human.
struct Escalation {
    double min_score = 0.35;     ///< best passage below this → escalate (`low_confidence`)
    bool human_request = true;   ///< built-in phrases ("оператор", "людина", "operator", "human", ...) escalate
    std::vector<std::string> phrases;  ///< more phrases (matched on word stems, any order)
};

/// An agent: answers questions from its knowledge bases.
struct Agent {
    std::string id;
    std::string name;  ///< `[A-Za-z0-9_.-]{1,64}`, unique; `{name}` in paths and `agent_name` in scenarios
    std::string description;
    std::string prompt;  ///< template: {{input}}, {{context}}, {{agent_name}}, dialog variables, client.*
    std::vector<std::string> kb_ids;
    json::object model;  ///< {} → built-in extractive answerer; else provider settings (see README)
    std::size_t k = 5;   ///< passages retrieved per question
    Escalation escalation;
    std::string fallback_answer;  ///< answer when escalating ("" → a built-in sentence in the input's language)
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
};

struct AskRequest {
    std::string agent;   ///< name or id
    std::string input;
    json::object variables;  ///< dialog variables for the prompt template (scenario state)
    json::object client;     ///< client fields (`client.*` in the prompt)
};

struct AskResult {
    std::string answer;
    std::vector<SearchHit> sources;
    bool escalate = false;
    std::string escalation_reason;  ///< human_request | phrase | low_confidence | no_knowledge | provider_error
    std::string answered_by;        ///< extractive | provider | fallback
};

/// A chat completion request for an LLM provider.
struct ChatMessage {
    std::string role;  ///< system | user | assistant
    std::string content;
};
struct ChatRequest {
    std::string base_url;  ///< e.g. https://api.openai.com/v1
    std::string api_key;
    std::string model;
    std::vector<ChatMessage> messages;
    double temperature = 0.2;
    int max_tokens = 512;
    std::int64_t timeout_ms = 30'000;
};
struct ChatResult {
    std::string text;
    std::string error;  ///< non-empty: the call failed (message for logs and the `error` event)
};

/// An LLM chat client. Implementations call `done` exactly once, on any thread, and never block the caller.
class LlmClient {
public:
    virtual ~LlmClient() = default;
    virtual void chat(ChatRequest request, std::function<void(ChatResult)> done) = 0;
};

struct KnowledgeOptions {
    unsigned ingest_threads = 2;  ///< background document ingestion
    unsigned query_threads = 2;   ///< ask() work (retrieval + answering) for the scenario action and HTTP
    /// Resolves `api_key_setting` of provider agents (secret instance settings). Optional.
    const auth::InstanceSettings* settings = nullptr;
    /// The provider client for agents with a model. Optional: without it such agents answer `error`.
    LlmClient* llm = nullptr;
};

/// The knowledge service. Thread-safety: every method may be called from any thread. Reads (listing, search)
/// run on the caller's thread through store.read; coroutine writes go through the store's writer and resume on
/// the caller's executor; document ingestion (extract → chunk → analyze → one write transaction per
/// document) runs on the service's ingest pool; ask_async runs on its query pool. Owns the two pools; the
/// store, clock, settings and LLM client outlive it.
class KnowledgeService {
public:
    KnowledgeService(store::Store& store, core::Clock& clock, KnowledgeOptions options = {});
    ~KnowledgeService();
    KnowledgeService(const KnowledgeService&) = delete;
    KnowledgeService& operator=(const KnowledgeService&) = delete;

    /// Stops ingestion (a document being processed finishes or is left for the next start; queued ones stay
    /// queued in the database and are picked up on the next start) and drains the query pool. Idempotent.
    void stop();

    // --- knowledge bases --------------------------------------------------------------------------------
    boost::asio::awaitable<KnowledgeBase> create_base(json::object spec);
    std::vector<KnowledgeBase> list_bases();
    KnowledgeBase get_base(std::string_view id_or_name);  ///< NotFound `knowledge_base_not_found`
    /// Name, description, chunking (a chunking change re-indexes every document of the base).
    boost::asio::awaitable<KnowledgeBase> update_base(std::string id_or_name, json::object patch);
    /// Deletes the base with its documents and chunks. Conflict `knowledge_base_in_use` while agents use it.
    boost::asio::awaitable<void> delete_base(std::string id_or_name);
    json::object base_json(const KnowledgeBase& kb);

    // --- documents --------------------------------------------------------------------------------------
    /// Stores the file and queues its ingestion. TooLarge over kMaxDocumentBytes; BadRequest `empty_file`;
    /// 415 `unsupported_format` for content that is none of TXT MD HTML CSV PDF DOCX.
    boost::asio::awaitable<Document> add_document(std::string kb, Upload upload);
    /// Replaces a document's file (same id, revision + 1); its old chunks stay searchable until the new ones
    /// are committed.
    boost::asio::awaitable<Document> replace_document(std::string kb, std::string document, Upload upload);
    boost::asio::awaitable<Document> rename_document(std::string kb, std::string document, std::string name);
    /// Queues the document again (e.g. after a failure).
    boost::asio::awaitable<Document> reindex_document(std::string kb, std::string document);
    boost::asio::awaitable<void> delete_document(std::string kb, std::string document);
    DocumentPage list_documents(std::string_view kb, std::string_view cursor, std::size_t limit);
    Document get_document(std::string_view kb, std::string_view document);
    /// The chunks of a ready document, in order, as search hits with score 0.
    std::vector<SearchHit> document_chunks(std::string_view kb, std::string_view document, std::int64_t after,
                                           std::size_t limit);
    json::object document_json(const Document& document);

    /// Blocks until no ingestion is queued or running, or `timeout` passes; returns whether idle. For tests,
    /// benchmarks and CLI tools (never call on an Asio worker thread).
    bool wait_idle(std::chrono::milliseconds timeout);

    // --- retrieval --------------------------------------------------------------------------------------
    /// Top `k` passages for `query` in the given bases (ids). BadRequest for an empty or too long query.
    std::vector<SearchHit> search(const std::vector<std::string>& kb_ids, std::string_view query, std::size_t k);

    // --- agents -----------------------------------------------------------------------------------------
    boost::asio::awaitable<Agent> create_agent(json::object spec);
    std::vector<Agent> list_agents();
    Agent get_agent(std::string_view id_or_name);  ///< NotFound `agent_not_found`
    boost::asio::awaitable<Agent> update_agent(std::string id_or_name, json::object patch);
    boost::asio::awaitable<void> delete_agent(std::string id_or_name);
    json::object agent_json(const Agent& agent);

    /// Answers on the query pool; `done` runs there (or on the LLM client's thread) exactly once, with an
    /// exception (core::Error for bad input or an unknown agent) or the result.
    void ask_async(AskRequest request, std::function<void(std::exception_ptr, AskResult)> done);
    /// ask_async as a coroutine (resumes on the caller's executor).
    boost::asio::awaitable<AskResult> ask(AskRequest request);

    store::Store& store() { return store_; }
    core::Clock& clock() { return clock_; }

private:
    struct Job {
        std::string document_id;
        std::int64_t revision = 0;
    };
    void enqueue(Job job);
    void ingest(const Job& job);
    void set_progress(const std::string& document_id, int percent);
    void finish_answer(const Agent& agent, const AskRequest& request, std::vector<SearchHit> hits,
                       std::function<void(std::exception_ptr, AskResult)> done);

    store::Store& store_;
    core::Clock& clock_;
    KnowledgeOptions options_;
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;  ///< guards progress_, pending_
    std::condition_variable idle_;
    std::map<std::string, int> progress_;
    std::size_t pending_ = 0;
    std::unique_ptr<internal::DfCache> df_cache_;  ///< document frequencies; cleared when indexes change
    boost::asio::thread_pool ingest_pool_;
    boost::asio::thread_pool query_pool_;
    bool stopped_ = false;
};

/// The module's schema (module name "knowledge").
std::vector<store::Migration> migrations();

/// Routes under /api/v1/knowledge-bases and /api/v1/agents (see docs/api/knowledge.yaml); permission module
/// `knowledge`: view for GET, search and ask; edit for POST/PUT/PATCH; delete for DELETE.
void register_routes(http::Router& router, KnowledgeService& service);

/// `action_fastline_pro`.
void register_actions(actions::ActionRegistry& registry, KnowledgeService& service);

/// SearchHit as the API shows it: {"document", "document_name", "knowledge_base", "chunk", "heading", "text",
/// "score"}.
json::object hit_json(const SearchHit& hit);
json::object ask_json(const AskResult& result);

}  // namespace parley::knowledge

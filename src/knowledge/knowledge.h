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
#include <thread>
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
namespace parley::outbound {
class Client;
}

namespace parley::knowledge {

namespace json = boost::json;

namespace internal {
class DfCache;
class VectorIndexes;
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
inline constexpr std::size_t kMaxSourcesPerBase = 20;         ///< sync sources (URL or folder) of one base
inline constexpr std::int64_t kMinSyncIntervalS = 60;         ///< a source syncs at most once a minute
inline constexpr std::int64_t kMaxSyncIntervalS = 30 * 86400; ///< and at least once in 30 days
inline constexpr std::size_t kMaxSyncFiles = 1000;            ///< files one folder source may hold
inline constexpr int kMaxSyncDepth = 16;                      ///< sub-folder levels walked
inline constexpr std::size_t kMaxLocationBytes = 2048;        ///< source URL or folder path
inline constexpr std::size_t kEmbeddingBatch = 64;            ///< chunks per embeddings request
inline constexpr std::size_t kMaxEmbeddingDims = 4096;
inline constexpr std::size_t kMaxUsageDays = 366;             ///< days one usage report may span

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
    /// {} → BM25 only; else the OpenAI-compatible embeddings provider {"base_url", "model", "api_key_setting",
    /// "dimensions", "timeout_ms"}: chunks are embedded at ingestion and searches fuse vector results in.
    json::object embeddings;
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
    std::optional<std::string> source_id;  ///< the sync source that brought it (null: uploaded)
    std::optional<std::string> source_key; ///< its URL or path relative to the source's folder
    std::string content_hash;              ///< SHA-256 of the file (hex)
    std::string embedding_status = "none"; ///< none (base without embeddings) | ready | error
    std::optional<std::string> embedding_error;
};

/// Where a sync source reads documents from.
enum class SourceKind { kUrl, kFolder };

/// The outcome of a source's last sync run.
struct SyncStatus {
    std::string state = "idle";  ///< idle | queued (sync requested) | running
    std::optional<std::int64_t> last_run_at;
    std::optional<std::int64_t> last_finished_at;
    std::optional<std::string> last_result;  ///< ok | error
    std::optional<std::string> last_error;
    std::int64_t added = 0, updated = 0, removed = 0, unchanged = 0, skipped = 0;
    json::array skipped_files;  ///< [{"path", "reason"}] of the last run (at most 20)
    std::optional<std::int64_t> duration_ms;
};

/// A knowledge base's sync source (seed "KB Plugin"): a URL (one document) or a folder on the server under the
/// configured root (one document per file, sub-folders included). Active sources sync every `interval_s`.
struct Source {
    std::string id;
    std::string kb_id;
    SourceKind kind = SourceKind::kUrl;
    std::string location;  ///< the URL, or the folder as given (relative to the sync root)
    std::int64_t interval_s = 3600;
    bool active = true;
    std::int64_t next_run_at = 0;
    SyncStatus status;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
};

/// Provider usage of one agent on one day (UTC).
struct UsageDay {
    std::string day;  ///< YYYY-MM-DD
    std::int64_t asks = 0;            ///< questions answered (any answerer)
    std::int64_t provider_calls = 0;  ///< LLM provider calls
    std::int64_t errors = 0;          ///< failed provider calls
    std::int64_t input_tokens = 0;    ///< from the provider's usage fields
    std::int64_t output_tokens = 0;
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
    std::string provider = "openai";  ///< openai (any OpenAI-compatible API) | anthropic (Messages API)
    std::string base_url;  ///< e.g. https://api.openai.com/v1, https://api.anthropic.com
    std::string api_key;
    std::string model;
    std::vector<ChatMessage> messages;
    double temperature = 0.2;
    int max_tokens = 512;
    std::int64_t timeout_ms = 30'000;
};
/// Tokens a provider reports for one call.
struct TokenUsage {
    std::int64_t input_tokens = 0;
    std::int64_t output_tokens = 0;
};
struct ChatResult {
    std::string text;
    std::string error;  ///< non-empty: the call failed (message for logs and the `error` event)
    std::optional<TokenUsage> usage;  ///< when the provider reported it
};

/// An LLM chat client. Implementations call `done` exactly once, on any thread, and never block the caller.
class LlmClient {
public:
    virtual ~LlmClient() = default;
    virtual void chat(ChatRequest request, std::function<void(ChatResult)> done) = 0;
};

/// An embeddings request (OpenAI-compatible POST {base_url}/embeddings).
struct EmbeddingRequest {
    std::string base_url;
    std::string api_key;
    std::string model;
    std::vector<std::string> inputs;
    std::optional<int> dimensions;  ///< asked of models that can shorten their vectors
    std::int64_t timeout_ms = 30'000;
};
struct EmbeddingResult {
    std::vector<std::vector<float>> vectors;  ///< one per input, in order
    std::string error;                        ///< non-empty: the call failed
    std::int64_t input_tokens = 0;
};

/// An embeddings client. Implementations call `done` exactly once, on any thread, and never block the caller.
class Embedder {
public:
    virtual ~Embedder() = default;
    virtual void embed(EmbeddingRequest request, std::function<void(EmbeddingResult)> done) = 0;
};

struct KnowledgeOptions {
    unsigned ingest_threads = 2;  ///< background document ingestion
    unsigned query_threads = 2;   ///< ask() work (retrieval + answering) for the scenario action and HTTP
    /// Resolves `api_key_setting` of provider agents (secret instance settings). Optional.
    const auth::InstanceSettings* settings = nullptr;
    /// The provider client for agents with a model. Optional: without it such agents answer `error`.
    LlmClient* llm = nullptr;
    /// The embeddings client for bases with `embeddings` settings. Optional: without it their documents are
    /// indexed for BM25 only (embedding status error) and searches use BM25.
    Embedder* embedder = nullptr;
    /// Fetches URL sources (with the SSRF guard). Optional: without it URL syncs fail with a clear status.
    outbound::Client* http = nullptr;
    /// Folder sources must lie under this directory (symlinks may not leave it). Empty → folder sources are
    /// refused.
    std::string sync_root;
    /// How often the scheduler looks for due sources (also woken at once by sync-now and activate).
    std::chrono::milliseconds sync_poll{1000};
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
    /// Top `k` passages for `query` in the given bases (ids), BM25 only (no provider call: safe on any
    /// thread). BadRequest for an empty or too long query.
    std::vector<SearchHit> search(const std::vector<std::string>& kb_ids, std::string_view query, std::size_t k);
    /// search() fused with vector search for bases with embeddings (the query is embedded through the
    /// Embedder; a provider failure falls back to BM25 only). Resumes on the caller's executor.
    boost::asio::awaitable<std::vector<SearchHit>> search_hybrid(std::vector<std::string> kb_ids, std::string query,
                                                                 std::size_t k);

    // --- operator copilot -------------------------------------------------------------------------------
    /// Knowledge snippets for a piece of dialog text (e.g. the client's last messages): the top `k` passages
    /// (document name, heading, text, score 0..1) from `kb_refs` (ids or names; empty → every base). Only the
    /// last kMaxQueryBytes of the text are used (the newest messages matter most). Empty or blank text → no
    /// snippets. BM25 only, bounded: safe on an Asio worker. NotFound for an unknown base; k is clamped to 1..kMaxK.
    std::vector<SearchHit> snippets_for_dialog(std::string_view dialog_text, std::size_t k = 3,
                                               const std::vector<std::string>& kb_refs = {});
    /// snippets_for_dialog() with vector search fused in for bases with embeddings.
    boost::asio::awaitable<std::vector<SearchHit>> co_snippets_for_dialog(std::string dialog_text, std::size_t k = 3,
                                                                          std::vector<std::string> kb_refs = {});

    // --- sync sources (seed "KB Plugin": activate, sync, deactivate) --------------------------------------
    /// {"kind": "url"|"folder", "location", "interval" (seconds), "active"}. BadRequest for a bad URL or a
    /// folder outside the sync root; Unprocessable `folder_sync_disabled` / `folder_not_found`; Conflict
    /// `source_exists` / `limit_reached`.
    boost::asio::awaitable<Source> create_source(std::string kb, json::object spec);
    std::vector<Source> list_sources(std::string_view kb);
    Source get_source(std::string_view kb, std::string_view source);  ///< NotFound `source_not_found`
    /// Location and interval (a new location syncs at once if the source is active).
    boost::asio::awaitable<Source> update_source(std::string kb, std::string source, json::object patch);
    /// Deletes the source and the documents it brought.
    boost::asio::awaitable<void> delete_source(std::string kb, std::string source);
    /// Activate (syncs at once, then every interval) or deactivate (no more syncs; its documents stay).
    boost::asio::awaitable<Source> set_source_active(std::string kb, std::string source, bool active);
    /// Asks for a sync as soon as possible (also of an inactive source); state `queued` until it runs.
    boost::asio::awaitable<Source> sync_now(std::string kb, std::string source);
    json::object source_json(const Source& source);

    // --- token accounting ---------------------------------------------------------------------------------
    /// Per-day usage of an agent (UTC days `from`..`to`, YYYY-MM-DD, at most kMaxUsageDays; empty → the last
    /// 30 days), days without calls left out. NotFound for an unknown agent; BadRequest for bad dates.
    std::vector<UsageDay> agent_usage(std::string_view agent, std::string_view from, std::string_view to);

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
    /// Query vectors per base id for the bases with embeddings (empty when none or the provider failed);
    /// `done` runs inline or on the embedder's thread.
    using QueryVectors = std::map<std::string, std::vector<float>>;
    void embed_query_async(const std::vector<std::string>& kb_ids, const std::string& text,
                           std::function<void(QueryVectors)> done);
    boost::asio::awaitable<QueryVectors> embed_query(std::vector<std::string> kb_ids, std::string text);
    std::vector<SearchHit> hybrid_search(const std::vector<std::string>& kb_ids, std::string_view query, std::size_t k,
                                         const QueryVectors& vectors);
    /// Embeds chunks on the ingest thread (blocking on the embedder); returns the error, or "" with `out` filled.
    std::string embed_texts(const json::object& config, const std::vector<std::string>& texts,
                            std::vector<std::vector<float>>& out);
    void record_usage(const std::string& agent_id, bool provider_call, bool failed, std::optional<TokenUsage> usage);
    void sync_loop();
    void run_source(const std::string& source_id);
    void wake_sync();

    store::Store& store_;
    core::Clock& clock_;
    KnowledgeOptions options_;
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;  ///< guards progress_, pending_
    std::condition_variable idle_;
    std::map<std::string, int> progress_;
    std::size_t pending_ = 0;
    std::unique_ptr<internal::DfCache> df_cache_;  ///< document frequencies; cleared when indexes change
    std::unique_ptr<internal::VectorIndexes> vectors_;  ///< hnswlib indexes per base, built on first use
    boost::asio::thread_pool ingest_pool_;
    boost::asio::thread_pool query_pool_;
    bool stopped_ = false;
    std::mutex sync_mutex_;  ///< guards sync_wake_
    std::condition_variable sync_cv_;
    bool sync_wake_ = false;
    std::thread sync_thread_;  ///< the sync scheduler: runs due sources one at a time
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

#include <fmt/format.h>

#include <boost/asio/async_result.hpp>
#include <cmath>
#include <future>
#include <unordered_map>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "auth/settings.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "core/template.h"
#include "knowledge/internal/analyzer.h"
#include "knowledge/internal/answer.h"
#include "knowledge/internal/chunker.h"
#include "knowledge/internal/extract.h"
#include "knowledge/internal/retrieval.h"
#include "knowledge/internal/sources.h"
#include "knowledge/internal/vectors.h"
#include "knowledge/knowledge.h"
#include "store/async.h"

namespace parley::knowledge {

namespace asio = boost::asio;
using store::Row;
using store::Tx;

namespace {

// --- validation ---------------------------------------------------------------------------------------------

json::array field_detail(std::string_view field) { return json::array{json::object{{"field", field}}}; }

bool has_control(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7F) return true;
    }
    return false;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

/// A knowledge base or document name: 1..kMaxNameBytes of UTF-8 without control characters; base names may
/// not look like ids (so `{kb}` resolves without ambiguity).
std::string check_name(std::string_view raw, std::string_view field, bool base) {
    std::string name(trim(raw));
    if (name.empty() || name.size() > kMaxNameBytes || has_control(name) || !internal::valid_utf8(name)) {
        throw core::BadRequest(fmt::format("'{}' must be 1 to {} bytes of text without control characters", field,
                                           kMaxNameBytes),
                               "invalid_name", field_detail(field));
    }
    if (base && core::looks_like_id(name)) {
        throw core::BadRequest("a knowledge base name may not look like an id", "invalid_name", field_detail(field));
    }
    return name;
}

std::string check_agent_name(std::string_view name) {
    bool ok = !name.empty() && name.size() <= 64;
    for (char c : name) {
        ok &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.';
    }
    if (!ok || core::looks_like_id(name)) {
        throw core::BadRequest("'name' must be 1 to 64 of A-Z a-z 0-9 _ - . (and not look like an id)",
                               "invalid_name", field_detail("name"));
    }
    return std::string(name);
}

std::string check_text(const json::object& spec, std::string_view field, std::size_t max_bytes) {
    auto v = core::optional_string(spec, field);
    if (!v) return {};
    if (v->size() > max_bytes || !internal::valid_utf8(*v)) {
        throw core::BadRequest(fmt::format("'{}' must be UTF-8 text of at most {} bytes", field, max_bytes),
                               "invalid_field", field_detail(field));
    }
    return *v;
}

std::size_t bounded_int(const json::object& obj, std::string_view field, std::size_t min, std::size_t max,
                        std::size_t fallback) {
    auto v = core::optional_int(obj, field);
    if (!v) return fallback;
    if (*v < static_cast<std::int64_t>(min) || *v > static_cast<std::int64_t>(max)) {
        throw core::BadRequest(fmt::format("'{}' must be a whole number from {} to {}", field, min, max),
                               "invalid_field", field_detail(field));
    }
    return static_cast<std::size_t>(*v);
}

Chunking parse_chunking(const json::value* value, Chunking current) {
    if (!value || value->is_null()) return current;
    if (!value->is_object()) throw core::BadRequest("'chunking' must be an object", "wrong_type", field_detail("chunking"));
    const auto& obj = value->get_object();
    core::reject_unknown_fields(obj, {"size", "overlap", "split_on_headings", "split_on_paragraphs"});
    current.size = bounded_int(obj, "size", kMinChunkSize, kMaxChunkSize, current.size);
    current.overlap = bounded_int(obj, "overlap", 0, kMaxChunkSize, current.overlap);
    if (auto b = core::optional_bool(obj, "split_on_headings")) current.split_on_headings = *b;
    if (auto b = core::optional_bool(obj, "split_on_paragraphs")) current.split_on_paragraphs = *b;
    if (current.overlap * 2 >= current.size) {
        throw core::BadRequest("'chunking.overlap' must be less than half of 'chunking.size'", "invalid_field",
                               field_detail("chunking.overlap"));
    }
    return current;
}

json::object chunking_json(const Chunking& c) {
    return json::object{{"size", c.size},
                        {"overlap", c.overlap},
                        {"split_on_headings", c.split_on_headings},
                        {"split_on_paragraphs", c.split_on_paragraphs}};
}

// --- rows ---------------------------------------------------------------------------------------------------

constexpr const char* kBaseColumns =
    "id, name, description, chunk_size, chunk_overlap, split_on_headings, split_on_paragraphs, created_at, updated_at, "
    "embeddings";

KnowledgeBase base_from(const Row& r) {
    KnowledgeBase kb;
    kb.id = r.text(0);
    kb.name = r.text(1);
    kb.description = r.text(2);
    kb.chunking.size = static_cast<std::size_t>(r.integer(3));
    kb.chunking.overlap = static_cast<std::size_t>(r.integer(4));
    kb.chunking.split_on_headings = r.integer(5) != 0;
    kb.chunking.split_on_paragraphs = r.integer(6) != 0;
    kb.created_at = r.integer(7);
    kb.updated_at = r.integer(8);
    boost::system::error_code ec;
    auto embeddings = json::parse(r.text(9), ec);
    if (!ec && embeddings.is_object()) kb.embeddings = embeddings.get_object();
    return kb;
}

std::optional<KnowledgeBase> find_base(Tx& tx, std::string_view id_or_name) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM knowledge_bases WHERE id = ? OR name = ? "
                                        "ORDER BY id = ? DESC LIMIT 1",
                                        kBaseColumns),
                            {std::string(id_or_name), std::string(id_or_name), std::string(id_or_name)});
    if (!row) return std::nullopt;
    return base_from(*row);
}

KnowledgeBase require_base(Tx& tx, std::string_view id_or_name) {
    auto kb = find_base(tx, id_or_name);
    if (!kb) {
        throw core::NotFound(fmt::format("no knowledge base '{}'", id_or_name.substr(0, 100)),
                             "knowledge_base_not_found");
    }
    return *kb;
}

constexpr const char* kDocumentColumns =
    "id, kb_id, name, format, content_type, size, status, error, chunks, revision, created_at, updated_at, "
    "indexed_at, source_id, source_key, content_hash, embedding_status, embedding_error";

DocumentStatus parse_status(std::string_view s) {
    if (s == "processing") return DocumentStatus::kProcessing;
    if (s == "ready") return DocumentStatus::kReady;
    if (s == "error") return DocumentStatus::kError;
    return DocumentStatus::kQueued;
}

Document document_from(const Row& r) {
    Document d;
    d.id = r.text(0);
    d.kb_id = r.text(1);
    d.name = r.text(2);
    d.format = r.text(3);
    d.content_type = r.text(4);
    d.size = r.integer(5);
    d.status = parse_status(r.text(6));
    d.error = r.opt_text(7);
    d.chunks = r.integer(8);
    d.revision = r.integer(9);
    d.created_at = r.integer(10);
    d.updated_at = r.integer(11);
    d.indexed_at = r.opt_integer(12);
    d.source_id = r.opt_text(13);
    d.source_key = r.opt_text(14);
    d.content_hash = r.text(15);
    d.embedding_status = r.text(16);
    d.embedding_error = r.opt_text(17);
    return d;
}

Document require_document(Tx& tx, const std::string& kb_id, std::string_view id) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM knowledge_documents WHERE id = ? AND kb_id = ?", kDocumentColumns),
                            {std::string(id), kb_id});
    if (!row) throw core::NotFound(fmt::format("no document '{}' in this knowledge base", id.substr(0, 100)),
                                   "document_not_found");
    return document_from(*row);
}

constexpr const char* kAgentColumns =
    "id, name, description, prompt, model, k, escalation, fallback_answer, created_at, updated_at";

Escalation escalation_from(const json::value& v) {
    Escalation e;
    if (!v.is_object()) return e;
    const auto& o = v.get_object();
    if (auto* m = o.if_contains("min_score"); m && m->is_number()) e.min_score = m->to_number<double>();
    if (auto* h = o.if_contains("human_request"); h && h->is_bool()) e.human_request = h->get_bool();
    if (auto* p = o.if_contains("phrases"); p && p->is_array()) {
        for (const auto& x : p->get_array()) {
            if (x.is_string()) e.phrases.emplace_back(x.get_string());
        }
    }
    return e;
}

json::object escalation_json(const Escalation& e) {
    json::array phrases;
    for (const auto& p : e.phrases) phrases.emplace_back(p);
    return json::object{{"min_score", e.min_score}, {"human_request", e.human_request}, {"phrases", std::move(phrases)}};
}

Agent agent_from(Tx& tx, const Row& r) {
    Agent a;
    a.id = r.text(0);
    a.name = r.text(1);
    a.description = r.text(2);
    a.prompt = r.text(3);
    auto model = json::parse(r.text(4));
    if (model.is_object()) a.model = model.get_object();
    a.k = static_cast<std::size_t>(r.integer(5));
    a.escalation = escalation_from(json::parse(r.text(6)));
    a.fallback_answer = r.text(7);
    a.created_at = r.integer(8);
    a.updated_at = r.integer(9);
    for (const auto& row : tx.query("SELECT kb_id FROM knowledge_agent_bases WHERE agent_id = ? ORDER BY position",
                                    {a.id})) {
        a.kb_ids.push_back(row.text(0));
    }
    return a;
}

std::optional<Agent> find_agent(Tx& tx, std::string_view id_or_name) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM knowledge_agents WHERE name = ? OR id = ? ORDER BY name = ? DESC "
                                        "LIMIT 1",
                                        kAgentColumns),
                            {std::string(id_or_name), std::string(id_or_name), std::string(id_or_name)});
    if (!row) return std::nullopt;
    return agent_from(tx, *row);
}

Agent require_agent(Tx& tx, std::string_view id_or_name) {
    auto a = find_agent(tx, id_or_name);
    if (!a) throw core::NotFound(fmt::format("no agent '{}'", id_or_name.substr(0, 100)), "agent_not_found");
    return *a;
}

// --- agent specs --------------------------------------------------------------------------------------------

/// Provider settings: {} (built-in) or {"provider": "openai", "base_url", "model", "api_key_setting",
/// "temperature", "max_tokens", "timeout_ms"}.
json::object check_model(const json::value* value) {
    if (!value || value->is_null()) return {};
    if (!value->is_object()) throw core::BadRequest("'model' must be an object ({} for the built-in answerer)",
                                                    "wrong_type", field_detail("model"));
    const auto& m = value->get_object();
    if (m.empty()) return {};
    if (m.contains("api_key")) {
        throw core::BadRequest("store the API key as a secret instance setting (PUT /api/v1/settings/{key} with "
                               "\"secret\": true) and name it in 'model.api_key_setting'",
                               "secret_in_agent", field_detail("model.api_key"));
    }
    core::reject_unknown_fields(m, {"provider", "base_url", "model", "api_key_setting", "temperature", "max_tokens",
                                    "timeout_ms"});
    std::string provider = core::optional_string(m, "provider").value_or("openai");
    if (provider != "openai" && provider != "anthropic" && provider != "builtin") {
        throw core::BadRequest("'model.provider' is openai (any OpenAI-compatible API), anthropic or builtin",
                               "invalid_field", field_detail("model.provider"));
    }
    if (provider == "builtin") return {};
    auto base_url = core::optional_string(m, "base_url")
                        .value_or(provider == "anthropic" ? "https://api.anthropic.com" : "https://api.openai.com/v1");
    if (base_url.rfind("http://", 0) != 0 && base_url.rfind("https://", 0) != 0) {
        throw core::BadRequest("'model.base_url' must be an http(s) URL", "invalid_field", field_detail("model.base_url"));
    }
    if (base_url.size() > kMaxLocationBytes || has_control(base_url) || base_url.find(' ') != std::string::npos) {
        throw core::BadRequest("'model.base_url' must be a URL without spaces", "invalid_field",
                               field_detail("model.base_url"));
    }
    auto model_name = core::optional_string(m, "model");
    if (!model_name || model_name->empty() || model_name->size() > 200 || has_control(*model_name)) {
        throw core::BadRequest("'model.model' names the provider's model", "missing_field", field_detail("model.model"));
    }
    json::object out{{"provider", provider}, {"base_url", base_url}, {"model", *model_name}};
    if (auto key = core::optional_string(m, "api_key_setting")) {
        if (!auth::is_valid_setting_key(*key)) {
            throw core::BadRequest("'model.api_key_setting' must be a setting key", "invalid_field",
                                   field_detail("model.api_key_setting"));
        }
        out["api_key_setting"] = *key;
    }
    if (auto t = core::optional_number(m, "temperature")) {
        const double max_temperature = provider == "anthropic" ? 1 : 2;
        if (*t < 0 || *t > max_temperature) {
            throw core::BadRequest(fmt::format("'model.temperature' is 0..{}", max_temperature), "invalid_field",
                                   field_detail("model.temperature"));
        }
        out["temperature"] = *t;
    }
    out["max_tokens"] = bounded_int(m, "max_tokens", 1, 32'000, 512);
    out["timeout_ms"] = bounded_int(m, "timeout_ms", 1000, 300'000, 30'000);
    return out;
}

/// Embeddings settings of a base: {} (BM25 only) or {"base_url", "model", "api_key_setting", "dimensions",
/// "timeout_ms"} of an OpenAI-compatible /embeddings endpoint.
json::object check_embeddings(const json::value* value) {
    if (!value || value->is_null()) return {};
    if (!value->is_object()) {
        throw core::BadRequest("'embeddings' must be an object ({} for BM25 only)", "wrong_type", field_detail("embeddings"));
    }
    const auto& m = value->get_object();
    if (m.empty()) return {};
    if (m.contains("api_key")) {
        throw core::BadRequest("store the API key as a secret instance setting and name it in "
                               "'embeddings.api_key_setting'",
                               "secret_in_settings", field_detail("embeddings.api_key"));
    }
    core::reject_unknown_fields(m, {"base_url", "model", "api_key_setting", "dimensions", "timeout_ms"});
    auto base_url = core::optional_string(m, "base_url").value_or("https://api.openai.com/v1");
    if ((base_url.rfind("http://", 0) != 0 && base_url.rfind("https://", 0) != 0) || base_url.size() > kMaxLocationBytes ||
        has_control(base_url) || base_url.find(' ') != std::string::npos) {
        throw core::BadRequest("'embeddings.base_url' must be an http(s) URL", "invalid_field",
                               field_detail("embeddings.base_url"));
    }
    auto model_name = core::optional_string(m, "model");
    if (!model_name || model_name->empty() || model_name->size() > 200 || has_control(*model_name)) {
        throw core::BadRequest("'embeddings.model' names the embeddings model", "missing_field",
                               field_detail("embeddings.model"));
    }
    json::object out{{"base_url", base_url}, {"model", *model_name}};
    if (auto key = core::optional_string(m, "api_key_setting")) {
        if (!auth::is_valid_setting_key(*key)) {
            throw core::BadRequest("'embeddings.api_key_setting' must be a setting key", "invalid_field",
                                   field_detail("embeddings.api_key_setting"));
        }
        out["api_key_setting"] = *key;
    }
    if (core::optional_int(m, "dimensions")) out["dimensions"] = bounded_int(m, "dimensions", 1, kMaxEmbeddingDims, 1);
    out["timeout_ms"] = bounded_int(m, "timeout_ms", 1000, 300'000, 30'000);
    return out;
}

Escalation check_escalation(const json::value* value, Escalation current) {
    if (!value || value->is_null()) return current;
    if (!value->is_object()) throw core::BadRequest("'escalation' must be an object", "wrong_type", field_detail("escalation"));
    const auto& o = value->get_object();
    core::reject_unknown_fields(o, {"min_score", "human_request", "phrases"});
    if (auto s = core::optional_number(o, "min_score")) {
        if (*s < 0 || *s > 1) throw core::BadRequest("'escalation.min_score' is 0..1", "invalid_field", field_detail("escalation.min_score"));
        current.min_score = *s;
    }
    if (auto h = core::optional_bool(o, "human_request")) current.human_request = *h;
    if (auto* p = core::optional_array(o, "phrases")) {
        if (p->size() > kMaxPhrases) throw core::BadRequest(fmt::format("at most {} phrases", kMaxPhrases), "invalid_field", field_detail("escalation.phrases"));
        current.phrases.clear();
        for (const auto& x : *p) {
            if (!x.is_string() || x.get_string().empty() || x.get_string().size() > kMaxPhraseBytes ||
                internal::tokenize(std::string_view(x.get_string())).empty()) {
                throw core::BadRequest(fmt::format("each phrase is text of 1 to {} bytes with a word in it", kMaxPhraseBytes),
                                       "invalid_field", field_detail("escalation.phrases"));
            }
            current.phrases.emplace_back(x.get_string());
        }
    }
    return current;
}

std::string check_prompt(const json::object& spec) {
    std::string prompt = check_text(spec, "prompt", kMaxPromptBytes);
    auto compiled = core::Template::compile(prompt);
    if (auto* e = std::get_if<core::TemplateError>(&compiled)) {
        throw core::BadRequest(fmt::format("'prompt' template error at offset {}: {}", e->offset, e->message),
                               "invalid_template", field_detail("prompt"));
    }
    return prompt;
}

/// Resolves knowledge base references (ids or names) inside a transaction: Unprocessable naming the unknown.
std::vector<std::string> resolve_bases(Tx& tx, const json::array& refs) {
    if (refs.size() > kMaxAgentBases) {
        throw core::BadRequest(fmt::format("an agent reads at most {} knowledge bases", kMaxAgentBases), "invalid_field",
                               field_detail("knowledge_bases"));
    }
    std::vector<std::string> ids;
    json::array unknown;
    for (const auto& ref : refs) {
        if (!ref.is_string()) throw core::BadRequest("'knowledge_bases' lists ids or names", "wrong_type", field_detail("knowledge_bases"));
        auto kb = find_base(tx, std::string_view(ref.get_string()));
        if (!kb) {
            unknown.push_back(json::object{{"field", "knowledge_bases"}, {"value", ref}});
            continue;
        }
        if (std::find(ids.begin(), ids.end(), kb->id) == ids.end()) ids.push_back(kb->id);
    }
    if (!unknown.empty()) {
        throw core::Unprocessable("'knowledge_bases' names a knowledge base that does not exist",
                                  "unknown_knowledge_base", std::move(unknown));
    }
    return ids;
}

void write_agent_bases(Tx& tx, const std::string& agent_id, const std::vector<std::string>& kb_ids) {
    tx.exec("DELETE FROM knowledge_agent_bases WHERE agent_id = ?", {agent_id});
    std::int64_t pos = 0;
    for (const auto& id : kb_ids) {
        tx.exec("INSERT INTO knowledge_agent_bases (agent_id, kb_id, position) VALUES (?, ?, ?)", {agent_id, id, pos++});
    }
}

void check_input(std::string_view text, std::string_view field) {
    if (trim(text).empty()) throw core::BadRequest(fmt::format("'{}' is empty", field), "missing_field", field_detail(field));
    if (text.size() > kMaxQueryBytes || !internal::valid_utf8(text)) {
        throw core::BadRequest(fmt::format("'{}' must be UTF-8 text of at most {} bytes", field, kMaxQueryBytes),
                               "invalid_field", field_detail(field));
    }
}

}  // namespace

std::string_view status_name(DocumentStatus status) {
    switch (status) {
        case DocumentStatus::kQueued: return "queued";
        case DocumentStatus::kProcessing: return "processing";
        case DocumentStatus::kReady: return "ready";
        case DocumentStatus::kError: return "error";
    }
    return "queued";
}

json::object hit_json(const SearchHit& hit) {
    return json::object{{"document", hit.document_id}, {"document_name", hit.document_name},
                        {"knowledge_base", hit.kb_id},  {"chunk", hit.chunk},
                        {"heading", hit.heading},       {"text", hit.text},
                        {"score", hit.score}};
}

json::object ask_json(const AskResult& result) {
    json::array sources;
    for (const auto& h : result.sources) sources.push_back(hit_json(h));
    return json::object{{"answer", result.answer},
                        {"sources", std::move(sources)},
                        {"escalate", result.escalate},
                        {"escalation_reason", result.escalate ? json::value(result.escalation_reason) : json::value(nullptr)},
                        {"answered_by", result.answered_by}};
}

// --- service ------------------------------------------------------------------------------------------------

KnowledgeService::KnowledgeService(store::Store& store, core::Clock& clock, KnowledgeOptions options)
    : store_(store),
      clock_(clock),
      options_(options),
      df_cache_(std::make_unique<internal::DfCache>()),
      vectors_(std::make_unique<internal::VectorIndexes>(
          [this](std::function<void()> build) { asio::post(ingest_pool_, std::move(build)); })),
      ingest_pool_(std::max(1u, options.ingest_threads)),
      query_pool_(std::max(1u, options.query_threads)) {
    // Documents a crash left queued or half-processed go back into the queue (their chunks were never
    // committed, or the previous revision's are still intact).
    std::vector<Job> pending;
    store_.read([&](Tx& tx) {
        for (const auto& row : tx.query("SELECT id, revision FROM knowledge_documents WHERE status IN ('queued', "
                                        "'processing') ORDER BY updated_at, id")) {
            pending.push_back(Job{row.text(0), row.integer(1)});
        }
    });
    for (auto& job : pending) enqueue(std::move(job));
    sync_thread_ = std::thread([this] { sync_loop(); });
}

KnowledgeService::~KnowledgeService() { stop(); }

void KnowledgeService::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopped_) return;
        stopped_ = true;
    }
    stopping_ = true;
    wake_sync();
    if (sync_thread_.joinable()) sync_thread_.join();
    ingest_pool_.join();
    query_pool_.join();
}

void KnowledgeService::enqueue(Job job) {
    {
        std::lock_guard lock(mutex_);
        ++pending_;
        progress_[job.document_id] = 0;
    }
    asio::post(ingest_pool_, [this, job = std::move(job)] {
        try {
            ingest(job);
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::err, "knowledge_ingest_failed",
                            fmt::format(R"("document":{},"error":{})", core::json_quote(job.document_id),
                                        core::json_quote(e.what())));
        }
        std::lock_guard lock(mutex_);
        progress_.erase(job.document_id);
        if (--pending_ == 0) idle_.notify_all();
    });
}

void KnowledgeService::set_progress(const std::string& document_id, int percent) {
    std::lock_guard lock(mutex_);
    progress_[document_id] = std::clamp(percent, 0, 100);
}

bool KnowledgeService::wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return idle_.wait_for(lock, timeout, [&] { return pending_ == 0; });
}

void KnowledgeService::ingest(const Job& job) {
    if (stopping_) return;  // stays queued: picked up on the next start
    const std::int64_t started = clock_.now_ms();
    bool current = false;
    store_.write_sync([&](Tx& tx) {
        current = tx.exec("UPDATE knowledge_documents SET status = 'processing', updated_at = ? WHERE id = ? AND "
                          "revision = ? AND status IN ('queued', 'processing')",
                          {started, job.document_id, job.revision}) == 1;
    });
    if (!current) return;  // deleted, re-uploaded or already done meanwhile

    std::string kb_id, format, content;
    internal::ChunkSettings settings;
    json::object embeddings;
    store_.read([&](Tx& tx) {
        auto row = tx.query_one(
            "SELECT d.kb_id, d.format, d.content, b.chunk_size, b.chunk_overlap, b.split_on_headings, "
            "b.split_on_paragraphs, b.embeddings FROM knowledge_documents d JOIN knowledge_bases b ON b.id = d.kb_id "
            "WHERE d.id = ? AND d.revision = ?",
            {job.document_id, job.revision});
        if (!row) return;
        kb_id = row->text(0);
        format = row->text(1);
        content = row->text(2);
        settings.size = static_cast<std::size_t>(row->integer(3));
        settings.overlap = static_cast<std::size_t>(row->integer(4));
        settings.split_on_headings = row->integer(5) != 0;
        settings.split_on_paragraphs = row->integer(6) != 0;
        boost::system::error_code ec;
        auto e = json::parse(row->text(7), ec);
        if (!ec && e.is_object()) embeddings = e.get_object();
    });
    if (kb_id.empty()) return;

    std::vector<internal::IndexedChunk> chunks;
    std::string failure;
    try {
        auto fmt_kind = internal::parse_format(format).value_or(internal::Format::kText);
        auto blocks = internal::extract(fmt_kind, content, [&](double f) {
            set_progress(job.document_id, static_cast<int>(10 + 50 * f));
        });
        content.clear();
        content.shrink_to_fit();
        set_progress(job.document_id, 60);
        auto pieces = internal::chunk_blocks(blocks, settings);
        blocks.clear();
        set_progress(job.document_id, 70);
        chunks = internal::analyze_chunks(std::move(pieces));
        set_progress(job.document_id, 90);
        if (chunks.empty()) failure = "the document contains no text";
    } catch (const internal::ExtractError& e) {
        failure = e.what();
    } catch (const std::bad_alloc&) {
        failure = "the document needs too much memory to process";
    }
    // Embeddings (bases with an embeddings provider): a provider failure leaves the BM25 indexing intact and
    // shows as the document's embedding status.
    std::vector<std::vector<float>> vectors;
    std::string embedding_status = embeddings.empty() ? "none" : "ready";
    std::string embedding_error;
    if (failure.empty() && !embeddings.empty()) {
        std::vector<std::string> texts;
        texts.reserve(chunks.size());
        for (const auto& c : chunks) {
            texts.push_back(c.chunk.heading.empty() ? c.chunk.text : c.chunk.heading + "\n\n" + c.chunk.text);
        }
        embedding_error = embed_texts(embeddings, texts, vectors);
        if (!embedding_error.empty()) {
            embedding_status = "error";
            vectors.clear();
        }
        set_progress(job.document_id, 95);
    }
    if (stopping_) return;  // left `processing`: re-queued on the next start

    const std::int64_t now = clock_.now_ms();
    std::vector<std::int64_t> removed;
    std::vector<internal::StoredVector> added;
    auto commit = [&](Tx& tx) {
        removed.clear();
        added.clear();
        auto row = tx.query_one("SELECT revision FROM knowledge_documents WHERE id = ?", {job.document_id});
        if (!row || row->integer(0) != job.revision) return;  // deleted or superseded: drop this work
        removed = internal::embedding_ids(tx, job.document_id);
        internal::delete_chunks(tx, job.document_id);
        if (!failure.empty()) {
            tx.exec("UPDATE knowledge_documents SET status = 'error', error = ?, chunks = 0, updated_at = ?, "
                    "embedding_status = ?, embedding_error = NULL WHERE id = ?",
                    {failure, now, std::string(embeddings.empty() ? "none" : "error"), job.document_id});
            return;
        }
        internal::insert_chunks(tx, kb_id, job.document_id, chunks);
        if (!vectors.empty()) {
            auto ids = tx.query("SELECT id FROM knowledge_chunks WHERE document_id = ? ORDER BY seq", {job.document_id});
            for (std::size_t i = 0; i < ids.size() && i < vectors.size(); ++i) {
                tx.exec("INSERT INTO knowledge_embeddings (chunk_id, kb_id, document_id, vector) VALUES (?, ?, ?, ?)",
                        {ids[i].integer(0), kb_id, job.document_id, store::Blob{internal::vector_blob(vectors[i])}});
                added.push_back(internal::StoredVector{tx.query_one("SELECT last_insert_rowid()")->integer(0), vectors[i]});
            }
        }
        tx.exec("UPDATE knowledge_documents SET status = 'ready', error = NULL, chunks = ?, updated_at = ?, "
                "indexed_at = ?, embedding_status = ?, embedding_error = ? WHERE id = ?",
                {static_cast<std::int64_t>(chunks.size()), now, now, embedding_status,
                 embedding_error.empty() ? store::Value(nullptr) : store::Value(embedding_error), job.document_id});
    };
    try {
        store_.write_sync(commit);
    } catch (const std::exception& e) {
        // Nothing of this document was committed (one transaction); record why.
        failure = fmt::format("indexing failed: {}", e.what());
        chunks.clear();
        vectors.clear();
        store_.write_sync(commit);
    }
    vectors_->remove(kb_id, removed);
    vectors_->add(kb_id, added);
    df_cache_->clear();
    core::log_event(spdlog::level::info, "knowledge_document_indexed",
                    fmt::format(R"("document":{},"chunks":{},"ms":{},"error":{})", core::json_quote(job.document_id),
                                chunks.size(), clock_.now_ms() - started, core::json_quote(failure)));
}

// --- knowledge bases ------------------------------------------------------------------------------------------

asio::awaitable<KnowledgeBase> KnowledgeService::create_base(json::object spec) {
    core::reject_unknown_fields(spec, {"name", "description", "chunking", "embeddings"});
    KnowledgeBase kb;
    kb.id = core::new_id();
    kb.name = check_name(core::required_string(spec, "name"), "name", true);
    kb.description = check_text(spec, "description", kMaxDescriptionBytes);
    kb.chunking = parse_chunking(spec.if_contains("chunking"), Chunking{});
    kb.embeddings = check_embeddings(spec.if_contains("embeddings"));
    kb.created_at = kb.updated_at = clock_.now_ms();
    auto fn = [kb](Tx& tx) {
        if (tx.query_one("SELECT 1 FROM knowledge_bases WHERE name = ?", {kb.name})) {
            throw core::Conflict(fmt::format("a knowledge base named '{}' exists", kb.name), "name_taken",
                                 field_detail("name"));
        }
        if (tx.query_one("SELECT count(*) FROM knowledge_bases")->integer(0) >= static_cast<std::int64_t>(kMaxKnowledgeBases)) {
            throw core::Conflict(fmt::format("at most {} knowledge bases", kMaxKnowledgeBases), "limit_reached");
        }
        tx.exec(fmt::format("INSERT INTO knowledge_bases ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kBaseColumns),
                {kb.id, kb.name, kb.description, static_cast<std::int64_t>(kb.chunking.size),
                 static_cast<std::int64_t>(kb.chunking.overlap), std::int64_t{kb.chunking.split_on_headings},
                 std::int64_t{kb.chunking.split_on_paragraphs}, kb.created_at, kb.updated_at,
                 core::to_json(kb.embeddings)});
    };
    co_await store::co_write(store_, std::move(fn));
    co_return kb;
}

std::vector<KnowledgeBase> KnowledgeService::list_bases() {
    std::vector<KnowledgeBase> out;
    store_.read([&](Tx& tx) {
        for (const auto& row : tx.query(fmt::format("SELECT {} FROM knowledge_bases ORDER BY name", kBaseColumns))) {
            out.push_back(base_from(row));
        }
    });
    return out;
}

KnowledgeBase KnowledgeService::get_base(std::string_view id_or_name) {
    return store::read_value(store_, [&](Tx& tx) { return require_base(tx, id_or_name); });
}

json::object KnowledgeService::base_json(const KnowledgeBase& kb) {
    json::object counts;
    store_.read([&](Tx& tx) {
        auto row = tx.query_one(
            "SELECT count(*), coalesce(sum(chunks), 0), coalesce(sum(status IN ('queued', 'processing')), 0), "
            "coalesce(sum(status = 'error'), 0) FROM knowledge_documents WHERE kb_id = ?",
            {kb.id});
        counts = json::object{{"documents", row->integer(0)},
                              {"chunks", row->integer(1)},
                              {"pending", row->integer(2)},
                              {"failed", row->integer(3)}};
        auto e = tx.query_one("SELECT count(*) FROM knowledge_embeddings WHERE kb_id = ?", {kb.id});
        counts["embedded_chunks"] = e->integer(0);
        auto sources = tx.query_one("SELECT count(*) FROM knowledge_sources WHERE kb_id = ?", {kb.id});
        counts["sources"] = sources->integer(0);
    });
    return json::object{{"id", kb.id},
                        {"name", kb.name},
                        {"description", kb.description},
                        {"chunking", chunking_json(kb.chunking)},
                        {"documents", counts["documents"]},
                        {"chunks", counts["chunks"]},
                        {"pending", counts["pending"]},
                        {"failed", counts["failed"]},
                        {"embeddings", kb.embeddings},
                        {"search", kb.embeddings.empty() ? "bm25" : "hybrid"},
                        {"embedded_chunks", counts["embedded_chunks"]},
                        {"vector_index", kb.embeddings.empty() ? json::value(nullptr) : json::value(vectors_->state(kb.id))},
                        {"sources", counts["sources"]},
                        {"created_at", core::format_time(kb.created_at)},
                        {"updated_at", core::format_time(kb.updated_at)}};
}

asio::awaitable<KnowledgeBase> KnowledgeService::update_base(std::string id_or_name, json::object patch) {
    core::reject_unknown_fields(patch, {"name", "description", "chunking", "embeddings"});
    std::optional<json::object> embeddings;
    if (patch.contains("embeddings")) embeddings = check_embeddings(patch.if_contains("embeddings"));
    std::optional<std::string> name;
    if (patch.contains("name")) name = check_name(core::required_string(patch, "name"), "name", true);
    std::optional<std::string> description;
    if (patch.contains("description")) description = check_text(patch, "description", kMaxDescriptionBytes);
    const json::value* chunking = patch.if_contains("chunking");
    if (chunking) parse_chunking(chunking, Chunking{});  // validate before the write
    const std::int64_t now = clock_.now_ms();
    struct Out {
        KnowledgeBase kb;
        std::vector<Job> requeue;
        bool embeddings_changed = false;
    };
    json::value chunking_copy = chunking ? *chunking : json::value(nullptr);
    auto fn = [=](Tx& tx) {
        Out out;
        out.kb = require_base(tx, id_or_name);
        if (name && *name != out.kb.name) {
            if (tx.query_one("SELECT 1 FROM knowledge_bases WHERE name = ?", {*name})) {
                throw core::Conflict(fmt::format("a knowledge base named '{}' exists", *name), "name_taken",
                                     field_detail("name"));
            }
            out.kb.name = *name;
        }
        if (description) out.kb.description = *description;
        Chunking next = parse_chunking(&chunking_copy, out.kb.chunking);
        bool rechunk = next.size != out.kb.chunking.size || next.overlap != out.kb.chunking.overlap ||
                       next.split_on_headings != out.kb.chunking.split_on_headings ||
                       next.split_on_paragraphs != out.kb.chunking.split_on_paragraphs;
        out.kb.chunking = next;
        out.kb.updated_at = now;
        if (embeddings && *embeddings != out.kb.embeddings) {
            // Vectors of another model (or none wanted) go at once; every document is embedded again (its
            // BM25 chunks keep serving meanwhile).
            out.kb.embeddings = *embeddings;
            out.embeddings_changed = true;
            tx.exec("DELETE FROM knowledge_embeddings WHERE kb_id = ?", {out.kb.id});
            tx.exec("UPDATE knowledge_documents SET embedding_status = ?, embedding_error = NULL WHERE kb_id = ?",
                    {std::string(embeddings->empty() ? "none" : "pending"), out.kb.id});
            rechunk = rechunk || !embeddings->empty();
        }
        tx.exec("UPDATE knowledge_bases SET name = ?, description = ?, chunk_size = ?, chunk_overlap = ?, "
                "split_on_headings = ?, split_on_paragraphs = ?, updated_at = ?, embeddings = ? WHERE id = ?",
                {out.kb.name, out.kb.description, static_cast<std::int64_t>(next.size),
                 static_cast<std::int64_t>(next.overlap), std::int64_t{next.split_on_headings},
                 std::int64_t{next.split_on_paragraphs}, now, core::to_json(out.kb.embeddings), out.kb.id});
        if (rechunk) {
            // Every document is cut again with the new settings; old chunks serve searches until replaced.
            tx.exec("UPDATE knowledge_documents SET status = 'queued', error = NULL, revision = revision + 1, "
                    "updated_at = ? WHERE kb_id = ?",
                    {now, out.kb.id});
            for (const auto& row : tx.query("SELECT id, revision FROM knowledge_documents WHERE kb_id = ? ORDER BY id",
                                            {out.kb.id})) {
                out.requeue.push_back(Job{row.text(0), row.integer(1)});
            }
        }
        return out;
    };
    Out out = co_await store::co_write(store_, std::move(fn));
    if (out.embeddings_changed) vectors_->drop(out.kb.id);
    for (auto& job : out.requeue) enqueue(std::move(job));
    co_return out.kb;
}

asio::awaitable<void> KnowledgeService::delete_base(std::string id_or_name) {
    auto fn = [id_or_name](Tx& tx) {
        KnowledgeBase kb = require_base(tx, id_or_name);
        json::array agents;
        for (const auto& row : tx.query("SELECT a.name FROM knowledge_agent_bases ab JOIN knowledge_agents a ON "
                                        "a.id = ab.agent_id WHERE ab.kb_id = ? ORDER BY a.name",
                                        {kb.id})) {
            agents.push_back(json::object{{"agent", row.text(0)}});
        }
        if (!agents.empty()) {
            throw core::Conflict("agents still use this knowledge base; remove it from them first",
                                 "knowledge_base_in_use", std::move(agents));
        }
        for (const auto& row : tx.query("SELECT id FROM knowledge_documents WHERE kb_id = ?", {kb.id})) {
            internal::delete_chunks(tx, row.text(0));
        }
        tx.exec("DELETE FROM knowledge_documents WHERE kb_id = ?", {kb.id});
        tx.exec("DELETE FROM knowledge_sources WHERE kb_id = ?", {kb.id});
        tx.exec("DELETE FROM knowledge_bases WHERE id = ?", {kb.id});
        return kb.id;
    };
    std::string kb_id = co_await store::co_write(store_, std::move(fn));
    vectors_->drop(kb_id);
    df_cache_->clear();
}

// --- documents -----------------------------------------------------------------------------------------------

namespace {

/// Checks an upload and decides its format. Throws TooLarge, BadRequest, 415 unsupported_format.
internal::Format check_upload(const Upload& upload) {
    if (upload.content.size() > kMaxDocumentBytes) {
        throw core::TooLarge(fmt::format("a document may be at most {} MB", kMaxDocumentBytes >> 20),
                             "document_too_large");
    }
    if (upload.content.empty()) throw core::BadRequest("the file is empty", "empty_file", field_detail("file"));
    auto detected = internal::detect_format(upload.content, upload.name, upload.content_type);
    if (!detected.error.empty()) {
        throw core::Error(415, "unsupported_format",
                          detected.error + " (supported: TXT, Markdown, HTML, CSV, PDF, DOCX)", field_detail("file"));
    }
    return detected.format;
}

std::string document_name(const Upload& upload) {
    std::string name = upload.name.empty() ? std::string("document") : upload.name;
    return check_name(name, "name", false);
}

}  // namespace

asio::awaitable<Document> KnowledgeService::add_document(std::string kb_ref, Upload upload) {
    auto format = check_upload(upload);
    Document doc;
    doc.id = core::new_id();
    doc.name = document_name(upload);
    doc.format = std::string(internal::format_name(format));
    doc.content_type = upload.content_type.substr(0, 200);
    doc.size = static_cast<std::int64_t>(upload.content.size());
    doc.content_hash = internal::sha256_hex(upload.content);
    doc.created_at = doc.updated_at = clock_.now_ms();
    auto content = std::make_shared<std::string>(std::move(upload.content));
    auto fn = [doc, kb_ref, content](Tx& tx) mutable {
        KnowledgeBase kb = require_base(tx, kb_ref);
        doc.kb_id = kb.id;
        if (tx.query_one("SELECT count(*) FROM knowledge_documents WHERE kb_id = ?", {kb.id})->integer(0) >=
            static_cast<std::int64_t>(kMaxDocumentsPerBase)) {
            throw core::Conflict(fmt::format("a knowledge base holds at most {} documents", kMaxDocumentsPerBase),
                                 "limit_reached");
        }
        doc.embedding_status = kb.embeddings.empty() ? "none" : "pending";
        tx.exec("INSERT INTO knowledge_documents (id, kb_id, name, format, content_type, size, status, chunks, "
                "revision, content, created_at, updated_at, content_hash, embedding_status) "
                "VALUES (?, ?, ?, ?, ?, ?, 'queued', 0, 1, ?, ?, ?, ?, ?)",
                {doc.id, doc.kb_id, doc.name, doc.format, doc.content_type, doc.size, store::Blob{*content},
                 doc.created_at, doc.updated_at, doc.content_hash, doc.embedding_status});
        return doc;
    };
    doc = co_await store::co_write(store_, std::move(fn));
    enqueue(Job{doc.id, doc.revision});
    doc.progress = 0;
    co_return doc;
}

asio::awaitable<Document> KnowledgeService::replace_document(std::string kb_ref, std::string document_id,
                                                             Upload upload) {
    auto format = check_upload(upload);
    std::optional<std::string> name;
    if (!upload.name.empty()) name = document_name(upload);
    const std::int64_t now = clock_.now_ms();
    auto content = std::make_shared<std::string>(std::move(upload.content));
    std::string content_type = upload.content_type.substr(0, 200);
    std::string format_text(internal::format_name(format));
    std::string hash = internal::sha256_hex(*content);
    auto fn = [=](Tx& tx) {
        KnowledgeBase kb = require_base(tx, kb_ref);
        Document doc = require_document(tx, kb.id, document_id);
        tx.exec("UPDATE knowledge_documents SET name = ?, format = ?, content_type = ?, size = ?, content = ?, "
                "status = 'queued', error = NULL, revision = revision + 1, updated_at = ?, content_hash = ? WHERE id = ?",
                {name.value_or(doc.name), format_text, content_type, static_cast<std::int64_t>(content->size()),
                 store::Blob{*content}, now, hash, doc.id});
        return require_document(tx, kb.id, document_id);
    };
    Document doc = co_await store::co_write(store_, std::move(fn));
    enqueue(Job{doc.id, doc.revision});
    doc.progress = 0;
    co_return doc;
}

asio::awaitable<Document> KnowledgeService::rename_document(std::string kb_ref, std::string document_id,
                                                            std::string name) {
    name = check_name(name, "name", false);
    const std::int64_t now = clock_.now_ms();
    auto fn = [=](Tx& tx) {
        KnowledgeBase kb = require_base(tx, kb_ref);
        Document doc = require_document(tx, kb.id, document_id);
        tx.exec("UPDATE knowledge_documents SET name = ?, updated_at = ? WHERE id = ?", {name, now, doc.id});
        return require_document(tx, kb.id, document_id);
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

asio::awaitable<Document> KnowledgeService::reindex_document(std::string kb_ref, std::string document_id) {
    const std::int64_t now = clock_.now_ms();
    auto fn = [=](Tx& tx) {
        KnowledgeBase kb = require_base(tx, kb_ref);
        Document doc = require_document(tx, kb.id, document_id);
        tx.exec("UPDATE knowledge_documents SET status = 'queued', error = NULL, revision = revision + 1, "
                "updated_at = ? WHERE id = ?",
                {now, doc.id});
        return require_document(tx, kb.id, document_id);
    };
    Document doc = co_await store::co_write(store_, std::move(fn));
    enqueue(Job{doc.id, doc.revision});
    doc.progress = 0;
    co_return doc;
}

asio::awaitable<void> KnowledgeService::delete_document(std::string kb_ref, std::string document_id) {
    auto fn = [=](Tx& tx) {
        KnowledgeBase kb = require_base(tx, kb_ref);
        Document doc = require_document(tx, kb.id, document_id);
        auto removed = internal::embedding_ids(tx, doc.id);
        internal::delete_chunks(tx, doc.id);
        tx.exec("DELETE FROM knowledge_documents WHERE id = ?", {doc.id});
        return std::make_pair(kb.id, std::move(removed));
    };
    auto [kb_id, removed] = co_await store::co_write(store_, std::move(fn));
    vectors_->remove(kb_id, removed);
    df_cache_->clear();
}

DocumentPage KnowledgeService::list_documents(std::string_view kb_ref, std::string_view cursor, std::size_t limit) {
    DocumentPage page;
    store_.read([&](Tx& tx) {
        KnowledgeBase kb = require_base(tx, kb_ref);
        auto rows = tx.query(fmt::format("SELECT {} FROM knowledge_documents WHERE kb_id = ? AND id > ? ORDER BY id "
                                         "LIMIT ?",
                                         kDocumentColumns),
                             {kb.id, std::string(cursor), static_cast<std::int64_t>(limit + 1)});
        for (const auto& row : rows) {
            if (page.items.size() == limit) {
                page.next_cursor = page.items.back().id;
                break;
            }
            page.items.push_back(document_from(row));
        }
    });
    std::lock_guard lock(mutex_);
    for (auto& d : page.items) {
        if (auto it = progress_.find(d.id); it != progress_.end() && d.status != DocumentStatus::kReady &&
                                            d.status != DocumentStatus::kError) {
            d.progress = it->second;
        }
    }
    return page;
}

Document KnowledgeService::get_document(std::string_view kb_ref, std::string_view document_id) {
    Document d = store::read_value(store_, [&](Tx& tx) {
        KnowledgeBase kb = require_base(tx, kb_ref);
        return require_document(tx, kb.id, document_id);
    });
    std::lock_guard lock(mutex_);
    if (auto it = progress_.find(d.id);
        it != progress_.end() && (d.status == DocumentStatus::kQueued || d.status == DocumentStatus::kProcessing)) {
        d.progress = it->second;
    }
    return d;
}

std::vector<SearchHit> KnowledgeService::document_chunks(std::string_view kb_ref, std::string_view document_id,
                                                         std::int64_t after, std::size_t limit) {
    std::vector<SearchHit> out;
    store_.read([&](Tx& tx) {
        KnowledgeBase kb = require_base(tx, kb_ref);
        Document doc = require_document(tx, kb.id, document_id);
        for (const auto& row : tx.query("SELECT seq, heading, text FROM knowledge_chunks WHERE document_id = ? AND "
                                        "seq > ? ORDER BY seq LIMIT ?",
                                        {doc.id, after, static_cast<std::int64_t>(limit)})) {
            SearchHit h;
            h.kb_id = kb.id;
            h.document_id = doc.id;
            h.document_name = doc.name;
            h.chunk = row.integer(0);
            h.heading = row.text(1);
            h.text = row.text(2);
            out.push_back(std::move(h));
        }
    });
    return out;
}

json::object KnowledgeService::document_json(const Document& d) {
    json::object o{{"id", d.id},
                   {"knowledge_base", d.kb_id},
                   {"name", d.name},
                   {"format", d.format},
                   {"content_type", d.content_type},
                   {"size", d.size},
                   {"status", status_name(d.status)},
                   {"error", d.error ? json::value(*d.error) : json::value(nullptr)},
                   {"chunks", d.chunks},
                   {"revision", d.revision},
                   {"created_at", core::format_time(d.created_at)},
                   {"updated_at", core::format_time(d.updated_at)},
                   {"indexed_at", d.indexed_at ? json::value(core::format_time(*d.indexed_at)) : json::value(nullptr)},
                   {"source", d.source_id ? json::value(*d.source_id) : json::value(nullptr)},
                   {"content_hash", d.content_hash},
                   {"embeddings", d.embedding_status},
                   {"embedding_error", d.embedding_error ? json::value(*d.embedding_error) : json::value(nullptr)}};
    if (d.source_key) o["source_key"] = *d.source_key;
    if (d.progress) o["progress"] = *d.progress;
    return o;
}

// --- retrieval ------------------------------------------------------------------------------------------------

std::vector<SearchHit> KnowledgeService::search(const std::vector<std::string>& kb_ids, std::string_view query,
                                                std::size_t k) {
    check_input(query, "query");
    if (k < 1 || k > kMaxK) {
        throw core::BadRequest(fmt::format("'k' must be a whole number from 1 to {}", kMaxK), "invalid_field",
                               field_detail("k"));
    }
    auto terms = internal::query_terms(query);
    return store::read_value(store_, [&](Tx& tx) { return internal::search_chunks(tx, kb_ids, terms, k, df_cache_.get()); });
}

// --- agents -----------------------------------------------------------------------------------------------------

asio::awaitable<Agent> KnowledgeService::create_agent(json::object spec) {
    core::reject_unknown_fields(spec, {"name", "description", "prompt", "knowledge_bases", "model", "k", "escalation",
                                       "fallback_answer"});
    Agent a;
    a.id = core::new_id();
    a.name = check_agent_name(core::required_string(spec, "name"));
    a.description = check_text(spec, "description", kMaxDescriptionBytes);
    a.prompt = check_prompt(spec);
    a.model = check_model(spec.if_contains("model"));
    a.k = bounded_int(spec, "k", 1, 20, 5);
    a.escalation = check_escalation(spec.if_contains("escalation"), Escalation{});
    a.fallback_answer = check_text(spec, "fallback_answer", kMaxDescriptionBytes);
    a.created_at = a.updated_at = clock_.now_ms();
    json::array refs;
    if (auto* r = core::optional_array(spec, "knowledge_bases")) refs = *r;
    auto fn = [a, refs](Tx& tx) mutable {
        if (tx.query_one("SELECT 1 FROM knowledge_agents WHERE name = ?", {a.name})) {
            throw core::Conflict(fmt::format("an agent named '{}' exists", a.name), "name_taken", field_detail("name"));
        }
        if (tx.query_one("SELECT count(*) FROM knowledge_agents")->integer(0) >= static_cast<std::int64_t>(kMaxAgents)) {
            throw core::Conflict(fmt::format("at most {} agents", kMaxAgents), "limit_reached");
        }
        a.kb_ids = resolve_bases(tx, refs);
        tx.exec(fmt::format("INSERT INTO knowledge_agents ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kAgentColumns),
                {a.id, a.name, a.description, a.prompt, core::to_json(a.model), static_cast<std::int64_t>(a.k),
                 core::to_json(escalation_json(a.escalation)), a.fallback_answer, a.created_at, a.updated_at});
        write_agent_bases(tx, a.id, a.kb_ids);
        return a;
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

std::vector<Agent> KnowledgeService::list_agents() {
    std::vector<Agent> out;
    store_.read([&](Tx& tx) {
        for (const auto& row : tx.query(fmt::format("SELECT {} FROM knowledge_agents ORDER BY name", kAgentColumns))) {
            out.push_back(agent_from(tx, row));
        }
    });
    return out;
}

Agent KnowledgeService::get_agent(std::string_view id_or_name) {
    return store::read_value(store_, [&](Tx& tx) { return require_agent(tx, id_or_name); });
}

asio::awaitable<Agent> KnowledgeService::update_agent(std::string id_or_name, json::object patch) {
    core::reject_unknown_fields(patch, {"name", "description", "prompt", "knowledge_bases", "model", "k", "escalation",
                                        "fallback_answer"});
    // Validate everything before the write; apply inside it onto the current agent.
    std::optional<std::string> name;
    if (patch.contains("name")) name = check_agent_name(core::required_string(patch, "name"));
    std::optional<std::string> description, prompt, fallback;
    if (patch.contains("description")) description = check_text(patch, "description", kMaxDescriptionBytes);
    if (patch.contains("prompt")) prompt = check_prompt(patch);
    if (patch.contains("fallback_answer")) fallback = check_text(patch, "fallback_answer", kMaxDescriptionBytes);
    std::optional<json::object> model;
    if (patch.contains("model")) model = check_model(patch.if_contains("model"));
    std::optional<std::size_t> k;
    if (patch.contains("k")) k = bounded_int(patch, "k", 1, 20, 5);
    json::value escalation = patch.contains("escalation") ? patch.at("escalation") : json::value(nullptr);
    if (!escalation.is_null()) check_escalation(&escalation, Escalation{});
    std::optional<json::array> refs;
    if (auto* r = core::optional_array(patch, "knowledge_bases")) refs = *r;
    const std::int64_t now = clock_.now_ms();
    auto fn = [=](Tx& tx) {
        Agent a = require_agent(tx, id_or_name);
        if (name && *name != a.name) {
            if (tx.query_one("SELECT 1 FROM knowledge_agents WHERE name = ?", {*name})) {
                throw core::Conflict(fmt::format("an agent named '{}' exists", *name), "name_taken", field_detail("name"));
            }
            a.name = *name;
        }
        if (description) a.description = *description;
        if (prompt) a.prompt = *prompt;
        if (fallback) a.fallback_answer = *fallback;
        if (model) a.model = *model;
        if (k) a.k = *k;
        a.escalation = check_escalation(&escalation, a.escalation);
        if (refs) {
            a.kb_ids = resolve_bases(tx, *refs);
            write_agent_bases(tx, a.id, a.kb_ids);
        }
        a.updated_at = now;
        tx.exec("UPDATE knowledge_agents SET name = ?, description = ?, prompt = ?, model = ?, k = ?, escalation = ?, "
                "fallback_answer = ?, updated_at = ? WHERE id = ?",
                {a.name, a.description, a.prompt, core::to_json(a.model), static_cast<std::int64_t>(a.k),
                 core::to_json(escalation_json(a.escalation)), a.fallback_answer, now, a.id});
        return a;
    };
    co_return co_await store::co_write(store_, std::move(fn));
}

asio::awaitable<void> KnowledgeService::delete_agent(std::string id_or_name) {
    auto fn = [=](Tx& tx) {
        Agent a = require_agent(tx, id_or_name);
        tx.exec("DELETE FROM knowledge_agent_usage WHERE agent_id = ?", {a.id});
        tx.exec("DELETE FROM knowledge_agent_bases WHERE agent_id = ?", {a.id});
        tx.exec("DELETE FROM knowledge_agents WHERE id = ?", {a.id});
    };
    co_await store::co_write(store_, std::move(fn));
}

json::object KnowledgeService::agent_json(const Agent& a) {
    json::array names, ids;
    store_.read([&](Tx& tx) {
        for (const auto& id : a.kb_ids) {
            ids.emplace_back(id);
            auto row = tx.query_one("SELECT name FROM knowledge_bases WHERE id = ?", {id});
            names.emplace_back(row ? row->text(0) : id);
        }
    });
    return json::object{{"id", a.id},
                        {"name", a.name},
                        {"description", a.description},
                        {"prompt", a.prompt},
                        {"knowledge_bases", std::move(names)},
                        {"knowledge_base_ids", std::move(ids)},
                        {"model", a.model},
                        {"answerer", a.model.empty() ? "extractive" : "provider"},
                        {"k", a.k},
                        {"escalation", escalation_json(a.escalation)},
                        {"fallback_answer", a.fallback_answer},
                        {"created_at", core::format_time(a.created_at)},
                        {"updated_at", core::format_time(a.updated_at)}};
}

// --- asking -------------------------------------------------------------------------------------------------------

void KnowledgeService::ask_async(AskRequest request, std::function<void(std::exception_ptr, AskResult)> done) {
    asio::post(query_pool_, [this, request = std::move(request), done = std::move(done)]() mutable {
        Agent agent;
        try {
            check_input(request.input, "input");
            agent = get_agent(request.agent);
            AskResult result;
            auto escalate = [&](std::string reason) {
                result.escalate = true;
                result.escalation_reason = std::move(reason);
                result.answered_by = "fallback";
                result.answer = agent.fallback_answer.empty() ? internal::default_fallback(request.input)
                                                              : agent.fallback_answer;
            };
            if (agent.escalation.human_request && internal::asks_for_human(request.input)) {
                escalate("human_request");
                record_usage(agent.id, false, false, std::nullopt);
                done(nullptr, std::move(result));
                return;
            }
            for (const auto& phrase : agent.escalation.phrases) {
                if (internal::matches_phrase(request.input, phrase)) {
                    escalate("phrase");
                    record_usage(agent.id, false, false, std::nullopt);
                    done(nullptr, std::move(result));
                    return;
                }
            }
        } catch (...) {
            done(std::current_exception(), AskResult{});
            return;
        }
        // Bases with embeddings: the question is embedded first (asynchronously), then retrieval runs here.
        auto kb_ids = agent.kb_ids;
        auto input = request.input;
        embed_query_async(kb_ids, input, [this, agent = std::move(agent), request = std::move(request),
                                          done = std::move(done)](QueryVectors vectors) mutable {
            asio::post(query_pool_, [this, agent = std::move(agent), request = std::move(request), done = std::move(done),
                                     vectors = std::move(vectors)]() mutable {
                std::vector<SearchHit> hits;
                try {
                    hits = hybrid_search(agent.kb_ids, request.input, agent.k, vectors);
                } catch (...) {
                    done(std::current_exception(), AskResult{});
                    return;
                }
                finish_answer(agent, request, std::move(hits), std::move(done));
            });
        });
    });
}

void KnowledgeService::finish_answer(const Agent& agent, const AskRequest& request, std::vector<SearchHit> hits,
                                     std::function<void(std::exception_ptr, AskResult)> done) {
    AskResult result;
    result.sources = std::move(hits);
    auto fallback = [&](std::string reason) {
        result.escalate = true;
        result.escalation_reason = std::move(reason);
        result.answered_by = "fallback";
        result.answer = agent.fallback_answer.empty() ? internal::default_fallback(request.input) : agent.fallback_answer;
    };
    if (result.sources.empty()) {
        fallback("no_knowledge");
        record_usage(agent.id, false, false, std::nullopt);
        done(nullptr, std::move(result));
        return;
    }
    double best = 0;
    for (const auto& h : result.sources) best = std::max(best, h.score);  // hybrid order is by fused rank
    if (best < agent.escalation.min_score) {
        fallback("low_confidence");
        record_usage(agent.id, false, false, std::nullopt);
        done(nullptr, std::move(result));
        return;
    }
    if (agent.model.empty()) {
        result.answer = internal::extract_answer(request.input, result.sources);
        result.answered_by = "extractive";
        record_usage(agent.id, false, false, std::nullopt);
        done(nullptr, std::move(result));
        return;
    }
    // Provider: the prompt (rendered with the input, the passages and the dialog's variables) as the system
    // message, the input as the user message.
    if (!options_.llm) {
        done(std::make_exception_ptr(core::Unavailable("no LLM provider client is configured on this server",
                                                       "provider_unavailable")),
             AskResult{});
        return;
    }
    std::string context;
    for (std::size_t i = 0; i < result.sources.size(); ++i) {
        const auto& h = result.sources[i];
        context += fmt::format("[{}] {}{}{}\n\n", i + 1, h.heading, h.heading.empty() ? "" : "\n", h.text);
    }
    json::object root = request.variables;
    root["input"] = request.input;
    root["context"] = context;
    root["agent_name"] = agent.name;
    root["client"] = request.client;
    std::string system;
    auto compiled = core::Template::compile(agent.prompt);
    if (auto* t = std::get_if<core::Template>(&compiled)) system = t->render(core::JsonScope(root));
    if (agent.prompt.find("context") == std::string::npos) {
        system += "\n\nAnswer only from these knowledge base passages; if they do not contain the answer, say so.\n\n" +
                  context;
    }
    ChatRequest chat;
    if (auto* p = agent.model.if_contains("provider"); p && p->is_string()) chat.provider = p->get_string();
    chat.base_url = json::value_to<std::string>(agent.model.at("base_url"));
    chat.model = json::value_to<std::string>(agent.model.at("model"));
    if (auto* key = agent.model.if_contains("api_key_setting"); key && key->is_string()) {
        std::optional<json::value> secret = options_.settings ? options_.settings->get(std::string_view(key->get_string()))
                                                              : std::nullopt;
        if (!secret || !secret->is_string()) {
            done(std::make_exception_ptr(core::Unavailable(
                     fmt::format("the setting '{}' with the provider's API key is not set", std::string_view(key->get_string())),
                     "provider_unavailable")),
                 AskResult{});
            return;
        }
        chat.api_key = std::string(secret->get_string());
    }
    if (auto* t = agent.model.if_contains("temperature"); t && t->is_number()) chat.temperature = t->to_number<double>();
    if (auto* m = agent.model.if_contains("max_tokens"); m && m->is_int64()) chat.max_tokens = static_cast<int>(m->get_int64());
    if (auto* m = agent.model.if_contains("timeout_ms"); m && m->is_int64()) chat.timeout_ms = m->get_int64();
    chat.messages = {ChatMessage{"system", system}, ChatMessage{"user", request.input}};
    auto shared = std::make_shared<AskResult>(std::move(result));
    options_.llm->chat(std::move(chat), [this, shared, agent_id = agent.id, done = std::move(done)](ChatResult reply) mutable {
        // The usage is committed before the answer is handed on (on the query pool: never on the provider's
        // thread), so a caller that reads the agent's usage next sees this call.
        asio::post(query_pool_, [this, shared, agent_id, reply = std::move(reply), done = std::move(done)]() mutable {
            record_usage(agent_id, true, !reply.error.empty(), reply.usage);
            if (!reply.error.empty()) {
                done(std::make_exception_ptr(core::Unavailable("the LLM provider failed: " + reply.error, "provider_error")),
                     AskResult{});
                return;
            }
            shared->answer = std::move(reply.text);
            shared->answered_by = "provider";
            done(nullptr, std::move(*shared));
        });
    });
}

asio::awaitable<AskResult> KnowledgeService::ask(AskRequest request) {
    return asio::async_initiate<const asio::use_awaitable_t<>, void(std::exception_ptr, AskResult)>(
        [this](auto handler, AskRequest request) {
            auto executor = asio::get_associated_executor(handler);
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            ask_async(std::move(request), [shared, executor](std::exception_ptr error, AskResult result) {
                asio::post(executor, [shared, error, result = std::move(result)]() mutable {
                    (*shared)(error, std::move(result));
                });
            });
        },
        asio::use_awaitable, std::move(request));
}

// --- embeddings and hybrid retrieval ------------------------------------------------------------------------------

namespace {

/// The API key an embeddings or model config names (secret instance setting); "" when none is named.
/// Throws core::Unavailable when the named setting is not set.
std::string api_key_of(const json::object& config, const auth::InstanceSettings* settings) {
    auto* key = config.if_contains("api_key_setting");
    if (!key || !key->is_string()) return {};
    std::optional<json::value> secret = settings ? settings->get(std::string_view(key->get_string())) : std::nullopt;
    if (!secret || !secret->is_string()) {
        throw core::Unavailable(fmt::format("the setting '{}' with the provider's API key is not set",
                                            std::string_view(key->get_string())),
                                "provider_unavailable");
    }
    return std::string(secret->get_string());
}

EmbeddingRequest embedding_request(const json::object& config, const auth::InstanceSettings* settings) {
    EmbeddingRequest r;
    r.base_url = json::value_to<std::string>(config.at("base_url"));
    r.model = json::value_to<std::string>(config.at("model"));
    r.api_key = api_key_of(config, settings);
    if (auto* d = config.if_contains("dimensions"); d && d->is_int64()) r.dimensions = static_cast<int>(d->get_int64());
    if (auto* t = config.if_contains("timeout_ms"); t && t->is_int64()) r.timeout_ms = t->get_int64();
    return r;
}

/// The last `max_bytes` of `text`, starting at a UTF-8 character boundary.
std::string_view tail_of(std::string_view text, std::size_t max_bytes) {
    if (text.size() <= max_bytes) return text;
    text = text.substr(text.size() - max_bytes);
    while (!text.empty() && (static_cast<unsigned char>(text.front()) & 0xC0) == 0x80) text.remove_prefix(1);
    return text;
}

}  // namespace

std::string KnowledgeService::embed_texts(const json::object& config, const std::vector<std::string>& texts,
                                          std::vector<std::vector<float>>& out) {
    out.clear();
    if (!options_.embedder) return "no embeddings client is configured on this server";
    EmbeddingRequest base;
    try {
        base = embedding_request(config, options_.settings);
    } catch (const core::Error& e) {
        return e.what();
    }
    std::size_t dims = 0;
    for (std::size_t start = 0; start < texts.size(); start += kEmbeddingBatch) {
        if (stopping_) return "the server stopped";
        EmbeddingRequest request = base;
        const std::size_t end = std::min(texts.size(), start + kEmbeddingBatch);
        request.inputs.assign(texts.begin() + static_cast<std::ptrdiff_t>(start),
                              texts.begin() + static_cast<std::ptrdiff_t>(end));
        auto promise = std::make_shared<std::promise<EmbeddingResult>>();
        auto future = promise->get_future();
        options_.embedder->embed(std::move(request), [promise](EmbeddingResult r) { promise->set_value(std::move(r)); });
        // The embedder enforces the request's timeout (and retries within it); this wait is a safety net.
        if (future.wait_for(std::chrono::milliseconds(base.timeout_ms + 60'000)) != std::future_status::ready) {
            return "the embeddings provider did not answer";
        }
        EmbeddingResult result = future.get();
        if (!result.error.empty()) return "embeddings provider: " + result.error;
        if (result.vectors.size() != end - start) return "embeddings provider: wrong number of vectors";
        for (auto& v : result.vectors) {
            if (dims == 0) dims = v.size();
            if (v.size() != dims) return "embeddings provider: vectors of different lengths";
            if (!internal::normalize(v)) return "embeddings provider: a zero or invalid vector";
            out.push_back(std::move(v));
        }
    }
    return {};
}

void KnowledgeService::embed_query_async(const std::vector<std::string>& kb_ids, const std::string& text,
                                         std::function<void(QueryVectors)> done) {
    if (!options_.embedder || kb_ids.empty()) return done({});
    // Bases grouped by their embeddings settings: one provider call per distinct model.
    std::map<std::string, std::pair<json::object, std::vector<std::string>>> groups;
    store_.read([&](Tx& tx) {
        for (const auto& id : kb_ids) {
            auto row = tx.query_one("SELECT embeddings FROM knowledge_bases WHERE id = ?", {id});
            if (!row) continue;
            boost::system::error_code ec;
            auto config = json::parse(row->text(0), ec);
            if (ec || !config.is_object() || config.get_object().empty()) continue;
            auto& group = groups[row->text(0)];
            group.first = config.get_object();
            group.second.push_back(id);
        }
    });
    if (groups.empty()) return done({});
    struct Pending {
        std::mutex mutex;
        std::size_t left = 0;
        QueryVectors vectors;
        std::function<void(QueryVectors)> done;
    };
    auto pending = std::make_shared<Pending>();
    pending->left = groups.size();
    pending->done = std::move(done);
    auto finish_one = [pending](const std::vector<std::string>* ids, std::vector<float>* vector) {
        std::unique_lock lock(pending->mutex);
        if (ids && vector) {
            for (const auto& id : *ids) pending->vectors[id] = *vector;
        }
        if (--pending->left > 0) return;
        auto vectors = std::move(pending->vectors);
        lock.unlock();
        pending->done(std::move(vectors));
    };
    for (auto& [key, group] : groups) {
        EmbeddingRequest request;
        try {
            request = embedding_request(group.first, options_.settings);
        } catch (const core::Error& e) {
            core::log_event(spdlog::level::warn, "knowledge_query_embedding_failed",
                            fmt::format(R"("error":{})", core::json_quote(e.what())));
            finish_one(nullptr, nullptr);
            continue;
        }
        request.inputs = {text};
        auto ids = std::make_shared<std::vector<std::string>>(group.second);
        options_.embedder->embed(std::move(request), [finish_one, ids](EmbeddingResult r) {
            if (!r.error.empty() || r.vectors.size() != 1 || !internal::normalize(r.vectors[0])) {
                // Retrieval goes on with BM25 alone.
                core::log_event(spdlog::level::warn, "knowledge_query_embedding_failed",
                                fmt::format(R"("error":{})", core::json_quote(r.error.empty() ? "bad vector" : r.error)));
                finish_one(nullptr, nullptr);
                return;
            }
            finish_one(ids.get(), &r.vectors[0]);
        });
    }
}

asio::awaitable<KnowledgeService::QueryVectors> KnowledgeService::embed_query(std::vector<std::string> kb_ids,
                                                                              std::string text) {
    return asio::async_initiate<const asio::use_awaitable_t<>, void(QueryVectors)>(
        [this](auto handler, std::vector<std::string> kb_ids, std::string text) {
            auto executor = asio::get_associated_executor(handler);
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            embed_query_async(kb_ids, text, [shared, executor](QueryVectors vectors) {
                asio::post(executor, [shared, vectors = std::move(vectors)]() mutable { (*shared)(std::move(vectors)); });
            });
        },
        asio::use_awaitable, std::move(kb_ids), std::move(text));
}

std::vector<SearchHit> KnowledgeService::hybrid_search(const std::vector<std::string>& kb_ids, std::string_view query,
                                                       std::size_t k, const QueryVectors& vectors) {
    auto terms = internal::query_terms(query);
    if (vectors.empty()) {
        return store::read_value(store_, [&](Tx& tx) { return internal::search_chunks(tx, kb_ids, terms, k, df_cache_.get()); });
    }
    const std::size_t n = std::max(internal::kCandidatesPerSignal, 4 * k);
    // Vector neighbours first (building an index reads the store on its own), then one read for the rest.
    std::vector<internal::Neighbour> neighbours;
    for (const auto& [kb_id, vector] : vectors) {
        auto found = vectors_->nearest(store_, kb_id, vector, n);
        neighbours.insert(neighbours.end(), found.begin(), found.end());
    }
    std::sort(neighbours.begin(), neighbours.end(),
              [](const internal::Neighbour& a, const internal::Neighbour& b) { return a.similarity > b.similarity; });
    return store::read_value(store_, [&](Tx& tx) {
        std::vector<SearchHit> lexical = internal::search_chunks(tx, kb_ids, terms, n, df_cache_.get());
        struct Fused {
            SearchHit hit;
            double rrf = 0;
        };
        std::map<std::string, Fused> fused;
        auto key_of = [](const SearchHit& h) { return h.document_id + '#' + std::to_string(h.chunk); };
        for (std::size_t i = 0; i < lexical.size(); ++i) {
            auto& f = fused[key_of(lexical[i])];
            f.hit = std::move(lexical[i]);
            f.rrf += 1.0 / (internal::kRrfK + static_cast<double>(i + 1));
        }
        // The neighbours' chunks in one query; labels whose embedding is gone (removed since the index was
        // built) find no row and are skipped.
        std::unordered_map<std::int64_t, Row> rows;
        if (!neighbours.empty()) {
            std::string in;
            store::Params params;
            for (const auto& nb : neighbours) {
                in += in.empty() ? "?" : ", ?";
                params.emplace_back(nb.id);
            }
            for (auto& row : tx.query(
                     "SELECT e.id, c.kb_id, c.document_id, d.name, c.seq, c.heading, c.text FROM knowledge_embeddings e "
                     "JOIN knowledge_chunks c ON c.id = e.chunk_id JOIN knowledge_documents d ON d.id = c.document_id "
                     "WHERE e.id IN (" + in + ")",
                     params)) {
                rows.emplace(row.integer(0), std::move(row));
            }
        }
        std::size_t rank = 0;
        for (const auto& nb : neighbours) {
            if (rank == n) break;
            auto it = rows.find(nb.id);
            if (it == rows.end()) continue;
            const Row& row = it->second;
            SearchHit hit;
            hit.kb_id = row.text(1);
            hit.document_id = row.text(2);
            hit.document_name = row.text(3);
            hit.chunk = row.integer(4);
            hit.heading = row.text(5);
            hit.text = row.text(6);
            ++rank;
            auto& f = fused[key_of(hit)];
            if (f.hit.document_id.empty()) f.hit = std::move(hit);
            // The score stays 0..1 and comparable with BM25-only scores: the better of the lexical score and
            // the cosine similarity.
            f.hit.score = std::max(f.hit.score, std::round(std::clamp(nb.similarity, 0.0, 1.0) * 10000.0) / 10000.0);
            f.rrf += 1.0 / (internal::kRrfK + static_cast<double>(rank));
        }
        std::vector<Fused*> order;
        for (auto& [key, f] : fused) order.push_back(&f);
        std::sort(order.begin(), order.end(), [](const Fused* a, const Fused* b) {
            if (a->rrf != b->rrf) return a->rrf > b->rrf;
            return a->hit.score > b->hit.score;
        });
        std::vector<SearchHit> out;
        for (auto* f : order) {
            if (out.size() == k) break;
            out.push_back(std::move(f->hit));
        }
        return out;
    });
}

asio::awaitable<std::vector<SearchHit>> KnowledgeService::search_hybrid(std::vector<std::string> kb_ids, std::string query,
                                                                        std::size_t k) {
    check_input(query, "query");
    if (k < 1 || k > kMaxK) {
        throw core::BadRequest(fmt::format("'k' must be a whole number from 1 to {}", kMaxK), "invalid_field",
                               field_detail("k"));
    }
    QueryVectors vectors = co_await embed_query(kb_ids, query);
    co_return hybrid_search(kb_ids, query, k, vectors);
}

// --- operator copilot --------------------------------------------------------------------------------------------

namespace {

/// The base ids to look in (every base when `refs` is empty) and the query text, or nullopt for blank text.
std::optional<std::pair<std::vector<std::string>, std::string>> snippet_query(store::Store& store,
                                                                              std::string_view dialog_text,
                                                                              const std::vector<std::string>& refs) {
    std::string text(tail_of(dialog_text, kMaxQueryBytes));
    if (trim(text).empty() || !internal::valid_utf8(text)) return std::nullopt;
    std::vector<std::string> ids;
    store.read([&](Tx& tx) {
        if (refs.empty()) {
            for (const auto& row : tx.query("SELECT id FROM knowledge_bases ORDER BY name")) ids.push_back(row.text(0));
            return;
        }
        for (const auto& ref : refs) ids.push_back(require_base(tx, ref).id);
    });
    if (ids.empty()) return std::nullopt;
    return std::make_pair(std::move(ids), std::move(text));
}

}  // namespace

std::vector<SearchHit> KnowledgeService::snippets_for_dialog(std::string_view dialog_text, std::size_t k,
                                                             const std::vector<std::string>& kb_refs) {
    auto q = snippet_query(store_, dialog_text, kb_refs);
    if (!q) return {};
    return hybrid_search(q->first, q->second, std::clamp<std::size_t>(k, 1, kMaxK), {});
}

asio::awaitable<std::vector<SearchHit>> KnowledgeService::co_snippets_for_dialog(std::string dialog_text, std::size_t k,
                                                                                 std::vector<std::string> kb_refs) {
    auto q = snippet_query(store_, dialog_text, kb_refs);
    if (!q) co_return std::vector<SearchHit>{};
    QueryVectors vectors = co_await embed_query(q->first, q->second);
    co_return hybrid_search(q->first, q->second, std::clamp<std::size_t>(k, 1, kMaxK), vectors);
}

// --- token accounting ----------------------------------------------------------------------------------------------

void KnowledgeService::record_usage(const std::string& agent_id, bool provider_call, bool failed,
                                    std::optional<TokenUsage> usage) {
    const std::string day = core::format_time(clock_.now_ms()).substr(0, 10);
    const std::int64_t input = usage ? usage->input_tokens : 0;
    const std::int64_t output = usage ? usage->output_tokens : 0;
    auto fn = [=](Tx& tx) {
        // Only for an agent that still exists (it may have been deleted while the provider answered).
        tx.exec("INSERT INTO knowledge_agent_usage (agent_id, day, asks, provider_calls, errors, input_tokens, "
                "output_tokens) SELECT id, ?, 1, ?, ?, ?, ? FROM knowledge_agents WHERE id = ? "
                "ON CONFLICT (agent_id, day) DO UPDATE SET asks = asks + 1, provider_calls = provider_calls + "
                "excluded.provider_calls, errors = errors + excluded.errors, input_tokens = input_tokens + "
                "excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens",
                {day, std::int64_t{provider_call}, std::int64_t{failed}, input, output, agent_id});
    };
    try {
        if (provider_call) {
            store_.write_sync(fn);
        } else {
            store_.write(fn, [](std::exception_ptr) {});
        }
    } catch (const std::exception& e) {
        core::log_event(spdlog::level::warn, "knowledge_usage_not_recorded",
                        fmt::format(R"("agent":{},"error":{})", core::json_quote(agent_id), core::json_quote(e.what())));
    }
}

namespace {

bool valid_day(std::string_view d) {
    if (d.size() != 10 || d[4] != '-' || d[7] != '-') return false;
    for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
        if (d[i] < '0' || d[i] > '9') return false;
    }
    int month = (d[5] - '0') * 10 + (d[6] - '0');
    int day = (d[8] - '0') * 10 + (d[9] - '0');
    return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

/// Days since the epoch of a valid YYYY-MM-DD (civil calendar).
std::int64_t day_number(std::string_view d) {
    int y = std::stoi(std::string(d.substr(0, 4)));
    unsigned m = static_cast<unsigned>(std::stoi(std::string(d.substr(5, 2))));
    unsigned dd = static_cast<unsigned>(std::stoi(std::string(d.substr(8, 2))));
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + dd - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return static_cast<std::int64_t>(era) * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

std::vector<UsageDay> KnowledgeService::agent_usage(std::string_view agent_ref, std::string_view from,
                                                    std::string_view to) {
    const std::string today = core::format_time(clock_.now_ms()).substr(0, 10);
    std::string last = to.empty() ? today : std::string(to);
    std::string first = from.empty() ? core::format_time(clock_.now_ms() - 29LL * 86'400'000).substr(0, 10)
                                     : std::string(from);
    for (auto [value, field] : {std::pair{std::string_view(first), "from"}, std::pair{std::string_view(last), "to"}}) {
        if (!valid_day(value)) {
            throw core::BadRequest(fmt::format("'{}' must be a date YYYY-MM-DD", field), "invalid_field",
                                   field_detail(field));
        }
    }
    const std::int64_t span = day_number(last) - day_number(first) + 1;
    if (span < 1 || span > static_cast<std::int64_t>(kMaxUsageDays)) {
        throw core::BadRequest(fmt::format("'from'..'to' must span 1 to {} days", kMaxUsageDays), "invalid_field",
                               field_detail("from"));
    }
    std::vector<UsageDay> out;
    store_.read([&](Tx& tx) {
        Agent agent = require_agent(tx, agent_ref);
        for (const auto& row : tx.query("SELECT day, asks, provider_calls, errors, input_tokens, output_tokens FROM "
                                        "knowledge_agent_usage WHERE agent_id = ? AND day >= ? AND day <= ? ORDER BY day",
                                        {agent.id, first, last})) {
            out.push_back(UsageDay{row.text(0), row.integer(1), row.integer(2), row.integer(3), row.integer(4),
                                   row.integer(5)});
        }
    });
    return out;
}

}  // namespace parley::knowledge

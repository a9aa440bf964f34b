/// The index and the retrieval query, on a store transaction: chunks with their analyzed forms in
/// `knowledge_chunks`, two external-content FTS5 indexes over them (folded words; stems), BM25 per index,
/// reciprocal rank fusion, and a query-coverage score.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <string_view>
#include <vector>

#include "knowledge/internal/analyzer.h"
#include "knowledge/internal/chunker.h"
#include "knowledge/knowledge.h"
#include "store/store.h"

namespace parley::knowledge::internal {

/// Candidates taken from each index before fusion (at least; 4 × k when larger).
inline constexpr std::size_t kCandidatesPerSignal = 24;
/// Postings one BM25 query may rank (FTS5 scores every match, ~1 µs each): query terms are taken rarest
/// first while the sum of their document frequencies fits. The terms left out are the most common ones,
/// which BM25 weighs least and the coverage score still counts; when even the rarest term is over the budget
/// the newest matching passages are taken unscored (see retrieval.cpp). This bounds search time on large bases.
inline constexpr std::int64_t kPostingBudget = 2000;
/// Reciprocal rank fusion constant.
inline constexpr double kRrfK = 60.0;
/// score = coverage × (kCoverageWeight + (1 − kCoverageWeight) × fused rank / best possible fused rank):
/// coverage (the idf-weighted share of the query's stems the passage holds) bounds the score, so a passage
/// that matches one common word of the question never looks confident; the fused rank orders the rest.
inline constexpr double kCoverageWeight = 0.6;

/// The analyzed query: distinct folded words and distinct stems (at most kMaxQueryTerms each).
struct QueryTerms {
    std::vector<std::string> words;
    std::vector<std::string> stems;
    bool empty() const { return words.empty(); }
};
QueryTerms query_terms(std::string_view query);

/// A chunk with its analyzed heading and text (analysis runs on the ingest thread, not in the write).
struct IndexedChunk {
    Chunk chunk;
    Analyzed head;
    Analyzed body;
};
std::vector<IndexedChunk> analyze_chunks(std::vector<Chunk> chunks);

/// Inserts the chunks of one document (seq from 0) into the table and both indexes.
void insert_chunks(store::Tx& tx, const std::string& kb_id, const std::string& document_id,
                   const std::vector<IndexedChunk>& chunks);
/// Removes a document's chunks (and their embeddings) from the indexes and the tables; returns how many.
std::int64_t delete_chunks(store::Tx& tx, const std::string& document_id);
/// The ids of a document's stored embeddings (to take them out of the vector index after a delete).
std::vector<std::int64_t> embedding_ids(store::Tx& tx, const std::string& document_id);

/// Document frequencies of terms (per index), remembered between searches: counting a common term's
/// postings costs up to a few milliseconds on a large base. Cleared whenever the indexes change.
/// Thread-safe.
class DfCache {
public:
    std::optional<std::int64_t> get(const std::string& key) const;
    void put(const std::string& key, std::int64_t df);
    void clear();

private:
    static constexpr std::size_t kMaxEntries = 200'000;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::int64_t> map_;
};

/// The top `k` passages of the bases for the query. `cache` may be null.
std::vector<SearchHit> search_chunks(store::Tx& tx, const std::vector<std::string>& kb_ids, const QueryTerms& terms,
                                     std::size_t k, DfCache* cache = nullptr);

}  // namespace parley::knowledge::internal

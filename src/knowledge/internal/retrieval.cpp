#include "knowledge/internal/retrieval.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "knowledge/internal/analyzer.h"

namespace parley::knowledge::internal {

namespace {

std::vector<std::string> split_space(std::string_view s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < s.size()) {
        auto sp = s.find(' ', start);
        if (sp == std::string_view::npos) sp = s.size();
        if (sp > start) out.emplace_back(s.substr(start, sp - start));
        start = sp + 1;
    }
    return out;
}

/// `{head body} : ("a" OR "b")` — terms are folded alphanumerics, so quoting is safe. The knowledge base is
/// filtered by a join, not in the MATCH: a kb_id phrase would make BM25 walk every posting of the base.
std::string match_expression(const std::vector<std::string>& terms, std::string_view head_column,
                             std::string_view body_column, std::string_view join = " OR ") {
    std::string any;
    for (const auto& t : terms) {
        if (!any.empty()) any += join;
        any += '"' + t + '"';
    }
    return fmt::format("{{{} {}}} : ({})", head_column, body_column, any);
}

/// Chunks holding `term` (any column; terms never equal kb ids). Counting matches walks only rowids, ~10×
/// cheaper than fts5vocab, which decodes every position.
std::int64_t document_frequency(store::Tx& tx, std::string_view table, const std::string& term, DfCache* cache) {
    std::string key = std::string(table) + '\n' + term;
    if (cache) {
        if (auto hit = cache->get(key)) return *hit;
    }
    auto row = tx.query_one(fmt::format("SELECT count(*) FROM {0} WHERE {0} MATCH ?", table), {'"' + term + '"'});
    std::int64_t df = row ? row->integer(0) : 0;
    if (cache) cache->put(key, df);
    return df;
}

/// The terms to rank: rarest first while their postings fit kPostingBudget. Empty when even the rarest
/// term is over the budget (see unranked()).
std::vector<std::string> within_budget(const std::vector<std::string>& terms, const std::vector<std::int64_t>& df) {
    std::vector<std::size_t> order(terms.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return df[a] < df[b]; });
    std::vector<std::string> out;
    std::int64_t total = 0;
    for (auto i : order) {
        if (df[i] == 0) continue;  // matches nothing
        if (total + df[i] > kPostingBudget) break;
        total += df[i];
        out.push_back(terms[i]);
    }
    return out;
}

/// Matches in the bases: BM25-ranked, or (`ranked` false) newest chunks first without scoring.
std::vector<std::int64_t> matches(store::Tx& tx, std::string_view table, const std::vector<std::string>& kb_ids,
                                  const std::string& expression, std::size_t limit, bool ranked) {
    std::string in;
    store::Params params{expression};
    for (const auto& id : kb_ids) {
        in += in.empty() ? "?" : ", ?";
        params.emplace_back(id);
    }
    params.emplace_back(static_cast<std::int64_t>(limit));
    std::vector<std::int64_t> out;
    tx.for_each(fmt::format("SELECT f.rowid FROM {0} f JOIN knowledge_chunks c ON c.id = f.rowid WHERE {0} MATCH ? "
                            "AND c.kb_id IN ({1}) ORDER BY {2} LIMIT ?",
                            table, in, ranked ? "f.rank" : "f.rowid DESC"),
                params, [&](const store::Row& row) {
                    out.push_back(row.integer(0));
                    return true;
                });
    return out;
}

/// One signal's candidates: BM25 over the terms within the posting budget; when even the rarest term is too
/// common for that (near-stop-words on a large base), the newest passages that hold all the terms, then any
/// of them, unscored — the coverage score orders them afterwards.
std::vector<std::int64_t> candidates(store::Tx& tx, std::string_view table, const std::vector<std::string>& kb_ids,
                                     const std::vector<std::string>& terms, const std::vector<std::int64_t>& df,
                                     std::string_view head, std::string_view body, std::size_t n) {
    auto budget = within_budget(terms, df);
    if (!budget.empty()) return matches(tx, table, kb_ids, match_expression(budget, head, body), n, true);
    std::vector<std::string> present;
    for (std::size_t i = 0; i < terms.size(); ++i) {
        if (df[i] > 0) present.push_back(terms[i]);
    }
    if (present.empty()) return {};
    auto out = matches(tx, table, kb_ids, match_expression(present, head, body, " AND "), n, false);
    if (out.size() < n) {
        for (auto id : matches(tx, table, kb_ids, match_expression(present, head, body), n, false)) {
            if (out.size() == n) break;
            if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
        }
    }
    return out;
}

}  // namespace

QueryTerms query_terms(std::string_view query) {
    QueryTerms out;
    Analyzed a = analyze(query);
    std::unordered_set<std::string> seen_words, seen_stems;
    auto words = split_space(a.words);
    auto stems = split_space(a.stems);
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (out.words.size() < kMaxQueryTerms && seen_words.insert(words[i]).second) out.words.push_back(words[i]);
        if (i < stems.size() && out.stems.size() < kMaxQueryTerms && seen_stems.insert(stems[i]).second) {
            out.stems.push_back(stems[i]);
        }
    }
    return out;
}

std::vector<IndexedChunk> analyze_chunks(std::vector<Chunk> chunks) {
    std::vector<IndexedChunk> out;
    out.reserve(chunks.size());
    for (auto& c : chunks) {
        IndexedChunk ic;
        ic.head = analyze(c.heading);
        ic.body = analyze(c.text);
        ic.chunk = std::move(c);
        out.push_back(std::move(ic));
    }
    return out;
}

void insert_chunks(store::Tx& tx, const std::string& kb_id, const std::string& document_id,
                   const std::vector<IndexedChunk>& chunks) {
    std::int64_t seq = 0;
    for (const auto& ic : chunks) {
        const Chunk& chunk = ic.chunk;
        const Analyzed& head = ic.head;
        const Analyzed& body = ic.body;
        tx.exec("INSERT INTO knowledge_chunks (kb_id, document_id, seq, heading, text, head_words, words, head_stems, "
                "stems) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {kb_id, document_id, seq, chunk.heading, chunk.text, head.words, body.words, head.stems, body.stems});
        auto id = tx.query_one("SELECT last_insert_rowid()")->integer(0);
        tx.exec("INSERT INTO knowledge_fts_words (rowid, kb_id, head_words, words) VALUES (?, ?, ?, ?)",
                {id, kb_id, head.words, body.words});
        tx.exec("INSERT INTO knowledge_fts_stems (rowid, kb_id, head_stems, stems) VALUES (?, ?, ?, ?)",
                {id, kb_id, head.stems, body.stems});
        ++seq;
    }
}

std::vector<std::int64_t> embedding_ids(store::Tx& tx, const std::string& document_id) {
    std::vector<std::int64_t> out;
    for (const auto& row : tx.query("SELECT id FROM knowledge_embeddings WHERE document_id = ?", {document_id})) {
        out.push_back(row.integer(0));
    }
    return out;
}

std::int64_t delete_chunks(store::Tx& tx, const std::string& document_id) {
    tx.exec("DELETE FROM knowledge_embeddings WHERE document_id = ?", {document_id});
    tx.exec("INSERT INTO knowledge_fts_words (knowledge_fts_words, rowid, kb_id, head_words, words) "
            "SELECT 'delete', id, kb_id, head_words, words FROM knowledge_chunks WHERE document_id = ?",
            {document_id});
    tx.exec("INSERT INTO knowledge_fts_stems (knowledge_fts_stems, rowid, kb_id, head_stems, stems) "
            "SELECT 'delete', id, kb_id, head_stems, stems FROM knowledge_chunks WHERE document_id = ?",
            {document_id});
    return tx.exec("DELETE FROM knowledge_chunks WHERE document_id = ?", {document_id});
}

std::optional<std::int64_t> DfCache::get(const std::string& key) const {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    return it->second;
}

void DfCache::put(const std::string& key, std::int64_t df) {
    std::lock_guard lock(mutex_);
    if (map_.size() >= kMaxEntries) map_.clear();
    map_[key] = df;
}

void DfCache::clear() {
    std::lock_guard lock(mutex_);
    map_.clear();
}

std::vector<SearchHit> search_chunks(store::Tx& tx, const std::vector<std::string>& kb_ids, const QueryTerms& terms,
                                     std::size_t k, DfCache* cache) {
    std::vector<SearchHit> hits;
    if (terms.empty() || kb_ids.empty() || k == 0) return hits;
    const std::size_t n = std::max(kCandidatesPerSignal, 4 * k);
    std::vector<std::int64_t> word_df, stem_df;
    for (const auto& w : terms.words) word_df.push_back(document_frequency(tx, "knowledge_fts_words", w, cache));
    for (const auto& s : terms.stems) stem_df.push_back(document_frequency(tx, "knowledge_fts_stems", s, cache));
    auto by_words = candidates(tx, "knowledge_fts_words", kb_ids, terms.words, word_df, "head_words", "words", n);
    auto by_stems = candidates(tx, "knowledge_fts_stems", kb_ids, terms.stems, stem_df, "head_stems", "stems", n);

    std::unordered_map<std::int64_t, double> rrf;
    for (std::size_t i = 0; i < by_words.size(); ++i) rrf[by_words[i]] += 1.0 / (kRrfK + static_cast<double>(i + 1));
    for (std::size_t i = 0; i < by_stems.size(); ++i) rrf[by_stems[i]] += 1.0 / (kRrfK + static_cast<double>(i + 1));
    if (rrf.empty()) return hits;

    // Inverse document frequency of each query stem (from the stems index vocabulary).
    double total = static_cast<double>(
        std::max<std::int64_t>(1, tx.query_one("SELECT coalesce(max(id), 1) FROM knowledge_chunks")->integer(0)));
    std::vector<double> weights;
    double weight_sum = 0;
    for (std::size_t i = 0; i < terms.stems.size(); ++i) {
        double df = static_cast<double>(stem_df[i]);
        double w = std::log(1.0 + total / (df + 1.0));
        weights.push_back(w);
        weight_sum += w;
    }

    struct Candidate {
        std::int64_t id;
        double score;
    };
    std::vector<Candidate> candidates;
    candidates.reserve(rrf.size());
    const double best_rrf = 2.0 / (kRrfK + 1.0);
    std::unordered_map<std::int64_t, SearchHit> rows;
    for (const auto& [id, fused] : rrf) {
        auto row = tx.query_one(
            "SELECT c.kb_id, c.document_id, d.name, c.seq, c.heading, c.text, c.head_stems, c.stems "
            "FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id WHERE c.id = ?",
            {id});
        if (!row) continue;
        std::unordered_set<std::string> present;
        for (auto& s : split_space(row->text(6))) present.insert(std::move(s));
        for (auto& s : split_space(row->text(7))) present.insert(std::move(s));
        double covered = 0;
        for (std::size_t i = 0; i < terms.stems.size(); ++i) {
            if (present.count(terms.stems[i])) covered += weights[i];
        }
        double coverage = weight_sum > 0 ? covered / weight_sum : 0.0;
        double score = coverage * (kCoverageWeight + (1.0 - kCoverageWeight) * (fused / best_rrf));
        candidates.push_back({id, score});
        SearchHit hit;
        hit.kb_id = row->text(0);
        hit.document_id = row->text(1);
        hit.document_name = row->text(2);
        hit.chunk = row->integer(3);
        hit.heading = row->text(4);
        hit.text = row->text(5);
        hit.score = std::round(score * 10000.0) / 10000.0;
        rows.emplace(id, std::move(hit));
    }
    std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
        return a.score != b.score ? a.score > b.score : a.id < b.id;
    });
    for (const auto& c : candidates) {
        if (hits.size() == k) break;
        hits.push_back(std::move(rows.at(c.id)));
    }
    return hits;
}

}  // namespace parley::knowledge::internal

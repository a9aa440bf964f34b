/// Vector search for knowledge bases with embeddings: chunk vectors stored in `knowledge_embeddings` (float32,
/// unit length) and one in-memory hnswlib index (inner product = cosine) per base, built from the table on the
/// first search and kept up to date as documents are indexed or removed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "store/store.h"

namespace parley::knowledge::internal {

/// hnswlib parameters (M, ef_construction, ef at search; a search returns at most kHnswEfSearch neighbours).
inline constexpr std::size_t kHnswM = 16;
inline constexpr std::size_t kHnswEfConstruction = 40;
inline constexpr std::size_t kHnswEfSearch = 64;
/// Bases with at most this many vectors build their index inside the first search (well under a second);
/// larger ones build in the background while searches use BM25 alone.
inline constexpr std::int64_t kSyncBuildLimit = 5000;

/// Scales `v` to unit length; false for a zero or non-finite vector.
bool normalize(std::vector<float>& v);
/// float32 little-endian bytes and back (empty vector for a blob whose size is not a multiple of 4).
std::string vector_blob(const std::vector<float>& v);
std::vector<float> blob_vector(const std::string& blob);

/// One stored embedding: its row id in `knowledge_embeddings` (the index label; never reused) and vector.
struct StoredVector {
    std::int64_t id = 0;
    std::vector<float> vector;
};

/// Nearest stored embeddings: embedding id and cosine similarity, best first.
struct Neighbour {
    std::int64_t id = 0;
    double similarity = 0;
};

/// The per-base indexes. Thread-safety: every method may be called from any thread; each base's index has a
/// shared mutex (searches share it; additions and removals take it alone). Changes made while an index is
/// being built from the table bump the base's generation, and such a build is used for its one search only,
/// so no change is lost. Labels are embedding row ids (AUTOINCREMENT), so an entry applied late can never
/// stand for a different chunk: searches look every label up in the table and skip the missing ones.
class VectorIndexes {
public:
    /// `background` runs a build off the searching thread (the service's ingest pool); empty → builds inline.
    explicit VectorIndexes(std::function<void(std::function<void()>)> background = {});
    ~VectorIndexes();
    VectorIndexes(const VectorIndexes&) = delete;
    VectorIndexes& operator=(const VectorIndexes&) = delete;

    /// Adds committed embeddings to the base's index if it is built (otherwise the next build reads them).
    void add(const std::string& kb_id, const std::vector<StoredVector>& vectors);
    /// Removes embeddings (by id) from the base's index if it is built.
    void remove(const std::string& kb_id, const std::vector<std::int64_t>& ids);
    /// Forgets the base's index (deleted base, changed embeddings settings); rebuilt on the next search.
    void drop(const std::string& kb_id);
    /// The `n` nearest embeddings of the base to `query` (unit length). Builds the index first when needed,
    /// in its own read of `store` (so never call it inside a read) — inline up to kSyncBuildLimit vectors,
    /// else in the background, and until it is built (or while another search builds it) nothing is found.
    /// A query of another length than the index's vectors finds nothing. Entries may name embeddings deleted
    /// meanwhile: look them up.
    std::vector<Neighbour> nearest(store::Store& store, const std::string& kb_id, const std::vector<float>& query,
                                   std::size_t n);
    /// "ready" (built), "building" or "none" (built on the next search).
    std::string state(const std::string& kb_id);
    /// Entries of the base's built index (0 when not built), for tests.
    std::size_t size_for_test(const std::string& kb_id);

private:
    struct Index;
    std::shared_ptr<Index> find(const std::string& kb_id);
    std::shared_ptr<Index> build(store::Store& store, const std::string& kb_id);
    std::function<void(std::function<void()>)> background_;
    std::mutex mutex_;  ///< guards indexes_, generations_, building_
    std::map<std::string, std::shared_ptr<Index>> indexes_;
    std::map<std::string, std::uint64_t> generations_;
    std::set<std::string> building_;
};

}  // namespace parley::knowledge::internal

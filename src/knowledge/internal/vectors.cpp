#include "knowledge/internal/vectors.h"

#include <hnswlib/hnswlib.h>

#include <cmath>
#include <cstring>
#include <shared_mutex>
#include <unordered_set>

namespace parley::knowledge::internal {

bool normalize(std::vector<float>& v) {
    double sum = 0;
    for (float x : v) {
        if (!std::isfinite(x)) return false;
        sum += static_cast<double>(x) * x;
    }
    if (!(sum > 0) || !std::isfinite(sum)) return false;
    const double scale = 1.0 / std::sqrt(sum);
    for (float& x : v) x = static_cast<float>(x * scale);
    return true;
}

std::string vector_blob(const std::vector<float>& v) {
    static_assert(sizeof(float) == 4);
    std::string out(v.size() * 4, '\0');
    for (std::size_t i = 0; i < v.size(); ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, &v[i], 4);
        for (int b = 0; b < 4; ++b) out[i * 4 + b] = static_cast<char>((bits >> (8 * b)) & 0xFF);
    }
    return out;
}

std::vector<float> blob_vector(const std::string& blob) {
    std::vector<float> out;
    if (blob.size() % 4 != 0) return out;
    out.resize(blob.size() / 4);
    for (std::size_t i = 0; i < out.size(); ++i) {
        std::uint32_t bits = 0;
        for (int b = 0; b < 4; ++b) bits |= static_cast<std::uint32_t>(static_cast<unsigned char>(blob[i * 4 + b])) << (8 * b);
        std::memcpy(&out[i], &bits, 4);
    }
    return out;
}

/// One base's hnswlib index. `mutex` guards everything below it.
struct VectorIndexes::Index {
    explicit Index(std::size_t d, std::size_t capacity)
        : dims(d),
          space(d),
          hnsw(std::make_unique<hnswlib::HierarchicalNSW<float>>(&space, std::max<std::size_t>(capacity, 64), kHnswM,
                                                                 kHnswEfConstruction)) {
        hnsw->setEf(kHnswEfSearch);
    }

    void insert(const StoredVector& v) {
        if (v.vector.size() != dims) return;
        if (hnsw->cur_element_count >= hnsw->max_elements_) hnsw->resizeIndex(hnsw->max_elements_ * 2);
        hnsw->addPoint(v.vector.data(), static_cast<hnswlib::labeltype>(v.id));
        if (labels.insert(v.id).second) ++live;
    }
    void erase(std::int64_t id) {
        if (labels.erase(id) == 0) return;
        hnsw->markDelete(static_cast<hnswlib::labeltype>(id));
        --live;
        ++deleted;
    }

    std::shared_mutex mutex;
    const std::size_t dims;
    hnswlib::InnerProductSpace space;
    std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnsw;
    std::unordered_set<std::int64_t> labels;
    std::size_t live = 0;
    std::size_t deleted = 0;
};

VectorIndexes::VectorIndexes(std::function<void(std::function<void()>)> background)
    : background_(std::move(background)) {}
VectorIndexes::~VectorIndexes() = default;

std::shared_ptr<VectorIndexes::Index> VectorIndexes::find(const std::string& kb_id) {
    std::lock_guard lock(mutex_);
    auto it = indexes_.find(kb_id);
    return it == indexes_.end() ? nullptr : it->second;
}

void VectorIndexes::add(const std::string& kb_id, const std::vector<StoredVector>& vectors) {
    std::shared_ptr<Index> index;
    {
        std::lock_guard lock(mutex_);
        ++generations_[kb_id];
        if (auto it = indexes_.find(kb_id); it != indexes_.end()) index = it->second;
    }
    if (!index) return;
    std::unique_lock lock(index->mutex);
    for (const auto& v : vectors) index->insert(v);
}

void VectorIndexes::remove(const std::string& kb_id, const std::vector<std::int64_t>& ids) {
    std::shared_ptr<Index> index;
    {
        std::lock_guard lock(mutex_);
        ++generations_[kb_id];
        if (auto it = indexes_.find(kb_id); it != indexes_.end()) index = it->second;
    }
    if (!index) return;
    bool rebuild = false;
    {
        std::unique_lock lock(index->mutex);
        for (auto id : ids) index->erase(id);
        // Deleted entries keep their slots and slow searches down: past half the index, build it afresh.
        rebuild = index->deleted > 1000 && index->deleted > index->live;
    }
    if (rebuild) drop(kb_id);
}

void VectorIndexes::drop(const std::string& kb_id) {
    std::lock_guard lock(mutex_);
    ++generations_[kb_id];
    indexes_.erase(kb_id);
}

std::shared_ptr<VectorIndexes::Index> VectorIndexes::build(store::Store& store, const std::string& kb_id) {
    std::uint64_t generation = 0;
    {
        std::lock_guard lock(mutex_);
        generation = generations_[kb_id];
    }
    // Everything committed before `generation` was read is in this read's snapshot; a change applied after it
    // bumps the generation, and then this build serves this search only.
    std::shared_ptr<Index> index;
    store.read([&](store::Tx& tx) {
        auto count = tx.query_one("SELECT count(*) FROM knowledge_embeddings WHERE kb_id = ?", {kb_id})->integer(0);
        tx.for_each("SELECT id, vector FROM knowledge_embeddings WHERE kb_id = ? ORDER BY id", {kb_id},
                    [&](const store::Row& row) {
                        StoredVector v{row.integer(0), blob_vector(row.text(1))};
                        if (v.vector.empty()) return true;
                        if (!index) index = std::make_shared<Index>(v.vector.size(), static_cast<std::size_t>(count) + 64);
                        index->insert(v);
                        return true;
                    });
    });
    if (!index) return nullptr;  // nothing embedded yet: nothing to cache
    std::lock_guard lock(mutex_);
    if (generations_[kb_id] == generation && !indexes_.count(kb_id)) indexes_[kb_id] = index;
    return index;
}

std::vector<Neighbour> VectorIndexes::nearest(store::Store& store, const std::string& kb_id,
                                              const std::vector<float>& query, std::size_t n) {
    std::vector<Neighbour> out;
    auto index = find(kb_id);
    if (!index) {
        {
            std::lock_guard lock(mutex_);
            if (!building_.insert(kb_id).second) return out;  // another search is building it
        }
        std::int64_t count = 0;
        store.read([&](store::Tx& tx) {
            count = tx.query_one("SELECT count(*) FROM knowledge_embeddings WHERE kb_id = ?", {kb_id})->integer(0);
        });
        auto built = [this, kb_id] {
            std::lock_guard lock(mutex_);
            building_.erase(kb_id);
        };
        if (count > kSyncBuildLimit && background_) {
            background_([this, &store, kb_id, built] {
                try {
                    build(store, kb_id);
                } catch (const std::exception&) {
                    // The next search tries again.
                }
                built();
            });
            return out;
        }
        try {
            index = build(store, kb_id);
        } catch (...) {
            built();
            throw;
        }
        built();
    }
    if (!index || n == 0) return out;
    std::shared_lock lock(index->mutex);
    if (query.size() != index->dims || index->live == 0) return out;
    auto found = index->hnsw->searchKnn(query.data(), std::min({n, index->live, kHnswEfSearch}));
    lock.unlock();
    out.resize(found.size());
    for (std::size_t i = found.size(); i-- > 0;) {  // the queue pops the farthest first
        out[i] = Neighbour{static_cast<std::int64_t>(found.top().second), 1.0 - static_cast<double>(found.top().first)};
        found.pop();
    }
    return out;
}

std::string VectorIndexes::state(const std::string& kb_id) {
    std::lock_guard lock(mutex_);
    if (indexes_.count(kb_id)) return "ready";
    return building_.count(kb_id) ? "building" : "none";
}

std::size_t VectorIndexes::size_for_test(const std::string& kb_id) {
    auto index = find(kb_id);
    if (!index) return 0;
    std::shared_lock lock(index->mutex);
    return index->live;
}

}  // namespace parley::knowledge::internal

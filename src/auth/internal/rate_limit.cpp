#include "auth/internal/rate_limit.h"

#include <algorithm>
#include <cmath>

namespace parley::auth::internal {

TokenBucketLimiter::TokenBucketLimiter(double burst, double refill_per_minute, std::size_t max_keys)
    : burst_(std::max(1.0, burst)), per_ms_(std::max(1e-9, refill_per_minute / 60'000.0)), max_keys_(max_keys) {}

void TokenBucketLimiter::refill(Bucket& bucket, std::int64_t now_ms) const {
    if (now_ms > bucket.updated_ms) {
        bucket.tokens = std::min(burst_, bucket.tokens + static_cast<double>(now_ms - bucket.updated_ms) * per_ms_);
        bucket.updated_ms = now_ms;
    }
}

std::int64_t TokenBucketLimiter::acquire(const std::string& key, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    auto it = buckets_.find(key);
    if (it == buckets_.end()) {
        if (buckets_.size() >= max_keys_) {
            for (auto i = buckets_.begin(); i != buckets_.end();) {
                refill(i->second, now_ms);
                i = i->second.tokens >= burst_ ? buckets_.erase(i) : std::next(i);
            }
        }
        it = buckets_.emplace(key, Bucket{burst_, now_ms}).first;
    }
    Bucket& bucket = it->second;
    refill(bucket, now_ms);
    if (bucket.tokens >= 1.0) {
        bucket.tokens -= 1.0;
        return 0;
    }
    double wait_ms = (1.0 - bucket.tokens) / per_ms_;
    return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(wait_ms / 1000.0)));
}

}  // namespace parley::auth::internal

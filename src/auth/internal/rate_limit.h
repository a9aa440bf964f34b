/// A keyed token-bucket limiter (per client IP) for login and password-reset requests.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace parley::auth::internal {

/// Each key holds up to `burst` tokens, refilled at `refill_per_minute`; a request takes one. Memory is bounded:
/// once `max_keys` keys are tracked, full (idle) buckets are dropped. Thread-safe (one mutex; callers are the
/// login and reset routes, which are rare next to argon2 verification).
class TokenBucketLimiter {
public:
    TokenBucketLimiter(double burst, double refill_per_minute, std::size_t max_keys = 100'000);

    /// Takes a token for `key` at `now_ms`. Returns 0 when allowed, else the seconds until one is available.
    std::int64_t acquire(const std::string& key, std::int64_t now_ms);

private:
    struct Bucket {
        double tokens;
        std::int64_t updated_ms;
    };
    void refill(Bucket& bucket, std::int64_t now_ms) const;

    double burst_;
    double per_ms_;
    std::size_t max_keys_;
    std::mutex mutex_;
    std::unordered_map<std::string, Bucket> buckets_;  // guarded by mutex_
};

}  // namespace parley::auth::internal

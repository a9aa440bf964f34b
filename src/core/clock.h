/// Time as an injected dependency, so timers, sessions, lockouts and SLA are testable without sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace parley::core {

/// Wall-clock time source. Implementations are thread-safe.
class Clock {
public:
    virtual ~Clock() = default;
    /// Milliseconds since the Unix epoch.
    virtual std::int64_t now_ms() const = 0;
};

/// The real clock.
class SystemClock final : public Clock {
public:
    std::int64_t now_ms() const override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
};

/// A clock tests move by hand. Thread-safe.
class FakeClock final : public Clock {
public:
    explicit FakeClock(std::int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}
    std::int64_t now_ms() const override { return now_.load(); }
    void advance_ms(std::int64_t delta) { now_ += delta; }
    void set_ms(std::int64_t value) { now_ = value; }

private:
    std::atomic<std::int64_t> now_;
};

/// ISO-8601 UTC text ("2026-11-24T10:00:00.123Z") for a millisecond timestamp.
std::string format_time(std::int64_t ms);

}  // namespace parley::core

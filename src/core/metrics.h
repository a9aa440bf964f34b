/// Prometheus metrics: counters, gauges and histograms with labels, rendered in the text exposition format.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace parley::core {

/// A cumulative histogram with fixed upper bounds (seconds or any unit). observe() is lock-free.
class Histogram {
public:
    explicit Histogram(std::vector<double> bounds);
    void observe(double value);
    /// Appends `name_bucket{labels,le=..}`, `name_sum`, `name_count` lines.
    void render(std::string& out, const std::string& name, const std::string& labels) const;
    std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // one per bound plus +Inf
    std::atomic<std::uint64_t> count_{0};
    std::atomic<std::uint64_t> sum_micros_{0};  // sum kept in millionths of the unit
};

/// Latency buckets in seconds from 50 µs to 10 s.
std::vector<double> latency_buckets();

/// Owns every metric of the process; created once by `app` and handed to modules (no globals).
/// Thread-safety: family/child creation takes a mutex; updating a returned metric is lock-free.
class Metrics {
public:
    /// The counter `name` with `labels` (already formatted: `route="/x",method="GET"`), created on first use.
    std::atomic<std::uint64_t>& counter(const std::string& name, const std::string& help, const std::string& labels = {});
    std::atomic<std::int64_t>& gauge(const std::string& name, const std::string& help, const std::string& labels = {});
    Histogram& histogram(const std::string& name, const std::string& help, const std::string& labels = {},
                         const std::vector<double>& bounds = latency_buckets());
    /// A gauge computed when scraped (queue depths, open sockets owned elsewhere).
    void gauge_fn(const std::string& name, const std::string& help, std::function<double()> read);

    /// The whole registry in Prometheus text format 0.0.4.
    std::string render() const;

private:
    struct Family {
        std::string help;
        std::string type;
        std::map<std::string, std::unique_ptr<std::atomic<std::uint64_t>>> counters;
        std::map<std::string, std::unique_ptr<std::atomic<std::int64_t>>> gauges;
        std::map<std::string, std::unique_ptr<Histogram>> histograms;
        std::function<double()> read;
    };
    Family& family(const std::string& name, const std::string& help, const char* type);

    mutable std::mutex mutex_;
    std::map<std::string, Family> families_;
};

/// Escapes a label value for the exposition format.
std::string label_value(std::string_view raw);

}  // namespace parley::core

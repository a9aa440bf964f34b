#include "core/ids.h"

#include <sys/random.h>

#include <array>
#include <atomic>
#include <chrono>
#include <stdexcept>

namespace parley::core {

namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void fill_random(unsigned char* out, std::size_t n) {
    while (n > 0) {
        ssize_t got = getrandom(out, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error("getrandom failed");
        }
        out += got;
        n -= static_cast<std::size_t>(got);
    }
}

}  // namespace

std::string new_id() {
    // Random bytes from a per-thread buffer refilled in blocks: one syscall per 32 ids.
    thread_local std::array<unsigned char, 320> pool;
    thread_local std::size_t used = pool.size();
    if (used + 10 > pool.size()) {
        fill_random(pool.data(), pool.size());
        used = 0;
    }
    const unsigned char* r = pool.data() + used;
    used += 10;

    auto ms = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    std::string out(26, '0');
    // 10 chars of time (50 bits, top 2 zero), 16 chars of sequence and randomness (80 bits).
    for (int i = 9; i >= 0; --i) {
        out[static_cast<std::size_t>(i)] = kAlphabet[ms & 31];
        ms >>= 5;
    }
    // 40 bits of a process-wide counter (random start), then 40 random bits: ids made in the same millisecond
    // by this process still sort in the order they were made.
    static std::atomic<std::uint64_t> sequence{[] {
        std::uint64_t start = 0;
        fill_random(reinterpret_cast<unsigned char*>(&start), sizeof start);
        return start & ((std::uint64_t{1} << 39) - 1);
    }()};
    std::uint64_t seq = sequence.fetch_add(1, std::memory_order_relaxed) & ((std::uint64_t{1} << 40) - 1);
    unsigned __int128 bits = seq;
    for (int i = 0; i < 5; ++i) bits = (bits << 8) | r[i];
    for (int i = 25; i >= 10; --i) {
        out[static_cast<std::size_t>(i)] = kAlphabet[static_cast<unsigned>(bits & 31)];
        bits >>= 5;
    }
    return out;
}

std::string id_floor(std::int64_t ms) {
    auto t = static_cast<std::uint64_t>(ms < 0 ? 0 : ms);
    std::string out(26, '0');
    for (int i = 9; i >= 0; --i) {
        out[static_cast<std::size_t>(i)] = kAlphabet[t & 31];
        t >>= 5;
    }
    return out;
}

std::string random_hex(std::size_t bytes) {
    std::string raw(bytes, '\0');
    fill_random(reinterpret_cast<unsigned char*>(raw.data()), bytes);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes * 2);
    for (unsigned char c : raw) {
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
    }
    return out;
}

bool looks_like_id(std::string_view id) {
    if (id.size() != 26) return false;
    for (char c : id) {
        bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U');
        if (!ok) return false;
    }
    return true;
}

}  // namespace parley::core

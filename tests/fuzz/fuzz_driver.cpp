// A libFuzzer-compatible driver for g++ builds: runs every seed in a corpus directory, then random mutations
// (byte flips, inserts, deletions, splices of two corpus inputs) for a bounded time with a fixed seed, so a
// ctest run is reproducible. On a crash the current input is written to `crash-<target>` in the working dir.
//
//   fuzz_target --corpus DIR [--seconds N] [--seed S] [--max-len BYTES] [FILE...]
//
// Files given as arguments are run once each (to replay a crash) and nothing else happens.
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

const std::uint8_t* g_current = nullptr;
std::size_t g_current_size = 0;
char g_crash_path[512] = "crash-input";

void on_crash(int sig) {
    int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0 && g_current) {
        ssize_t ignored = ::write(fd, g_current, g_current_size);
        (void)ignored;
        ::close(fd);
    }
    const char msg[] = "fuzz: crash; input saved\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

std::vector<std::uint8_t> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run_one(const std::vector<std::uint8_t>& input) {
    g_current = input.data();
    g_current_size = input.size();
    LLVMFuzzerTestOneInput(input.data(), input.size());
}

// Tokens that make mutations reach deeper than random bytes would.
const char* kDictionary[] = {"{{", "}}", "|", " default: \"x\"", " upper", " lower", " json", ".", "\"", "{", "}", "[",
                             "]", ",", ":", "null", "true", "\"type\":\"message\"", "\"next\":\"a\"", "\"id\":\"a\"",
                             "\"text\":", "\"buttons\":[]", "\"routes\":[{\"if\":{\"var\":\"x\",\"op\":\"eq\",\"value\":1}}]",
                             "\\u0000", "\xD0\x96", "0", "-1", "1e999"};

void mutate(std::vector<std::uint8_t>& data, const std::vector<std::vector<std::uint8_t>>& corpus, std::mt19937_64& rng,
            std::size_t max_len) {
    int rounds = 1 + static_cast<int>(rng() % 4);
    for (int r = 0; r < rounds; ++r) {
        std::size_t pos = data.empty() ? 0 : rng() % (data.size() + 1);
        switch (rng() % 6) {
            case 0:  // flip a bit
                if (!data.empty()) data[rng() % data.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
                break;
            case 1:  // random byte
                data.insert(data.begin() + static_cast<long>(pos), static_cast<std::uint8_t>(rng()));
                break;
            case 2: {  // delete a range
                if (data.empty()) break;
                std::size_t at = rng() % data.size();
                std::size_t n = 1 + rng() % std::min<std::size_t>(16, data.size() - at);
                data.erase(data.begin() + static_cast<long>(at), data.begin() + static_cast<long>(at + n));
                break;
            }
            case 3: {  // dictionary token
                const char* token = kDictionary[rng() % (sizeof kDictionary / sizeof *kDictionary)];
                data.insert(data.begin() + static_cast<long>(pos), token, token + std::strlen(token));
                break;
            }
            case 4: {  // splice a piece of another input
                const auto& other = corpus[rng() % corpus.size()];
                if (other.empty()) break;
                std::size_t at = rng() % other.size();
                std::size_t n = 1 + rng() % std::min<std::size_t>(64, other.size() - at);
                data.insert(data.begin() + static_cast<long>(pos), other.begin() + static_cast<long>(at),
                            other.begin() + static_cast<long>(at + n));
                break;
            }
            default: {  // duplicate a range (grows nesting and repetition)
                if (data.empty()) break;
                std::size_t at = rng() % data.size();
                std::size_t n = 1 + rng() % std::min<std::size_t>(32, data.size() - at);
                std::vector<std::uint8_t> piece(data.begin() + static_cast<long>(at), data.begin() + static_cast<long>(at + n));
                data.insert(data.begin() + static_cast<long>(pos), piece.begin(), piece.end());
                break;
            }
        }
    }
    if (data.size() > max_len) data.resize(max_len);
}

}  // namespace

int main(int argc, char** argv) {
    std::string corpus_dir;
    double seconds = 10;
    std::uint64_t seed = 1;
    std::size_t max_len = 64 * 1024;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "missing value for %s\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--corpus") corpus_dir = value();
        else if (a == "--seconds") seconds = std::stod(value());
        else if (a == "--seed") seed = std::stoull(value());
        else if (a == "--max-len") max_len = std::stoull(value());
        else files.push_back(a);
    }
    std::string name = std::filesystem::path(argv[0]).filename().string();
    std::snprintf(g_crash_path, sizeof g_crash_path, "crash-%s", name.c_str());
    for (int sig : {SIGSEGV, SIGABRT, SIGFPE, SIGILL, SIGBUS}) std::signal(sig, on_crash);

    if (!files.empty()) {
        for (const auto& f : files) run_one(read_file(f));
        std::printf("%s: ran %zu files\n", name.c_str(), files.size());
        return 0;
    }
    std::vector<std::vector<std::uint8_t>> corpus;
    if (!corpus_dir.empty() && std::filesystem::is_directory(corpus_dir)) {
        std::vector<std::filesystem::path> paths;
        for (const auto& e : std::filesystem::directory_iterator(corpus_dir)) {
            if (e.is_regular_file()) paths.push_back(e.path());
        }
        std::sort(paths.begin(), paths.end());
        for (const auto& p : paths) corpus.push_back(read_file(p));
    }
    if (corpus.empty()) corpus.emplace_back();
    for (const auto& input : corpus) run_one(input);

    std::mt19937_64 rng(seed);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::size_t runs = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        for (int batch = 0; batch < 64; ++batch) {
            std::vector<std::uint8_t> input = corpus[rng() % corpus.size()];
            mutate(input, corpus, rng, max_len);
            run_one(input);
            ++runs;
        }
    }
    std::printf("%s: %zu seeds, %zu mutated runs in %.1f s, seed %llu, no crash\n", name.c_str(), corpus.size(), runs,
                seconds, static_cast<unsigned long long>(seed));
    return 0;
}

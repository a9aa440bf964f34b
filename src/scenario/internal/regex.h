/// A small regular-expression engine with linear-time matching (a Pike VM), so that no pattern in a scenario
/// document and no client text can make a run hang or overflow the stack the way backtracking engines can.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace parley::scenario::internal {

/// Supported syntax: literals, `.`, classes `[a-z0-9_]` and `[^...]`, escapes `\d \w \s \D \W \S \. \\` etc.,
/// anchors `^ $`, groups `(...)` and `(?:...)`, alternation `|`, quantifiers `* + ? {n} {n,} {n,m}` (lazy
/// forms accepted; only match/no-match matters), and a leading `(?i)` for case-insensitive matching.
/// Matching works on UTF-8 code points. Immutable after compile; thread-safe.
class Regex {
public:
    static constexpr std::size_t kMaxPatternBytes = 512;
    static constexpr std::size_t kMaxProgram = 4000;

    Regex() = default;
    /// Compiles `pattern`; the error text names the problem and its byte offset.
    static std::variant<Regex, std::string> compile(std::string_view pattern);

    /// Whether the pattern matches anywhere in `text` (like JavaScript's RegExp.test).
    bool search(std::string_view text) const { return run(text, false); }
    /// Whether the pattern matches the whole of `text`.
    bool full_match(std::string_view text) const { return run(text, true); }

    enum class Op : std::uint8_t { kChar, kAny, kClass, kSplit, kJmp, kBol, kEol, kMatch };
    struct Inst {
        Op op;
        std::uint32_t a = 0;  ///< char, class index or first target
        std::uint32_t b = 0;  ///< second split target
    };
    struct Range {
        char32_t lo, hi;
    };
    struct Class {
        std::vector<Range> ranges;
        bool negated = false;
    };

private:
    bool run(std::string_view text, bool full) const;

    std::vector<Inst> program_;
    std::vector<Class> classes_;
    bool icase_ = false;
};

/// Decodes the code point at `i` in `text` (advancing `i`); invalid bytes decode as themselves.
char32_t next_code_point(std::string_view text, std::size_t& i);

}  // namespace parley::scenario::internal

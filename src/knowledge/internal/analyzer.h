/// Text analysis for retrieval in Ukrainian and English: ICU-based folding (lower case, diacritics and
/// apostrophes removed), word tokens, stop words, and a light suffix-stripping + prefix stemmer whose output
/// is the "character n-gram" signal that lets inflected forms match ("доставка"/"доставку"/"доставки").
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace parley::knowledge::internal {

/// Longest token kept (bytes, after folding); longer tokens are cut.
inline constexpr std::size_t kMaxTokenBytes = 64;
/// Code points a stem keeps at most (prefix stemming after suffix stripping).
inline constexpr std::size_t kStemChars = 6;

/// Folds one text to lower case without diacritics (ICU: u_tolower, NFD, combining marks dropped); word
/// apostrophes (' ’ ʼ `) are removed, so "м'ясо" and "мясо" agree. Invalid UTF-8 bytes become separators.
/// Thread-safe (the code point table is built once).
std::string fold(std::string_view text);

/// Folded word tokens of `text`, in order (letters and digits; every other character separates).
std::vector<std::string> tokenize(std::string_view text);

/// Whether a folded token is a Ukrainian or English stop word (too common to help ranking).
bool is_stop_word(std::string_view token);

/// The stem of a folded token: a common Ukrainian or English inflectional ending removed (the stem keeps at
/// least 3 characters), then cut to kStemChars code points. Pure digits stay whole.
std::string stem(std::string_view token);

/// What one text contributes to the two full-text signals.
struct Analyzed {
    std::string words;  ///< folded tokens without stop words, space separated
    std::string stems;  ///< their stems, space separated
};

/// Tokenizes, drops stop words (keeping them when nothing else is left, so "who are you" still matches),
/// and stems.
Analyzed analyze(std::string_view text);

/// Whether the UTF-8 text is well-formed.
bool valid_utf8(std::string_view text);

/// Number of code points (invalid bytes count as one each).
std::size_t char_count(std::string_view text);

/// The byte offset of the `chars`-th code point (or text.size()).
std::size_t byte_offset_of_char(std::string_view text, std::size_t chars);

}  // namespace parley::knowledge::internal

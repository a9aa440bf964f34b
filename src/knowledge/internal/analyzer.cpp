#include "knowledge/internal/analyzer.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <string>
#include <unordered_set>

namespace parley::knowledge::internal {

namespace {

enum class Kind : std::uint8_t { kSeparator, kToken, kDrop, kApostrophe };

struct Folded {
    Kind kind = Kind::kSeparator;
    std::string text;  ///< UTF-8 of the folded character (kToken)
};

bool is_apostrophe(UChar32 cp) { return cp == 0x27 || cp == 0x2019 || cp == 0x02BC || cp == 0x60 || cp == 0x2018; }

Folded fold_code_point(UChar32 cp) {
    Folded out;
    if (is_apostrophe(cp)) {
        out.kind = Kind::kApostrophe;
        return out;
    }
    auto type = u_charType(cp);
    if (type == U_NON_SPACING_MARK || type == U_ENCLOSING_MARK || type == U_COMBINING_SPACING_MARK ||
        type == U_FORMAT_CHAR) {
        out.kind = Kind::kDrop;  // joins the word it sits in (soft hyphen, zero-width joiner, accents)
        return out;
    }
    if (!u_isalnum(cp)) return out;
    out.kind = Kind::kToken;
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(status);
    icu::UnicodeString s(u_tolower(cp));
    if (U_SUCCESS(status)) {
        icu::UnicodeString d = nfd->normalize(s, status);
        if (U_SUCCESS(status)) s = d;
    }
    icu::UnicodeString kept;
    for (int32_t i = 0; i < s.length();) {
        UChar32 c = s.char32At(i);
        i += U16_LENGTH(c);
        auto t = u_charType(c);
        if (t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK) continue;
        kept.append(c);
    }
    kept.toUTF8String(out.text);
    if (out.text.empty()) out.kind = Kind::kDrop;
    return out;
}

/// Folding of the code points below kTableSize, computed once: every Latin, Greek and Cyrillic letter.
constexpr UChar32 kTableSize = 0x3000;

const std::vector<Folded>& table() {
    static const std::vector<Folded> t = [] {
        std::vector<Folded> v(kTableSize);
        for (UChar32 cp = 0; cp < kTableSize; ++cp) v[static_cast<std::size_t>(cp)] = fold_code_point(cp);
        return v;
    }();
    return t;
}

/// Walks `text` calling on_token(token) for each folded token.
template <typename F>
void for_each_token(std::string_view text, F&& on_token) {
    const auto& t = table();
    std::string token;
    bool pending_apostrophe = false;
    const auto* s = reinterpret_cast<const std::uint8_t*>(text.data());
    const auto length = static_cast<std::int32_t>(text.size());
    auto flush = [&] {
        if (!token.empty()) on_token(token);
        token.clear();
        pending_apostrophe = false;
    };
    for (std::int32_t i = 0; i < length;) {
        UChar32 cp = s[i];
        if (cp < 0x80) {
            ++i;
            if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) {
                if (token.size() < kMaxTokenBytes) token.push_back(static_cast<char>(cp));
                pending_apostrophe = false;
                continue;
            }
            if (cp >= 'A' && cp <= 'Z') {
                if (token.size() < kMaxTokenBytes) token.push_back(static_cast<char>(cp - 'A' + 'a'));
                pending_apostrophe = false;
                continue;
            }
            if (is_apostrophe(cp) && !token.empty() && !pending_apostrophe) {
                pending_apostrophe = true;  // inside a word only if a letter follows
                continue;
            }
            flush();
            continue;
        }
        U8_NEXT(s, i, length, cp);
        if (cp < 0) {
            flush();
            continue;
        }
        Folded computed;
        const Folded* f;
        if (cp < kTableSize) {
            f = &t[static_cast<std::size_t>(cp)];
        } else {
            computed = fold_code_point(cp);
            f = &computed;
        }
        switch (f->kind) {
            case Kind::kToken:
                if (token.size() + f->text.size() <= kMaxTokenBytes) token += f->text;
                pending_apostrophe = false;
                break;
            case Kind::kDrop: break;
            case Kind::kApostrophe:
                if (!token.empty() && !pending_apostrophe) {
                    pending_apostrophe = true;
                } else {
                    flush();
                }
                break;
            case Kind::kSeparator: flush(); break;
        }
    }
    flush();
}

std::u32string to_u32(std::string_view text) {
    std::u32string out;
    const auto* s = reinterpret_cast<const std::uint8_t*>(text.data());
    const auto length = static_cast<std::int32_t>(text.size());
    for (std::int32_t i = 0; i < length;) {
        UChar32 cp;
        U8_NEXT(s, i, length, cp);
        if (cp >= 0) out.push_back(static_cast<char32_t>(cp));
    }
    return out;
}

std::string to_utf8(std::u32string_view text) {
    std::string out;
    for (char32_t c : text) {
        std::uint8_t buf[4];
        std::int32_t n = 0;
        UBool error = false;
        U8_APPEND(buf, n, 4, static_cast<UChar32>(c), error);
        if (!error) out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
    }
    return out;
}

const std::vector<std::u32string>& cyrillic_endings() {
    // Folded forms (й → и, ї → і), longest first so the longest matching ending is removed.
    static const std::vector<std::u32string> endings = [] {
        std::vector<std::string> raw = {
            "ується", "ування", "ються", "ється", "ться", "ення", "ання", "іння", "ення", "ями", "ами", "ові",
            "еві", "ого", "ому", "ими", "іми", "ати", "ити", "яти", "іти", "ють", "уть", "ать", "ять", "ить",
            "ала", "ало", "али", "ила", "ило", "или", "ися", "ись", "ів", "ах", "ях", "ам", "ям", "ою", "ею",
            "єю", "ом", "ем", "им", "ім", "их", "іх", "ий", "іи", "ої", "еі", "ая", "яя", "ую", "юю", "ти",
            "ть", "ся", "а", "я", "у", "ю", "і", "и", "е", "о", "є", "ь", "ї"};
        std::vector<std::u32string> out;
        for (const auto& e : raw) out.push_back(to_u32(fold(e)));
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
        out.erase(std::unique(out.begin(), out.end()), out.end());
        return out;
    }();
    return endings;
}

bool ends_with(std::u32string_view s, std::u32string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y'; }

std::string english_stem(std::string w) {
    auto ends = [&](std::string_view suf) { return w.size() >= suf.size() && w.compare(w.size() - suf.size(), suf.size(), suf) == 0; };
    if (ends("ies") && w.size() > 4) {
        w.replace(w.size() - 3, 3, "y");
    } else if (ends("sses")) {
        w.resize(w.size() - 2);
    } else if ((ends("ches") || ends("shes") || ends("xes") || ends("zes")) && w.size() > 4) {
        w.resize(w.size() - 2);
    } else if (ends("s") && !ends("ss") && !ends("us") && !ends("is") && w.size() > 3) {
        w.resize(w.size() - 1);
    }
    bool stripped = false;
    if (ends("ing") && w.size() > 5) {
        w.resize(w.size() - 3);
        stripped = true;
    } else if (ends("ed") && w.size() > 4) {
        w.resize(w.size() - 2);
        stripped = true;
    } else if (ends("ly") && w.size() > 5) {
        w.resize(w.size() - 2);
    }
    if (stripped && w.size() >= 3) {
        char a = w[w.size() - 1];
        char b = w[w.size() - 2];
        if (a == b && !is_vowel(a) && a != 'l' && a != 's' && a != 'z') w.pop_back();  // shipp → ship
    }
    if (w.size() > kStemChars) w.resize(kStemChars);
    return w;
}

}  // namespace

std::string fold(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for_each_token(text, [&](const std::string& token) {
        if (!out.empty()) out.push_back(' ');
        out += token;
    });
    return out;
}

std::vector<std::string> tokenize(std::string_view text) {
    std::vector<std::string> out;
    for_each_token(text, [&](const std::string& token) { out.push_back(token); });
    return out;
}

bool is_stop_word(std::string_view token) {
    static const std::unordered_set<std::string> words = [] {
        const char* raw[] = {
            // English
            "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with", "from",
            "as", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "can", "could", "will",
            "would", "should", "shall", "may", "might", "must", "i", "me", "my", "we", "our", "us", "you", "your",
            "he", "she", "it", "its", "they", "them", "their", "this", "that", "these", "those", "there", "here",
            "what", "which", "who", "whom", "how", "when", "where", "why", "not", "so", "than", "too", "very",
            "have", "has", "had", "about", "into", "any", "some", "also", "just", "only", "am", "get", "there",
            "then", "s", "t", "please", "hi", "hello",
            // Ukrainian
            "і", "й", "та", "в", "у", "на", "з", "із", "зі", "до", "від", "по", "за", "для", "про", "що", "як",
            "це", "чи", "а", "але", "не", "так", "же", "ж", "би", "б", "ви", "я", "ми", "він", "вона", "воно",
            "вони", "ти", "мене", "мені", "мій", "моє", "моя", "мої", "вас", "вам", "ваш", "ваша", "ваше", "ваші",
            "нас", "нам", "його", "її", "їх", "цей", "ця", "ці", "це", "той", "там", "тут", "є", "був", "була",
            "було", "були", "буде", "бути", "якщо", "коли", "де", "який", "яка", "яке", "які", "якій", "якого",
            "при", "під", "над", "через", "або", "можна", "щоб", "також", "вже", "ще", "лише", "тільки", "дуже",
            "скільки", "мо", "мною", "собі", "себе", "свій", "свою", "своє", "свої", "будь", "ласка", "цього",
            "цьому", "цих", "ним", "ній", "них", "треба", "потрібно", "хочу", "можу", "чому", "навіщо"};
        std::unordered_set<std::string> set;
        for (const char* w : raw) set.insert(fold(w));
        return set;
    }();
    return words.count(std::string(token)) > 0;
}

std::string stem(std::string_view token) {
    if (token.empty()) return {};
    bool ascii = true;
    bool digits = true;
    for (unsigned char c : token) {
        ascii &= c < 0x80;
        digits &= c >= '0' && c <= '9';
    }
    if (digits) return std::string(token);
    if (ascii) {
        for (unsigned char c : token) {
            if (c >= '0' && c <= '9') return std::string(token);  // codes like "x100" stay whole
        }
        return english_stem(std::string(token));
    }
    std::u32string w = to_u32(token);
    for (const auto& ending : cyrillic_endings()) {
        if (w.size() >= ending.size() + 3 && ends_with(w, ending)) {
            w.resize(w.size() - ending.size());
            break;
        }
    }
    if (w.size() > kStemChars) w.resize(kStemChars);
    return to_utf8(w);
}

Analyzed analyze(std::string_view text) {
    Analyzed out;
    std::vector<std::string> stops;
    auto add = [&](const std::string& token) {
        if (!out.words.empty()) out.words.push_back(' ');
        out.words += token;
        if (!out.stems.empty()) out.stems.push_back(' ');
        out.stems += stem(token);
    };
    for_each_token(text, [&](const std::string& token) {
        if (is_stop_word(token)) {
            if (out.words.empty() && stops.size() < 32) stops.push_back(token);
            return;
        }
        add(token);
    });
    if (out.words.empty()) {
        for (const auto& s : stops) add(s);
    }
    return out;
}

bool valid_utf8(std::string_view text) {
    const auto* s = reinterpret_cast<const std::uint8_t*>(text.data());
    const auto length = static_cast<std::int32_t>(text.size());
    for (std::int32_t i = 0; i < length;) {
        if (s[i] < 0x80) {
            ++i;
            continue;
        }
        UChar32 cp;
        U8_NEXT(s, i, length, cp);
        if (cp < 0) return false;
    }
    return true;
}

std::size_t char_count(std::string_view text) {
    std::size_t n = 0;
    for (unsigned char c : text) n += (c & 0xC0) != 0x80;
    return n;
}

std::size_t byte_offset_of_char(std::string_view text, std::size_t chars) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
            if (n == chars) return i;
            ++n;
        }
    }
    return text.size();
}

}  // namespace parley::knowledge::internal

#include "knowledge/internal/answer.h"

#include <algorithm>
#include <unordered_set>

#include "knowledge/internal/analyzer.h"
#include "knowledge/internal/chunker.h"

namespace parley::knowledge::internal {

namespace {

std::unordered_set<std::string> stems_of(std::string_view text, bool keep_stop_words = false) {
    std::unordered_set<std::string> out;
    for (const auto& token : tokenize(text)) {
        if (!keep_stop_words && is_stop_word(token)) continue;
        out.insert(stem(token));
    }
    return out;
}

std::unordered_set<std::string> stem_set(std::initializer_list<const char*> words) {
    std::unordered_set<std::string> out;
    for (const char* w : words) {
        for (const auto& t : tokenize(w)) out.insert(stem(t));
    }
    return out;
}

}  // namespace

std::string extract_answer(std::string_view question, const std::vector<SearchHit>& hits) {
    if (hits.empty()) return {};
    std::string_view text = hits.front().text;
    if (char_count(text) <= 400) return std::string(text);
    auto q = stems_of(question);
    auto sentences = split_sentences(text);
    if (sentences.empty()) return {};
    std::vector<double> scores;
    for (auto s : sentences) {
        auto st = stems_of(s);
        double hit = 0;
        for (const auto& x : q) hit += st.count(x) ? 1.0 : 0.0;
        scores.push_back(q.empty() ? 0.0 : hit / static_cast<double>(q.size()));
    }
    std::size_t best = static_cast<std::size_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
    std::size_t first = best;
    std::size_t last = best;
    auto chars = [&](std::size_t a, std::size_t b) {
        auto begin = sentences[a].data();
        auto end = sentences[b].data() + sentences[b].size();
        return char_count(std::string_view(begin, static_cast<std::size_t>(end - begin)));
    };
    // A short lead-in sentence ("Delivery costs:") needs what follows; a sentence that ends with ':' too.
    while (last + 1 < sentences.size()) {
        std::size_t len = chars(first, last);
        bool wants_more = len < 160 || sentences[last].back() == ':' || scores[last + 1] > 0;
        if (!wants_more || chars(first, last + 1) > kMaxAnswerChars) break;
        ++last;
        if (len >= 160 && scores[last] == 0) break;
    }
    if (chars(first, last) < 80 && first > 0 && chars(first - 1, last) <= kMaxAnswerChars) --first;
    auto begin = sentences[first].data();
    auto end = sentences[last].data() + sentences[last].size();
    std::string answer(begin, static_cast<std::size_t>(end - begin));
    if (char_count(answer) > kMaxAnswerChars) {
        std::size_t cut = byte_offset_of_char(answer, kMaxAnswerChars);
        auto space = answer.rfind(' ', cut);
        answer.resize(space == std::string::npos ? cut : space);
        answer += "…";
    }
    return answer;
}

bool asks_for_human(std::string_view input) {
    static const auto people = stem_set({"оператор", "людина", "менеджер", "консультант", "человек", "operator",
                                         "human", "person", "representative", "agent", "manager"});
    static const auto verbs = stem_set({"поговорити", "зв'язатися", "з'єднайте", "з'єднати", "покличте", "покликати",
                                        "переключіть", "передайте", "живий", "жива", "живою", "справжній", "talk",
                                        "speak", "connect", "transfer", "chat", "real", "live", "want", "need"});
    auto tokens = tokenize(input);
    std::size_t content_words = 0;
    for (const auto& t : tokens) content_words += !is_stop_word(t);
    auto stems = stems_of(input, true);
    bool person = false;
    bool verb = false;
    for (const auto& s : stems) {
        person |= people.count(s) > 0;
        verb |= verbs.count(s) > 0;
    }
    // "оператор" alone or "з'єднайте з оператором" asks for a person; "чи може інша людина отримати
    // посилку" mentions one.
    return person && (verb || content_words <= 3);
}

bool matches_phrase(std::string_view input, std::string_view phrase) {
    auto wanted = stems_of(phrase, true);
    if (wanted.empty()) return false;
    auto have = stems_of(input, true);
    for (const auto& w : wanted) {
        if (!have.count(w)) return false;
    }
    return true;
}

std::string default_fallback(std::string_view input) {
    for (std::size_t i = 0; i + 1 < input.size(); ++i) {
        auto c = static_cast<unsigned char>(input[i]);
        if (c == 0xD0 || c == 0xD1 || c == 0xD2) {
            return "Я передаю ваше питання оператору — він відповість найближчим часом.";
        }
    }
    return "I'm passing your question to an operator, who will answer shortly.";
}

}  // namespace parley::knowledge::internal

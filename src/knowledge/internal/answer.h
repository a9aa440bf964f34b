/// The built-in extractive answerer and the escalation checks: answers are copied from retrieved passages
/// (never composed), and requests for a human are recognised on word stems in Ukrainian and English.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "knowledge/knowledge.h"

namespace parley::knowledge::internal {

/// The answer to `question` taken from the passages: the best-matching sentences of the best passage, copied
/// verbatim (a short passage is returned whole), at most kMaxAnswerChars characters. "" when `hits` is empty.
std::string extract_answer(std::string_view question, const std::vector<SearchHit>& hits);

/// Whether `input` asks for a person ("з'єднайте з оператором", "I want a human", "оператор").
bool asks_for_human(std::string_view input);

/// Whether every word of `phrase` occurs (by stem, any order) in `input`.
bool matches_phrase(std::string_view input, std::string_view phrase);

/// Ukrainian when the text has Cyrillic letters, else English: the built-in escalation sentence.
std::string default_fallback(std::string_view input);

}  // namespace parley::knowledge::internal

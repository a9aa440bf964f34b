/// The SMS channel's pure parts: GSM-7 / UCS-2 segment counting, splitting a reply into SMS messages within a
/// segment limit, buttons as a numbered list, and phone number normalisation. The adapter itself (kind `sms`,
/// providers Alpha SMS and Infobip) is reached through find_adapter("sms"); see README.md "SMS channel".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "scenario/runtime.h"

namespace parley::channels::sms {

enum class Encoding { kGsm7, kUcs2 };

inline constexpr std::size_t kGsmSingle = 160;  ///< septets of a one-segment GSM-7 SMS
inline constexpr std::size_t kGsmMulti = 153;   ///< septets per segment of a concatenated GSM-7 SMS (UDH takes 7)
inline constexpr std::size_t kUcs2Single = 70;  ///< UTF-16 units of a one-segment UCS-2 SMS
inline constexpr std::size_t kUcs2Multi = 67;   ///< UTF-16 units per segment of a concatenated UCS-2 SMS
inline constexpr int kDefaultMaxSegments = 4;   ///< segments one SMS message may take (credentials.max_segments)
inline constexpr int kMaxSegmentsLimit = 10;    ///< the highest max_segments accepted
inline constexpr std::size_t kMaxMessagesPerReply = 10;  ///< SMS messages one bot reply may become (rest cut)

/// How a text is encoded and what it costs.
struct Count {
    Encoding encoding = Encoding::kGsm7;
    std::size_t units = 0;     ///< septets (GSM-7; extension characters count 2) or UTF-16 units (UCS-2)
    std::size_t segments = 0;  ///< 0 for an empty text
};

/// True when the code point is in the GSM 03.38 default alphabet or its extension table.
bool is_gsm(char32_t c);
/// Septets of a GSM character: 2 for the extension table (^ { } \ [ ~ ] | € and form feed), else 1.
std::size_t gsm_septets(char32_t c);
/// GSM-7 when every character is in the GSM alphabet, else UCS-2; segments as the network counts them (a
/// concatenated message never splits an extension character or a surrogate pair across segments).
Count count(std::string_view utf8);
/// Splits a text into SMS messages of at most `max_segments` segments each (1..kMaxSegmentsLimit), preferring a
/// line break, then a space, in the last quarter of a message; never splits a UTF-8 sequence. Empty text → {}.
std::vector<std::string> split(std::string_view utf8, int max_segments);
/// The text followed by the buttons as a numbered list ("1. Label"): SMS has no buttons. Typing a label (or,
/// once the runtime maps them, its number) answers the question.
std::string with_numbered_buttons(std::string text, const std::vector<scenario::ReplyButton>& buttons);
/// The digits of a phone number ("+380 (50) 123-45-67" → "380501234567"), or "" when it is not one: 7 to 15
/// digits, an optional leading '+', and only spaces, dots, dashes and parentheses between them.
std::string phone_digits(std::string_view text);

}  // namespace parley::channels::sms

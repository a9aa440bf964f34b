/// The Telegram Bot API adapter's pure parts: parsing an Update into Parley's message model, and rendering a
/// bot reply into sendMessage calls (text split at Telegram's limit, buttons as an inline keyboard). No I/O.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scenario/runtime.h"

namespace parley::channels::telegram {

namespace json = boost::json;

inline constexpr std::size_t kMaxMessageChars = 4096;     ///< sendMessage text, in Unicode characters
inline constexpr std::size_t kMaxCallbackDataBytes = 64;  ///< inline keyboard callback_data
inline constexpr std::size_t kMaxTextBytes = 16 * 1024;   ///< inbound text kept (longer is cut at a character)

/// One parsed Update. `kind`: message (a text, contact or media message), callback (a button press), or
/// ignored (an update type Parley does not handle: edited messages, polls, chat member changes...).
struct Update {
    enum class Kind { kMessage, kCallback, kIgnored };
    Kind kind = Kind::kIgnored;
    std::int64_t update_id = 0;
    std::string user_id;   ///< from.id as text
    std::string chat_id;   ///< chat.id as text (the callback's message chat for callbacks)
    std::string first_name;
    std::string last_name;
    std::string language;  ///< from.language_code, "" when absent or not a language code Parley accepts
    scenario::ClientMessage message;
    std::string callback_query_id;  ///< kCallback
};

/// Parses one Update (JSON text). Throws core::BadRequest `invalid_update` when it is not JSON, has no integer
/// update_id, or a handled part (message, callback_query) lacks its required fields. Unsupported message types
/// become readable text: "[sticker]", "[photo] caption", "[location 50.45,30.52]", ...
Update parse_update(std::string_view body);

/// Splits `text` into parts of at most kMaxMessageChars Unicode characters, preferring a line break, then a
/// space, in the last quarter of a part; never splits a UTF-8 sequence. Empty text gives one empty part.
std::vector<std::string> split_text(std::string_view text, std::size_t max_chars = kMaxMessageChars);

/// The sendMessage bodies of one reply: one per text part; the buttons (one per row) go with the last part as
/// `reply_markup.inline_keyboard`, each `callback_data` made by `data_of(button_id)`. Empty text with buttons
/// is sent as an invisible character (Telegram refuses empty text).
std::vector<json::object> render(std::string_view chat_id, std::string_view text, const json::array& buttons,
                                 const std::function<std::string(const std::string&)>& data_of);

}  // namespace parley::channels::telegram

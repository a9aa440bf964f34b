/// The frames a widget visitor's browser sends over the WebSocket, and their parser (pure, fuzzed by
/// tests/fuzz/fuzz_widget_frame.cpp).
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace parley::widget {

inline constexpr std::size_t kMaxFrameBytes = 8 * 1024;      ///< a larger frame closes the socket
inline constexpr std::size_t kMaxTextBytes = 4096;           ///< a message's text
inline constexpr std::size_t kMaxFrameIdBytes = 64;          ///< the client message id
inline constexpr std::size_t kMaxParamsBytes = 4096;         ///< serialized `params`
inline constexpr std::size_t kMaxButtonIdBytes = 64;
inline constexpr std::size_t kMaxAliasBytes = 64;

/// One client frame. `id` is the client's message id: the idempotency key of a message or button press
/// (a resend after a reconnect is answered, not run twice) and what the `ack` names.
struct ClientFrame {
    enum class Kind { kMessage, kButton, kIdentify, kParams, kTyping, kStart, kSeen, kPing };
    Kind kind = Kind::kMessage;
    std::string id;
    std::string text;          ///< kMessage
    std::string button;        ///< kButton
    boost::json::object identity;  ///< kIdentify: name, email, phone, external_id (strings), language
    boost::json::object params;    ///< kParams
    std::string alias;         ///< kParams: optional entry alias to run with the params
    std::int64_t seen = 0;     ///< kSeen: the highest message number shown
};

/// Parses one text frame:
///   {"type":"message","id":"c1","text":"..."}        {"type":"button","id":"c2","button":"faq"}
///   {"type":"identify","id":"c3","name":"..","email":"..","phone":"..","external_id":"..","language":"en"}
///   {"type":"params","id":"c4","params":{...},"alias":"promo"?}
///   {"type":"typing"}  {"type":"start","id":"c5"}  {"type":"seen","n":12}  {"type":"ping"}
/// Throws core::BadRequest (codes invalid_json, invalid_frame, unknown_type, missing_field, wrong_type,
/// unknown_field, invalid_id) or core::TooLarge for oversized frames / texts / params.
ClientFrame parse_client_frame(std::string_view text);

}  // namespace parley::widget

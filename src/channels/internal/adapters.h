/// The adapters' factories (find_adapter() owns one of each) and Telegram's call helper shared with the polling
/// loop of the runtime.
#pragma once

#include <memory>
#include <string_view>

#include "channels/adapter.h"

namespace parley::channels::internal {

std::unique_ptr<Adapter> make_telegram_adapter();
std::unique_ptr<Adapter> make_viber_adapter();
std::unique_ptr<Adapter> make_whatsapp_adapter();
std::unique_ptr<Adapter> make_messenger_adapter();
std::unique_ptr<Adapter> make_instagram_adapter();
std::unique_ptr<Adapter> make_custom_adapter();
std::unique_ptr<Adapter> make_email_adapter();
std::unique_ptr<Adapter> make_sms_adapter();  // sms.cpp: Alpha SMS and Infobip

/// POST {api_base_url}/bot{token}/{method} with a JSON body.
outbound::Request telegram_call(const ChannelRef& channel, std::string_view method, const json::object& args,
                                std::int64_t timeout_ms);

/// Throws core::BadRequest `invalid_credentials` naming `credentials.<key>`.
[[noreturn]] void bad_credential(std::string_view key, std::string_view why);
/// A required credential: a non-empty string of at most `max` bytes of printable ASCII without spaces.
std::string required_credential(const json::object& in, std::string_view key, std::size_t max = 512);
/// An optional one ("" when absent); `free_text` also allows spaces and any UTF-8 except control characters.
std::string optional_credential(const json::object& in, std::string_view key, std::size_t max = 512,
                                bool free_text = false);

}  // namespace parley::channels::internal

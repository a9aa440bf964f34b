/// Internal to the SMS adapter (sms.cpp): what each provider (Alpha SMS, Infobip) contributes: the send request,
/// the answer's classification, and its webhook bodies (delivery reports, Infobip's forwarded inbound SMS).
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "channels/adapter.h"
#include "channels/internal/parse_util.h"

namespace parley::channels::internal::sms_provider {

inline constexpr std::string_view kAlphaSms = "alphasms";
inline constexpr std::string_view kInfobip = "infobip";
/// Alpha SMS's public API, the kind's default api_base_url.
inline constexpr std::string_view kAlphaSmsBaseUrl = "https://alphasms.net";
/// Used for an Infobip channel left on the kind's default (set your personal base URL, xxxxx.api.infobip.com).
inline constexpr std::string_view kInfobipBaseUrl = "https://api.infobip.com";
inline constexpr std::string_view kAlphaSmsPath = "/api/json.php";
inline constexpr std::string_view kInfobipPath = "/sms/2/text/advanced";

/// One SMS message to send.
struct Outgoing {
    std::string base_url;    ///< without trailing slash
    std::string api_key;
    std::string sender;      ///< alpha name or number ("" → the provider's default, Infobip only)
    std::string phone;       ///< digits
    std::string text;
    std::string report_url;  ///< where the provider posts the delivery report (token included)
    std::string reference;   ///< "<dialog>:<n>:<part>", stable across retries
    int validity_minutes = 0;  ///< 0 → the provider's default
};

outbound::Request alpha_request(const Outgoing& sms);
outbound::Request infobip_request(const Outgoing& sms);

/// The answer to a send, HTTP-level errors already classified by the caller (2xx and other 4xx reach here).
SendResult alpha_classify(const outbound::Response& response);
SendResult infobip_classify(const outbound::Response& response);

/// Webhook bodies. Alpha SMS: its delivery status hook (one report, an array, or {"data": [...]}); Infobip: a
/// `results` array of delivery reports and/or forwarded inbound messages.
std::vector<InboundEvent> alpha_parse(const JsonReader& reader, const json::value& body);
std::vector<InboundEvent> infobip_parse(const JsonReader& reader, const json::object& body);

/// "2019-11-09T16:00:00.000+0000" (Infobip's timestamps; also "Z" and "+01:00") → ms since the epoch, 0 when
/// not such a timestamp.
std::int64_t parse_timestamp(std::string_view text);

}  // namespace parley::channels::internal::sms_provider

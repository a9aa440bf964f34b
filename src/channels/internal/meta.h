/// What WhatsApp Cloud API, Messenger and Instagram share: Meta's webhook verification handshake
/// (hub.mode / hub.verify_token / hub.challenge), X-Hub-Signature-256 (HMAC-SHA256 of the body keyed with the app
/// secret), Graph API requests and the Graph error classification.
#pragma once

#include <string>
#include <string_view>

#include "channels/adapter.h"

namespace parley::channels::internal {

/// Answers GET /hooks/{id}: the challenge when hub.mode is subscribe and hub.verify_token matches
/// credentials.verify_token (core::Forbidden otherwise, core::BadRequest when the parameters are missing).
std::string meta_handshake(const ChannelRef& channel, const WebhookRequest& request);
/// core::Unauthorized unless X-Hub-Signature-256 is "sha256=" + HMAC-SHA256(credentials.app_secret, body).
void meta_verify(const ChannelRef& channel, const WebhookRequest& request);
/// Validates token, app_secret, verify_token and api_version (default kGraphVersion) into `out`.
void meta_credentials(const json::object& in, json::object& out);
/// POST {api_base_url}/{api_version}/{path} with Authorization: Bearer {token}.
outbound::Request graph_post(const ChannelRef& channel, std::string_view path, const json::value& body);
/// Graph API answers: 200 with `id_key` (messages[0].id or message_id) → ok; error.code 4 17 32 613 80007 130429
/// → retry after (Retry-After or 10 s), 131056 → retry after for this chat only; 1 2 131000 131016 133004 and
/// HTTP 5xx → transient; anything else permanent.
SendResult graph_classify(const outbound::Response& response);

inline constexpr std::string_view kGraphVersion = "v21.0";

}  // namespace parley::channels::internal

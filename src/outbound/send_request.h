/// `action_send_request`: the scenario action that calls an external HTTP API through the outbound Client
/// (and so through the SSRF guard) and saves the response into the dialog's variables.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "actions/actions.h"
#include "outbound/outbound.h"

namespace parley::outbound {

/// Limits of action_send_request's params (tighter than the client's own).
inline constexpr std::int64_t kSendRequestDefaultTimeoutMs = 10'000;
inline constexpr std::int64_t kSendRequestMaxTimeoutMs = 60'000;
inline constexpr std::size_t kSendRequestDefaultMaxBytes = 1024 * 1024;        ///< 1 MiB
inline constexpr std::size_t kSendRequestMaxBytes = 10 * 1024 * 1024;          ///< 10 MiB
inline constexpr std::string_view kSendRequestDefaultSaveAs = "response";

/// The action. Params (already template-rendered by the runtime):
///
/// | param | type | default | |
/// |---|---|---|---|
/// | `method` | string | `GET` | GET HEAD POST PUT PATCH DELETE OPTIONS, any case |
/// | `url` | string | required | absolute http:// or https:// URL |
/// | `query` | object | | appended url-encoded; arrays repeat the name; null values are skipped |
/// | `headers` | object | | string/number/boolean values |
/// | `body` | any | | object/array → JSON; string → sent as is |
/// | `body_type` | string | `json` for objects/arrays, `raw` for strings | `json` \| `form` \| `raw` |
/// | `timeout_ms` | integer | 10000 | 1..60000 |
/// | `retries` | integer | 0 | 0..3, only for GET HEAD PUT DELETE OPTIONS; on connect failures and 5xx |
/// | `max_response_bytes` | integer | 1048576 | 1..10485760 |
/// | `follow_redirects` | boolean | true | up to 5 |
/// | `save_as` | string | `response` | the variable the response is saved to |
///
/// Integers may also arrive as strings of digits (a rendered template). Events: `success` when a response
/// with status 1xx-3xx arrived; `error` otherwise: status ≥ 400 (code `http_error`), or no response (the
/// client's error code: `timeout`, `refused_by_guard`, `too_large`, `connect_failed`, `dns_failed`, `bad_url`,
/// `tls_error`, ...), or bad params (code `bad_params`, nothing sent, nothing saved).
/// Saved to `save_as`: `{"status", "headers", "body"}` (header names lower case; a JSON content type with a
/// parseable body gives parsed JSON, anything else a string, invalid UTF-8 replaced by U+FFFD); with no
/// response: `{"status": 0, "headers": {}, "body": null, "error": {"code", "message"}}`.
///
/// Thread-safety: run() may be called concurrently; `done` is called on the client's thread (or inline
/// for bad params). `client` must outlive the action's runs.
std::shared_ptr<actions::Action> make_send_request_action(Client& client);

/// The body as the action saves it: parsed JSON for a JSON content type and a parseable body, else the
/// text (invalid UTF-8 replaced). Exposed for tests and for the Action Jail `fetch` adapter.
boost::json::value response_body_value(std::string_view content_type, std::string_view body);

}  // namespace parley::outbound

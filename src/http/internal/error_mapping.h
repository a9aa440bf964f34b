/// The one place where a failure becomes an HTTP answer: typed core::Error, store::StoreError and anything else.
#pragma once

#include <exception>
#include <string_view>

#include "core/error.h"
#include "http/http.h"

namespace parley::http::internal {

/// Maps the exception `error` thrown while serving a request to its response:
///  - core::Error → its status, code, message and details;
///  - store::StoreError kConstraint → 409 `conflict`, kBusy → 503 `unavailable` (messages stay generic);
///  - boost::system::system_error, boost::json errors, any other std::exception or non-exception → 500
///    `internal` with a generic message. The real text is logged with `request_id`, never sent.
/// Thread-safe (stateless).
Response response_for_exception(std::exception_ptr error, std::string_view request_id, std::string_view route);

/// The CONTRACT body for a typed error.
Response response_for_error(const core::Error& error);

}  // namespace parley::http::internal

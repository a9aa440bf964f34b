/// Typed errors that end a request; `http` maps them to a status and the JSON error body in one place.
#pragma once

#include <boost/json/array.hpp>
#include <stdexcept>
#include <string>

namespace parley::core {

/// A failure that ends the current request with a 4xx/5xx answer. Thrown where detected, never caught and
/// re-wrapped on the way up. `code` is the stable snake_case machine code, `what()` the human text.
/// Thread-safety: immutable after construction.
class Error : public std::runtime_error {
public:
    Error(int status, std::string code, const std::string& message, boost::json::array details = {})
        : std::runtime_error(message), status_(status), code_(std::move(code)), details_(std::move(details)) {}

    int status() const { return status_; }
    const std::string& code() const { return code_; }
    const boost::json::array& details() const { return details_; }

private:
    int status_;
    std::string code_;
    boost::json::array details_;
};

#define PARLEY_ERROR_TYPE(Name, status_code, default_code)                                             \
    class Name : public Error {                                                                         \
    public:                                                                                             \
        explicit Name(const std::string& message, std::string code = default_code,                      \
                      boost::json::array details = {})                                                  \
            : Error(status_code, std::move(code), message, std::move(details)) {}                       \
    };

PARLEY_ERROR_TYPE(BadRequest, 400, "bad_request")
PARLEY_ERROR_TYPE(Unauthorized, 401, "unauthenticated")
PARLEY_ERROR_TYPE(Forbidden, 403, "forbidden")
PARLEY_ERROR_TYPE(NotFound, 404, "not_found")
PARLEY_ERROR_TYPE(MethodNotAllowed, 405, "method_not_allowed")
PARLEY_ERROR_TYPE(Conflict, 409, "conflict")
PARLEY_ERROR_TYPE(TooLarge, 413, "too_large")
PARLEY_ERROR_TYPE(Unprocessable, 422, "invalid_document")
PARLEY_ERROR_TYPE(RateLimited, 429, "rate_limited")
PARLEY_ERROR_TYPE(Unavailable, 503, "unavailable")

#undef PARLEY_ERROR_TYPE

}  // namespace parley::core

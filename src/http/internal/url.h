/// Request-target helpers: split an origin-form target into path and query, percent-decode with strict checks.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace parley::http::internal {

/// The two halves of an origin-form request-target, still percent-encoded. Views into the target.
struct TargetParts {
    std::string_view path;
    std::string_view query;  ///< without '?'; empty when absent
};

/// Validates `target` as origin-form ("/path?query", RFC 9112) with Boost.URL and splits it; nullopt when the
/// target is malformed (invalid percent-encoding, forbidden characters, not starting with '/').
std::optional<TargetParts> split_target(std::string_view target);

/// Appends the percent-decoded `in` to `out`. Returns false on invalid encoding or a decoded NUL byte.
/// `plus_as_space` is for query strings (application/x-www-form-urlencoded).
bool percent_decode(std::string_view in, std::string& out, bool plus_as_space = false);

/// Decodes "a=1&b=x%20y" into pairs in order ("a" without '=' gives an empty value). False on bad encoding.
bool parse_query(std::string_view query, std::vector<std::pair<std::string, std::string>>& out);

}  // namespace parley::http::internal

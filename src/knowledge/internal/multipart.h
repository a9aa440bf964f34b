/// A small, bounded multipart/form-data parser (RFC 7578) for document uploads: the request body is already
/// in memory (the server caps it), parts are views into it.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace parley::knowledge::internal {

inline constexpr std::size_t kMaxMultipartParts = 16;
inline constexpr std::size_t kMaxPartHeaderBytes = 8 * 1024;
inline constexpr std::size_t kMaxBoundaryBytes = 70;
inline constexpr std::size_t kMaxFilenameBytes = 255;

/// Malformed multipart input; the message says what is wrong (answered as 400).
class MultipartError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Part {
    std::string name;          ///< form field name
    std::string filename;      ///< base name only (directories removed), "" when the part is not a file
    std::string content_type;  ///< as declared, may be ""
    std::string_view body;     ///< view into the parsed body
};

/// The boundary parameter of a `multipart/form-data` Content-Type; throws MultipartError otherwise.
std::string multipart_boundary(std::string_view content_type);

/// Parses `body` with `boundary`. Accepts CRLF (and bare LF) line ends, ignores preamble and epilogue.
/// Throws MultipartError: missing closing delimiter, a part without Content-Disposition form-data, headers
/// over kMaxPartHeaderBytes, more than kMaxMultipartParts parts.
std::vector<Part> parse_multipart(std::string_view body, std::string_view boundary);

}  // namespace parley::knowledge::internal

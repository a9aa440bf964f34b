// Fuzz target: the multipart/form-data parser of knowledge document uploads. The first byte picks the
// boundary length; the rest is the body. Parts must be views inside the body, within the limits.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "knowledge/internal/multipart.h"

using namespace parley::knowledge::internal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
    std::size_t boundary_len = (data[0] % 8) + 1;
    std::string boundary = body.size() > boundary_len + 2 && body.substr(0, 2) == "--"
                               ? std::string(body.substr(2, boundary_len))
                               : std::string(boundary_len, 'b');
    try {
        auto parts = parse_multipart(body, boundary);
        if (parts.size() > kMaxMultipartParts) __builtin_trap();
        for (const auto& p : parts) {
            if (p.body.data() < body.data() || p.body.data() + p.body.size() > body.data() + body.size()) __builtin_trap();
            if (p.filename.size() > kMaxFilenameBytes) __builtin_trap();
        }
    } catch (const MultipartError&) {
    }
    try {
        (void)multipart_boundary(body.substr(0, 200));
    } catch (const MultipartError&) {
    }
    return 0;
}

// Fuzz target: the SSRF guard's parsers (IP literals in every notation, CIDR ranges, the allow-list) and the
// response body conversion of action_send_request (JSON or text with invalid UTF-8 replaced).
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "outbound/guard.h"
#include "outbound/send_request.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::outbound;
    std::string_view text(reinterpret_cast<const char*>(data), size);

    if (auto ip = parse_ip_literal(text)) {
        (void)class_name(classify(*ip));
        auto again = parse_ip_literal(ip->to_string());  // the canonical text names the same address
        if (!again || !(*again == *ip)) __builtin_trap();
    }
    if (auto cidr = Cidr::parse(text)) {
        if (!cidr->contains(cidr->base)) __builtin_trap();
        auto again = Cidr::parse(cidr->to_string());
        if (!again || !(again->base == cidr->base) || again->prefix != cidr->prefix) __builtin_trap();
    }

    boost::system::error_code ec;
    boost::json::value value = boost::json::parse(text, ec);
    if (!ec) {
        auto parsed = Allowlist::parse(value);
        (void)parsed.allowlist.allows_host(text);
        if (auto ip = parse_ip_literal(text)) (void)check_address(*ip, parsed.allowlist, false);
    }
    Allowlist::Parsed single = Allowlist::parse(boost::json::array{boost::json::string(text)});
    (void)single.allowlist.allows_host(text);

    for (std::string_view type : {"application/json", "text/plain"}) {
        boost::json::value body = response_body_value(type, text);
        // Whatever came out must serialize to JSON that parses again (valid UTF-8 included).
        boost::json::parse(boost::json::serialize(body), ec);
        if (ec) __builtin_trap();
    }
    return 0;
}

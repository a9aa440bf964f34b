#include "outbound/guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/json.hpp>
#include <cstring>
#include <fmt/format.h>

#include "auth/settings.h"

namespace parley::outbound {

namespace json = boost::json;

namespace {

/// One part of an inet_aton-style IPv4 literal: decimal, octal (leading 0) or hex (0x). Nullopt when the
/// text is not such a number or does not fit in 32 bits.
std::optional<std::uint64_t> parse_v4_part(std::string_view part) {
    if (part.empty()) return std::nullopt;
    unsigned base = 10;
    if (part.size() > 1 && part[0] == '0' && (part[1] == 'x' || part[1] == 'X')) {
        base = 16;
        part.remove_prefix(2);
        if (part.empty()) return std::nullopt;
    } else if (part.size() > 1 && part[0] == '0') {
        base = 8;
        part.remove_prefix(1);
    }
    std::uint64_t value = 0;
    for (char c : part) {
        unsigned digit;
        if (c >= '0' && c <= '9') {
            digit = static_cast<unsigned>(c - '0');
        } else if (base == 16 && c >= 'a' && c <= 'f') {
            digit = static_cast<unsigned>(c - 'a' + 10);
        } else if (base == 16 && c >= 'A' && c <= 'F') {
            digit = static_cast<unsigned>(c - 'A' + 10);
        } else {
            return std::nullopt;
        }
        if (digit >= base) return std::nullopt;
        value = value * base + digit;
        if (value > 0xffffffffULL) return std::nullopt;
    }
    return value;
}

/// inet_aton's grammar: 1 to 4 parts; the last part fills the remaining bytes (`127.1` is 127.0.0.1,
/// `2130706433` is 127.0.0.1).
std::optional<IpAddress> parse_v4(std::string_view text) {
    std::uint64_t parts[4];
    std::size_t count = 0;
    while (true) {
        auto dot = text.find('.');
        std::string_view part = text.substr(0, dot);
        if (count == 4) return std::nullopt;
        auto value = parse_v4_part(part);
        if (!value) return std::nullopt;
        parts[count++] = *value;
        if (dot == std::string_view::npos) break;
        text.remove_prefix(dot + 1);
    }
    std::uint64_t address = 0;
    for (std::size_t i = 0; i + 1 < count; ++i) {
        if (parts[i] > 0xff) return std::nullopt;
        address |= parts[i] << (8 * (3 - i));
    }
    const std::uint64_t last_max = 0xffffffffULL >> (8 * (count - 1));
    if (parts[count - 1] > last_max) return std::nullopt;
    address |= parts[count - 1];
    return IpAddress::from_v4(static_cast<std::uint32_t>(address));
}

std::optional<IpAddress> parse_v6(std::string_view text) {
    auto zone = text.find('%');
    if (zone != std::string_view::npos) text = text.substr(0, zone);
    if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
    std::string copy(text);
    IpAddress out;
    out.v4 = false;
    if (inet_pton(AF_INET6, copy.c_str(), out.bytes.data()) != 1) return std::nullopt;
    return out;
}

std::uint32_t v4_value(const IpAddress& a) {
    return (std::uint32_t{a.bytes[0]} << 24) | (std::uint32_t{a.bytes[1]} << 16) | (std::uint32_t{a.bytes[2]} << 8) |
           std::uint32_t{a.bytes[3]};
}

bool in_v4(std::uint32_t address, std::uint32_t base, int prefix) {
    const std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
    return (address & mask) == (base & mask);
}

/// Whether the first `prefix` bits of `a` equal those of `pattern` (given as up to 16 leading bytes).
bool in_v6(const IpAddress& a, std::initializer_list<std::uint8_t> pattern, int prefix) {
    std::array<std::uint8_t, 16> base{};
    std::size_t i = 0;
    for (auto b : pattern) base[i++] = b;
    for (int bit = 0; bit < prefix; bit += 8) {
        const int bits = std::min(8, prefix - bit);
        const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
        const auto index = static_cast<std::size_t>(bit / 8);
        if ((a.bytes[index] & mask) != (base[index] & mask)) return false;
    }
    return true;
}

AddressClass classify_v4(std::uint32_t a) {
    struct Range {
        std::uint32_t base;
        int prefix;
        AddressClass cls;
    };
    static constexpr Range kRanges[] = {
        {0x00000000, 8, AddressClass::kUnspecified},     // 0.0.0.0/8
        {0x0a000000, 8, AddressClass::kPrivate},         // 10.0.0.0/8
        {0x64400000, 10, AddressClass::kSharedAddress},  // 100.64.0.0/10
        {0x7f000000, 8, AddressClass::kLoopback},        // 127.0.0.0/8
        {0xa9fe0000, 16, AddressClass::kLinkLocal},      // 169.254.0.0/16
        {0xac100000, 12, AddressClass::kPrivate},        // 172.16.0.0/12
        {0xc0000000, 24, AddressClass::kReserved},       // 192.0.0.0/24
        {0xc0000200, 24, AddressClass::kReserved},       // 192.0.2.0/24
        {0xc0586300, 24, AddressClass::kReserved},       // 192.88.99.0/24
        {0xc0a80000, 16, AddressClass::kPrivate},        // 192.168.0.0/16
        {0xc6120000, 15, AddressClass::kReserved},       // 198.18.0.0/15
        {0xc6336400, 24, AddressClass::kReserved},       // 198.51.100.0/24
        {0xcb007100, 24, AddressClass::kReserved},       // 203.0.113.0/24
        {0xe0000000, 4, AddressClass::kMulticast},       // 224.0.0.0/4
        {0xffffffff, 32, AddressClass::kBroadcast},      // 255.255.255.255
        {0xf0000000, 4, AddressClass::kReserved},        // 240.0.0.0/4
    };
    for (const auto& r : kRanges) {
        if (in_v4(a, r.base, r.prefix)) return r.cls;
    }
    return AddressClass::kPublic;
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

/// A URL host or allow-list host name in the form compared: lower case, no brackets, no trailing dot.
std::string normalize_host(std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    while (!host.empty() && host.back() == '.') host.remove_suffix(1);
    return lower(host);
}

bool valid_host_name(std::string_view name) {
    if (name.empty() || name.size() > Allowlist::kMaxEntryLength) return false;
    std::size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok || ++label > 63) return false;
    }
    return label > 0;
}

}  // namespace

IpAddress IpAddress::from_v4(std::uint32_t host_order) {
    IpAddress a;
    a.v4 = true;
    a.bytes[0] = static_cast<std::uint8_t>(host_order >> 24);
    a.bytes[1] = static_cast<std::uint8_t>(host_order >> 16);
    a.bytes[2] = static_cast<std::uint8_t>(host_order >> 8);
    a.bytes[3] = static_cast<std::uint8_t>(host_order);
    return a;
}

std::optional<IpAddress> IpAddress::embedded_v4() const {
    if (v4) return std::nullopt;
    auto tail = [this](std::size_t at) {
        IpAddress a;
        std::memcpy(a.bytes.data(), bytes.data() + at, 4);
        return a;
    };
    // ::ffff:0:0/96 (mapped) and ::/96 (compatible; :: and ::1 themselves are classified before this).
    if (in_v6(*this, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96)) return tail(12);
    if (in_v6(*this, {}, 96)) return tail(12);
    if (in_v6(*this, {0x00, 0x64, 0xff, 0x9b}, 96)) return tail(12);  // NAT64 well-known prefix
    if (in_v6(*this, {0x20, 0x02}, 16)) return tail(2);               // 6to4
    return std::nullopt;
}

std::string IpAddress::to_string() const {
    char buffer[INET6_ADDRSTRLEN] = {};
    if (v4) {
        inet_ntop(AF_INET, bytes.data(), buffer, sizeof buffer);
    } else {
        inet_ntop(AF_INET6, bytes.data(), buffer, sizeof buffer);
    }
    return buffer;
}

std::optional<IpAddress> parse_ip_literal(std::string_view text) {
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
        return parse_v6(text.substr(1, text.size() - 2));
    }
    if (text.find(':') != std::string_view::npos) return parse_v6(text);
    return parse_v4(text);
}

std::optional<IpAddress> ip_from_sockaddr(const struct sockaddr* address) {
    if (address == nullptr) return std::nullopt;
    if (address->sa_family == AF_INET) {
        sockaddr_in in{};
        std::memcpy(&in, address, sizeof in);
        return IpAddress::from_v4(ntohl(in.sin_addr.s_addr));
    }
    if (address->sa_family == AF_INET6) {
        sockaddr_in6 in6{};
        std::memcpy(&in6, address, sizeof in6);
        IpAddress a;
        a.v4 = false;
        std::memcpy(a.bytes.data(), &in6.sin6_addr, 16);
        return a;
    }
    return std::nullopt;
}

AddressClass classify(const IpAddress& a) {
    if (a.v4) return classify_v4(v4_value(a));
    if (in_v6(a, {}, 128)) return AddressClass::kUnspecified;
    if (in_v6(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128)) return AddressClass::kLoopback;
    if (auto inner = a.embedded_v4()) {
        const AddressClass cls = classify_v4(v4_value(*inner));
        // IPv4-compatible addresses are deprecated and never routed; report the inner class when it says more.
        if (cls == AddressClass::kPublic && in_v6(a, {}, 96)) return AddressClass::kReserved;
        return cls;
    }
    if (in_v6(a, {0xfe, 0x80}, 10)) return AddressClass::kLinkLocal;
    if (in_v6(a, {0xfe, 0xc0}, 10)) return AddressClass::kPrivate;
    if (in_v6(a, {0xfc, 0x00}, 7)) return AddressClass::kPrivate;
    if (in_v6(a, {0xff, 0x00}, 8)) return AddressClass::kMulticast;
    if (in_v6(a, {0x01, 0x00, 0, 0, 0, 0, 0, 0}, 64)) return AddressClass::kReserved;  // discard-only
    if (in_v6(a, {0x20, 0x01, 0x0d, 0xb8}, 32)) return AddressClass::kReserved;      // documentation
    if (in_v6(a, {0x20, 0x01, 0x00, 0x00}, 32)) return AddressClass::kReserved;      // Teredo
    if (in_v6(a, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48)) return AddressClass::kReserved;  // local NAT64
    return AddressClass::kPublic;
}

std::string_view class_name(AddressClass address_class) {
    switch (address_class) {
        case AddressClass::kPublic: return "public";
        case AddressClass::kUnspecified: return "unspecified";
        case AddressClass::kLoopback: return "loopback";
        case AddressClass::kPrivate: return "private";
        case AddressClass::kLinkLocal: return "link-local";
        case AddressClass::kSharedAddress: return "shared (carrier-grade NAT)";
        case AddressClass::kMulticast: return "multicast";
        case AddressClass::kBroadcast: return "broadcast";
        case AddressClass::kReserved: return "reserved";
    }
    return "reserved";
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
    std::string_view address_text = text;
    int prefix = -1;
    if (auto slash = text.find('/'); slash != std::string_view::npos) {
        address_text = text.substr(0, slash);
        std::string_view bits = text.substr(slash + 1);
        if (bits.empty() || bits.size() > 3) return std::nullopt;
        prefix = 0;
        for (char c : bits) {
            if (c < '0' || c > '9') return std::nullopt;
            prefix = prefix * 10 + (c - '0');
        }
    }
    auto address = parse_ip_literal(address_text);
    if (!address) return std::nullopt;
    const int max = address->v4 ? 32 : 128;
    if (prefix < 0) prefix = max;
    if (prefix > max) return std::nullopt;
    Cidr out;
    out.base = *address;
    out.prefix = prefix;
    for (int bit = prefix; bit < max; ++bit) {
        out.base.bytes[static_cast<std::size_t>(bit / 8)] &= static_cast<std::uint8_t>(~(0x80 >> (bit % 8)));
    }
    return out;
}

bool Cidr::contains(const IpAddress& address) const {
    IpAddress a = address;
    if (base.v4 && !a.v4 && in_v6(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96)) a = *a.embedded_v4();
    if (a.v4 != base.v4) return false;
    for (int bit = 0; bit < prefix; bit += 8) {
        const int bits = std::min(8, prefix - bit);
        const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
        const auto index = static_cast<std::size_t>(bit / 8);
        if ((a.bytes[index] & mask) != (base.bytes[index] & mask)) return false;
    }
    return true;
}

std::string Cidr::to_string() const { return fmt::format("{}/{}", base.to_string(), prefix); }

Allowlist::Parsed Allowlist::parse(const json::value& value) {
    Parsed out;
    if (value.is_null()) return out;
    const json::array* entries = value.if_array();
    if (entries == nullptr) {
        out.problems.push_back("outbound_allowlist must be a JSON array of host names and CIDR ranges");
        return out;
    }
    std::size_t index = 0;
    for (const auto& entry : *entries) {
        const std::size_t at = index++;
        if (at >= kMaxEntries) {
            out.problems.push_back(fmt::format("more than {} entries; the rest are ignored", kMaxEntries));
            break;
        }
        const json::string* text = entry.if_string();
        if (text == nullptr) {
            out.problems.push_back(fmt::format("entry {} is not a string", at));
            continue;
        }
        std::string_view raw(*text);
        while (!raw.empty() && (raw.front() == ' ' || raw.front() == '\t')) raw.remove_prefix(1);
        while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\t')) raw.remove_suffix(1);
        if (raw.empty() || raw.size() > kMaxEntryLength) {
            out.problems.push_back(fmt::format("entry {} is empty or longer than {} characters", at, kMaxEntryLength));
            continue;
        }
        if (auto cidr = Cidr::parse(raw)) {
            out.allowlist.cidrs_.push_back(*cidr);
            continue;
        }
        std::string host = normalize_host(raw);
        std::string_view name = host;
        if (name.starts_with("*.")) name.remove_prefix(2);
        if (!valid_host_name(name) || raw.find('/') != std::string_view::npos) {
            out.problems.push_back(
                fmt::format("entry {} ('{}') is neither a host name nor a CIDR range", at, std::string(raw)));
            continue;
        }
        out.allowlist.hosts_.push_back(std::move(host));
    }
    return out;
}

bool Allowlist::allows_host(std::string_view host) const {
    if (hosts_.empty()) return false;
    const std::string name = normalize_host(host);
    if (name.empty()) return false;
    for (const auto& entry : hosts_) {
        if (entry.starts_with("*.")) {
            std::string_view suffix = std::string_view(entry).substr(1);  // ".example.com"
            if (name.size() > suffix.size() && name.ends_with(suffix)) return true;
        } else if (entry == name) {
            return true;
        }
    }
    return false;
}

bool Allowlist::allows_address(const IpAddress& address) const {
    for (const auto& cidr : cidrs_) {
        if (cidr.contains(address)) return true;
    }
    return false;
}

AllowlistSource allowlist_from_settings(const auth::InstanceSettings& settings) {
    return [&settings]() { return settings.get(auth::kSettingOutboundAllowlist); };
}

Verdict check_address(const IpAddress& address, const Allowlist& allowlist, bool host_allowed) {
    const AddressClass cls = classify(address);
    if (cls == AddressClass::kPublic || host_allowed || allowlist.allows_address(address)) return {};
    return {false, fmt::format("{} is a {} address; outbound requests to it are refused unless the "
                               "outbound_allowlist setting lists it",
                               address.to_string(), class_name(cls))};
}

}  // namespace parley::outbound

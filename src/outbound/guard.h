/// The SSRF guard of outbound HTTP: classifies IP addresses (loopback, private, link-local, ...), parses the
/// administrator's `outbound_allowlist` and decides whether a connection to an address may be made.
#pragma once

#include <boost/json/value.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sockaddr;

namespace parley::auth {
class InstanceSettings;
}

namespace parley::outbound {

/// An IPv4 or IPv6 address. IPv4 addresses keep their 4 bytes in `bytes[0..3]`; the rest is zero.
struct IpAddress {
    std::array<std::uint8_t, 16> bytes{};
    bool v4 = true;

    friend bool operator==(const IpAddress&, const IpAddress&) = default;

    static IpAddress from_v4(std::uint32_t host_order);
    /// The IPv4 address an IPv6 address carries for IPv4 traffic (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
    /// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`), or nullopt. IPv4 addresses: nullopt.
    std::optional<IpAddress> embedded_v4() const;
    /// Canonical text: dotted quad, or RFC 5952 IPv6 (`::1`, `::ffff:127.0.0.1`).
    std::string to_string() const;
};

/// Parses an IP literal as a URL host may carry it: IPv4 in every notation `inet_aton` (and curl) accepts —
/// `127.0.0.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` — and IPv6 with or without brackets, with an
/// optional zone (`fe80::1%eth0`, `[fe80::1%25eth0]`). Anything else (a host name) → nullopt.
std::optional<IpAddress> parse_ip_literal(std::string_view text);

/// The address of a socket address (AF_INET / AF_INET6), or nullopt for other families.
std::optional<IpAddress> ip_from_sockaddr(const struct sockaddr* address);

/// Why an address is not public. Everything but kPublic is refused unless allow-listed.
enum class AddressClass {
    kPublic,
    kUnspecified,    ///< 0.0.0.0/8 ("this network"), ::/128
    kLoopback,       ///< 127.0.0.0/8, ::1
    kPrivate,        ///< 10/8, 172.16/12, 192.168/16, fc00::/7 (unique local), fec0::/10 (old site-local)
    kLinkLocal,      ///< 169.254/16 (incl. the 169.254.169.254 cloud metadata service), fe80::/10
    kSharedAddress,  ///< 100.64/10 (carrier-grade NAT)
    kMulticast,      ///< 224/4, ff00::/8
    kBroadcast,      ///< 255.255.255.255
    kReserved,       ///< 192.0.0/24, 192.0.2/24, 198.18/15, 198.51.100/24, 203.0.113/24, 240/4, 100::/64,
                     ///< 2001:db8::/32, IPv4-compatible ::/96
};

/// Classifies `address`; IPv6 forms that carry an IPv4 address (see IpAddress::embedded_v4) are classified by
/// that IPv4 address, so `::ffff:127.0.0.1` is loopback.
AddressClass classify(const IpAddress& address);

/// Human name of a class: "public", "loopback", "private", "link-local", ...
std::string_view class_name(AddressClass address_class);

/// A CIDR range (`10.0.0.0/8`, `fd00::/8`); a bare address is a /32 or /128.
struct Cidr {
    IpAddress base;  ///< with the host bits cleared
    int prefix = 0;

    /// Parses `a.b.c.d/N`, `v6/N` or a bare address; nullopt when malformed (prefix out of range too).
    static std::optional<Cidr> parse(std::string_view text);
    /// Whether `address` is in the range. IPv4-mapped IPv6 addresses match IPv4 ranges.
    bool contains(const IpAddress& address) const;
    std::string to_string() const;
};

/// The parsed `outbound_allowlist`: host names (matched against the URL's host and every redirect's host)
/// and CIDR ranges (matched against the address actually connected to). Immutable; cheap to copy.
class Allowlist {
public:
    /// Limits on what an administrator may list.
    static constexpr std::size_t kMaxEntries = 256;
    static constexpr std::size_t kMaxEntryLength = 253;

    struct Parsed;

    /// Reads a JSON array of strings. A host name entry is `example.com` (exact, case-insensitive, a trailing
    /// dot ignored) or `*.example.com` (any subdomain, not the domain itself); a CIDR entry is `10.0.0.0/8`,
    /// `fd00::/8`, or a bare IP (`127.0.0.1`, `::1`, `[::1]`). Bad entries are skipped and reported in
    /// `problems` (for validating a settings write); null or a missing setting is an empty list.
    static Parsed parse(const boost::json::value& value);

    bool empty() const { return hosts_.empty() && cidrs_.empty(); }
    /// Whether the URL host `host` (a name or an IP literal as written) is listed by name.
    bool allows_host(std::string_view host) const;
    /// Whether `address` is inside a listed range.
    bool allows_address(const IpAddress& address) const;

    const std::vector<std::string>& hosts() const { return hosts_; }
    const std::vector<Cidr>& cidrs() const { return cidrs_; }

private:
    std::vector<std::string> hosts_;  // lower case, no trailing dot; "*.x" kept as is
    std::vector<Cidr> cidrs_;
};

struct Allowlist::Parsed {
    Allowlist allowlist;
    std::vector<std::string> problems;  ///< one line per rejected entry
};

/// Where the guard reads the allow-list from, on every request (so a settings change applies at once).
/// Returns the setting's JSON value (an array), or nullopt when unset.
using AllowlistSource = std::function<std::optional<boost::json::value>()>;

/// The source that reads `outbound_allowlist` from instance settings. `settings` must outlive the source.
AllowlistSource allowlist_from_settings(const auth::InstanceSettings& settings);

/// The guard's answer for one address: allowed, or refused with a message naming the address.
struct Verdict {
    bool allowed = true;
    std::string reason;  ///< when refused: "127.0.0.1 is a loopback address ..."
};

/// Decides whether a connection to `address` may be made for a URL whose host is `host_allowed` by name.
/// Public addresses are always allowed; others only when the host or the address is allow-listed.
Verdict check_address(const IpAddress& address, const Allowlist& allowlist, bool host_allowed);

}  // namespace parley::outbound

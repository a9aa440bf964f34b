// The SSRF guard's pieces as tables: IP literal parsing in every notation, address classes (incl. the IPv6
// forms that carry IPv4), CIDR ranges, the allow-list's parsing and matching, and the verdict's message.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <boost/json.hpp>

#include "outbound/guard.h"

namespace parley::outbound {
namespace {

namespace json = boost::json;

TEST(ParseIpLiteral, AcceptsEveryIpv4NotationCurlAndInetAtonAccept) {
    struct Case {
        const char* text;
        const char* expected;
    };
    const Case cases[] = {
        {"127.0.0.1", "127.0.0.1"},
        {"2130706433", "127.0.0.1"},          // one 32-bit decimal number
        {"0x7f000001", "127.0.0.1"},          // one hex number
        {"017700000001", "127.0.0.1"},        // one octal number
        {"0x7f.1", "127.0.0.1"},              // a.b: 8 + 24 bits
        {"127.1", "127.0.0.1"},
        {"127.0.1", "127.0.0.1"},             // a.b.c: 8 + 8 + 16 bits
        {"0177.0.0.1", "127.0.0.1"},          // octal part
        {"0x7F.0X0.0x0.0x1", "127.0.0.1"},    // hex parts, both cases
        {"0", "0.0.0.0"},
        {"0x0", "0.0.0.0"},
        {"169.254.169.254", "169.254.169.254"},
        {"2852039166", "169.254.169.254"},
        {"0xa9.0xfe.0xa9.0xfe", "169.254.169.254"},
        {"10.0.0.1", "10.0.0.1"},
        {"167772161", "10.0.0.1"},
        {"255.255.255.255", "255.255.255.255"},
        {"4294967295", "255.255.255.255"},
        {"8.8.8.8", "8.8.8.8"},
        {"1.2.65535", "1.2.255.255"},
        {"1.16777215", "1.255.255.255"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        auto ip = parse_ip_literal(c.text);
        ASSERT_TRUE(ip.has_value());
        EXPECT_TRUE(ip->v4);
        EXPECT_EQ(ip->to_string(), c.expected);
    }
}

TEST(ParseIpLiteral, AcceptsIpv6WithBracketsAndZones) {
    struct Case {
        const char* text;
        const char* expected;
    };
    const Case cases[] = {
        {"::1", "::1"},
        {"[::1]", "::1"},
        {"[0:0:0:0:0:0:0:1]", "::1"},
        {"::", "::"},
        {"::ffff:127.0.0.1", "::ffff:127.0.0.1"},
        {"[::ffff:7f00:1]", "::ffff:127.0.0.1"},
        {"[::FFFF:7F00:0001]", "::ffff:127.0.0.1"},
        {"fe80::1%eth0", "fe80::1"},
        {"[fe80::1%25eth0]", "fe80::1"},
        {"2001:db8::1", "2001:db8::1"},
        {"64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        auto ip = parse_ip_literal(c.text);
        ASSERT_TRUE(ip.has_value());
        EXPECT_FALSE(ip->v4);
        EXPECT_EQ(ip->to_string(), c.expected);
    }
}

TEST(ParseIpLiteral, RejectsHostNamesAndMalformedNumbers) {
    for (const char* text : {"", "localhost", "example.com", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "4294967296",
                             "0x", "0x1g", "08", "09.1.1.1", "1..2", ".1", "1.", "1.2.3.", "-1", "+1", " 1.2.3.4",
                             "1.2.3.4 ", "0x100000000", "1.16777216", "1.2.65536", "[::1", "::1]", "[1.2.3.4]",
                             ":::1", "12345::1", "[::1]:80", "1.2.3.4:80", "::ffff:0x7f.1", "0x7f.example",
                             "999999999999999999999"}) {
        SCOPED_TRACE(text);
        EXPECT_FALSE(parse_ip_literal(text).has_value());
    }
}

TEST(Classify, Ipv4Table) {
    struct Case {
        const char* address;
        AddressClass expected;
    };
    const Case cases[] = {
        {"0.0.0.0", AddressClass::kUnspecified},
        {"0.1.2.3", AddressClass::kUnspecified},
        {"10.0.0.0", AddressClass::kPrivate},
        {"10.255.255.255", AddressClass::kPrivate},
        {"11.0.0.1", AddressClass::kPublic},
        {"100.63.255.255", AddressClass::kPublic},
        {"100.64.0.0", AddressClass::kSharedAddress},
        {"100.127.255.255", AddressClass::kSharedAddress},
        {"100.128.0.0", AddressClass::kPublic},
        {"126.255.255.255", AddressClass::kPublic},
        {"127.0.0.1", AddressClass::kLoopback},
        {"127.255.255.254", AddressClass::kLoopback},
        {"128.0.0.1", AddressClass::kPublic},
        {"169.254.0.1", AddressClass::kLinkLocal},
        {"169.254.169.254", AddressClass::kLinkLocal},
        {"169.255.0.1", AddressClass::kPublic},
        {"172.15.255.255", AddressClass::kPublic},
        {"172.16.0.0", AddressClass::kPrivate},
        {"172.31.255.255", AddressClass::kPrivate},
        {"172.32.0.0", AddressClass::kPublic},
        {"192.0.0.8", AddressClass::kReserved},
        {"192.0.2.1", AddressClass::kReserved},
        {"192.88.99.1", AddressClass::kReserved},
        {"192.167.255.255", AddressClass::kPublic},
        {"192.168.0.1", AddressClass::kPrivate},
        {"192.168.255.255", AddressClass::kPrivate},
        {"192.169.0.0", AddressClass::kPublic},
        {"198.18.0.1", AddressClass::kReserved},
        {"198.19.255.255", AddressClass::kReserved},
        {"198.20.0.0", AddressClass::kPublic},
        {"198.51.100.7", AddressClass::kReserved},
        {"203.0.113.9", AddressClass::kReserved},
        {"223.255.255.255", AddressClass::kPublic},
        {"224.0.0.1", AddressClass::kMulticast},
        {"239.255.255.250", AddressClass::kMulticast},
        {"240.0.0.1", AddressClass::kReserved},
        {"255.255.255.254", AddressClass::kReserved},
        {"255.255.255.255", AddressClass::kBroadcast},
        {"8.8.8.8", AddressClass::kPublic},
        {"1.1.1.1", AddressClass::kPublic},
        {"93.184.216.34", AddressClass::kPublic},
        // Other notations of the same addresses classify the same.
        {"2130706433", AddressClass::kLoopback},
        {"0x7f.1", AddressClass::kLoopback},
        {"0177.0.0.1", AddressClass::kLoopback},
        {"0xa9fea9fe", AddressClass::kLinkLocal},
        {"0", AddressClass::kUnspecified},
        {"012.1", AddressClass::kPrivate},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.address);
        auto ip = parse_ip_literal(c.address);
        ASSERT_TRUE(ip.has_value());
        EXPECT_EQ(class_name(classify(*ip)), class_name(c.expected));
    }
}

TEST(Classify, Ipv6TableIncludingFormsThatCarryIpv4) {
    struct Case {
        const char* address;
        AddressClass expected;
    };
    const Case cases[] = {
        {"::", AddressClass::kUnspecified},
        {"::1", AddressClass::kLoopback},
        {"0:0:0:0:0:0:0:1", AddressClass::kLoopback},
        {"fe80::1", AddressClass::kLinkLocal},
        {"febf:ffff::1", AddressClass::kLinkLocal},
        {"fec0::1", AddressClass::kPrivate},
        {"fc00::1", AddressClass::kPrivate},
        {"fd12:3456:789a::1", AddressClass::kPrivate},
        {"fe00::1", AddressClass::kPublic},
        {"ff02::1", AddressClass::kMulticast},
        {"ff05::1:3", AddressClass::kMulticast},
        {"100::1", AddressClass::kReserved},
        {"2001:db8::1", AddressClass::kReserved},
        {"2001::1", AddressClass::kReserved},
        {"2606:4700:4700::1111", AddressClass::kPublic},
        {"2a00:1450:4001:82b::200e", AddressClass::kPublic},
        // IPv4-mapped
        {"::ffff:127.0.0.1", AddressClass::kLoopback},
        {"::ffff:7f00:1", AddressClass::kLoopback},
        {"::ffff:10.1.2.3", AddressClass::kPrivate},
        {"::ffff:172.16.0.1", AddressClass::kPrivate},
        {"::ffff:192.168.1.1", AddressClass::kPrivate},
        {"::ffff:169.254.169.254", AddressClass::kLinkLocal},
        {"::ffff:100.64.0.1", AddressClass::kSharedAddress},
        {"::ffff:0.0.0.0", AddressClass::kUnspecified},
        {"::ffff:224.0.0.1", AddressClass::kMulticast},
        {"::ffff:255.255.255.255", AddressClass::kBroadcast},
        {"::ffff:8.8.8.8", AddressClass::kPublic},
        // IPv4-compatible (deprecated): the inner class, or reserved when the inner address is public
        {"::127.0.0.1", AddressClass::kLoopback},
        {"::10.0.0.1", AddressClass::kPrivate},
        {"::8.8.8.8", AddressClass::kReserved},
        // NAT64 well-known prefix
        {"64:ff9b::127.0.0.1", AddressClass::kLoopback},
        {"64:ff9b::a9fe:a9fe", AddressClass::kLinkLocal},
        {"64:ff9b::8.8.8.8", AddressClass::kPublic},
        {"64:ff9b:1::1", AddressClass::kReserved},
        // 6to4
        {"2002:7f00:1::", AddressClass::kLoopback},
        {"2002:c0a8:101::1", AddressClass::kPrivate},
        {"2002:0808:0808::1", AddressClass::kPublic},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.address);
        auto ip = parse_ip_literal(c.address);
        ASSERT_TRUE(ip.has_value());
        EXPECT_EQ(class_name(classify(*ip)), class_name(c.expected));
    }
}

TEST(IpFromSockaddr, ReadsBothFamilies) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(0x7f000001);
    auto v4 = ip_from_sockaddr(reinterpret_cast<const sockaddr*>(&in));
    ASSERT_TRUE(v4);
    EXPECT_EQ(v4->to_string(), "127.0.0.1");

    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    ASSERT_EQ(inet_pton(AF_INET6, "::ffff:169.254.169.254", &in6.sin6_addr), 1);
    auto v6 = ip_from_sockaddr(reinterpret_cast<const sockaddr*>(&in6));
    ASSERT_TRUE(v6);
    EXPECT_FALSE(v6->v4);
    EXPECT_EQ(classify(*v6), AddressClass::kLinkLocal);

    sockaddr other{};
    other.sa_family = AF_UNIX;
    EXPECT_FALSE(ip_from_sockaddr(&other));
    EXPECT_FALSE(ip_from_sockaddr(nullptr));
}

TEST(Cidr, ParsesAndMatches) {
    struct Case {
        const char* range;
        const char* address;
        bool inside;
    };
    const Case cases[] = {
        {"10.0.0.0/8", "10.1.2.3", true},
        {"10.0.0.0/8", "11.0.0.1", false},
        {"10.1.2.3/8", "10.200.0.1", true},  // host bits are ignored
        {"192.168.1.0/24", "192.168.1.255", true},
        {"192.168.1.0/24", "192.168.2.0", false},
        {"172.16.0.0/12", "172.31.0.1", true},
        {"172.16.0.0/12", "172.32.0.1", false},
        {"127.0.0.1", "127.0.0.1", true},
        {"127.0.0.1", "127.0.0.2", false},
        {"127.0.0.1/32", "::ffff:127.0.0.1", true},  // mapped IPv6 matches IPv4 ranges
        {"127.0.0.0/8", "::1", false},
        {"0.0.0.0/0", "8.8.8.8", true},
        {"0.0.0.0/0", "::1", false},
        {"::1", "::1", true},
        {"[::1]", "::1", true},
        {"::1/128", "::2", false},
        {"fd00::/8", "fd12::1", true},
        {"fd00::/8", "fe80::1", false},
        {"fe80::/10", "febf::1", true},
        {"fe80::/10", "fec0::1", false},
        {"::/0", "2001:db8::1", true},
        {"::/0", "1.2.3.4", false},
        {"2001:db8::/127", "2001:db8::1", true},
        {"2001:db8::/127", "2001:db8::2", false},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string(c.range) + " " + c.address);
        auto cidr = Cidr::parse(c.range);
        ASSERT_TRUE(cidr.has_value());
        auto ip = parse_ip_literal(c.address);
        ASSERT_TRUE(ip.has_value());
        EXPECT_EQ(cidr->contains(*ip), c.inside);
    }
    EXPECT_EQ(Cidr::parse("10.1.2.3/8")->to_string(), "10.0.0.0/8");
    EXPECT_EQ(Cidr::parse("fe80::1/10")->to_string(), "fe80::/10");
    for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/a", "example.com/8",
                            "/8", "10.0.0.0/8/8", "10.0.0.0/0008"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(Cidr::parse(bad).has_value());
    }
}

TEST(Allowlist, ParsesHostNamesAndRangesAndReportsBadEntries) {
    auto parsed = Allowlist::parse(json::parse(
        R"(["api.example.com", "*.internal.test", " 10.0.0.0/8 ", "127.0.0.1", "::1", "Partner.EXAMPLE.org.",
            "bad host", 42, "", "10.0.0.0/99", "http://x.test", "a..b"])"));
    EXPECT_EQ(parsed.allowlist.hosts().size(), 3u);
    EXPECT_EQ(parsed.allowlist.cidrs().size(), 3u);
    EXPECT_EQ(parsed.problems.size(), 6u);

    const Allowlist& list = parsed.allowlist;
    EXPECT_TRUE(list.allows_host("api.example.com"));
    EXPECT_TRUE(list.allows_host("API.Example.COM."));
    EXPECT_FALSE(list.allows_host("example.com"));
    EXPECT_FALSE(list.allows_host("xapi.example.com"));
    EXPECT_FALSE(list.allows_host("api.example.com.evil.test"));
    EXPECT_TRUE(list.allows_host("a.internal.test"));
    EXPECT_TRUE(list.allows_host("b.a.internal.test"));
    EXPECT_FALSE(list.allows_host("internal.test"));
    EXPECT_FALSE(list.allows_host("evilinternal.test"));
    EXPECT_TRUE(list.allows_host("partner.example.org"));
    // IP entries are ranges, matched against the connected address, not host names.
    EXPECT_FALSE(list.allows_host("127.0.0.1"));
    EXPECT_TRUE(list.allows_address(*parse_ip_literal("127.0.0.1")));
    EXPECT_TRUE(list.allows_address(*parse_ip_literal("::1")));
    EXPECT_TRUE(list.allows_address(*parse_ip_literal("10.9.8.7")));
    EXPECT_FALSE(list.allows_address(*parse_ip_literal("127.0.0.2")));
    EXPECT_FALSE(list.allows_address(*parse_ip_literal("192.168.0.1")));
}

TEST(Allowlist, NullIsEmptyAndOtherShapesAreProblems) {
    auto none = Allowlist::parse(json::value(nullptr));
    EXPECT_TRUE(none.allowlist.empty());
    EXPECT_TRUE(none.problems.empty());
    auto object = Allowlist::parse(json::parse(R"({"hosts": ["a"]})"));
    EXPECT_TRUE(object.allowlist.empty());
    EXPECT_EQ(object.problems.size(), 1u);
    json::array many;
    for (int i = 0; i < 300; ++i) many.push_back(json::string("h" + std::to_string(i) + ".test"));
    auto capped = Allowlist::parse(many);
    EXPECT_EQ(capped.allowlist.hosts().size(), Allowlist::kMaxEntries);
    EXPECT_EQ(capped.problems.size(), 1u);
}

TEST(CheckAddress, RefusesNonPublicUnlessListedAndNamesTheAddress) {
    const Allowlist empty;
    auto loopback = *parse_ip_literal("127.0.0.1");
    Verdict refused = check_address(loopback, empty, false);
    EXPECT_FALSE(refused.allowed);
    EXPECT_NE(refused.reason.find("127.0.0.1"), std::string::npos);
    EXPECT_NE(refused.reason.find("loopback"), std::string::npos);
    EXPECT_NE(refused.reason.find("outbound_allowlist"), std::string::npos);

    Verdict metadata = check_address(*parse_ip_literal("169.254.169.254"), empty, false);
    EXPECT_FALSE(metadata.allowed);
    EXPECT_NE(metadata.reason.find("169.254.169.254 is a link-local address"), std::string::npos);

    Verdict mapped = check_address(*parse_ip_literal("::ffff:10.0.0.1"), empty, false);
    EXPECT_FALSE(mapped.allowed);
    EXPECT_NE(mapped.reason.find("::ffff:10.0.0.1 is a private address"), std::string::npos);

    EXPECT_TRUE(check_address(*parse_ip_literal("8.8.8.8"), empty, false).allowed);
    EXPECT_TRUE(check_address(*parse_ip_literal("2606:4700::1"), empty, false).allowed);
    EXPECT_TRUE(check_address(loopback, empty, true).allowed);  // the URL host is listed by name

    auto ranges = Allowlist::parse(json::parse(R"(["127.0.0.0/8", "fd00::/8"])")).allowlist;
    EXPECT_TRUE(check_address(loopback, ranges, false).allowed);
    EXPECT_TRUE(check_address(*parse_ip_literal("::ffff:127.0.0.9"), ranges, false).allowed);
    EXPECT_TRUE(check_address(*parse_ip_literal("fd00::5"), ranges, false).allowed);
    EXPECT_FALSE(check_address(*parse_ip_literal("::1"), ranges, false).allowed);
    EXPECT_FALSE(check_address(*parse_ip_literal("10.0.0.1"), ranges, false).allowed);
}

}  // namespace
}  // namespace parley::outbound

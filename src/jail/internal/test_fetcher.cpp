#include "jail/internal/test_fetcher.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <regex>

namespace parley::jail::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

bool is_refused_address(const std::string& ip) {
    in_addr v4{};
    if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
        const std::uint32_t a = ntohl(v4.s_addr);
        auto in = [a](std::uint32_t net, int bits) { return (a >> (32 - bits)) == (net >> (32 - bits)); };
        return in(0x00000000, 8) || in(0x7F000000, 8) || in(0x0A000000, 8) || in(0xAC100000, 12) ||
               in(0xC0A80000, 16) || in(0xA9FE0000, 16) || in(0x64400000, 10) || in(0xE0000000, 4) ||
               in(0xF0000000, 4);
    }
    in6_addr v6{};
    if (inet_pton(AF_INET6, ip.c_str(), &v6) == 1) {
        const unsigned char* b = v6.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&v6)) {
            char text[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, b + 12, text, sizeof text);
            return is_refused_address(text);
        }
        return IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_UNSPECIFIED(&v6) || IN6_IS_ADDR_LINKLOCAL(&v6) ||
               IN6_IS_ADDR_MULTICAST(&v6) || (b[0] & 0xFE) == 0xFC;
    }
    return true;  // not an address at all
}

GuardedFetcher::GuardedFetcher(std::set<std::string> allow, unsigned workers) : allow_(std::move(allow)) {
    for (unsigned i = 0; i < workers; ++i) threads_.emplace_back([this] { worker(); });
}

GuardedFetcher::~GuardedFetcher() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

std::size_t GuardedFetcher::requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}

void GuardedFetcher::fetch(FetchRequest request, std::function<void(FetchResponse)> done) {
    {
        std::lock_guard lock(mutex_);
        ++requests_;
        queue_.emplace_back(std::move(request), std::move(done));
    }
    cv_.notify_one();
}

void GuardedFetcher::worker() {
    while (true) {
        std::pair<FetchRequest, std::function<void(FetchResponse)>> item;
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            item = std::move(queue_.front());
            queue_.pop_front();
        }
        item.second(perform(item.first));
    }
}

FetchResponse GuardedFetcher::perform(const FetchRequest& original) const {
    static const std::regex url_re(R"(^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/:?#\[\]]+|\[[0-9a-fA-F:.]+\])(?::(\d{1,5}))?([^#]*)(#.*)?$)");
    FetchRequest request = original;
    FetchResponse out;
    auto fail = [&](std::string code, std::string message) {
        out.error = FetchError{std::move(code), std::move(message)};
        return out;
    };
    for (int hop = 0; hop <= 5; ++hop) {
        std::smatch m;
        if (!std::regex_match(request.url, m, url_re)) return fail("bad_url", "not an absolute URL: " + request.url);
        std::string scheme = m[1].str();
        for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (scheme != "http") return fail("network", "only http:// is supported here: " + request.url);
        std::string host = m[2].str();
        if (host.front() == '[') host = host.substr(1, host.size() - 2);
        const std::string port = m[3].matched ? m[3].str() : "80";
        std::string target = m[4].str().empty() ? "/" : m[4].str();
        const bool allowed = allow_.count(host + ":" + port) > 0;

        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || !found) {
            return fail("network", "cannot resolve " + host);
        }
        std::vector<tcp::endpoint> endpoints;
        std::string refused;
        for (addrinfo* ai = found; ai; ai = ai->ai_next) {
            char text[INET6_ADDRSTRLEN] = {};
            const void* addr = ai->ai_family == AF_INET
                                   ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr)
                                   : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr);
            inet_ntop(ai->ai_family, addr, text, sizeof text);
            if (!allowed && is_refused_address(text)) refused = text;
            endpoints.emplace_back(asio::ip::make_address(text), static_cast<unsigned short>(std::stoi(port)));
        }
        freeaddrinfo(found);
        if (!refused.empty()) {
            return fail(kFetchRefusedByGuard, request.url + " resolves to " + refused +
                                                  ", a loopback, private or link-local address");
        }
        try {
            asio::io_context io;
            beast::tcp_stream stream(io);
            stream.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(1, request.timeout_ms)));
            stream.connect(endpoints);
            bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(request.method), target, 11};
            req.set(bhttp::field::host, m[2].str() + (m[3].matched ? ":" + port : ""));
            for (const auto& [name, value] : request.headers) req.set(name, value);
            req.body() = request.body;
            req.prepare_payload();
            bhttp::write(stream, req);
            beast::flat_buffer buffer;
            bhttp::response_parser<bhttp::string_body> parser;
            parser.body_limit(request.max_response_bytes ? request.max_response_bytes : 2 << 20);
            beast::error_code ec;
            bhttp::read(stream, buffer, parser, ec);
            if (ec == bhttp::error::body_limit) return fail("too_large", "the response body is too large");
            if (ec) return fail(ec == beast::error::timeout ? "timeout" : "network", ec.message());
            auto res = parser.release();
            const int status = static_cast<int>(res.result_int());
            if (status >= 300 && status < 400 && res.count(bhttp::field::location)) {
                std::string location(res[bhttp::field::location]);
                if (location.rfind("/", 0) == 0) {
                    location = scheme + "://" + m[2].str() + (m[3].matched ? ":" + port : "") + location;
                }
                request.url = location;
                if (status == 303) {
                    request.method = "GET";
                    request.body.clear();
                }
                continue;
            }
            out.status = status;
            out.url = request.url;
            for (const auto& field : res) out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
            out.body = std::move(res.body());
            return out;
        } catch (const std::exception& e) {
            return fail("network", e.what());
        }
    }
    return fail("network", "too many redirects");
}

void HeldFetcher::fetch(FetchRequest, std::function<void(FetchResponse)> done) {
    std::lock_guard lock(mutex_);
    held_.push_back(std::move(done));
}

std::size_t HeldFetcher::held() const {
    std::lock_guard lock(mutex_);
    return held_.size();
}

void HeldFetcher::answer_all(const FetchResponse& response) {
    std::vector<std::function<void(FetchResponse)>> held;
    {
        std::lock_guard lock(mutex_);
        held.swap(held_);
    }
    for (auto& done : held) done(response);
}

}  // namespace parley::jail::testing

// Router (http.h): a segment trie. Literal children are tried before the {param} child, with backtracking,
// so "/bots/new" beats "/bots/{bot}" while "/bots/42" still reaches the parameter route.
#include <boost/container/small_vector.hpp>

#include <array>
#include <map>
#include <stdexcept>

#include "http/http.h"
#include "http/internal/url.h"

namespace parley::http {

namespace {

constexpr std::size_t kMethods = 8;

using Segments = boost::container::small_vector<std::string_view, 8>;

Segments split_segments(std::string_view path) {
    Segments segments;
    if (path.empty() || path.front() != '/') return segments;
    path.remove_prefix(1);
    if (path.empty()) return segments;  // "/" has no segments
    for (;;) {
        std::size_t slash = path.find('/');
        segments.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return segments;
}

bool is_param(std::string_view segment) {
    return segment.size() >= 3 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

struct Router::Node {
    struct Entry {
        const Route* route = nullptr;
        std::size_t index = 0;
        std::vector<std::string> param_names;
    };
    std::map<std::string, std::unique_ptr<Node>, std::less<>> literals;
    std::unique_ptr<Node> param;
    std::array<Entry, kMethods> by_method;
};

void Router::add(Method method, std::string pattern, Access access, Handler handler) {
    auto route = std::make_unique<Route>();
    route->method = method;
    route->pattern = std::move(pattern);
    route->access = std::move(access);
    route->handler = std::move(handler);

    auto segments = split_segments(route->pattern);
    if (route->pattern.empty() || route->pattern.front() != '/') {
        throw std::invalid_argument("route pattern must start with '/': " + route->pattern);
    }
    if (!root_) root_ = std::make_shared<Node>();
    Node* node = root_.get();
    std::vector<std::string> names;
    for (auto segment : segments) {
        if (is_param(segment)) {
            names.emplace_back(segment.substr(1, segment.size() - 2));
            if (!node->param) node->param = std::make_unique<Node>();
            node = node->param.get();
        } else {
            auto it = node->literals.find(segment);
            if (it == node->literals.end()) {
                it = node->literals.emplace(std::string(segment), std::make_unique<Node>()).first;
            }
            node = it->second.get();
        }
    }
    auto& entry = node->by_method[static_cast<std::size_t>(method)];
    if (entry.route) {
        throw std::invalid_argument("route registered twice: " + std::string(method_name(method)) + " " +
                                    route->pattern);
    }
    entry.route = route.get();
    entry.index = routes_.size();
    entry.param_names = std::move(names);
    routes_.push_back(std::move(route));
}

void Router::websocket(std::string pattern, Access access, WebSocketHandler handler) {
    add(Method::kGet, std::move(pattern), std::move(access), Handler{});
    routes_.back()->websocket = std::move(handler);
}

Router::Match Router::match(Method method, std::string_view path) const {
    Match result;
    if (!root_ || path.empty() || path.front() != '/') return result;
    // Hot path: segments without '%' are matched as views into `path`; only encoded ones are decoded (into
    // `storage`). Small inline vectors keep a typical lookup free of heap allocations.
    boost::container::small_vector<std::string_view, 8> segments;
    boost::container::small_vector<std::string, 4> storage;
    for (auto raw : split_segments(path)) {
        if (raw.find('%') == std::string_view::npos) {
            segments.push_back(raw);
            continue;
        }
        storage.emplace_back();
        if (!internal::percent_decode(raw, storage.back())) return result;
        segments.push_back({});  // filled below: `storage` may still reallocate
    }
    for (std::size_t i = 0, next = 0; i < segments.size(); ++i) {
        if (segments[i].data() == nullptr) segments[i] = storage[next++];
    }
    const auto& decoded = segments;

    const auto m = static_cast<std::size_t>(method);
    const auto get = static_cast<std::size_t>(Method::kGet);
    std::array<bool, kMethods> allowed{};
    boost::container::small_vector<std::string_view, 8> values;
    const Node::Entry* found = nullptr;

    // Depth-first, literal before parameter; stops at the first node that serves the method.
    auto visit = [&](auto&& self, const Node* node, std::size_t depth) -> bool {
        if (depth == decoded.size()) {
            const Node::Entry* entry = node->by_method[m].route ? &node->by_method[m] : nullptr;
            if (!entry && method == Method::kHead && node->by_method[get].route) entry = &node->by_method[get];
            if (entry) {
                found = entry;
                return true;
            }
            for (std::size_t i = 0; i < kMethods; ++i) allowed[i] = allowed[i] || node->by_method[i].route;
            return false;
        }
        const std::string_view segment = decoded[depth];
        auto it = node->literals.find(segment);
        if (it != node->literals.end() && self(self, it->second.get(), depth + 1)) return true;
        if (node->param && !segment.empty()) {
            values.push_back(segment);
            if (self(self, node->param.get(), depth + 1)) return true;
            values.pop_back();
        }
        return false;
    };

    if (visit(visit, root_.get(), 0)) {
        result.route = found->route;
        result.route_index = found->index;
        result.params.reserve(values.size());
        for (std::size_t i = 0; i < values.size(); ++i) {
            result.params.emplace_back(found->param_names[i], std::string(values[i]));
        }
        result.path_known = true;
        return result;
    }
    if (allowed[get]) allowed[static_cast<std::size_t>(Method::kHead)] = true;  // HEAD is served by GET routes
    for (std::size_t i = 0; i < kMethods; ++i) {
        if (allowed[i]) {
            result.path_known = true;
            result.allowed.push_back(static_cast<Method>(i));
        }
    }
    return result;
}

}  // namespace parley::http

#include "events/events.h"

#include <boost/json.hpp>
#include <charconv>

#include "core/metrics.h"
#include "http/http.h"

namespace parley::events {

namespace json = boost::json;

bool Audience::admits(const core::Principal& principal) const {
    for (const auto& id : user_ids) {
        if (principal.user_id == id) return true;
    }
    if (!module.empty()) return principal.can(module, action);
    return user_ids.empty();
}

EventHub::EventHub(std::size_t replay_capacity, core::Metrics* metrics) : capacity_(replay_capacity) {
    if (metrics) {
        metrics->gauge_fn("parley_event_subscribers", "WebSockets subscribed to live events",
                          [this] { return static_cast<double>(subscribers()); });
    }
}

std::uint64_t EventHub::publish(const std::string& type, json::object body, Audience audience) {
    std::vector<std::shared_ptr<http::WebSocketSession>> targets;
    std::shared_ptr<const std::string> text;
    std::uint64_t id = 0;
    {
        std::lock_guard lock(mutex_);
        id = next_id_++;
        json::object event;
        event["id"] = id;
        event["type"] = type;
        for (auto& kv : body) event[kv.key()] = std::move(kv.value());
        text = std::make_shared<const std::string>(json::serialize(event));
        for (auto it = subscribers_.begin(); it != subscribers_.end();) {
            auto session = it->second.session.lock();
            if (!session) {
                it = subscribers_.erase(it);
                continue;
            }
            if (audience.admits(*it->second.principal)) targets.push_back(std::move(session));
            ++it;
        }
        ring_.push_back({id, std::move(audience), text});
        if (ring_.size() > capacity_) ring_.pop_front();
    }
    if (!targets.empty()) http::broadcast(targets, text);
    for (const auto& listener : listeners_) {
        try {
            listener(id, type, *text);
        } catch (...) {
            // A listener's failure must not fail the publisher (README: listeners must not throw).
        }
    }
    return id;
}

void EventHub::add_listener(Listener listener) {
    std::lock_guard lock(mutex_);
    listeners_.push_back(std::move(listener));
}

void EventHub::attach(const std::shared_ptr<http::WebSocketSession>& session,
                      std::shared_ptr<const core::Principal> principal, std::optional<std::uint64_t> after) {
    std::vector<std::string> replay;
    std::uint64_t last = 0;
    bool resync = false;
    {
        std::lock_guard lock(mutex_);
        last = next_id_ - 1;
        if (after) {
            if (!ring_.empty() && *after + 1 < ring_.front().id) resync = true;
            for (const auto& stored : ring_) {
                if (stored.id > *after && stored.audience.admits(*principal)) replay.push_back(*stored.text);
            }
        }
        subscribers_[session.get()] = Subscriber{session, principal};
    }
    json::object hello{{"type", "hello"}, {"user_id", principal->user_id}, {"last_event_id", last}};
    session->send(json::serialize(hello));
    if (resync) session->send(R"({"type":"resync","message":"events were missed; reload the lists"})");
    for (auto& text : replay) session->send(std::move(text));
    std::weak_ptr<http::WebSocketSession> weak = session;
    auto* key = session.get();
    session->on_close = [this, key] {
        std::lock_guard lock(mutex_);
        subscribers_.erase(key);
    };
    session->on_message = [weak](std::string_view text) {
        // Clients may ping at the application level; anything else is ignored.
        if (text == R"({"type":"ping"})") {
            if (auto s = weak.lock()) s->send(R"({"type":"pong"})");
        }
    };
}

std::size_t EventHub::subscribers() const {
    std::lock_guard lock(mutex_);
    return subscribers_.size();
}

bool EventHub::observed() const {
    std::lock_guard lock(mutex_);
    return !subscribers_.empty() || !listeners_.empty();
}

std::uint64_t EventHub::last_id() const {
    std::lock_guard lock(mutex_);
    return next_id_ - 1;
}

void register_routes(http::Router& router, EventHub& hub) {
    router.websocket("/api/v1/events", http::Access::signed_in(),
                     [&hub](std::shared_ptr<http::WebSocketSession> session, const http::Request& request) {
                         std::optional<std::uint64_t> after;
                         if (auto value = request.query_param("after")) {
                             std::uint64_t n = 0;
                             auto [ptr, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
                             if (ec == std::errc() && ptr == value->data() + value->size()) after = n;
                         }
                         hub.attach(session, std::make_shared<core::Principal>(request.user()), after);
                     });
}

}  // namespace parley::events

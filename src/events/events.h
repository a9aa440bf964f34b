/// Live events for signed-in users: modules publish, the `/api/v1/events` WebSocket delivers each event only to
/// the users allowed to see it. Every event gets a sequence id; a client that reconnects with `?after=ID`
/// receives what it missed from a bounded in-memory ring before live events resume.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/principal.h"

namespace parley::core {
class Metrics;
}
namespace parley::http {
class Router;
class WebSocketSession;
}  // namespace parley::http

namespace parley::events {

/// Who may receive an event: the listed users, and everyone holding module.action; with neither, everyone. A user
/// who qualifies both ways receives the event once (one event id for one happening).
struct Audience {
    std::vector<std::string> user_ids;         ///< these users (besides those with module.action)
    std::string module;                        ///< users with module.action
    core::Action action = core::Action::kView;

    static Audience user(std::string id) { return {{std::move(id)}, {}, core::Action::kView}; }
    static Audience permission(std::string module, core::Action action) { return {{}, std::move(module), action}; }
    static Audience everyone() { return {}; }
    /// These users, and also everyone with module.action (a dialog's operator and the supervisors).
    static Audience users_or(std::vector<std::string> ids, std::string module, core::Action action) {
        return {std::move(ids), std::move(module), action};
    }
    bool admits(const core::Principal& principal) const;
};

/// Fan-out hub. Thread-safety: every method may be called from any thread; delivery goes through each
/// WebSocketSession::send (which posts to that socket's strand), so publish() never blocks on a slow client.
class EventHub {
public:
    explicit EventHub(std::size_t replay_capacity = 10'000, core::Metrics* metrics = nullptr);

    /// Publishes `{"id": N, "type": type, ...body}` to the audience; returns N.
    std::uint64_t publish(const std::string& type, boost::json::object body, Audience audience);

    /// Attaches a socket for `principal`; sends "hello" (with the last event id), then replays events after
    /// `after` that the principal may see (if `after` is older than the ring, a "resync" event says so).
    void attach(const std::shared_ptr<http::WebSocketSession>& session,
                std::shared_ptr<const core::Principal> principal, std::optional<std::uint64_t> after);

    std::size_t subscribers() const;
    std::uint64_t last_id() const;
    /// Whether anyone would receive an event now (a socket or a listener): publishers may skip building
    /// events nobody receives.
    bool observed() const;

    /// An in-process observer of every published event (webhooks, SLA bookkeeping): called on the publishing
    /// thread after the event is stored, outside the hub's lock, with the event's id, type and full JSON text
    /// (`{"id", "type", ...body}`). It must be quick and must not throw (exceptions are swallowed). Add
    /// listeners at start-up, before the server answers; they live as long as the hub.
    using Listener = std::function<void(std::uint64_t id, const std::string& type, const std::string& text)>;
    void add_listener(Listener listener);

private:
    struct Subscriber {
        std::weak_ptr<http::WebSocketSession> session;
        std::shared_ptr<const core::Principal> principal;
    };
    struct Stored {
        std::uint64_t id;
        Audience audience;
        std::shared_ptr<const std::string> text;
    };

    mutable std::mutex mutex_;
    std::unordered_map<http::WebSocketSession*, Subscriber> subscribers_;
    std::deque<Stored> ring_;
    std::vector<Listener> listeners_;
    std::size_t capacity_;
    std::uint64_t next_id_ = 1;
};

/// Registers `GET /api/v1/events` (WebSocket, any signed-in user).
void register_routes(http::Router& router, EventHub& hub);

}  // namespace parley::events

// EventHub: audiences (a user who qualifies twice gets an event once) and in-process listeners.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "events/events.h"

namespace parley::events {
namespace {

core::Principal principal(std::string id, std::vector<std::string> permissions = {}) {
    core::Principal p;
    p.user_id = std::move(id);
    p.permissions.insert(permissions.begin(), permissions.end());
    return p;
}

TEST(AudienceTest, UsersOrPermissionAdmitsEitherOnce) {
    const auto audience = Audience::users_or({"op1", "op2"}, "operator", core::Action::kDelete);
    EXPECT_TRUE(audience.admits(principal("op1")));
    EXPECT_TRUE(audience.admits(principal("op2")));
    EXPECT_TRUE(audience.admits(principal("boss", {"operator.delete"})));
    EXPECT_TRUE(audience.admits(principal("op1", {"operator.delete"})));  // both ways: still one admission
    EXPECT_FALSE(audience.admits(principal("op3", {"operator.view"})));
}

TEST(AudienceTest, SingleUserPermissionAndEveryone) {
    EXPECT_TRUE(Audience::user("u1").admits(principal("u1")));
    EXPECT_FALSE(Audience::user("u1").admits(principal("u2", {"operator.delete"})));
    EXPECT_TRUE(Audience::permission("bots", core::Action::kView).admits(principal("x", {"bots.view"})));
    EXPECT_FALSE(Audience::permission("bots", core::Action::kView).admits(principal("x", {"bots.edit"})));
    EXPECT_TRUE(Audience::everyone().admits(principal("anyone")));
}

TEST(EventHubTest, ListenersSeeEveryEventOnceWithItsText) {
    EventHub hub(4);
    std::vector<std::pair<std::uint64_t, std::string>> seen;
    hub.add_listener([&](std::uint64_t id, const std::string& type, const std::string& text) {
        auto event = boost::json::parse(text).as_object();
        EXPECT_EQ(event.at("id").to_number<std::uint64_t>(), id);
        EXPECT_EQ(event.at("type").as_string(), type);
        seen.emplace_back(id, type);
    });
    hub.add_listener([](std::uint64_t, const std::string&, const std::string&) { throw std::runtime_error("ignored"); });
    const auto first = hub.publish("dialog.created", {{"dialog_id", "d1"}},
                                   Audience::users_or({"op1"}, "operator", core::Action::kDelete));
    const auto second = hub.publish("dialog.closed", {{"dialog_id", "d1"}}, Audience::everyone());
    ASSERT_EQ(seen.size(), 2u);  // one event per happening, whatever the audience
    EXPECT_EQ(seen[0], std::make_pair(first, std::string("dialog.created")));
    EXPECT_EQ(seen[1], std::make_pair(second, std::string("dialog.closed")));
    EXPECT_EQ(hub.last_id(), second);
}

}  // namespace
}  // namespace parley::events

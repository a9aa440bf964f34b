#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <future>

#include "actions/actions.h"
#include "customdata/customdata.h"
#include "customdata/test_util.h"

namespace parley::customdata {
namespace {

class ActionsTest : public testing::CustomDataTest {
protected:
    ActionsTest() {
        register_actions(registry_, *service_);
        make_model(R"({"name": "complaints", "fields": [
            {"name": "text", "type": "text", "required": true},
            {"name": "phone", "type": "text"},
            {"name": "amount", "type": "number"}]})");
    }

    actions::ActionResult call(const std::string& action, const std::string& params) {
        actions::ActionCall c;
        c.action = action;
        c.params = boost::json::parse(params).as_object();
        std::promise<actions::ActionResult> result;
        registry_.run(std::move(c), [&](actions::ActionResult r) { result.set_value(std::move(r)); });
        return result.get_future().get();
    }

    actions::ActionRegistry registry_;
};

TEST_F(ActionsTest, RegistersThreeActionsWithTheirEvents) {
    auto names = registry_.names();
    EXPECT_EQ(names, (std::vector<std::string>{"custom_modules__get", "custom_modules__search", "custom_modules__set"}));
    for (const auto& info : registry_.list()) {
        if (info.name == "custom_modules__set") {
            EXPECT_EQ(info.events, (std::vector<std::string>{"success", "error"}));
        } else {
            EXPECT_EQ(info.events, (std::vector<std::string>{"found", "not_found"}));
        }
    }
}

TEST_F(ActionsTest, SetCreatesThenUpdatesAndSavesTheId) {
    auto created = call("custom_modules__set",
                        R"({"model": "complaints", "values": {"text": "Parcel late", "amount": "12"},
                            "save_id_as": "complaint_id"})");
    ASSERT_EQ(created.event, "success") << (created.error ? created.error->message : "");
    EXPECT_EQ(created.state.at("complaint_id"), "1");
    EXPECT_EQ(service_->get_record("complaints", "1").at("amount"), 12);  // rendered text → number

    auto updated = call("custom_modules__set",
                        R"({"model": "complaints", "id": "1", "values": {"phone": "+380501234567"}, "save_as": "c"})");
    ASSERT_EQ(updated.event, "success");
    EXPECT_EQ(updated.state.at("record_id"), "1");
    EXPECT_EQ(updated.state.at("c").at("phone"), "+380501234567");

    auto invalid = call("custom_modules__set", R"({"model": "complaints", "values": {"amount": "lots"}})");
    EXPECT_EQ(invalid.event, "error");
    ASSERT_TRUE(invalid.error);
    EXPECT_EQ(invalid.error->code, "invalid_record");
    EXPECT_EQ(call("custom_modules__set", R"({"model": "nope", "values": {}})").error->code, "model_not_found");
    EXPECT_EQ(call("custom_modules__set", R"({"model": "complaints"})").error->code, "bad_params");
    EXPECT_EQ(call("custom_modules__set", R"({"model": "complaints", "id": "9", "values": {"text": "x"}})").error->code,
              "record_not_found");
}

TEST_F(ActionsTest, GetByIdOrFilter) {
    call("custom_modules__set", R"({"model": "complaints", "values": {"text": "Parcel late", "phone": "+380501"}})");
    auto by_id = call("custom_modules__get", R"({"model": "complaints", "id": "1"})");
    ASSERT_EQ(by_id.event, "found");
    EXPECT_EQ(by_id.state.at("text"), "Parcel late");  // merged into state without save_as
    EXPECT_EQ(by_id.state.at("record_id"), "1");
    auto by_filter = call("custom_modules__get", R"({"model": "complaints", "filter": {"phone": "+380501"}, "save_as": "c"})");
    ASSERT_EQ(by_filter.event, "found");
    EXPECT_EQ(by_filter.state.at("c").at("id"), "1");
    EXPECT_EQ(call("custom_modules__get", R"({"model": "complaints", "id": "2"})").event, "not_found");
    EXPECT_EQ(call("custom_modules__get", R"({"model": "complaints", "id": "junk"})").event, "not_found");
    EXPECT_EQ(call("custom_modules__get", R"({"model": "complaints", "filter": {"phone": "0"}})").event, "not_found");
    EXPECT_EQ(call("custom_modules__get", R"({"model": "complaints"})").error->code, "bad_params");
    EXPECT_EQ(call("custom_modules__get", R"({"model": "complaints", "filter": {"nope": 1}})").error->code,
              "invalid_filter");
}

TEST_F(ActionsTest, SearchByWordsAndFilters) {
    for (auto text : {"Посилка запізнилася", "Посилка пошкоджена", "Інше питання"}) {
        call("custom_modules__set",
             std::string(R"({"model": "complaints", "values": {"text": ")") + text + R"(", "amount": 5}})");
    }
    auto found = call("custom_modules__search", R"({"model": "complaints", "q": "посил", "limit": "1"})");
    ASSERT_EQ(found.event, "found");
    EXPECT_EQ(found.state.at("records").as_array().size(), 1u);
    EXPECT_EQ(found.state.at("records_count"), 1);
    auto filtered = call("custom_modules__search",
                         R"({"model": "complaints", "filter": {"amount": {"gte": 5}}, "save_as": "hits"})");
    EXPECT_EQ(filtered.state.at("hits").as_array().size(), 3u);
    EXPECT_EQ(call("custom_modules__search", R"({"model": "complaints", "q": "ракета"})").event, "not_found");
    EXPECT_EQ(call("custom_modules__search", R"({"model": "complaints", "limit": 500})").error->code, "bad_params");
}

}  // namespace
}  // namespace parley::customdata

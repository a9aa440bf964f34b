// Custom Data through the real binary: the CONTRACT endpoints (models, records, filters written as the contract
// writes them, CSV import with row errors, export) and the demo bot's complaints model.
#include <gtest/gtest.h>

#include "harness.h"

namespace parley::testing {
namespace {

namespace json = boost::json;

TEST(CustomData, ContractEndpoints) {
    TempDir dir;
    ParleyProcess server(dir.path());
    HttpClient c(server.port());
    ASSERT_EQ(c.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    auto model = c.post("/api/v1/custom-data/models",
                        {{"name", "complaints"},
                         {"fields", json::array{json::object{{"name", "text"}, {"type", "text"}, {"required", true}},
                                                json::object{{"name", "kind"}, {"type", "select"},
                                                             {"options", json::array{"delivery", "quality"}}},
                                                json::object{{"name", "score"}, {"type", "number"}}}}});
    ASSERT_EQ(model.status, 201) << model.body;
    auto rec = c.post("/api/v1/custom-data/models/complaints/records", {{"text", "box broken"}, {"kind", "delivery"}, {"score", 2}});
    ASSERT_EQ(rec.status, 201) << rec.body;
    std::string id(rec.json().at("id").as_string());
    EXPECT_EQ(rec.json().at("kind"), "delivery");
    EXPECT_TRUE(rec.json().as_object().contains("created_at"));
    EXPECT_EQ(c.post("/api/v1/custom-data/models/complaints/records", {{"kind", "colour"}}).status, 422);
    EXPECT_EQ(c.post("/api/v1/custom-data/models/complaints/records", {{"text", "x"}, {"unknown", 1}}).status, 422);
    ASSERT_EQ(c.patch("/api/v1/custom-data/models/complaints/records/" + id, {{"score", 3}}).status, 200);
    EXPECT_EQ(c.get("/api/v1/custom-data/models/complaints/records/" + id).json().at("score"), 3);

    auto imported = c.request("POST", "/api/v1/custom-data/models/complaints/import?mode=skip_bad_rows",
                              "text,kind,score\r\nlate parcel,delivery,1\r\n,quality,5\r\ncold food,quality,4\r\n",
                              {{"Content-Type", "text/csv"}});
    ASSERT_EQ(imported.status, 200) << imported.body;
    EXPECT_EQ(imported.json().at("imported"), 2);
    ASSERT_EQ(imported.json().at("errors").as_array().size(), 1u);
    EXPECT_EQ(imported.json().at("errors").as_array()[0].at("row"), 2);
    EXPECT_EQ(imported.json().at("errors").as_array()[0].at("field"), "text");

    // Filters as CONTRACT.md writes them: brackets unencoded.
    auto quality = c.get("/api/v1/custom-data/models/complaints/records?filter[kind][eq]=quality");
    ASSERT_EQ(quality.status, 200) << quality.body;
    ASSERT_EQ(quality.json().at("items").as_array().size(), 1u);
    EXPECT_EQ(quality.json().at("items").as_array()[0].at("text"), "cold food");
    auto sorted = c.get("/api/v1/custom-data/models/complaints/records?filter[score][gte]=2&sort=-score");
    ASSERT_EQ(sorted.json().at("items").as_array().size(), 2u);
    EXPECT_EQ(sorted.json().at("items").as_array()[0].at("score"), 4);
    auto in = c.get("/api/v1/custom-data/models/complaints/records?filter[kind][in]=delivery,quality&limit=1");
    EXPECT_EQ(in.json().at("items").as_array().size(), 1u);
    EXPECT_TRUE(in.json().at("next_cursor").is_string());
    auto searched = c.get("/api/v1/custom-data/models/complaints/records?q=parcel");
    ASSERT_EQ(searched.json().at("items").as_array().size(), 1u);

    auto exported = c.get("/api/v1/custom-data/models/complaints/export");
    ASSERT_EQ(exported.status, 200);
    EXPECT_NE(exported.body.find("text,kind,score"), std::string::npos);
    EXPECT_NE(exported.body.find("cold food"), std::string::npos);
    EXPECT_EQ(c.del("/api/v1/custom-data/models/complaints/records/" + id).status, 204);
    EXPECT_EQ(c.get("/api/v1/custom-data/models/complaints/records/" + id).status, 404);
}

TEST(CustomData, DemoBotSavesAComplaint) {
    TempDir dir;
    ParleyProcess server(dir.path(), {"--demo"});
    HttpClient c(server.port());
    ASSERT_EQ(c.login(ParleyProcess::kAdminEmail, ParleyProcess::kAdminPassword).status, 200);
    std::string bot(c.get("/api/v1/bots").json().at("items").as_array()[0].at("id").as_string());
    auto session = c.post("/api/v1/bots/" + bot + "/preview", {{"user", {{"name", "Olena"}, {"language", "en"}}}});
    std::string sid(session.json().at("session").as_string());
    std::string path = "/api/v1/bots/" + bot + "/preview/" + sid + "/messages";
    // No CRM configured: the request fails and the client is registered.
    auto phone = c.post(path, {{"text", "+380501112233"}});
    ASSERT_EQ(phone.status, 200) << phone.body;
    ASSERT_EQ(c.post(path, {{"button", "complaint"}}).status, 200);
    ASSERT_EQ(c.post(path, {{"text", "The parcel came wet"}}).status, 200);
    auto saved = c.post(path, {{"button", "kind_delivery"}});
    ASSERT_EQ(saved.status, 200) << saved.body;
    auto first = std::string(saved.json().at("replies").as_array()[0].at("text").as_string());
    EXPECT_EQ(first.rfind("Complaint #", 0), 0u) << saved.body;
    auto records = c.get("/api/v1/custom-data/models/complaints/records?filter[phone][eq]=%2B380501112233");
    ASSERT_EQ(records.json().at("items").as_array().size(), 1u) << records.body;
    EXPECT_EQ(records.json().at("items").as_array()[0].at("text"), "The parcel came wet");
}

}  // namespace
}  // namespace parley::testing

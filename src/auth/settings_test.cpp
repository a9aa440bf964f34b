#include <boost/json.hpp>

#include "auth/settings.h"
#include "auth/test_util.h"
#include "core/error.h"

namespace parley::auth {
namespace {

using testing::AuthTest;
namespace json = boost::json;

TEST_F(AuthTest, PlainSettingsRoundTripAndDefaults) {
    EXPECT_EQ(settings_->get("password_recovery_enabled"), json::value(true));
    EXPECT_EQ(settings_->get("outbound_allowlist"), json::value(json::array{}));
    EXPECT_FALSE(settings_->get("nothing.here"));
    json::value v = json::parse(R"({"hours": [9, 18], "tz": "Europe/Kyiv"})");
    SettingInfo info = run(settings_->set("support.hours", v, false, &root_, "1.2.3.4"));
    EXPECT_FALSE(info.secret);
    EXPECT_EQ(settings_->get("support.hours"), v);
    EXPECT_EQ(settings_->describe("support.hours")->value, v);
    run(settings_->set("support.hours", json::value(42), false, &root_, ""));
    EXPECT_EQ(settings_->get("support.hours"), json::value(42));  // cache invalidated on write
    run(settings_->remove("support.hours", &root_, ""));
    EXPECT_FALSE(settings_->get("support.hours"));
    EXPECT_THROW(run(settings_->remove("support.hours", &root_, "")), core::NotFound);
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'setting.%'"), 3);
}

TEST_F(AuthTest, SecretSettingsAreEncryptedAtRestAndNeverListed) {
    run(settings_->set("crm.api_key", json::value("sk-live-PLAINTEXT-123"), true, &root_, ""));
    auto raw = settings_->raw_row_for_test("crm.api_key");
    ASSERT_TRUE(raw);
    EXPECT_EQ(raw->find("PLAINTEXT"), std::string::npos);
    EXPECT_EQ(count("SELECT COUNT(*) FROM instance_settings WHERE value IS NULL AND secret = 1"), 1);
    EXPECT_EQ(settings_->get("crm.api_key"), json::value("sk-live-PLAINTEXT-123"));  // for templates
    auto info = settings_->describe("crm.api_key");
    ASSERT_TRUE(info);
    EXPECT_TRUE(info->secret);
    EXPECT_FALSE(info->value);
    for (const auto& s : settings_->list()) {
        if (s.key == "crm.api_key") {
            EXPECT_FALSE(s.value);
        }
    }
    // Nor does the audit log keep the secret.
    EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE details LIKE '%PLAINTEXT%'"), 0);
    // A service restarted with the same key file still decrypts.
    rebuild();
    EXPECT_EQ(settings_->get("crm.api_key"), json::value("sk-live-PLAINTEXT-123"));
}

TEST_F(AuthTest, SettingInputIsValidated) {
    EXPECT_THROW(run(settings_->set("Bad Key", json::value(1), false, &root_, "")), core::BadRequest);
    EXPECT_THROW(run(settings_->set(std::string(65, 'a'), json::value(1), false, &root_, "")), core::BadRequest);
    EXPECT_THROW(run(settings_->set("big", json::value(std::string(70 * 1024, 'x')), false, &root_, "")),
                 core::TooLarge);
    EXPECT_THROW(run(settings_->set("password_recovery_enabled", json::value("yes"), false, &root_, "")),
                 core::BadRequest);
    EXPECT_THROW(run(settings_->set("outbound_allowlist", json::parse("[1]"), false, &root_, "")), core::BadRequest);
    EXPECT_EQ(count("SELECT COUNT(*) FROM instance_settings"), 0);
}

}  // namespace
}  // namespace parley::auth

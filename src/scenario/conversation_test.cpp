// Runs every tests/conversations/*.yaml file through scenario::run_case_file; one gtest per file.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "scenario/testing.h"

namespace parley::scenario {
namespace {

std::vector<std::string> conversation_files() {
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(PARLEY_CONVERSATIONS_DIR)) {
        if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    return files;
}

class Conversation : public testing::TestWithParam<std::string> {};

TEST_P(Conversation, Passes) {
    TestReport report = run_case_file(GetParam());
    EXPECT_TRUE(report.passed) << report.to_text();
}

INSTANTIATE_TEST_SUITE_P(Files, Conversation, testing::ValuesIn(conversation_files()),
                         [](const testing::TestParamInfo<std::string>& info) {
                             std::string name = std::filesystem::path(info.param).stem().string();
                             std::replace_if(name.begin(), name.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
                             return name;
                         });

TEST(ConversationFiles, Exist) { EXPECT_FALSE(conversation_files().empty()); }

}  // namespace
}  // namespace parley::scenario

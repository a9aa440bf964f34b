#include "core/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>

namespace parley::core {
namespace {

TEST(Config, ListenParsesHostAndPort) {
    Config c;
    c.set("listen", "0.0.0.0:0");
    EXPECT_EQ(c.listen_host, "0.0.0.0");
    EXPECT_EQ(c.listen_port, 0);
    c.set("listen", "[::1]:9000");
    EXPECT_EQ(c.listen_host, "::1");
    EXPECT_EQ(c.base_url(), "http://[::1]:9000");
    EXPECT_THROW(c.set("listen", "nohost"), std::invalid_argument);
    EXPECT_THROW(c.set("listen", "h:99999"), std::invalid_argument);
}

TEST(Config, PrecedenceFileThenEnv) {
    std::string path = ::testing::TempDir() + "/parley_config_test.json";
    {
        std::ofstream out(path);
        out << R"({"threads": 3, "log_level": "debug", "data": "/tmp/x"})";
    }
    Config c;
    c.apply_file(path);
    EXPECT_EQ(c.threads, 3u);
    std::map<std::string, std::string> env{{"PARLEY_THREADS", "5"}};
    c.apply_env([&](const char* name) -> const char* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    });
    EXPECT_EQ(c.threads, 5u);
    EXPECT_EQ(c.data_dir, "/tmp/x");
    std::remove(path.c_str());
}

TEST(Config, RejectsUnknownAndMalformed) {
    Config c;
    EXPECT_THROW(c.set("nope", "1"), std::invalid_argument);
    EXPECT_THROW(c.set("threads", "many"), std::invalid_argument);
    EXPECT_THROW(c.set("log_level", "loud"), std::invalid_argument);
    EXPECT_THROW(c.set("step_limit", "0"), std::invalid_argument);
    EXPECT_THROW(c.set("action_timeout_ms", "5"), std::invalid_argument);
    EXPECT_THROW(c.apply_file("/nonexistent/parley.json"), std::invalid_argument);
}

TEST(Config, EveryKeyIsSettable) {
    for (const auto& key : config_keys()) {
        Config c;
        std::string sample = key.name == "listen" ? "127.0.0.1:1" : key.name == "log_level" ? "info"
                             : key.name == "log_format"                                    ? "json"
                             : key.name == "action_timeout_ms"                             ? "1000"
                                                                                           : "1";
        EXPECT_NO_THROW(c.set(key.name, sample)) << key.name;
    }
}

}  // namespace
}  // namespace parley::core

namespace parley::core {
namespace {

TEST(Config, EveryKeyIsDocumented) {
    std::ifstream in(std::string(PARLEY_SOURCE_DIR) + "/docs/configuration.md");
    ASSERT_TRUE(in) << "docs/configuration.md is missing";
    std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto& key : config_keys()) {
        EXPECT_NE(doc.find("| `" + std::string(key.name) + "` |"), std::string::npos)
            << key.name << " is not documented in docs/configuration.md";
    }
}

}  // namespace
}  // namespace parley::core

// `parley`: serve, backup, routes, scenario lint/test — one binary.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app/app.h"
#include "app/commands.h"
#include "core/config.h"
#include "core/log.h"
#include "http/http.h"

namespace {

using parley::core::Config;

/// Loads configuration: defaults < --config file (or PARLEY_CONFIG) < PARLEY_* environment < flags.
Config load_config(const std::string& config_file, const std::vector<std::pair<std::string, std::string>>& flags) {
    Config config;
    std::string file = config_file;
    if (file.empty()) {
        if (const char* env = std::getenv("PARLEY_CONFIG")) file = env;
    }
    if (!file.empty()) config.apply_file(file);
    config.apply_env([](const char* name) { return std::getenv(name); });
    for (const auto& [key, value] : flags) config.set(key, value);
    return config;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"Parley — self-hosted, AI-first omnichannel customer service"};
    cli.require_subcommand(1);
    std::string config_file;
    cli.add_option("--config", config_file, "JSON config file (also PARLEY_CONFIG)");

    // Every config key is also a flag of `serve` (--max-body-bytes etc.); the common ones have short help.
    auto* serve = cli.add_subcommand("serve", "run the server");
    std::vector<std::pair<std::string, std::string>> flags;
    for (const auto& key : parley::core::config_keys()) {
        std::string flag = "--" + std::string(key.name);
        std::replace(flag.begin(), flag.end(), '_', '-');
        if (key.name == "demo") {
            serve->add_flag_callback(flag, [&flags] { flags.emplace_back("demo", "true"); }, std::string(key.description));
        } else {
            serve->add_option_function<std::string>(
                flag, [&flags, name = std::string(key.name)](const std::string& v) { flags.emplace_back(name, v); },
                std::string(key.description));
        }
    }

    auto* backup_cmd = cli.add_subcommand("backup", "consistent online copy of the data dir");
    std::string backup_dest;
    std::string backup_data;
    backup_cmd->add_option("DIR", backup_dest, "folder to write the copy into")->required();
    backup_cmd->add_option("--data", backup_data, "data dir to copy (default PARLEY_DATA or ./data)");

    auto* routes_cmd = cli.add_subcommand("routes", "print every HTTP route with its access rule as JSON");

    auto* scenario_cmd = cli.add_subcommand("scenario", "check and test scenario documents (for CI)");
    scenario_cmd->require_subcommand(1);
    auto* lint_cmd = scenario_cmd->add_subcommand("lint", "validate a document: schema errors and lint warnings");
    std::string lint_file;
    bool lint_strict = false;
    lint_cmd->add_option("FILE", lint_file, "scenario document (JSON)")->required();
    lint_cmd->add_flag("--strict", lint_strict, "warnings fail too");
    auto* test_cmd = scenario_cmd->add_subcommand("test", "run scripted conversations against a document");
    std::string test_file;
    std::string test_cases;
    test_cmd->add_option("FILE", test_file, "scenario document (JSON)")->required();
    test_cmd->add_option("CASES", test_cases, "conversation cases (YAML, docs/scenario-testing.md)")->required();

    auto* version_cmd = cli.add_subcommand("version", "print the version");

    CLI11_PARSE(cli, argc, argv);

    try {
        if (version_cmd->parsed()) {
            std::cout << "parley " << PARLEY_VERSION << "\n";
            return 0;
        }

        if (lint_cmd->parsed()) return parley::app::scenario_lint(lint_file, lint_strict);
        if (test_cmd->parsed()) return parley::app::scenario_test(test_file, test_cases);

        Config config = load_config(config_file, flags);
        if (serve->parsed()) {
            parley::core::init_logging(config.log_level, config.log_format);
            parley::app::App app(config);
            std::string generated = app.bootstrap_admin();
            std::uint16_t port = app.start();
            if (!generated.empty()) {
                std::printf("parley: created administrator admin@localhost with password: %s\n", generated.c_str());
                std::printf("parley: this password is shown once; change it after logging in\n");
            }
            std::printf("parley listening on http://%s:%u\n", config.listen_host.c_str(), port);
            std::fflush(stdout);
            app.wait_for_signal();
            return 0;
        }
        if (backup_cmd->parsed()) {
            parley::core::init_logging("warn", config.log_format);
            if (!backup_data.empty()) config.data_dir = backup_data;
            std::string folder = parley::app::backup(config, backup_dest);
            std::printf("parley: backup written to %s\n", folder.c_str());
            return 0;
        }
        if (routes_cmd->parsed()) {
            parley::core::init_logging("off", "text");
            return parley::app::print_routes(config);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parley: %s\n", e.what());
        return 1;
    }
    return 0;
}

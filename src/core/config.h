/// Server configuration: defaults < config file < environment < command-line flags. Every key is documented in
/// docs/configuration.md (a test checks that the two agree).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace parley::core {

/// Plain settings of one server process. Immutable once the server starts.
struct Config {
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 8080;
    std::string data_dir = "./data";
    bool demo = false;
    unsigned threads = 0;  ///< 0: one per core

    // HTTP limits
    std::size_t max_body_bytes = 16 * 1024 * 1024;  ///< any request body (uploads of 15 MB documents fit)
    std::size_t max_json_bytes = 2 * 1024 * 1024;   ///< a JSON request body
    std::size_t max_header_bytes = 16 * 1024;
    unsigned header_timeout_ms = 10'000;   ///< a client must send its whole header in this time
    unsigned body_timeout_ms = 60'000;     ///< and its body in this time
    unsigned idle_timeout_ms = 75'000;     ///< keep-alive connections idle longer are closed
    unsigned shutdown_grace_ms = 10'000;   ///< SIGTERM: in-flight requests get this long to finish
    unsigned max_connections = 20'000;

    // Store
    unsigned db_readers = 0;  ///< reader connections; 0: threads + 2

    // Auth
    unsigned session_ttl_minutes = 12 * 60;
    unsigned login_max_failures = 5;        ///< failed logins per email within the window before lockout
    unsigned login_window_minutes = 15;
    unsigned login_lockout_minutes = 15;
    unsigned reset_token_ttl_minutes = 60;
    std::string public_url;  ///< base of links the server hands out (password reset); default http://listen

    // Admin bootstrap (environment only by convention, but any source works)
    std::string admin_email;
    std::string admin_password;

    // Bots
    unsigned step_limit = 1000;              ///< nodes one bot turn may execute before it is stopped
    unsigned action_timeout_ms = 120'000;    ///< an action that has not answered by then ends with event error
    unsigned runs_retention_days = 14;       ///< recorded runs (Runs view) older than this are deleted; 0 = keep none
    // Logging
    std::string log_level = "info";  ///< trace debug info warn error off
    std::string log_format = "json"; ///< json or text

    /// Sets one key from its text form ("listen", "threads", ...). Throws std::invalid_argument naming the key
    /// when the key is unknown or the value malformed.
    void set(std::string_view key, std::string_view value);

    /// Applies a JSON config file (an object of key → string/number/bool). Throws std::invalid_argument.
    void apply_file(const std::string& path);

    /// Applies PARLEY_<KEY> environment variables through `getenv`.
    void apply_env(const std::function<const char*(const char*)>& getenv);

    /// Base URL for links: public_url or http://host:port.
    std::string base_url() const;
};

/// One documented configuration key.
struct ConfigKey {
    std::string_view name;         ///< e.g. "max_body_bytes"; flag --max-body-bytes, env PARLEY_MAX_BODY_BYTES
    std::string_view description;
};

/// Every key Config::set accepts, in documentation order.
const std::vector<ConfigKey>& config_keys();

}  // namespace parley::core

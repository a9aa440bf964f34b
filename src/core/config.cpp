#include "core/config.h"

#include <boost/json.hpp>
#include <charconv>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace parley::core {

namespace {

template <typename T>
T parse_number(std::string_view key, std::string_view value) {
    T out{};
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
    if (ec != std::errc() || ptr != value.data() + value.size()) {
        throw std::invalid_argument(fmt::format("config '{}': '{}' is not a valid number", key, value));
    }
    return out;
}

bool parse_bool(std::string_view key, std::string_view value) {
    if (value == "1" || value == "true" || value == "yes" || value == "on") return true;
    if (value == "0" || value == "false" || value == "no" || value == "off" || value.empty()) return false;
    throw std::invalid_argument(fmt::format("config '{}': '{}' is not a boolean", key, value));
}

std::string upper_env_name(std::string_view key) {
    std::string name = "PARLEY_";
    for (char c : key) name.push_back(static_cast<char>(c == '-' ? '_' : std::toupper(static_cast<unsigned char>(c))));
    return name;
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
    static const std::vector<ConfigKey> keys = {
        {"listen", "HOST:PORT to listen on (port 0 picks a free port, printed on start)"},
        {"data", "data directory: database, encryption key, backups"},
        {"demo", "load the demo bot on start"},
        {"threads", "worker threads (0 = one per core)"},
        {"max_body_bytes", "largest request body accepted (413 above)"},
        {"max_json_bytes", "largest JSON request body accepted (413 above)"},
        {"max_header_bytes", "largest request header block (431 above)"},
        {"header_timeout_ms", "time a client has to send a complete request header"},
        {"body_timeout_ms", "time a client has to send a complete request body"},
        {"idle_timeout_ms", "idle keep-alive connections are closed after this"},
        {"shutdown_grace_ms", "on SIGTERM, in-flight requests get this long to finish"},
        {"max_connections", "concurrent connections accepted; more are refused"},
        {"db_readers", "database reader connections (0 = threads + 2)"},
        {"session_ttl_minutes", "lifetime of a login session"},
        {"login_max_failures", "failed logins for one email within the window before it is locked"},
        {"login_window_minutes", "window in which failed logins are counted"},
        {"login_lockout_minutes", "how long a locked email stays locked"},
        {"reset_token_ttl_minutes", "lifetime of a password-reset link"},
        {"public_url", "base URL used in links the server hands out (default http://LISTEN)"},
        {"admin_email", "administrator created on first start (with admin_password)"},
        {"admin_password", "password of that administrator"},
        {"step_limit", "nodes one bot turn may execute before it ends with error step_limit"},
        {"action_timeout_ms", "an action that has not answered by then ends with event error (timeout)"},
        {"runs_retention_days", "recorded bot runs older than this are deleted (0 = do not record runs)"},
        {"log_level", "trace, debug, info, warn, error or off"},
        {"log_format", "json (one object per line) or text"},
    };
    return keys;
}

void Config::set(std::string_view key, std::string_view value) {
    if (key == "listen") {
        auto colon = value.rfind(':');
        if (colon == std::string_view::npos) {
            throw std::invalid_argument(fmt::format("config 'listen': '{}' is not HOST:PORT", value));
        }
        listen_host = std::string(value.substr(0, colon));
        if (listen_host.size() > 2 && listen_host.front() == '[' && listen_host.back() == ']') {
            listen_host = listen_host.substr(1, listen_host.size() - 2);
        }
        listen_port = parse_number<std::uint16_t>(key, value.substr(colon + 1));
    } else if (key == "data") {
        data_dir = std::string(value);
    } else if (key == "demo") {
        demo = parse_bool(key, value);
    } else if (key == "threads") {
        threads = parse_number<unsigned>(key, value);
    } else if (key == "max_body_bytes") {
        max_body_bytes = parse_number<std::size_t>(key, value);
    } else if (key == "max_json_bytes") {
        max_json_bytes = parse_number<std::size_t>(key, value);
    } else if (key == "max_header_bytes") {
        max_header_bytes = parse_number<std::size_t>(key, value);
    } else if (key == "header_timeout_ms") {
        header_timeout_ms = parse_number<unsigned>(key, value);
    } else if (key == "body_timeout_ms") {
        body_timeout_ms = parse_number<unsigned>(key, value);
    } else if (key == "idle_timeout_ms") {
        idle_timeout_ms = parse_number<unsigned>(key, value);
    } else if (key == "shutdown_grace_ms") {
        shutdown_grace_ms = parse_number<unsigned>(key, value);
    } else if (key == "max_connections") {
        max_connections = parse_number<unsigned>(key, value);
    } else if (key == "db_readers") {
        db_readers = parse_number<unsigned>(key, value);
    } else if (key == "session_ttl_minutes") {
        session_ttl_minutes = parse_number<unsigned>(key, value);
    } else if (key == "login_max_failures") {
        login_max_failures = parse_number<unsigned>(key, value);
    } else if (key == "login_window_minutes") {
        login_window_minutes = parse_number<unsigned>(key, value);
    } else if (key == "login_lockout_minutes") {
        login_lockout_minutes = parse_number<unsigned>(key, value);
    } else if (key == "reset_token_ttl_minutes") {
        reset_token_ttl_minutes = parse_number<unsigned>(key, value);
    } else if (key == "public_url") {
        public_url = std::string(value);
    } else if (key == "admin_email") {
        admin_email = std::string(value);
    } else if (key == "admin_password") {
        admin_password = std::string(value);
    } else if (key == "step_limit") {
        step_limit = parse_number<unsigned>(key, value);
        if (step_limit < 1 || step_limit > 100'000) {
            throw std::invalid_argument("config 'step_limit': must be from 1 to 100000");
        }
    } else if (key == "action_timeout_ms") {
        action_timeout_ms = parse_number<unsigned>(key, value);
        if (action_timeout_ms < 100) throw std::invalid_argument("config 'action_timeout_ms': must be at least 100");
    } else if (key == "runs_retention_days") {
        runs_retention_days = parse_number<unsigned>(key, value);
    } else if (key == "log_level") {
        static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
        bool ok = false;
        for (auto l : kLevels) ok = ok || l == value;
        if (!ok) throw std::invalid_argument(fmt::format("config 'log_level': unknown level '{}'", value));
        log_level = std::string(value);
    } else if (key == "log_format") {
        if (value != "json" && value != "text") {
            throw std::invalid_argument(fmt::format("config 'log_format': '{}' is not json or text", value));
        }
        log_format = std::string(value);
    } else {
        throw std::invalid_argument(fmt::format("unknown config key '{}'", key));
    }
}

void Config::apply_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::invalid_argument(fmt::format("cannot read config file '{}'", path));
    std::stringstream buffer;
    buffer << in.rdbuf();
    boost::system::error_code ec;
    boost::json::value doc = boost::json::parse(buffer.str(), ec);
    if (ec || !doc.is_object()) {
        throw std::invalid_argument(fmt::format("config file '{}' is not a JSON object", path));
    }
    for (const auto& kv : doc.as_object()) {
        const auto& v = kv.value();
        std::string text;
        if (v.is_string()) {
            text = std::string(v.as_string());
        } else if (v.is_bool()) {
            text = v.as_bool() ? "true" : "false";
        } else if (v.is_int64() || v.is_uint64()) {
            text = boost::json::serialize(v);
        } else {
            throw std::invalid_argument(fmt::format("config file '{}': key '{}' must be a string, number or boolean",
                                                    path, std::string_view(kv.key())));
        }
        set(kv.key(), text);
    }
}

void Config::apply_env(const std::function<const char*(const char*)>& getenv) {
    for (const auto& key : config_keys()) {
        std::string name = upper_env_name(key.name);
        if (const char* value = getenv(name.c_str())) set(key.name, value);
    }
}

std::string Config::base_url() const {
    if (!public_url.empty()) return public_url;
    bool v6 = listen_host.find(':') != std::string::npos;
    return fmt::format("http://{}{}{}:{}", v6 ? "[" : "", listen_host, v6 ? "]" : "", listen_port);
}

}  // namespace parley::core

#include "core/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include "core/json.h"

namespace parley::core {

namespace {
bool g_json = true;  // set once by init_logging before any thread starts
}

void init_logging(std::string_view level, std::string_view format) {
    g_json = format != "text";
    auto logger = spdlog::stderr_logger_mt("parley");
    if (g_json) {
        logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})", spdlog::pattern_time_type::utc);
    } else {
        logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v", spdlog::pattern_time_type::utc);
    }
    logger->set_level(spdlog::level::from_str(std::string(level)));
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(logger);
}

void log_event(spdlog::level::level_enum level, std::string_view event, std::string_view fields) {
    auto* logger = spdlog::default_logger_raw();
    if (!logger->should_log(level)) return;
    if (g_json) {
        if (fields.empty()) {
            logger->log(level, R"("event":{})", json_quote(event));
        } else {
            logger->log(level, R"("event":{},{})", json_quote(event), fields);
        }
    } else {
        logger->log(level, "{} {}", event, fields);
    }
}

}  // namespace parley::core

/// Structured logging: one JSON object per line on stderr (or plain text), with request ids.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace parley::core {

/// Configures the process logger once, from `main`, before threads start. `format` is "json" or "text".
void init_logging(std::string_view level, std::string_view format);

/// Logs `event` with extra fields given as a JSON object body without braces, e.g.
/// log_event(spdlog::level::info, "http_request", R"("status":200,"ms":0.4)"). Thread-safe.
void log_event(spdlog::level::level_enum level, std::string_view event, std::string_view fields = {});

}  // namespace parley::core

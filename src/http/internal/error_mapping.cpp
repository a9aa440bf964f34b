#include "http/internal/error_mapping.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "store/store.h"

namespace parley::http::internal {

namespace {

void log_failure(spdlog::level::level_enum level, std::string_view kind, std::string_view what,
                 std::string_view request_id, std::string_view route) {
    core::log_event(level, "http_handler_failed",
                    fmt::format(R"("kind":{},"error":{},"request_id":{},"route":{})", core::json_quote(kind),
                                core::json_quote(what), core::json_quote(request_id), core::json_quote(route)));
}

}  // namespace

Response response_for_error(const core::Error& error) {
    return Response::error(error.status(), error.code(), error.what(), error.details());
}

Response response_for_exception(std::exception_ptr error, std::string_view request_id, std::string_view route) {
    try {
        std::rethrow_exception(error);
    } catch (const core::Error& e) {
        if (e.status() >= 500) log_failure(spdlog::level::err, e.code(), e.what(), request_id, route);
        return response_for_error(e);
    } catch (const store::StoreError& e) {
        if (e.kind() == store::StoreError::Kind::kConstraint) {
            log_failure(spdlog::level::debug, "store_constraint", e.what(), request_id, route);
            return Response::error(409, "conflict", "the change conflicts with existing data");
        }
        if (e.kind() == store::StoreError::Kind::kBusy) {
            log_failure(spdlog::level::warn, "store_busy", e.what(), request_id, route);
            return Response::error(503, "unavailable", "the service is busy, retry shortly");
        }
        log_failure(spdlog::level::err, "store", e.what(), request_id, route);
    } catch (const std::exception& e) {
        log_failure(spdlog::level::err, "exception", e.what(), request_id, route);
    } catch (...) {
        log_failure(spdlog::level::err, "unknown", "non-standard exception", request_id, route);
    }
    return Response::error(500, "internal", "internal error; quote the request id to the administrator");
}

}  // namespace parley::http::internal

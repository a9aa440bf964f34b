// Fuzz target: Action Jail request bodies (create/update), the params schema and limits. Bad input may only end
// in a core::Error (a clear 4xx); normalising an accepted schema twice gives the same schema.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "core/json.h"
#include "jail/internal/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley;
    static const jail::JailOptions options;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    boost::json::object body;
    try {
        body = core::parse_json_object(text);
    } catch (const core::Error&) {
        return 0;
    }
    for (bool creating : {true, false}) {
        try {
            auto draft = jail::internal::parse_action_body(body, creating, options);
            if (draft.params) {
                auto schema = jail::internal::normalize_params(*draft.params);
                if (jail::internal::normalize_params(schema) != schema) __builtin_trap();
                boost::json::object params;
                jail::internal::apply_param_defaults(schema, params);
            }
            if (draft.limits) {
                auto limits = jail::internal::effective_limits(*draft.limits, options.defaults);
                if (limits.memory_mb > options.maxima.memory_mb || limits.timeout_ms < 1) __builtin_trap();
                if (jail::internal::limits_from_json(jail::internal::limits_to_json(*draft.limits)) != *draft.limits) {
                    __builtin_trap();
                }
            }
        } catch (const core::Error&) {
        }
    }
    return 0;
}

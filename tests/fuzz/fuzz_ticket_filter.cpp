// Fuzz target: the ticket list's query parser (parse_ticket_filter) and the ISO-8601 time parser behind its date
// filters. Any input must either parse or throw a 400; a parsed filter keeps its documented bounds, and every time
// that parses survives a round trip through core::format_time.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "operator/tickets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::operators;
    // Input: lines "key=value".
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<std::pair<std::string, std::string>> params;
    while (!text.empty() && params.size() < 64) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        auto eq = line.find('=');
        params.emplace_back(std::string(line.substr(0, eq)),
                            eq == std::string_view::npos ? std::string() : std::string(line.substr(eq + 1)));
    }
    for (const auto& [key, value] : params) {
        if (auto ms = parse_iso_time(value)) {
            if (*ms < 0) __builtin_trap();
            // Years up to 9999 only, and the canonical form parses back to the same instant.
            if (*ms > 253'402'300'799'999) __builtin_trap();
            if (parse_iso_time(parley::core::format_time(*ms)) != ms) __builtin_trap();
        }
    }
    try {
        TicketFilter f = parse_ticket_filter(params);
        if (f.limit < 1 || f.limit > 200) __builtin_trap();
        if (f.fields.size() > 10) __builtin_trap();
        for (int p : f.priorities) {
            if (p < 0 || p > 3) __builtin_trap();
        }
        std::string_view sort = f.sort;
        if (!sort.empty() && sort[0] == '-') sort.remove_prefix(1);
        if (sort != "created_at" && sort != "updated_at" && sort != "priority" && sort != "due_at" && sort != "number") {
            __builtin_trap();
        }
    } catch (const parley::core::Error& e) {
        if (e.status() != 400) __builtin_trap();
    }
    return 0;
}

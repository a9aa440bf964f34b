/// Typed values: API JSON / CSV text ↔ the SQL value stored in a records column, and field rules.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "customdata/customdata.h"

namespace parley::customdata::internal {

/// Storage per type: text/select/date → TEXT ("YYYY-MM-DD" for date), number → INTEGER when integral (|x| <
/// 2^53) else REAL, boolean → 0/1, datetime → INTEGER ms since the epoch (UTC), json → compact JSON TEXT,
/// reference → INTEGER record id.

/// "YYYY-MM-DD" (or "DD.MM.YYYY") → canonical "YYYY-MM-DD"; nullopt when not a real date.
std::optional<std::string> parse_date(std::string_view text);
/// ISO 8601 date-time ("2024-05-01T10:00:00Z", fraction, ±HH:MM offsets, space for T, a bare date = midnight
/// UTC) → ms since the epoch; years 0001–9999.
std::optional<std::int64_t> parse_datetime(std::string_view text);
/// ms → "YYYY-MM-DDTHH:MM:SS.mmmZ".
std::string format_datetime(std::int64_t ms);
void append_datetime(std::string& out, std::int64_t ms);

/// Text form → value (CSV cells, filter values, template-rendered action params). Empty text → null.
/// Returns an error message, or nullopt on success. Does not apply rules (see Validator::check).
std::optional<std::string> value_from_text(const Field& field, std::string_view text, store::Value& out);

/// API JSON → value. Strict: a number field needs a JSON number, etc.; with `lenient`, strings are also parsed
/// as text form (actions get rendered templates).
std::optional<std::string> value_from_json(const Field& field, const json::value& value, bool lenient,
                                           store::Value& out);

/// Stored value → API JSON.
json::value value_to_json(const Field& field, const store::Value& value);

/// Stored value → text form (CSV export, retype); null → "".
void append_value_text(const Field& field, const store::Value& value, std::string& out);

/// Field rules compiled once per operation (regex patterns). Immutable after construction; thread-safe.
class Validator {
public:
    explicit Validator(const Model& model);
    ~Validator();
    /// Checks rules on a non-null value of field `index`: select options, lengths, min/max, pattern, size.
    std::optional<std::string> check(std::size_t index, const store::Value& value) const;

    /// Compiles `pattern` for a field definition; returns an error message when it is not a valid regex.
    static std::optional<std::string> pattern_error(std::string_view pattern);

private:
    struct Compiled;
    const Model& model_;
    std::vector<std::shared_ptr<Compiled>> patterns_;
};

}  // namespace parley::customdata::internal

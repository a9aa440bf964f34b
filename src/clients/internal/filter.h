/// Client filters → SQL: conditions on standard fields, client fields and relations (channel, topic, segment),
/// text search, sorts with keyset cursors. Every value is bound; field names reach SQL only after validation.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "clients/clients.h"
#include "clients/internal/ops.h"

namespace parley::clients::internal {

/// A boolean SQL expression over the alias `c` (clients), "1" when the filter is empty.
struct SqlWhere {
    std::string sql = "1";
    store::Params params;
};

/// Builds the WHERE expression. BadRequest `invalid_filter` (details name the field) for an unknown operator on
/// a field, a value of the wrong type, an unknown segment; `depth` > 0 refuses `segment` (segments do not nest).
SqlWhere build_where(store::Tx& tx, const ClientFilter& filter, const FieldMap& fields, const Schema& schema,
                     int depth = 0);

/// Names of the saved segments whose filter the client `id` matches (a segment whose filter no longer fits the
/// fields matches nobody).
json::array segment_names(store::Tx& tx, const Schema& schema, const FieldMap& fields, const std::string& id);

/// A millisecond time from a number (ms), `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS[.mmm]]Z`.
std::optional<std::int64_t> parse_time_value(std::string_view text);

/// A validated sort.
struct Sort {
    std::string name;    ///< as given: "-id", "name", ...
    std::string column;  ///< "c.id", "c.name", ...
    bool desc = true;
    bool integer = false;
};
/// BadRequest `invalid_sort` for anything but id, name, first_seen_at, last_seen_at (each with optional `-`).
Sort parse_sort(std::string_view text);

/// The keyset condition that continues after `cursor` (BadRequest `invalid_cursor` for a foreign cursor).
SqlWhere after_cursor(const Sort& sort, std::string_view cursor);
/// The cursor after a row whose sort key is `key` (text form) and id `id`.
std::string make_cursor(const Sort& sort, const std::string& key, const std::string& id);

}  // namespace parley::clients::internal

/// Client-segment conditions of the operator module's distribution rules: a small, validated condition over a
/// client card (standard fields, custom fields, a `tags` array), in the same shape as scenario router conditions:
/// `{"all": [C...]}`, `{"any": [C...]}`, `{"not": C}` or `{"var": "segment", "op": "eq", "value": "vip"}`.
#pragma once

#include <boost/json.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace parley::operators::internal {

inline constexpr std::size_t kMaxSegmentDepth = 8;
inline constexpr std::size_t kMaxSegmentNodes = 64;
inline constexpr std::size_t kMaxSegmentVarBytes = 128;

/// A parsed condition. Immutable once built; safe to share across threads.
class SegmentCondition {
public:
    enum class Kind { kAll, kAny, kNot, kCompare };
    enum class Op { kEq, kNe, kGt, kGte, kLt, kLte, kContains, kStartsWith, kIn, kIsSet, kIsEmpty };

    /// Parses and validates; throws core::Unprocessable (code `invalid_condition`, details naming the JSON path
    /// of the problem) for anything else: unknown keys or operators, a missing value, `in` without an array, more
    /// than kMaxSegmentDepth levels or kMaxSegmentNodes conditions.
    static SegmentCondition parse(const boost::json::value& value);

    /// Whether the client card matches. `var` is a dotted path into the card (`segment`, `fields.city`,
    /// `tags`); a missing path is unset.
    bool matches(const boost::json::object& card) const;

private:
    friend struct SegmentBuilder;
    Kind kind_ = Kind::kCompare;
    std::vector<SegmentCondition> children_;
    std::vector<std::string> path_;
    Op op_ = Op::kEq;
    boost::json::value value_;
};

}  // namespace parley::operators::internal

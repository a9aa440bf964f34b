#include <fmt/format.h>

#include <type_traits>

#include "store/store.h"

namespace parley::store {
namespace {

const char* type_name(const Value& v) {
    switch (v.index()) {
        case 0:
            return "null";
        case 1:
            return "integer";
        case 2:
            return "real";
        case 3:
            return "text";
        default:
            return "blob";
    }
}

[[noreturn]] void wrong_type(std::size_t i, const Value& v, const char* wanted) {
    throw StoreError(StoreError::Kind::kOther, fmt::format("column {} is {}, not {}", i, type_name(v), wanted));
}

}  // namespace

std::int64_t Row::integer(std::size_t i) const {
    const Value& v = values_.at(i);
    if (const auto* n = std::get_if<std::int64_t>(&v)) return *n;
    if (std::holds_alternative<std::nullptr_t>(v)) return 0;
    if (const auto* d = std::get_if<double>(&v)) return static_cast<std::int64_t>(*d);
    wrong_type(i, v, "integer");
}

double Row::real(std::size_t i) const {
    const Value& v = values_.at(i);
    if (const auto* d = std::get_if<double>(&v)) return *d;
    if (const auto* n = std::get_if<std::int64_t>(&v)) return static_cast<double>(*n);
    if (std::holds_alternative<std::nullptr_t>(v)) return 0.0;
    wrong_type(i, v, "real");
}

const std::string& Row::text(std::size_t i) const {
    static const std::string kEmpty;
    const Value& v = values_.at(i);
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    if (const auto* b = std::get_if<Blob>(&v)) return b->bytes;
    if (std::holds_alternative<std::nullptr_t>(v)) return kEmpty;
    wrong_type(i, v, "text");
}

std::optional<std::string> Row::opt_text(std::size_t i) const {
    if (is_null(i)) return std::nullopt;
    return text(i);
}

std::optional<std::int64_t> Row::opt_integer(std::size_t i) const {
    if (is_null(i)) return std::nullopt;
    return integer(i);
}

}  // namespace parley::store

/// The `{{path | filter}}` template engine of scenario texts and action params: compile once, render many times.
#pragma once

#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace parley::core {

/// One step of a template path: an object key, or an array index when the segment is all digits.
struct PathSegment {
    std::string key;
    std::int64_t index = -1;  ///< >= 0 when `key` is a decimal number (usable as an array index)
};

/// A parsed dotted path such as `order.items.0.name`.
using TemplatePath = std::vector<PathSegment>;

/// Parses a dotted path (`a.b.0.c`). Returns an empty path when `text` is not a valid path. Segments are
/// ASCII letters, digits, `_` and `-`.
TemplatePath parse_template_path(std::string_view text);

/// Joins a path back to its dotted form.
std::string path_to_string(const TemplatePath& path);

/// Walks `segments` from `root`: object keys, array indexes. Returns nullptr when any step is missing.
const boost::json::value* walk_path(const boost::json::value* root, std::span<const PathSegment> segments);

/// Where template paths are resolved. Implementations decide what the first segment names (state
/// variables, `constants`, `client`, ...). `scratch` lets an implementation return a value it builds on the fly.
/// Thread-safety: as the implementation; rendering only calls `resolve`.
class TemplateScope {
public:
    virtual ~TemplateScope() = default;
    /// The value at `path`, or nullptr when missing.
    virtual const boost::json::value* resolve(std::span<const PathSegment> path, boost::json::value& scratch) const = 0;
};

/// A scope over one JSON object: the first segment is a key of `root`.
class JsonScope final : public TemplateScope {
public:
    explicit JsonScope(const boost::json::object& root) : root_(root) {}
    const boost::json::value* resolve(std::span<const PathSegment> path, boost::json::value& scratch) const override;

private:
    const boost::json::object& root_;
};

/// Why a template did not compile: the byte offset into the source and a human message.
struct TemplateError {
    std::size_t offset = 0;
    std::string message;
};

/// Filters applied left to right to a hole's value.
enum class TemplateFilter : std::uint8_t { kDefault, kUpper, kLower, kJson };

/// A compiled template: literal pieces and holes. Immutable once compiled; safe to render from many threads.
class Template {
public:
    Template() = default;

    /// Compiles `source`. Syntax: `{{ path }}`, `{{ path | upper | default: "x" }}`; filters `default: "text"`
    /// (used when the value is missing, null or empty text), `upper`, `lower` (UTF-8: Latin, Latin-1, Greek,
    /// Cyrillic), `json` (the value as JSON; `null` when missing). A lone `}}` or `{` is literal text.
    static std::variant<Template, TemplateError> compile(std::string_view source);

    /// Appends the rendered text to `out`. A missing path renders as empty text.
    void render(const TemplateScope& scope, std::string& out) const;
    std::string render(const TemplateScope& scope) const;

    /// When the template is exactly one hole without filters (`"{{order}}"`), the resolved JSON value itself
    /// (type kept, copied); otherwise the rendered text as a JSON string. Used for params and `set` values.
    boost::json::value render_value(const TemplateScope& scope) const;

    const std::string& source() const { return source_; }
    bool is_literal() const { return holes_.empty(); }
    /// The paths the template reads, in order of appearance (for lint: variables read but never set).
    std::vector<const TemplatePath*> paths() const;

private:
    struct Hole {
        TemplatePath path;
        std::vector<std::pair<TemplateFilter, std::string>> filters;  ///< filter and its argument
    };
    struct Piece {
        std::uint32_t literal_begin = 0;  ///< into source_
        std::uint32_t literal_size = 0;
        std::int32_t hole = -1;  ///< index into holes_, or -1 for literal only
    };

    void render_hole(const Hole& hole, const TemplateScope& scope, std::string& out) const;

    std::string source_;
    std::vector<Piece> pieces_;
    std::vector<Hole> holes_;
};

/// Appends a JSON value as template text: strings as-is, numbers and booleans in JSON form, null as nothing,
/// objects and arrays as compact JSON.
void append_value_text(const boost::json::value& value, std::string& out);

/// UTF-8 case mapping for Latin (ASCII, Latin-1), Greek and Cyrillic letters; other bytes pass through.
std::string utf8_upper(std::string_view text);
std::string utf8_lower(std::string_view text);

}  // namespace parley::core

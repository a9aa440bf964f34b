/// The scenario document (`"format": "parley.scenario/1"`): parsing, validation and lint into an immutable
/// compiled Scenario that the runtime executes. See docs/scenario-format.md.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actions/actions.h"
#include "core/template.h"

namespace parley::scenario {

namespace json = boost::json;

namespace internal {
class Regex;
class Compiler;
}  // namespace internal

/// Hard limits on one document; each breach is a schema error (the document size one is `too_large`).
struct Limits {
    static constexpr std::size_t kMaxDocumentBytes = 2 * 1024 * 1024;
    static constexpr std::size_t kMaxDepth = 32;  ///< JSON nesting of the whole document
    static constexpr std::size_t kMaxSections = 200;
    static constexpr std::size_t kMaxNodes = 5000;
    static constexpr std::size_t kMaxButtons = 50;  ///< per message node
    static constexpr std::size_t kMaxRoutes = 100;  ///< per router node
    static constexpr std::size_t kMaxTextBytes = 4096;  ///< one text in one language (Telegram's message size)
    static constexpr std::size_t kMaxLanguages = 50;
    static constexpr std::size_t kMaxIdBytes = 64;  ///< node ids, button ids, aliases
    static constexpr std::size_t kMaxRetries = 100;
};

using NodeIndex = std::int32_t;
inline constexpr NodeIndex kNoNode = -1;

enum class NodeType : std::uint8_t { kStart, kMessage, kInput, kRouter, kAction, kSet, kEntry, kExit, kEnd };
enum class Expect : std::uint8_t { kText, kNumber, kPhone, kEmail, kDate, kContact, kRegex };
enum class ConditionOp : std::uint8_t {
    kEq, kNe, kGt, kGte, kLt, kLte, kContains, kStartsWith, kMatches, kIn, kIsSet, kIsEmpty
};

std::string_view to_string(NodeType type);

/// A translatable text: a template per language of the scenario, or one template for every language.
struct Text {
    std::vector<std::optional<core::Template>> by_language;  ///< index = language index; size 1 when `plain`
    bool plain = true;

    bool empty() const { return by_language.empty(); }
    /// The template for `language`, falling back to the first language, then to any language present.
    const core::Template* pick(std::size_t language) const;
};

/// A JSON value whose strings are templates (action params, `set` values, condition values).
struct ValueTemplate {
    enum class Kind : std::uint8_t { kLiteral, kTemplate, kObject, kArray };
    Kind kind = Kind::kLiteral;
    json::value literal;
    core::Template text;
    std::vector<std::pair<std::string, ValueTemplate>> members;
    std::vector<ValueTemplate> items;

    json::value render(const core::TemplateScope& scope) const;
};

/// A router condition: `all`/`any`/`not` of conditions or one comparison `{var, op, value}`.
struct Condition {
    enum class Kind : std::uint8_t { kAll, kAny, kNot, kCompare };
    Kind kind = Kind::kCompare;
    std::vector<Condition> children;
    core::TemplatePath var;
    ConditionOp op = ConditionOp::kEq;
    ValueTemplate value;
    bool has_value = false;
    std::shared_ptr<const internal::Regex> regex;  ///< for `matches`
};

struct Button {
    std::string id;
    Text text;
    NodeIndex next = kNoNode;
};

struct Route {
    Condition condition;
    NodeIndex next = kNoNode;
};

struct ActionEdge {
    std::string event;
    NodeIndex next = kNoNode;
};

/// One compiled node. Fields a type does not use stay empty.
struct Node {
    std::string id;
    NodeType type = NodeType::kEnd;
    std::uint16_t section = 0;
    NodeIndex next = kNoNode;
    Text text;  ///< message text, input prompt
    Text retry_text;
    std::vector<Button> buttons;
    NodeIndex no_match = kNoNode;
    core::TemplatePath save_as;  ///< input and action
    Expect expect = Expect::kText;
    std::shared_ptr<const internal::Regex> pattern;
    std::uint32_t max_retries = 3;
    NodeIndex on_invalid = kNoNode;
    std::vector<Route> routes;
    NodeIndex else_next = kNoNode;
    std::string action;
    ValueTemplate params;
    std::vector<ActionEdge> on;
    std::vector<std::pair<core::TemplatePath, ValueTemplate>> values;
    std::string alias;  ///< entry: its alias; exit: the target alias
};

/// A section: a named group of nodes; optionally a macro with declared input variables.
struct Section {
    std::string name;
    bool macro = false;
    std::vector<std::string> macro_variables;
};

/// A compiled scenario document. Immutable once built and shared by every dialog of the bot (read from any
/// number of threads without locking). Keeps the original JSON so GET returns exactly what was PUT.
class Scenario {
public:
    const json::value& document() const { return document_; }
    const std::string& name() const { return name_; }
    /// The first language is the fallback.
    const std::vector<std::string>& languages() const { return languages_; }
    /// The index of the language that best serves `language` (exact, then primary subtag `uk-UA` → `uk`),
    /// or 0 (the fallback).
    std::size_t language_index(std::string_view language) const;
    const json::value& constants() const { return constants_; }
    const std::vector<Section>& sections() const { return sections_; }
    const std::vector<Node>& nodes() const { return nodes_; }
    const Node& node(NodeIndex index) const { return nodes_[static_cast<std::size_t>(index)]; }
    NodeIndex start() const { return start_; }
    NodeIndex find_node(std::string_view id) const;
    /// The entry node of `alias`, or kNoNode.
    NodeIndex find_alias(std::string_view alias) const;
    std::vector<std::string> aliases() const;

private:
    friend class internal::Compiler;
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
    };

    json::value document_;
    std::string name_;
    std::vector<std::string> languages_;
    json::value constants_ = json::object();
    std::vector<Section> sections_;
    std::vector<Node> nodes_;
    NodeIndex start_ = kNoNode;
    std::unordered_map<std::string, NodeIndex, Hash, std::equal_to<>> by_id_;
    std::unordered_map<std::string, NodeIndex, Hash, std::equal_to<>> by_alias_;
};

/// A problem that makes the document invalid (HTTP 422). `section` is the section name (or `#N` when it has
/// none), `node` the node id, `path` where in the document (`sections[1].nodes[3].text.uk`).
struct SchemaError {
    std::string code;
    std::string section;
    std::string node;
    std::string path;
    std::string message;
};

/// A problem that does not stop the document from running.
/// Codes: unreachable_node, missing_edge_target, duplicate_alias, unknown_exit_alias, cycle_without_wait,
/// unknown_action, action_event_without_edge, variable_never_set, text_missing_language, unknown_field.
struct LintWarning {
    std::string code;
    std::string section;
    std::string node;
    std::string path;
    std::string message;
};

struct CompileOptions {
    /// The actions that exist (from ActionRegistry::list()); when null, the action lints are skipped.
    const std::vector<actions::ActionInfo>* actions = nullptr;
};

/// The outcome of compiling: a scenario when `errors` is empty, and the lint warnings either way.
struct CompileResult {
    std::shared_ptr<const Scenario> scenario;
    std::vector<SchemaError> errors;
    std::vector<LintWarning> warnings;
    bool ok() const { return scenario != nullptr; }
};

/// Parses and compiles a document from text. Malformed JSON (`invalid_json`, with line and column), too deep
/// nesting (`too_deep`) and an oversized document (`too_large`) come back as one schema error.
CompileResult compile_scenario(std::string_view json_text, const CompileOptions& options = {});
/// Compiles an already parsed document (the JSON is copied into the Scenario).
CompileResult compile_scenario_value(const json::value& document, const CompileOptions& options = {});

/// `[{"code","section","node","path","message"}]` for the HTTP error details / PUT warnings.
json::array to_json(const std::vector<SchemaError>& errors);
json::array to_json(const std::vector<LintWarning>& warnings);

/// For the HTTP layer: the compiled scenario, or throws core::TooLarge (document too large),
/// core::BadRequest (`invalid_json` / `too_deep`) or core::Unprocessable (`invalid_document`, details = the
/// schema errors). Warnings are stored in `*warnings` when given.
std::shared_ptr<const Scenario> compile_or_throw(std::string_view json_text, const CompileOptions& options = {},
                                                 std::vector<LintWarning>* warnings = nullptr);

}  // namespace parley::scenario

#include "scenario/document.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <set>

#include "core/error.h"
#include "core/json.h"
#include "scenario/internal/regex.h"

namespace parley::scenario {

std::string_view to_string(NodeType type) {
    switch (type) {
        case NodeType::kStart: return "start";
        case NodeType::kMessage: return "message";
        case NodeType::kInput: return "input";
        case NodeType::kRouter: return "router";
        case NodeType::kAction: return "action";
        case NodeType::kSet: return "set";
        case NodeType::kEntry: return "entry";
        case NodeType::kExit: return "exit";
        case NodeType::kEnd: return "end";
    }
    return "end";
}

const core::Template* Text::pick(std::size_t language) const {
    if (by_language.empty()) return nullptr;
    if (plain) return by_language[0] ? &*by_language[0] : nullptr;
    if (language < by_language.size() && by_language[language]) return &*by_language[language];
    for (const auto& t : by_language) {
        if (t) return &*t;
    }
    return nullptr;
}

json::value ValueTemplate::render(const core::TemplateScope& scope) const {
    switch (kind) {
        case Kind::kLiteral:
            return literal;
        case Kind::kTemplate:
            return text.render_value(scope);
        case Kind::kObject: {
            json::object out;
            out.reserve(members.size());
            for (const auto& [key, value] : members) out[key] = value.render(scope);
            return out;
        }
        case Kind::kArray: {
            json::array out;
            out.reserve(items.size());
            for (const auto& item : items) out.push_back(item.render(scope));
            return out;
        }
    }
    return nullptr;
}

std::size_t Scenario::language_index(std::string_view language) const {
    for (std::size_t i = 0; i < languages_.size(); ++i) {
        if (languages_[i] == language) return i;
    }
    std::string_view primary = language.substr(0, language.find_first_of("-_"));
    for (std::size_t i = 0; i < languages_.size(); ++i) {
        std::string_view lp = std::string_view(languages_[i]).substr(0, languages_[i].find_first_of("-_"));
        if (lp == primary) return i;
    }
    return 0;
}

NodeIndex Scenario::find_node(std::string_view id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? kNoNode : it->second;
}

NodeIndex Scenario::find_alias(std::string_view alias) const {
    auto it = by_alias_.find(alias);
    return it == by_alias_.end() ? kNoNode : it->second;
}

std::vector<std::string> Scenario::aliases() const {
    std::vector<std::string> out;
    for (const auto& [alias, index] : by_alias_) out.push_back(alias);
    std::sort(out.begin(), out.end());
    return out;
}

namespace internal {

namespace {

bool valid_node_id(std::string_view id) {
    if (id.empty() || id.size() > Limits::kMaxIdBytes) return false;
    return std::all_of(id.begin(), id.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

bool valid_alias(std::string_view id) {
    if (id.empty() || id.size() > Limits::kMaxIdBytes) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

bool valid_language(std::string_view code) {
    if (code.size() < 2 || code.size() > 35) return false;
    std::size_t i = 0;
    while (i < code.size() && code[i] >= 'a' && code[i] <= 'z') ++i;
    if (i < 2 || i > 3) return false;
    while (i < code.size()) {
        if (code[i] != '-' && code[i] != '_') return false;
        std::size_t start = ++i;
        while (i < code.size() && std::isalnum(static_cast<unsigned char>(code[i]))) ++i;
        if (i - start < 2 || i - start > 8) return false;
    }
    return true;
}

std::string_view kind_name(const json::value& v) {
    switch (v.kind()) {
        case json::kind::string: return "a string";
        case json::kind::object: return "an object";
        case json::kind::array: return "an array";
        case json::kind::bool_: return "a boolean";
        case json::kind::null: return "null";
        default: return "a number";
    }
}

const std::set<std::string, std::less<>> kReservedRoots = {"constants", "instance_settings", "client", "user_input",
                                                           "user_name", "contact", "button"};

}  // namespace

/// Builds a Scenario from a parsed document, collecting every schema error and lint warning on the way.
/// Single-use; not thread-safe.
class Compiler {
public:
    Compiler(const json::value& doc, const CompileOptions& options) : doc_(doc), options_(options) {}

    CompileResult run() {
        auto scenario = std::make_shared<Scenario>();
        s_ = scenario.get();
        compile_root();
        if (errors_.empty()) {
            resolve_edges();
            lint();
        }
        CompileResult result;
        result.errors = std::move(errors_);
        result.warnings = std::move(warnings_);
        if (result.errors.empty()) {
            s_->document_ = doc_;
            result.scenario = std::move(scenario);
        }
        return result;
    }

private:
    // ---- reporting ----------------------------------------------------------------------------------------
    std::string section_label() const {
        if (section_ < 0) return {};
        if (!section_name_.empty()) return section_name_;
        return "#" + std::to_string(section_);
    }

    void error(std::string code, std::string path, std::string message) {
        if (errors_.size() >= 200) return;  // enough to fix a document; keeps a hostile one cheap to answer
        errors_.push_back({std::move(code), section_label(), node_id_, std::move(path), std::move(message)});
    }

    void warn(std::string code, std::string path, std::string message) {
        if (warnings_.size() >= 500) return;
        warnings_.push_back({std::move(code), section_label(), node_id_, std::move(path), std::move(message)});
    }

    void warn_at(NodeIndex index, std::string code, std::string path, std::string message) {
        const Node& n = s_->node(index);
        warnings_.push_back({std::move(code), section_name_of(n.section), n.id, std::move(path), std::move(message)});
    }

    std::string section_name_of(std::uint16_t section) const {
        const auto& name = s_->sections_[section].name;
        return name.empty() ? "#" + std::to_string(section) : name;
    }

    // ---- root ---------------------------------------------------------------------------------------------
    void compile_root() {
        const json::object* root = doc_.if_object();
        if (!root) {
            error("expected_object", "", "the scenario document must be a JSON object");
            return;
        }
        for (const auto& kv : *root) {
            static const std::set<std::string_view> known = {"format", "name", "languages", "constants", "sections",
                                                             "description", "settings"};
            if (!known.count(kv.key())) warn("unknown_field", std::string(kv.key()), "unknown top-level field");
        }
        const json::value* format = root->if_contains("format");
        if (!format) {
            error("missing_field", "format", "field 'format' is required (\"parley.scenario/1\")");
        } else if (!format->is_string() || format->get_string() != "parley.scenario/1") {
            error("unsupported_format", "format", "'format' must be \"parley.scenario/1\"");
        }
        if (const json::value* name = root->if_contains("name"); name && !name->is_null()) {
            if (!name->is_string()) error("wrong_type", "name", "'name' must be a string");
            else s_->name_ = name->get_string();
        }
        if (const json::value* constants = root->if_contains("constants"); constants && !constants->is_null()) {
            if (!constants->is_object()) error("wrong_type", "constants", "'constants' must be an object");
            else s_->constants_ = *constants;
        }
        const json::value* sections = root->if_contains("sections");
        if (!sections) {
            error("missing_field", "sections", "field 'sections' is required");
            return;
        }
        if (!sections->is_array() || sections->get_array().empty()) {
            error("wrong_type", "sections", "'sections' must be a non-empty array");
            return;
        }
        if (sections->get_array().size() > Limits::kMaxSections) {
            error("too_many_sections", "sections", fmt::format("at most {} sections", Limits::kMaxSections));
            return;
        }
        compile_languages(*root, sections->get_array());
        collect_nodes(sections->get_array());
        compile_nodes(sections->get_array());
        section_ = -1;
        node_id_.clear();
        int starts = 0;
        for (std::size_t i = 0; i < s_->nodes_.size(); ++i) {
            const Node& n = s_->nodes_[i];
            if (n.type != NodeType::kStart) continue;
            ++starts;
            if (n.section != 0) {
                node_id_ = n.id;
                error("start_not_in_first_section", "", "the start node must be in the first section");
                node_id_.clear();
            }
            if (s_->start_ == kNoNode) s_->start_ = static_cast<NodeIndex>(i);
        }
        if (starts != 1) {
            error("start_count", "sections", fmt::format("exactly one start node is required, found {}", starts));
        }
    }

    void compile_languages(const json::object& root, const json::array& sections) {
        const json::value* languages = root.if_contains("languages");
        if (languages && !languages->is_null()) {
            if (!languages->is_array() || languages->get_array().empty()) {
                error("wrong_type", "languages", "'languages' must be a non-empty array of language codes");
                return;
            }
            if (languages->get_array().size() > Limits::kMaxLanguages) {
                error("too_many_languages", "languages", fmt::format("at most {} languages", Limits::kMaxLanguages));
                return;
            }
            std::size_t i = 0;
            for (const auto& l : languages->get_array()) {
                std::string path = fmt::format("languages[{}]", i++);
                if (!l.is_string() || !valid_language(l.get_string())) {
                    error("invalid_language", path, "a language is a code such as \"en\", \"uk\" or \"pt-BR\"");
                    continue;
                }
                std::string code(l.get_string());
                if (std::find(s_->languages_.begin(), s_->languages_.end(), code) != s_->languages_.end()) {
                    error("duplicate_language", path, "language '" + code + "' is listed twice");
                    continue;
                }
                s_->languages_.push_back(std::move(code));
            }
            return;
        }
        // Without `languages`, the languages are those the texts use, in order of first appearance.
        std::function<void(const json::value&)> scan_text = [&](const json::value& text) {
            if (const auto* m = text.if_object()) {
                for (const auto& kv : *m) {
                    std::string code(kv.key());
                    if (valid_language(code) && s_->languages_.size() < Limits::kMaxLanguages &&
                        std::find(s_->languages_.begin(), s_->languages_.end(), code) == s_->languages_.end()) {
                        s_->languages_.push_back(code);
                    }
                }
            }
        };
        for (const auto& section : sections) {
            const auto* so = section.if_object();
            const json::value* nodes = so ? so->if_contains("nodes") : nullptr;
            if (!nodes || !nodes->is_array()) continue;
            for (const auto& node : nodes->get_array()) {
                const auto* no = node.if_object();
                if (!no) continue;
                for (const char* field : {"text", "prompt", "retry_text"}) {
                    if (const auto* t = no->if_contains(field)) scan_text(*t);
                }
                if (const auto* b = no->if_contains("buttons"); b && b->is_array()) {
                    for (const auto& button : b->get_array()) {
                        if (const auto* bo = button.if_object(); bo && bo->contains("text")) scan_text(bo->at("text"));
                    }
                }
            }
        }
        if (s_->languages_.empty()) s_->languages_.push_back("en");
    }

    // First pass: sections, node ids and types, so edges can be resolved whatever their order.
    void collect_nodes(const json::array& sections) {
        std::set<std::string, std::less<>> section_names;
        for (std::size_t si = 0; si < sections.size(); ++si) {
            section_ = static_cast<int>(si);
            section_name_.clear();
            Section section;
            std::string spath = fmt::format("sections[{}]", si);
            const auto* so = sections[si].if_object();
            if (!so) {
                error("wrong_type", spath, "a section must be an object with 'name' and 'nodes'");
                s_->sections_.push_back(std::move(section));
                continue;
            }
            if (const auto* name = so->if_contains("name"); name && name->is_string() && !name->get_string().empty()) {
                section.name = name->get_string();
                section_name_ = section.name;
                if (!section_names.insert(section.name).second) {
                    error("duplicate_section", spath + ".name", "section name '" + section.name + "' is used twice");
                }
            } else {
                error("missing_field", spath + ".name", "a section needs a non-empty 'name'");
            }
            for (const auto& kv : *so) {
                static const std::set<std::string_view> known = {"name", "nodes", "macro", "note", "position", "id"};
                if (!known.count(kv.key())) {
                    warn("unknown_field", spath + "." + std::string(kv.key()), "unknown section field");
                }
            }
            if (const auto* macro = so->if_contains("macro"); macro && !macro->is_null()) {
                compile_macro(*macro, spath + ".macro", section);
            }
            s_->sections_.push_back(std::move(section));
            const auto* nodes = so->if_contains("nodes");
            if (!nodes || !nodes->is_array()) {
                error("missing_field", spath + ".nodes", "a section needs a 'nodes' array");
                continue;
            }
            for (std::size_t ni = 0; ni < nodes->get_array().size(); ++ni) {
                std::string npath = fmt::format("{}.nodes[{}]", spath, ni);
                node_id_.clear();
                const auto* no = nodes->get_array()[ni].if_object();
                Node node;
                node.section = static_cast<std::uint16_t>(si);
                if (!no) {
                    error("wrong_type", npath, "a node must be an object");
                } else {
                    const auto* id = no->if_contains("id");
                    if (!id || !id->is_string() || !valid_node_id(id->get_string())) {
                        error("invalid_id", npath + ".id",
                              "a node needs an 'id' of 1-64 characters a-z, 0-9 and _");
                    } else {
                        node.id = id->get_string();
                        node_id_ = node.id;
                        if (s_->by_id_.count(node.id)) {
                            error("duplicate_id", npath + ".id", "node id '" + node.id + "' is used twice");
                        } else {
                            s_->by_id_.emplace(node.id, static_cast<NodeIndex>(s_->nodes_.size()));
                        }
                    }
                }
                if (s_->nodes_.size() >= Limits::kMaxNodes) {
                    error("too_many_nodes", npath, fmt::format("at most {} nodes", Limits::kMaxNodes));
                    return;
                }
                s_->nodes_.push_back(std::move(node));
                node_paths_.push_back(npath);
                node_json_.push_back(no);
            }
        }
    }

    void compile_macro(const json::value& macro, const std::string& path, Section& section) {
        if (macro.is_bool()) {
            section.macro = macro.get_bool();
            return;
        }
        const auto* mo = macro.if_object();
        if (!mo) {
            error("wrong_type", path, "'macro' must be a boolean or {\"variables\": [...]}");
            return;
        }
        section.macro = true;
        if (const auto* vars = mo->if_contains("variables"); vars && !vars->is_null()) {
            if (!vars->is_array()) {
                error("wrong_type", path + ".variables", "'variables' must be an array");
                return;
            }
            for (std::size_t i = 0; i < vars->get_array().size(); ++i) {
                const auto& v = vars->get_array()[i];
                // A variable is a name or {"name": ..., "label": ..., "required": ...} for the operator's form.
                const json::value* name = v.is_object() ? v.get_object().if_contains("name") : &v;
                if (!name || !name->is_string() || core::parse_template_path(name->get_string()).size() != 1) {
                    error("invalid_variable", fmt::format("{}.variables[{}]", path, i),
                          "a macro variable is a name of letters, digits, _ and -");
                    continue;
                }
                section.macro_variables.emplace_back(name->get_string());
            }
        }
    }

    // ---- nodes --------------------------------------------------------------------------------------------
    void compile_nodes(const json::array& sections) {
        for (std::size_t i = 0; i < s_->nodes_.size(); ++i) {
            Node& node = s_->nodes_[i];
            section_ = node.section;
            section_name_ = s_->sections_[node.section].name;
            node_id_ = node.id;
            if (node_json_[i]) compile_node(*node_json_[i], node_paths_[i], node);
        }
        (void)sections;
    }

    void check_fields(const json::object& o, const std::string& path, std::initializer_list<std::string_view> allowed) {
        for (const auto& kv : o) {
            std::string_view k = kv.key();
            if (k == "id" || k == "type" || k == "position" || k == "note") continue;
            if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
                warn("unknown_field", path + "." + std::string(k), "field '" + std::string(k) + "' is not used by this node type");
            }
        }
    }

    void compile_node(const json::object& o, const std::string& path, Node& node) {
        const auto* type = o.if_contains("type");
        if (!type || !type->is_string()) {
            error("missing_field", path + ".type", "a node needs a 'type'");
            return;
        }
        std::string_view t = type->get_string();
        if (const auto* pos = o.if_contains("position"); pos && !pos->is_null() && !pos->is_object()) {
            error("wrong_type", path + ".position", "'position' must be {\"x\": number, \"y\": number}");
        }
        if (const auto* note = o.if_contains("note"); note && !note->is_null() && !note->is_string()) {
            error("wrong_type", path + ".note", "'note' must be a string");
        }
        if (t == "start") {
            node.type = NodeType::kStart;
            check_fields(o, path, {"next"});
            edge(o, "next", path);
        } else if (t == "message") {
            node.type = NodeType::kMessage;
            check_fields(o, path, {"text", "buttons", "next", "no_match"});
            node.text = text(o, "text", path, false);
            edge(o, "next", path);
            edge(o, "no_match", path);
            if (const auto* b = o.if_contains("buttons"); b && !b->is_null()) compile_buttons(*b, path + ".buttons", node);
        } else if (t == "input") {
            node.type = NodeType::kInput;
            check_fields(o, path, {"prompt", "save_as", "expect", "pattern", "retry_text", "max_retries", "next",
                                   "on_invalid"});
            node.text = text(o, "prompt", path, false);
            node.retry_text = text(o, "retry_text", path, false);
            node.save_as = save_path(o, path);
            compile_expect(o, path, node);
            edge(o, "next", path);
            edge(o, "on_invalid", path);
            if (const auto* m = o.if_contains("max_retries"); m && !m->is_null()) {
                if (!m->is_int64() || m->get_int64() < 1 || m->get_int64() > static_cast<std::int64_t>(Limits::kMaxRetries)) {
                    error("wrong_type", path + ".max_retries",
                          fmt::format("'max_retries' must be an integer from 1 to {}", Limits::kMaxRetries));
                } else {
                    node.max_retries = static_cast<std::uint32_t>(m->get_int64());
                }
            }
        } else if (t == "router") {
            node.type = NodeType::kRouter;
            check_fields(o, path, {"routes", "else"});
            edge(o, "else", path);
            if (const auto* r = o.if_contains("routes"); r && !r->is_null()) {
                if (!r->is_array()) {
                    error("wrong_type", path + ".routes", "'routes' must be an array of {\"if\", \"next\"}");
                } else if (r->get_array().size() > Limits::kMaxRoutes) {
                    error("too_many_routes", path + ".routes", fmt::format("at most {} routes", Limits::kMaxRoutes));
                } else {
                    for (std::size_t i = 0; i < r->get_array().size(); ++i) {
                        std::string rpath = fmt::format("{}.routes[{}]", path, i);
                        const auto* ro = r->get_array()[i].if_object();
                        if (!ro) {
                            error("wrong_type", rpath, "a route is {\"if\": condition, \"next\": node}");
                            continue;
                        }
                        Route route;
                        const auto* cond = ro->if_contains("if");
                        if (!cond) error("missing_field", rpath + ".if", "a route needs an 'if' condition");
                        else route.condition = condition(*cond, rpath + ".if");
                        edge(*ro, "next", rpath);
                        node.routes.push_back(std::move(route));
                    }
                }
            }
        } else if (t == "action") {
            node.type = NodeType::kAction;
            check_fields(o, path, {"action", "params", "save_as", "on", "next"});
            const auto* a = o.if_contains("action");
            if (!a || !a->is_string() || a->get_string().empty()) {
                error("missing_field", path + ".action", "an action node needs the 'action' name");
            } else {
                node.action = a->get_string();
            }
            if (const auto* p = o.if_contains("params"); p && !p->is_null()) {
                if (!p->is_object()) error("wrong_type", path + ".params", "'params' must be an object");
                else node.params = value_template(*p, path + ".params");
            } else {
                node.params.literal = json::object();
            }
            node.save_as = save_path(o, path);
            edge(o, "next", path);
            if (const auto* on = o.if_contains("on"); on && !on->is_null()) {
                if (!on->is_object()) {
                    error("wrong_type", path + ".on", "'on' must map event names to node ids");
                } else {
                    for (const auto& kv : on->get_object()) edge_value(kv.value(), path + ".on." + std::string(kv.key()));
                }
            }
        } else if (t == "set") {
            node.type = NodeType::kSet;
            check_fields(o, path, {"values", "next"});
            edge(o, "next", path);
            const auto* v = o.if_contains("values");
            if (!v || !v->is_object()) {
                error("missing_field", path + ".values", "a set node needs 'values': {variable: template}");
            } else {
                for (const auto& kv : v->get_object()) {
                    std::string vpath = path + ".values." + std::string(kv.key());
                    core::TemplatePath target = core::parse_template_path(kv.key());
                    if (target.empty()) {
                        error("invalid_variable", vpath, "a variable name is letters, digits, _ and -, dotted for nested");
                        continue;
                    }
                    node.values.emplace_back(std::move(target), value_template(kv.value(), vpath));
                }
            }
        } else if (t == "entry") {
            node.type = NodeType::kEntry;
            check_fields(o, path, {"alias", "next"});
            edge(o, "next", path);
            const auto* a = o.if_contains("alias");
            if (!a || !a->is_string() || !valid_alias(a->get_string())) {
                error("invalid_alias", path + ".alias", "an entry node needs an 'alias' of letters, digits, _ and -");
            } else {
                node.alias = a->get_string();
            }
        } else if (t == "exit") {
            node.type = NodeType::kExit;
            check_fields(o, path, {"to"});
            const auto* to = o.if_contains("to");
            if (!to || !to->is_string() || to->get_string().empty()) {
                error("missing_field", path + ".to", "an exit node needs 'to': the alias of an entry node");
            } else {
                node.alias = to->get_string();
            }
        } else if (t == "end") {
            node.type = NodeType::kEnd;
            check_fields(o, path, {});
        } else {
            error("unknown_node_type", path + ".type",
                  "unknown node type '" + std::string(t) +
                      "' (known: start, message, input, router, action, set, entry, exit, end)");
        }
    }

    core::TemplatePath save_path(const json::object& o, const std::string& path) {
        const auto* s = o.if_contains("save_as");
        if (!s || s->is_null()) return {};
        core::TemplatePath p;
        if (s->is_string()) p = core::parse_template_path(s->get_string());
        if (p.empty()) error("invalid_variable", path + ".save_as", "'save_as' must be a variable name");
        return p;
    }

    void compile_expect(const json::object& o, const std::string& path, Node& node) {
        const auto* e = o.if_contains("expect");
        std::string_view kind = "text";
        if (e && !e->is_null()) {
            if (!e->is_string()) {
                error("wrong_type", path + ".expect", "'expect' must be a string");
                return;
            }
            kind = e->get_string();
        }
        static const std::pair<std::string_view, Expect> kinds[] = {
            {"text", Expect::kText},   {"number", Expect::kNumber},   {"phone", Expect::kPhone}, {"email", Expect::kEmail},
            {"date", Expect::kDate},   {"contact", Expect::kContact}, {"regex", Expect::kRegex}};
        bool found = false;
        for (const auto& [name, value] : kinds) {
            if (name == kind) {
                node.expect = value;
                found = true;
            }
        }
        if (!found) {
            error("invalid_expect", path + ".expect",
                  "'expect' must be one of text, number, phone, email, date, contact, regex");
            return;
        }
        const auto* p = o.if_contains("pattern");
        if (node.expect == Expect::kRegex) {
            if (!p || !p->is_string()) {
                error("missing_field", path + ".pattern", "expect 'regex' needs a 'pattern'");
                return;
            }
            node.pattern = regex(p->get_string(), path + ".pattern");
        } else if (p && !p->is_null()) {
            warn("unknown_field", path + ".pattern", "'pattern' is used only with expect 'regex'");
        }
    }

    std::shared_ptr<const Regex> regex(std::string_view pattern, const std::string& path) {
        auto r = Regex::compile(pattern);
        if (auto* e = std::get_if<std::string>(&r)) {
            error("invalid_pattern", path, "invalid regular expression: " + *e);
            return nullptr;
        }
        return std::make_shared<const Regex>(std::get<Regex>(std::move(r)));
    }

    void compile_buttons(const json::value& b, const std::string& path, Node& node) {
        if (!b.is_array()) {
            error("wrong_type", path, "'buttons' must be an array");
            return;
        }
        if (b.get_array().size() > Limits::kMaxButtons) {
            error("too_many_buttons", path, fmt::format("at most {} buttons", Limits::kMaxButtons));
            return;
        }
        for (std::size_t i = 0; i < b.get_array().size(); ++i) {
            std::string bpath = fmt::format("{}[{}]", path, i);
            const auto* bo = b.get_array()[i].if_object();
            if (!bo) {
                error("wrong_type", bpath, "a button is {\"id\", \"text\", \"next\"}");
                continue;
            }
            Button button;
            const auto* id = bo->if_contains("id");
            if (!id || !id->is_string() || id->get_string().empty() || id->get_string().size() > Limits::kMaxIdBytes) {
                error("invalid_id", bpath + ".id", "a button needs an 'id' (1-64 characters)");
            } else {
                button.id = id->get_string();
                for (const auto& other : node.buttons) {
                    if (other.id == button.id) error("duplicate_id", bpath + ".id", "button id '" + button.id + "' is used twice in this node");
                }
            }
            button.text = text(*bo, "text", bpath, true);
            edge(*bo, "next", bpath);
            for (const auto& kv : *bo) {
                if (kv.key() != "id" && kv.key() != "text" && kv.key() != "next") {
                    warn("unknown_field", bpath + "." + std::string(kv.key()), "unknown button field");
                }
            }
            node.buttons.push_back(std::move(button));
        }
    }

    std::optional<core::Template> compile_template(std::string_view source, const std::string& path) {
        if (source.size() > Limits::kMaxTextBytes) {
            error("text_too_long", path, fmt::format("a text is at most {} bytes", Limits::kMaxTextBytes));
            return std::nullopt;
        }
        auto r = core::Template::compile(source);
        if (auto* e = std::get_if<core::TemplateError>(&r)) {
            error("template_syntax", path, fmt::format("template error at offset {}: {}", e->offset, e->message));
            return std::nullopt;
        }
        return std::get<core::Template>(std::move(r));
    }

    Text text(const json::object& o, std::string_view field, const std::string& path, bool required) {
        Text out;
        std::string tpath = path + "." + std::string(field);
        const auto* v = o.if_contains(field);
        if (!v || v->is_null()) {
            if (required) error("missing_field", tpath, "field '" + std::string(field) + "' is required");
            return out;
        }
        if (v->is_string()) {
            out.by_language.push_back(compile_template(v->get_string(), tpath));
            return out;
        }
        if (!v->is_object()) {
            error("wrong_type", tpath, "a text is a string or an object {language: string}");
            return out;
        }
        out.plain = false;
        out.by_language.resize(s_->languages_.size());
        for (const auto& kv : v->get_object()) {
            std::string lpath = tpath + "." + std::string(kv.key());
            auto it = std::find(s_->languages_.begin(), s_->languages_.end(), kv.key());
            if (it == s_->languages_.end()) {
                error("unknown_language", lpath,
                      "language '" + std::string(kv.key()) + "' is not in the scenario's 'languages'");
                continue;
            }
            if (!kv.value().is_string()) {
                error("wrong_type", lpath, "a translation must be a string");
                continue;
            }
            out.by_language[static_cast<std::size_t>(it - s_->languages_.begin())] =
                compile_template(kv.value().get_string(), lpath);
        }
        std::vector<std::string> missing;
        for (std::size_t i = 0; i < s_->languages_.size(); ++i) {
            if (!v->get_object().contains(s_->languages_[i])) missing.push_back(s_->languages_[i]);
        }
        if (!missing.empty() && !v->get_object().empty()) {
            warn("text_missing_language", tpath, fmt::format("no translation for {}", fmt::join(missing, ", ")));
        }
        if (v->get_object().empty()) out.by_language.clear();
        return out;
    }

    ValueTemplate value_template(const json::value& v, const std::string& path) {
        ValueTemplate out;
        if (const auto* s = v.if_string()) {
            if (s->find("{{") == json::string::npos) {
                out.literal = v;
                return out;
            }
            if (auto t = compile_template(*s, path)) {
                out.kind = ValueTemplate::Kind::kTemplate;
                out.text = std::move(*t);
            }
            return out;
        }
        if (const auto* o = v.if_object()) {
            bool any = false;
            for (const auto& kv : *o) {
                auto member = value_template(kv.value(), path + "." + std::string(kv.key()));
                any = any || member.kind != ValueTemplate::Kind::kLiteral;
                out.members.emplace_back(std::string(kv.key()), std::move(member));
            }
            if (any) {
                out.kind = ValueTemplate::Kind::kObject;
            } else {
                out.members.clear();
                out.literal = v;
            }
            return out;
        }
        if (const auto* a = v.if_array()) {
            bool any = false;
            for (std::size_t i = 0; i < a->size(); ++i) {
                auto item = value_template((*a)[i], fmt::format("{}[{}]", path, i));
                any = any || item.kind != ValueTemplate::Kind::kLiteral;
                out.items.push_back(std::move(item));
            }
            if (any) {
                out.kind = ValueTemplate::Kind::kArray;
            } else {
                out.items.clear();
                out.literal = v;
            }
            return out;
        }
        out.literal = v;
        return out;
    }

    Condition condition(const json::value& v, const std::string& path) {
        Condition c;
        const auto* o = v.if_object();
        if (!o) {
            error("invalid_condition", path, "a condition is {all|any|not|var} (got " + std::string(kind_name(v)) + ")");
            return c;
        }
        auto list = [&](const char* key, Condition::Kind kind) {
            c.kind = kind;
            const auto& arr = o->at(key);
            if (!arr.is_array() || arr.get_array().empty()) {
                error("invalid_condition", path + "." + key, std::string("'") + key + "' takes a non-empty array of conditions");
                return;
            }
            for (std::size_t i = 0; i < arr.get_array().size(); ++i) {
                c.children.push_back(condition(arr.get_array()[i], fmt::format("{}.{}[{}]", path, key, i)));
            }
        };
        if (o->contains("all")) {
            list("all", Condition::Kind::kAll);
            return c;
        }
        if (o->contains("any")) {
            list("any", Condition::Kind::kAny);
            return c;
        }
        if (o->contains("not")) {
            c.kind = Condition::Kind::kNot;
            c.children.push_back(condition(o->at("not"), path + ".not"));
            return c;
        }
        const auto* var = o->if_contains("var");
        if (!var || !var->is_string()) {
            error("invalid_condition", path, "a condition is {\"all\": [...]}, {\"any\": [...]}, {\"not\": ...} or "
                                             "{\"var\", \"op\", \"value\"}");
            return c;
        }
        std::string_view name = var->get_string();
        if (name.size() > 4 && name.substr(0, 2) == "{{" && name.substr(name.size() - 2) == "}}") {
            name = name.substr(2, name.size() - 4);
            while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
            while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
        }
        c.var = core::parse_template_path(name);
        if (c.var.empty()) error("invalid_condition", path + ".var", "'var' must be a variable path such as order.total");
        const auto* op = o->if_contains("op");
        static const std::pair<std::string_view, ConditionOp> ops[] = {
            {"eq", ConditionOp::kEq},         {"ne", ConditionOp::kNe},
            {"gt", ConditionOp::kGt},         {"gte", ConditionOp::kGte},
            {"lt", ConditionOp::kLt},         {"lte", ConditionOp::kLte},
            {"contains", ConditionOp::kContains}, {"starts_with", ConditionOp::kStartsWith},
            {"matches", ConditionOp::kMatches},   {"in", ConditionOp::kIn},
            {"is_set", ConditionOp::kIsSet},      {"is_empty", ConditionOp::kIsEmpty}};
        bool found = false;
        if (op && op->is_string()) {
            for (const auto& [n, value] : ops) {
                if (n == op->get_string()) {
                    c.op = value;
                    found = true;
                }
            }
        }
        if (!found) {
            error("invalid_condition", path + ".op",
                  "'op' must be one of eq ne gt gte lt lte contains starts_with matches in is_set is_empty");
            return c;
        }
        const auto* value = o->if_contains("value");
        bool unary = c.op == ConditionOp::kIsSet || c.op == ConditionOp::kIsEmpty;
        if (!value && !unary) {
            error("invalid_condition", path + ".value", "operator needs a 'value'");
            return c;
        }
        if (value) {
            c.has_value = true;
            c.value = value_template(*value, path + ".value");
            if (unary && !value->is_bool()) {
                error("invalid_condition", path + ".value", "is_set / is_empty take an optional boolean 'value'");
            }
            if (c.op == ConditionOp::kMatches) {
                if (!value->is_string()) error("invalid_condition", path + ".value", "'matches' takes a pattern string");
                else if (value->get_string().find("{{") != json::string::npos)
                    error("invalid_condition", path + ".value", "a 'matches' pattern cannot contain templates");
                else c.regex = regex(value->get_string(), path + ".value");
            }
            if (c.op == ConditionOp::kIn && !value->is_array() && !value->is_string()) {
                error("invalid_condition", path + ".value", "'in' takes an array or a comma-separated string");
            }
        }
        for (const auto& kv : *o) {
            if (kv.key() != "var" && kv.key() != "op" && kv.key() != "value") {
                warn("unknown_field", path + "." + std::string(kv.key()), "unknown condition field");
            }
        }
        return c;
    }

    // Edges are recorded now and resolved once every node id is known.
    void edge(const json::object& o, std::string_view field, const std::string& path) {
        const auto* v = o.if_contains(field);
        if (!v || v->is_null()) return;
        edge_value(*v, path + "." + std::string(field));
    }

    void edge_value(const json::value& v, const std::string& path) {
        if (!v.is_string()) {
            error("wrong_type", path, "an edge is the id of the next node (a string)");
            return;
        }
        if (v.get_string().empty()) return;
        edges_.push_back({std::string(v.get_string()), path, section_label(), node_id_});
    }

    // ---- edges --------------------------------------------------------------------------------------------
    NodeIndex target(std::size_t& cursor) {
        const auto& e = edges_[cursor++];
        NodeIndex index = s_->find_node(e.target);
        if (index == kNoNode) {
            warnings_.push_back({"missing_edge_target", e.section_label, e.node, e.path, "edge to unknown node '" + e.target + "': the run ends there"});
        }
        return index;
    }

    // Edges were recorded in the same order compile_node visited the fields; replay that order here.
    void resolve_edges() {
        std::size_t cursor = 0;
        auto has = [&](const json::object& o, std::string_view f) {
            const auto* v = o.if_contains(f);
            return v && v->is_string() && !v->get_string().empty();
        };
        for (std::size_t i = 0; i < s_->nodes_.size(); ++i) {
            Node& n = s_->nodes_[i];
            const json::object& o = *node_json_[i];
            switch (n.type) {
                case NodeType::kStart:
                case NodeType::kEntry:
                case NodeType::kSet:
                    if (has(o, "next")) n.next = target(cursor);
                    break;
                case NodeType::kMessage:
                    if (has(o, "next")) n.next = target(cursor);
                    if (has(o, "no_match")) n.no_match = target(cursor);
                    for (std::size_t b = 0; b < n.buttons.size(); ++b) {
                        if (has(o.at("buttons").get_array()[b].get_object(), "next")) n.buttons[b].next = target(cursor);
                    }
                    break;
                case NodeType::kInput:
                    if (has(o, "next")) n.next = target(cursor);
                    if (has(o, "on_invalid")) n.on_invalid = target(cursor);
                    break;
                case NodeType::kRouter:
                    if (has(o, "else")) n.else_next = target(cursor);
                    for (std::size_t r = 0; r < n.routes.size(); ++r) {
                        if (has(o.at("routes").get_array()[r].get_object(), "next")) n.routes[r].next = target(cursor);
                    }
                    break;
                case NodeType::kAction:
                    if (has(o, "next")) n.next = target(cursor);
                    if (const auto* on = o.if_contains("on"); on && on->is_object()) {
                        for (const auto& kv : on->get_object()) {
                            if (!kv.value().is_string() || kv.value().get_string().empty()) continue;
                            n.on.push_back({std::string(kv.key()), target(cursor)});
                        }
                    }
                    break;
                case NodeType::kExit:
                case NodeType::kEnd:
                    break;
            }
        }
        // Aliases: the first entry node wins; exits point at their entry node.
        for (std::size_t i = 0; i < s_->nodes_.size(); ++i) {
            const Node& n = s_->nodes_[i];
            if (n.type != NodeType::kEntry) continue;
            if (!s_->by_alias_.emplace(n.alias, static_cast<NodeIndex>(i)).second) {
                warn_at(static_cast<NodeIndex>(i), "duplicate_alias", node_paths_[i] + ".alias",
                        "alias '" + n.alias + "' is already used by node '" +
                            s_->node(s_->by_alias_.at(n.alias)).id + "'; this entry is never called");
            }
        }
        for (std::size_t i = 0; i < s_->nodes_.size(); ++i) {
            Node& n = s_->nodes_[i];
            if (n.type != NodeType::kExit) continue;
            n.next = s_->find_alias(n.alias);
            if (n.next == kNoNode) {
                warn_at(static_cast<NodeIndex>(i), "unknown_exit_alias", node_paths_[i] + ".to",
                        "no entry node has alias '" + n.alias + "': the run ends here");
            }
        }
    }

    // ---- lint ---------------------------------------------------------------------------------------------
    static void successors(const Node& n, std::vector<NodeIndex>& out) {
        out.clear();
        auto add = [&](NodeIndex i) {
            if (i != kNoNode) out.push_back(i);
        };
        add(n.next);
        add(n.no_match);
        add(n.on_invalid);
        add(n.else_next);
        for (const auto& b : n.buttons) add(b.next);
        for (const auto& r : n.routes) add(r.next);
        for (const auto& e : n.on) add(e.next);
    }

    static bool waits(const Node& n) {
        return (n.type == NodeType::kMessage && !n.buttons.empty()) || n.type == NodeType::kInput;
    }

    void lint() {
        const auto count = static_cast<NodeIndex>(s_->nodes_.size());
        std::vector<NodeIndex> succ;
        // Reachability from the start node and from every entry (entries are reachable by alias calls).
        std::vector<char> seen(static_cast<std::size_t>(count), 0);
        std::vector<NodeIndex> work;
        for (NodeIndex i = 0; i < count; ++i) {
            const Node& n = s_->node(i);
            if (n.type == NodeType::kStart || n.type == NodeType::kEntry) {
                work.push_back(i);
                seen[static_cast<std::size_t>(i)] = 1;
            }
        }
        while (!work.empty()) {
            NodeIndex i = work.back();
            work.pop_back();
            successors(s_->node(i), succ);
            for (NodeIndex j : succ) {
                if (!seen[static_cast<std::size_t>(j)]) {
                    seen[static_cast<std::size_t>(j)] = 1;
                    work.push_back(j);
                }
            }
        }
        for (NodeIndex i = 0; i < count; ++i) {
            if (!seen[static_cast<std::size_t>(i)]) {
                warn_at(i, "unreachable_node", node_paths_[static_cast<std::size_t>(i)], "no path leads to this node");
            }
        }
        lint_cycles();
        lint_actions();
        lint_variables();
    }

    // Strongly connected components of the graph of nodes that never wait for the client (Tarjan, iterative).
    void lint_cycles() {
        const auto count = static_cast<NodeIndex>(s_->nodes_.size());
        std::vector<NodeIndex> index(static_cast<std::size_t>(count), -1), low(static_cast<std::size_t>(count), 0);
        std::vector<char> on_stack(static_cast<std::size_t>(count), 0);
        std::vector<NodeIndex> stack;
        std::vector<std::vector<NodeIndex>> succ(static_cast<std::size_t>(count));
        for (NodeIndex i = 0; i < count; ++i) {
            if (waits(s_->node(i))) continue;
            successors(s_->node(i), succ[static_cast<std::size_t>(i)]);
            auto& s = succ[static_cast<std::size_t>(i)];
            s.erase(std::remove_if(s.begin(), s.end(), [&](NodeIndex j) { return waits(s_->node(j)); }), s.end());
        }
        NodeIndex next_index = 0;
        struct Frame {
            NodeIndex node;
            std::size_t child;
        };
        std::vector<Frame> frames;
        for (NodeIndex root = 0; root < count; ++root) {
            if (index[static_cast<std::size_t>(root)] != -1 || waits(s_->node(root))) continue;
            frames.push_back({root, 0});
            index[static_cast<std::size_t>(root)] = low[static_cast<std::size_t>(root)] = next_index++;
            stack.push_back(root);
            on_stack[static_cast<std::size_t>(root)] = 1;
            while (!frames.empty()) {
                Frame& f = frames.back();
                auto v = static_cast<std::size_t>(f.node);
                if (f.child < succ[v].size()) {
                    NodeIndex w = succ[v][f.child++];
                    auto wi = static_cast<std::size_t>(w);
                    if (index[wi] == -1) {
                        index[wi] = low[wi] = next_index++;
                        stack.push_back(w);
                        on_stack[wi] = 1;
                        frames.push_back({w, 0});
                    } else if (on_stack[wi]) {
                        low[v] = std::min(low[v], index[wi]);
                    }
                    continue;
                }
                if (low[v] == index[v]) {
                    std::vector<NodeIndex> component;
                    NodeIndex w;
                    do {
                        w = stack.back();
                        stack.pop_back();
                        on_stack[static_cast<std::size_t>(w)] = 0;
                        component.push_back(w);
                    } while (w != f.node);
                    bool self_loop = std::find(succ[v].begin(), succ[v].end(), f.node) != succ[v].end();
                    if (component.size() > 1 || self_loop) {
                        std::vector<std::string> ids;
                        for (auto it = component.rbegin(); it != component.rend(); ++it) ids.push_back(s_->node(*it).id);
                        std::sort(ids.begin(), ids.end());
                        warn_at(*std::min_element(component.begin(), component.end()), "cycle_without_wait",
                                node_paths_[static_cast<std::size_t>(*std::min_element(component.begin(), component.end()))],
                                fmt::format("nodes {} form a loop that never waits for the client; the run stops at "
                                            "the step limit", fmt::join(ids, ", ")));
                    }
                }
                NodeIndex done = f.node;
                frames.pop_back();
                if (!frames.empty()) {
                    auto p = static_cast<std::size_t>(frames.back().node);
                    low[p] = std::min(low[p], low[static_cast<std::size_t>(done)]);
                }
            }
        }
    }

    void lint_actions() {
        if (!options_.actions) return;
        for (NodeIndex i = 0; i < static_cast<NodeIndex>(s_->nodes_.size()); ++i) {
            const Node& n = s_->node(i);
            if (n.type != NodeType::kAction) continue;
            const std::string& path = node_paths_[static_cast<std::size_t>(i)];
            auto it = std::find_if(options_.actions->begin(), options_.actions->end(),
                                   [&](const actions::ActionInfo& a) { return a.name == n.action; });
            if (it == options_.actions->end()) {
                warn_at(i, "unknown_action", path + ".action", "no action named '" + n.action + "' exists");
                continue;
            }
            if (n.next != kNoNode) continue;
            for (const auto& event : it->events) {
                bool has_edge = std::any_of(n.on.begin(), n.on.end(), [&](const ActionEdge& e) { return e.event == event; });
                if (!has_edge) {
                    warn_at(i, "action_event_without_edge", path + ".on",
                            "event '" + event + "' of '" + n.action + "' has no edge: the run would end there");
                }
            }
        }
    }

    void lint_variables() {
        std::set<std::string, std::less<>> set_vars;
        for (const auto& section : s_->sections_) {
            for (const auto& v : section.macro_variables) set_vars.insert(v);
        }
        std::vector<std::pair<std::string, NodeIndex>> reads;
        auto read_template = [&](const core::Template& t, NodeIndex i) {
            for (const auto* p : t.paths()) reads.emplace_back((*p)[0].key, i);
        };
        std::function<void(const ValueTemplate&, NodeIndex)> read_value = [&](const ValueTemplate& v, NodeIndex i) {
            if (v.kind == ValueTemplate::Kind::kTemplate) read_template(v.text, i);
            for (const auto& m : v.members) read_value(m.second, i);
            for (const auto& it : v.items) read_value(it, i);
        };
        auto read_text = [&](const Text& t, NodeIndex i) {
            for (const auto& tpl : t.by_language) {
                if (tpl) read_template(*tpl, i);
            }
        };
        std::function<void(const Condition&, NodeIndex)> read_cond = [&](const Condition& c, NodeIndex i) {
            if (c.kind == Condition::Kind::kCompare) {
                if (!c.var.empty()) reads.emplace_back(c.var[0].key, i);
                read_value(c.value, i);
            }
            for (const auto& child : c.children) read_cond(child, i);
        };
        for (NodeIndex i = 0; i < static_cast<NodeIndex>(s_->nodes_.size()); ++i) {
            const Node& n = s_->node(i);
            if (!n.save_as.empty()) set_vars.insert(n.save_as[0].key);
            for (const auto& [target, value] : n.values) {
                set_vars.insert(target[0].key);
                read_value(value, i);
            }
            read_text(n.text, i);
            read_text(n.retry_text, i);
            for (const auto& b : n.buttons) read_text(b.text, i);
            for (const auto& r : n.routes) read_cond(r.condition, i);
            read_value(n.params, i);
            // Actions save under a name given in params (`save_as`, `save_response`, ...).
            const json::object* literal = n.params.literal.if_object();
            auto note_saves = [&](std::string_view key, const json::value& v) {
                if (key.substr(0, 4) == "save" && v.is_string()) {
                    auto p = core::parse_template_path(v.get_string());
                    if (!p.empty()) set_vars.insert(p[0].key);
                }
            };
            if (literal) {
                for (const auto& kv : *literal) note_saves(kv.key(), kv.value());
            }
            for (const auto& [key, member] : n.params.members) {
                if (member.kind == ValueTemplate::Kind::kLiteral) note_saves(key, member.literal);
            }
        }
        std::set<std::string, std::less<>> reported;
        for (const auto& [name, i] : reads) {
            if (kReservedRoots.count(name) || set_vars.count(name) || !reported.insert(name).second) continue;
            warn_at(i, "variable_never_set", node_paths_[static_cast<std::size_t>(i)],
                    "variable '" + name + "' is read but no input, set node or action save_as sets it");
        }
    }

    struct PendingEdge {
        std::string target;
        std::string path;
        std::string section_label;
        std::string node;
    };

    const json::value& doc_;
    const CompileOptions& options_;
    Scenario* s_ = nullptr;
    std::vector<SchemaError> errors_;
    std::vector<LintWarning> warnings_;
    int section_ = -1;
    std::string section_name_;
    std::string node_id_;
    std::vector<std::string> node_paths_;
    std::vector<const json::object*> node_json_;
    std::vector<PendingEdge> edges_;
};

}  // namespace internal

CompileResult compile_scenario_value(const json::value& document, const CompileOptions& options) {
    return internal::Compiler(document, options).run();
}

CompileResult compile_scenario(std::string_view json_text, const CompileOptions& options) {
    core::JsonLimits limits;
    limits.max_bytes = Limits::kMaxDocumentBytes;
    limits.max_depth = Limits::kMaxDepth;
    try {
        json::value doc = core::parse_json(json_text, limits);
        return compile_scenario_value(doc, options);
    } catch (const core::Error& e) {
        CompileResult r;
        r.errors.push_back({e.code(), "", "", "", e.what()});
        return r;
    }
}

namespace {
template <typename T>
json::array problems_to_json(const std::vector<T>& items) {
    json::array out;
    for (const auto& p : items) {
        json::object o{{"code", p.code}, {"message", p.message}};
        o["section"] = p.section.empty() ? json::value(nullptr) : json::value(p.section);
        o["node"] = p.node.empty() ? json::value(nullptr) : json::value(p.node);
        o["path"] = p.path;
        out.push_back(std::move(o));
    }
    return out;
}
}  // namespace

json::array to_json(const std::vector<SchemaError>& errors) { return problems_to_json(errors); }
json::array to_json(const std::vector<LintWarning>& warnings) { return problems_to_json(warnings); }

std::shared_ptr<const Scenario> compile_or_throw(std::string_view json_text, const CompileOptions& options,
                                                 std::vector<LintWarning>* warnings) {
    CompileResult r = compile_scenario(json_text, options);
    if (warnings) *warnings = std::move(r.warnings);
    if (r.ok()) return r.scenario;
    const SchemaError& first = r.errors.front();
    if (first.code == "too_large") throw core::TooLarge(first.message);
    if (first.code == "invalid_json" || first.code == "too_deep") throw core::BadRequest(first.message, first.code);
    std::string message = r.errors.size() == 1 ? "the scenario document is invalid: " + first.message
                                               : fmt::format("the scenario document has {} problems; first: {}",
                                                             r.errors.size(), first.message);
    throw core::Unprocessable(message, "invalid_document", to_json(r.errors));
}

}  // namespace parley::scenario

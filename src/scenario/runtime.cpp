#include "scenario/runtime.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <future>

#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "scenario/internal/regex.h"

namespace parley::scenario {

namespace json = boost::json;

std::string_view to_string(Waiting waiting) {
    switch (waiting) {
        case Waiting::kNone: return "none";
        case Waiting::kInput: return "input";
        case Waiting::kButtons: return "buttons";
        case Waiting::kOperator: return "operator";
        case Waiting::kEnd: return "end";
        case Waiting::kAction: return "action";
    }
    return "none";
}

namespace {

char waiting_code(Waiting w) {
    static constexpr char codes[] = {'n', 'i', 'b', 'o', 'e', 'a'};
    return codes[static_cast<std::size_t>(w)];
}

std::optional<Waiting> waiting_from_code(std::string_view s) {
    if (s.size() != 1) return std::nullopt;
    switch (s[0]) {
        case 'n': return Waiting::kNone;
        case 'i': return Waiting::kInput;
        case 'b': return Waiting::kButtons;
        case 'o': return Waiting::kOperator;
        case 'e': return Waiting::kEnd;
        case 'a': return Waiting::kAction;
        default: return std::nullopt;
    }
}

}  // namespace

std::string DialogState::serialize() const {
    json::object o;
    o["w"] = std::string(1, waiting_code(waiting));
    if (!position.empty()) o["p"] = position;
    if (!language.empty()) o["l"] = language;
    if (retries) o["r"] = retries;
    if (steps) o["n"] = steps;
    if (with_operator) o["o"] = 1;
    if (!section_stack.empty()) {
        json::array s;
        for (const auto& f : section_stack) s.push_back(json::array{json::string(f.node), json::string(1, waiting_code(f.waiting))});
        o["s"] = std::move(s);
    }
    if (!variables.empty()) o["v"] = variables;
    return json::serialize(o);
}

std::optional<DialogState> DialogState::parse(std::string_view text) {
    json::value v;
    try {
        core::JsonLimits limits;
        limits.max_bytes = 16 << 20;
        v = core::parse_json(text, limits);
    } catch (const core::Error&) {
        return std::nullopt;
    }
    const auto* o = v.if_object();
    if (!o) return std::nullopt;
    DialogState s;
    auto str = [&](const char* key, std::string& out) {
        if (const auto* x = o->if_contains(key)) {
            if (!x->is_string()) return false;
            out = x->get_string();
        }
        return true;
    };
    auto num = [&](const char* key, std::uint32_t& out) {
        if (const auto* x = o->if_contains(key)) {
            if (!x->is_int64() || x->get_int64() < 0 || x->get_int64() > UINT32_MAX) return false;
            out = static_cast<std::uint32_t>(x->get_int64());
        }
        return true;
    };
    std::string w;
    if (!str("w", w) || !str("p", s.position) || !str("l", s.language) || !num("r", s.retries) || !num("n", s.steps)) {
        return std::nullopt;
    }
    auto waiting = waiting_from_code(w);
    if (!waiting) return std::nullopt;
    s.waiting = *waiting;
    if (const auto* x = o->if_contains("o")) s.with_operator = x->is_int64() && x->get_int64() != 0;
    if (const auto* x = o->if_contains("s")) {
        if (!x->is_array()) return std::nullopt;
        for (const auto& f : x->get_array()) {
            const auto* a = f.if_array();
            if (!a || a->size() != 2 || !(*a)[0].is_string() || !(*a)[1].is_string()) return std::nullopt;
            auto fw = waiting_from_code((*a)[1].get_string());
            if (!fw) return std::nullopt;
            s.section_stack.push_back({std::string((*a)[0].get_string()), *fw});
        }
    }
    if (const auto* x = o->if_contains("v")) {
        if (!x->is_object()) return std::nullopt;
        s.variables = x->get_object();
    }
    return s;
}

ClientMessage ClientMessage::from_text(std::string text) {
    ClientMessage m;
    m.kind = Kind::kText;
    m.text = std::move(text);
    return m;
}

ClientMessage ClientMessage::from_button(std::string id) {
    ClientMessage m;
    m.kind = Kind::kButton;
    m.button = std::move(id);
    return m;
}

ClientMessage ClientMessage::from_contact(json::object contact) {
    ClientMessage m;
    m.kind = Kind::kContact;
    m.contact = std::move(contact);
    return m;
}

json::object Reply::to_json() const {
    json::object o{{"text", text}};
    if (!buttons.empty()) {
        json::array b;
        for (const auto& button : buttons) b.push_back(json::object{{"id", button.id}, {"text", button.text}});
        o["buttons"] = std::move(b);
    }
    return o;
}

json::object RunError::to_json() const {
    json::object o{{"code", code}, {"message", message}};
    if (!node.empty()) o["node"] = node;
    return o;
}

namespace {

const json::value kEmptyObjectValue = json::object();

/// Template paths as a run sees them: reserved roots first, then the dialog's variables.
class RunScope final : public core::TemplateScope {
public:
    RunScope(const Scenario& scenario, const json::object& variables, const RunContext& context)
        : scenario_(scenario), variables_(variables), context_(context) {}

    const json::value* resolve(std::span<const core::PathSegment> path, json::value& scratch) const override {
        if (path.empty()) return nullptr;
        const std::string& root = path[0].key;
        if (root == "constants") return core::walk_path(&scenario_.constants(), path.subspan(1));
        if (root == "client") {
            if (!context_.client) return nullptr;
            auto it = context_.client->find(path.size() > 1 ? std::string_view(path[1].key) : std::string_view());
            if (path.size() == 1) {
                scratch = *context_.client;
                return &scratch;
            }
            if (it == context_.client->end()) return nullptr;
            return core::walk_path(&it->value(), path.subspan(2));
        }
        if (root == "instance_settings") {
            if (!context_.settings || path.size() < 2) return nullptr;
            auto value = context_.settings->get(path[1].key);
            if (!value) return nullptr;
            scratch = std::move(*value);
            return core::walk_path(&scratch, path.subspan(2));
        }
        auto it = variables_.find(root);
        if (it == variables_.end()) return nullptr;
        return core::walk_path(&it->value(), path.subspan(1));
    }

private:
    const Scenario& scenario_;
    const json::object& variables_;
    const RunContext& context_;
};

void assign(json::object& variables, const core::TemplatePath& path, json::value value) {
    json::object* obj = &variables;
    for (std::size_t i = 0; i + 1 < path.size(); ++i) {
        json::value& slot = (*obj)[path[i].key];
        if (!slot.is_object()) slot = json::object();
        obj = &slot.get_object();
    }
    (*obj)[path.back().key] = std::move(value);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

std::optional<double> as_number(const json::value& v) {
    if (v.is_int64()) return static_cast<double>(v.get_int64());
    if (v.is_uint64()) return static_cast<double>(v.get_uint64());
    if (v.is_double()) return v.get_double();
    if (const auto* s = v.if_string()) {
        std::string_view t = trim(*s);
        if (t.empty()) return std::nullopt;
        std::string copy(t);
        for (char& c : copy) {
            if (c == ',') c = '.';
        }
        double d = 0;
        auto [ptr, ec] = std::from_chars(copy.data(), copy.data() + copy.size(), d);
        if (ec != std::errc() || ptr != copy.data() + copy.size() || !std::isfinite(d)) return std::nullopt;
        return d;
    }
    return std::nullopt;
}

std::string text_of(const json::value* v) {
    std::string out;
    if (v) core::append_value_text(*v, out);
    return out;
}

bool is_empty_value(const json::value* v) {
    if (!v || v->is_null()) return true;
    if (const auto* s = v->if_string()) return trim(*s).empty();
    if (const auto* a = v->if_array()) return a->empty();
    if (const auto* o = v->if_object()) return o->empty();
    return false;
}

bool values_equal(const json::value* a, const json::value& b) {
    if (!a) return b.is_null() || (b.is_string() && b.get_string().empty());
    if (a->is_number() || b.is_number()) {
        auto x = as_number(*a), y = as_number(b);
        if (x && y) return *x == *y;
    }
    if (a->is_structured() || b.is_structured()) return *a == b;
    return text_of(a) == text_of(&b);
}

bool evaluate(const Condition& c, const RunScope& scope) {
    switch (c.kind) {
        case Condition::Kind::kAll:
            for (const auto& child : c.children) {
                if (!evaluate(child, scope)) return false;
            }
            return true;
        case Condition::Kind::kAny:
            for (const auto& child : c.children) {
                if (evaluate(child, scope)) return true;
            }
            return false;
        case Condition::Kind::kNot:
            return c.children.empty() || !evaluate(c.children[0], scope);
        case Condition::Kind::kCompare:
            break;
    }
    json::value scratch;
    const json::value* var = scope.resolve(c.var, scratch);
    bool expected = true;
    if (c.op == ConditionOp::kIsSet || c.op == ConditionOp::kIsEmpty) {
        if (c.has_value && c.value.literal.is_bool()) expected = c.value.literal.get_bool();
        bool is = c.op == ConditionOp::kIsSet ? (var && !var->is_null()) : is_empty_value(var);
        return is == expected;
    }
    json::value value = c.value.render(scope);
    switch (c.op) {
        case ConditionOp::kEq:
            return values_equal(var, value);
        case ConditionOp::kNe:
            return !values_equal(var, value);
        case ConditionOp::kGt:
        case ConditionOp::kGte:
        case ConditionOp::kLt:
        case ConditionOp::kLte: {
            if (!var) return false;
            int cmp;
            auto x = as_number(*var), y = as_number(value);
            if (x && y) {
                cmp = *x < *y ? -1 : (*x > *y ? 1 : 0);
            } else if (var->is_string() && value.is_string()) {
                int r = var->get_string().subview().compare(value.get_string().subview());
                cmp = r < 0 ? -1 : (r > 0 ? 1 : 0);
            } else {
                return false;
            }
            switch (c.op) {
                case ConditionOp::kGt: return cmp > 0;
                case ConditionOp::kGte: return cmp >= 0;
                case ConditionOp::kLt: return cmp < 0;
                default: return cmp <= 0;
            }
        }
        case ConditionOp::kContains: {
            if (!var) return false;
            if (const auto* a = var->if_array()) {
                for (const auto& item : *a) {
                    if (values_equal(&item, value)) return true;
                }
                return false;
            }
            if (const auto* o = var->if_object()) return value.is_string() && o->contains(value.get_string());
            return text_of(var).find(text_of(&value)) != std::string::npos;
        }
        case ConditionOp::kStartsWith: {
            if (!var) return false;
            std::string text = text_of(var);
            std::string prefix = text_of(&value);
            return text.compare(0, prefix.size(), prefix) == 0;
        }
        case ConditionOp::kMatches:
            return var && c.regex && c.regex->search(text_of(var));
        case ConditionOp::kIn: {
            if (!var) return false;
            if (const auto* a = value.if_array()) {
                for (const auto& item : *a) {
                    if (values_equal(var, item)) return true;
                }
                return false;
            }
            std::string text = text_of(var);
            std::string_view list = value.is_string() ? std::string_view(value.get_string()) : std::string_view();
            while (true) {
                std::size_t comma = list.find(',');
                if (trim(list.substr(0, comma)) == text) return true;
                if (comma == std::string_view::npos) return false;
                list.remove_prefix(comma + 1);
            }
        }
        default:
            return false;
    }
}

// ---- input validation ---------------------------------------------------------------------------------------

std::optional<json::value> parse_number(std::string_view t) {
    json::value v(t);
    auto d = as_number(v);
    if (!d) return std::nullopt;
    bool integral = t.find_first_of(".,eE") == std::string_view::npos;
    if (integral && std::fabs(*d) < 9e15) return json::value(static_cast<std::int64_t>(*d));
    return json::value(*d);
}

std::optional<std::string> normalize_phone(std::string_view t) {
    std::string out;
    for (std::size_t i = 0; i < t.size(); ++i) {
        char c = t[i];
        if (c >= '0' && c <= '9') out.push_back(c);
        else if (c == '+' && out.empty()) out.push_back('+');
        else if (c != ' ' && c != '-' && c != '(' && c != ')' && c != '.') return std::nullopt;
    }
    std::size_t digits = out.size() - (out.starts_with('+') ? 1 : 0);
    if (digits < 7 || digits > 15) return std::nullopt;
    return out;
}

bool valid_email(std::string_view t) {
    if (t.size() > 254 || t.find_first_of(" \t<>,;\"") != std::string_view::npos) return false;
    std::size_t at = t.find('@');
    if (at == 0 || at == std::string_view::npos || t.find('@', at + 1) != std::string_view::npos) return false;
    std::string_view domain = t.substr(at + 1);
    std::size_t dot = domain.rfind('.');
    return dot != std::string_view::npos && dot > 0 && dot + 2 <= domain.size() && !domain.starts_with('.') &&
           domain.find("..") == std::string_view::npos;
}

std::optional<std::string> normalize_date(std::string_view t) {
    auto digits = [&](std::string_view s, int& out) {
        if (s.empty() || s.size() > 4) return false;
        out = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return false;
            out = out * 10 + (c - '0');
        }
        return true;
    };
    int y = 0, m = 0, d = 0;
    if (t.size() == 10 && t[4] == '-' && t[7] == '-') {
        if (!digits(t.substr(0, 4), y) || !digits(t.substr(5, 2), m) || !digits(t.substr(8, 2), d)) return std::nullopt;
    } else if (t.size() == 10 && (t[2] == '.' || t[2] == '/') && t[5] == t[2]) {
        if (!digits(t.substr(0, 2), d) || !digits(t.substr(3, 2), m) || !digits(t.substr(6, 4), y)) return std::nullopt;
    } else {
        return std::nullopt;
    }
    static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || m < 1 || m > 12 || d < 1) return std::nullopt;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > days[m - 1] + (m == 2 && leap ? 1 : 0)) return std::nullopt;
    return fmt::format("{:04}-{:02}-{:02}", y, m, d);
}

/// The value to save for an input node, or nullopt when the answer is invalid.
std::optional<json::value> validate_input(const Node& node, const ClientMessage& message, std::string_view text) {
    if (message.kind == ClientMessage::Kind::kContact) {
        if (node.expect == Expect::kContact) return json::value(message.contact);
        if (node.expect == Expect::kPhone || node.expect == Expect::kText) {
            if (const auto* p = message.contact.if_contains("phone"); p && p->is_string()) {
                if (node.expect == Expect::kText) return json::value(p->get_string());
                if (auto n = normalize_phone(p->get_string())) return json::value(*n);
            }
        }
        return std::nullopt;
    }
    std::string_view t = trim(text);
    switch (node.expect) {
        case Expect::kText:
            if (t.empty()) return std::nullopt;
            return json::value(t);
        case Expect::kNumber:
            return parse_number(t);
        case Expect::kPhone:
            if (auto n = normalize_phone(t)) return json::value(*n);
            return std::nullopt;
        case Expect::kEmail:
            if (valid_email(t)) return json::value(t);
            return std::nullopt;
        case Expect::kDate:
            if (auto d = normalize_date(t)) return json::value(*d);
            return std::nullopt;
        case Expect::kContact:
            if (auto n = normalize_phone(t)) return json::value(json::object{{"phone", *n}});
            return std::nullopt;
        case Expect::kRegex:
            if (node.pattern && node.pattern->full_match(t)) return json::value(t);
            return std::nullopt;
    }
    return std::nullopt;
}

/// One call into the runtime: the scope, the language and the result being built.
class Execution {
public:
    Execution(const Scenario& scenario, DialogState& state, const RunContext& context)
        : scenario_(scenario),
          state_(state),
          context_(context),
          scope_(scenario, state.variables, context),
          language_(state.language.empty() ? 0 : scenario.language_index(state.language)) {}

    RunResult& result() { return result_; }
    const RunScope& scope() const { return scope_; }

    void emit(const Text& text, const std::vector<Button>* buttons) {
        Reply reply;
        if (const core::Template* t = text.pick(language_)) t->render(scope_, reply.text);
        if (buttons) {
            for (const auto& b : *buttons) {
                ReplyButton rb{b.id, {}};
                if (const core::Template* t = b.text.pick(language_)) t->render(scope_, rb.text);
                reply.buttons.push_back(std::move(rb));
            }
        }
        if (reply.text.empty() && reply.buttons.empty()) return;
        result_.replies.push_back(std::move(reply));
    }

    std::string button_label(const Button& b, std::size_t language) const {
        std::string out;
        if (const core::Template* t = b.text.pick(language)) t->render(scope_, out);
        return out;
    }

    void wait(NodeIndex node, Waiting waiting) {
        state_.position = scenario_.node(node).id;
        state_.waiting = waiting;
        result_.waiting = waiting;
        if (waiting != Waiting::kAction) state_.steps = 0;
    }

    void fail(std::string code, std::string message, NodeIndex node) {
        std::string id = node == kNoNode ? std::string() : scenario_.node(node).id;
        core::log_event(spdlog::level::warn, "scenario_run_error",
                        fmt::format("\"code\":{},\"node\":{},\"message\":{}", core::json_quote(code),
                                    core::json_quote(id), core::json_quote(message)));
        result_.error = RunError{std::move(code), std::move(message), id};
        state_.section_stack.clear();
        state_.waiting = Waiting::kEnd;
        state_.steps = 0;
        if (!id.empty()) state_.position = id;
        result_.waiting = Waiting::kEnd;
        result_.action.reset();
    }

    /// The run reached an end node or a node with no way on.
    void finish(NodeIndex at, bool dead_end) {
        if (dead_end && state_.with_operator) {
            wait(at, Waiting::kOperator);
            return;
        }
        if (!state_.section_stack.empty()) {
            SectionFrame frame = std::move(state_.section_stack.back());
            state_.section_stack.pop_back();
            NodeIndex back = scenario_.find_node(frame.node);
            if (back != kNoNode) {
                wait(back, frame.waiting);
                return;
            }
        }
        state_.with_operator = false;
        wait(at, Waiting::kEnd);
    }

    /// Asks the caller to run the action of action node `node`, with params rendered now.
    void request_action(NodeIndex node) {
        const Node& n = scenario_.node(node);
        json::value params = n.params.render(scope_);
        ActionRequest request;
        request.action = n.action;
        request.node = n.id;
        if (params.is_object()) request.params = std::move(params.get_object());
        result_.action = std::move(request);
        wait(node, Waiting::kAction);
    }

    /// The step loop: executes nodes from `node` until the dialog waits.
    void run(NodeIndex node, NodeIndex from) {
        while (true) {
            if (node == kNoNode) {
                finish(from, true);
                return;
            }
            if (state_.steps >= context_.step_limit) {
                fail("step_limit",
                     fmt::format("the run executed {} nodes without waiting for the client", context_.step_limit), node);
                return;
            }
            ++state_.steps;
            ++result_.steps;
            const Node& n = scenario_.node(node);
            if (context_.trace) context_.trace->push_back(n.id);
            from = node;
            switch (n.type) {
                case NodeType::kStart:
                case NodeType::kEntry:
                    node = n.next;
                    break;
                case NodeType::kMessage:
                    emit(n.text, &n.buttons);
                    if (!n.buttons.empty()) {
                        wait(node, Waiting::kButtons);
                        return;
                    }
                    node = n.next;
                    break;
                case NodeType::kInput:
                    emit(n.text, nullptr);
                    state_.retries = 0;
                    wait(node, Waiting::kInput);
                    return;
                case NodeType::kRouter: {
                    NodeIndex chosen = n.else_next;
                    for (const auto& route : n.routes) {
                        if (evaluate(route.condition, scope_)) {
                            chosen = route.next;
                            break;
                        }
                    }
                    node = chosen;
                    break;
                }
                case NodeType::kAction:
                    request_action(node);
                    return;
                case NodeType::kSet:
                    for (const auto& [target, value] : n.values) assign(state_.variables, target, value.render(scope_));
                    node = n.next;
                    break;
                case NodeType::kExit:
                    if (n.next == kNoNode) {
                        fail("unknown_alias", "exit to alias '" + n.alias + "' that no entry node has", node);
                        return;
                    }
                    node = n.next;
                    break;
                case NodeType::kEnd:
                    finish(node, false);
                    return;
            }
        }
    }

private:
    const Scenario& scenario_;
    DialogState& state_;
    const RunContext& context_;
    RunScope scope_;
    std::size_t language_;
    RunResult result_;
};

void take_client_fields(DialogState& state, const RunContext& context) {
    if (!context.client) return;
    if (const auto* l = context.client->if_contains("language"); l && l->is_string() && !l->get_string().empty()) {
        state.language = l->get_string();
    }
    if (const auto* n = context.client->if_contains("name"); n && n->is_string()) {
        auto it = state.variables.find("user_name");
        if (it == state.variables.end() || it->value() != *n) state.variables["user_name"] = *n;
    }
}

}  // namespace

Runtime::Runtime(std::shared_ptr<const Scenario> scenario) : scenario_(std::move(scenario)) {}

RunResult Runtime::start(DialogState& state, const RunContext& context) const {
    take_client_fields(state, context);
    state.section_stack.clear();
    state.retries = 0;
    state.steps = 0;
    state.with_operator = false;
    Execution x(*scenario_, state, context);
    x.run(scenario_->start(), scenario_->start());
    return std::move(x.result());
}

RunResult Runtime::on_message(DialogState& state, const ClientMessage& message, const RunContext& context) const {
    take_client_fields(state, context);
    const Scenario& sc = *scenario_;
    std::string text;
    switch (message.kind) {
        case ClientMessage::Kind::kText:
            text = message.text;
            break;
        case ClientMessage::Kind::kButton:
            text = message.button;
            break;
        case ClientMessage::Kind::kContact:
            if (const auto* p = message.contact.if_contains("phone"); p && p->is_string()) text = p->get_string();
            state.variables["contact"] = message.contact;
            break;
    }
    NodeIndex at = state.position.empty() ? kNoNode : sc.find_node(state.position);
    if (state.waiting == Waiting::kOperator) {
        RunResult r;
        r.waiting = Waiting::kOperator;
        return r;
    }
    if (state.waiting == Waiting::kAction) {
        RunResult r;
        r.waiting = Waiting::kAction;
        r.error = RunError{"action_pending", "an action is still running for this dialog; deliver the message after it answers",
                           state.position};
        return r;
    }
    bool resumable = at != kNoNode && ((state.waiting == Waiting::kInput && sc.node(at).type == NodeType::kInput) ||
                                       (state.waiting == Waiting::kButtons && sc.node(at).type == NodeType::kMessage));
    if (!resumable) {
        // Never started, ended, or the node it waited at is gone from a newer version: start again.
        state.variables["user_input"] = text;
        return start(state, context);
    }
    state.steps = 0;
    Execution x(sc, state, context);
    const Node& node = sc.node(at);
    if (state.waiting == Waiting::kButtons) {
        const Button* pressed = nullptr;
        if (message.kind == ClientMessage::Kind::kButton) {
            for (const auto& b : node.buttons) {
                if (b.id == message.button) pressed = &b;
            }
        }
        if (!pressed) {
            std::string wanted = core::utf8_lower(trim(text));
            std::size_t language = state.language.empty() ? 0 : sc.language_index(state.language);
            for (const auto& b : node.buttons) {
                if (core::utf8_lower(trim(x.button_label(b, language))) == wanted) {
                    pressed = &b;
                    break;
                }
            }
            if (!pressed) {
                for (const auto& b : node.buttons) {
                    for (std::size_t l = 0; l < sc.languages().size() && !pressed; ++l) {
                        if (l != language && core::utf8_lower(trim(x.button_label(b, l))) == wanted) pressed = &b;
                    }
                    if (pressed) break;
                }
            }
        }
        if (pressed) {
            std::size_t language = state.language.empty() ? 0 : sc.language_index(state.language);
            state.variables["user_input"] = x.button_label(*pressed, language);
            state.variables["button"] = pressed->id;
            x.run(pressed->next, at);
        } else {
            state.variables["user_input"] = text;
            x.run(node.no_match != kNoNode ? node.no_match : (node.next != kNoNode ? node.next : at), at);
        }
        return std::move(x.result());
    }
    // Waiting at an input node.
    state.variables["user_input"] = text;
    if (auto value = validate_input(node, message, text)) {
        state.retries = 0;
        if (!node.save_as.empty()) assign(state.variables, node.save_as, std::move(*value));
        x.run(node.next, at);
        return std::move(x.result());
    }
    ++state.retries;
    if (state.retries >= node.max_retries) {
        state.retries = 0;
        if (node.on_invalid != kNoNode) {
            x.run(node.on_invalid, at);
        } else {
            x.fail("invalid_input", fmt::format("{} invalid answers in a row at input '{}'", node.max_retries, node.id), at);
        }
        return std::move(x.result());
    }
    x.emit(node.retry_text.empty() ? node.text : node.retry_text, nullptr);
    x.wait(at, Waiting::kInput);
    return std::move(x.result());
}

RunResult Runtime::on_alias_call(DialogState& state, std::string_view alias, std::string_view input,
                                 const json::object& params, const RunContext& context) const {
    NodeIndex entry = scenario_->find_alias(alias);
    if (entry == kNoNode) {
        RunResult r;
        r.waiting = state.waiting;
        r.error = RunError{"unknown_alias", "no entry node has alias '" + std::string(alias) + "'", {}};
        return r;
    }
    take_client_fields(state, context);
    if (state.waiting == Waiting::kAction) {
        RunResult r;
        r.waiting = Waiting::kAction;
        r.error = RunError{"action_pending", "an action is still running for this dialog", state.position};
        return r;
    }
    if ((state.waiting == Waiting::kInput || state.waiting == Waiting::kButtons || state.waiting == Waiting::kOperator) &&
        !state.position.empty()) {
        if (state.section_stack.size() >= DialogState::kMaxSectionStack) {
            state.section_stack.erase(state.section_stack.begin());
        }
        state.section_stack.push_back({state.position, state.waiting});
    }
    for (const auto& kv : params) state.variables[kv.key()] = kv.value();
    state.variables["user_input"] = input;
    state.steps = 0;
    Execution x(*scenario_, state, context);
    x.run(entry, entry);
    return std::move(x.result());
}

RunResult Runtime::resume_after_action(DialogState& state, const actions::ActionResult& result,
                                       const RunContext& context) const {
    const Scenario& sc = *scenario_;
    NodeIndex at = state.position.empty() ? kNoNode : sc.find_node(state.position);
    Execution x(sc, state, context);
    if (state.waiting != Waiting::kAction || at == kNoNode || sc.node(at).type != NodeType::kAction) {
        x.result().waiting = state.waiting;
        x.result().error = RunError{"invalid_state", "no action is pending for this dialog", state.position};
        return std::move(x.result());
    }
    const Node& node = sc.node(at);
    if (result.handover) state.with_operator = true;
    if (!node.save_as.empty()) {
        assign(state.variables, node.save_as, result.state);
    } else {
        for (const auto& kv : result.state) state.variables[kv.key()] = kv.value();
    }
    NodeIndex next = kNoNode;
    bool found = false;
    for (const auto& e : node.on) {
        if (e.event == result.event) {
            next = e.next;
            found = true;
            break;
        }
    }
    if (!found && node.next != kNoNode) {
        next = node.next;
        found = true;
    }
    if (!found) {
        if (result.error) {
            x.fail(result.error->code, fmt::format("action '{}' failed: {}", node.action, result.error->message), at);
        } else {
            x.fail("action_event_without_edge",
                   fmt::format("action '{}' answered event '{}', which has no edge", node.action, result.event), at);
        }
        return std::move(x.result());
    }
    x.run(next, at);
    return std::move(x.result());
}

RunResult Runtime::pending_action(DialogState& state, const RunContext& context) const {
    const Scenario& sc = *scenario_;
    NodeIndex at = state.position.empty() ? kNoNode : sc.find_node(state.position);
    Execution x(sc, state, context);
    if (state.waiting != Waiting::kAction || at == kNoNode || sc.node(at).type != NodeType::kAction) {
        x.result().waiting = state.waiting;
        x.result().error = RunError{"invalid_state", "no action is pending for this dialog", state.position};
        return std::move(x.result());
    }
    x.request_action(at);
    return std::move(x.result());
}

RunResult run_turn_blocking(const Runtime& runtime, DialogState& state, RunResult first,
                            const actions::ActionRegistry& registry, const RunContext& context) {
    RunResult total = std::move(first);
    while (total.action) {
        actions::ActionCall call;
        call.action = total.action->action;
        call.params = std::move(total.action->params);
        call.state = state.variables;
        if (context.client) {
            call.client = *context.client;
            if (const auto* id = context.client->if_contains("id"); id && id->is_string()) call.client_id = id->get_string();
        }
        total.action.reset();
        std::promise<actions::ActionResult> promise;
        auto future = promise.get_future();
        registry.run(std::move(call), [&promise](actions::ActionResult r) { promise.set_value(std::move(r)); });
        RunResult next = runtime.resume_after_action(state, future.get(), context);
        for (auto& r : next.replies) total.replies.push_back(std::move(r));
        total.waiting = next.waiting;
        total.action = std::move(next.action);
        total.error = std::move(next.error);
        total.steps += next.steps;
    }
    return total;
}

}  // namespace parley::scenario

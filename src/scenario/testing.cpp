#include "scenario/testing.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "scenario/document.h"
#include "scenario/runtime.h"

namespace parley::scenario {

namespace json = boost::json;

namespace {

/// A malformed test file: ends the whole file with one error.
struct TestFileError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string where(const YAML::Node& node) {
    if (node.Mark().line < 0) return "";
    return fmt::format(" (line {})", node.Mark().line + 1);
}

json::value to_json(const YAML::Node& node, int depth = 0) {
    if (depth > 64) throw TestFileError("YAML nested too deeply" + where(node));
    switch (node.Type()) {
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined:
            return nullptr;
        case YAML::NodeType::Sequence: {
            json::array a;
            for (const auto& item : node) a.push_back(to_json(item, depth + 1));
            return a;
        }
        case YAML::NodeType::Map: {
            json::object o;
            for (const auto& kv : node) o[kv.first.as<std::string>()] = to_json(kv.second, depth + 1);
            return o;
        }
        case YAML::NodeType::Scalar:
            break;
    }
    const std::string& s = node.Scalar();
    if (node.Tag() == "!") return json::string(s);  // quoted: always text
    if (s == "null" || s == "~" || s.empty()) return nullptr;
    if (s == "true") return true;
    if (s == "false") return false;
    std::int64_t i = 0;
    auto [ip, iec] = std::from_chars(s.data(), s.data() + s.size(), i);
    if (iec == std::errc() && ip == s.data() + s.size()) return i;
    double d = 0;
    auto [dp, dec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (dec == std::errc() && dp == s.data() + s.size()) return d;
    return json::string(s);
}

std::vector<std::string> string_list(const YAML::Node& node) {
    std::vector<std::string> out;
    if (!node) return out;
    if (node.IsSequence()) {
        for (const auto& item : node) out.push_back(item.as<std::string>());
    } else {
        out.push_back(node.as<std::string>());
    }
    return out;
}

void check_keys(const YAML::Node& map, std::initializer_list<std::string_view> allowed, std::string_view what) {
    if (!map.IsMap()) throw TestFileError(fmt::format("{} must be a map{}", what, where(map)));
    for (const auto& kv : map) {
        std::string key = kv.first.as<std::string>();
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            throw TestFileError(fmt::format("unknown key '{}' in {}{}", key, what, where(kv.first)));
        }
    }
}

struct Fixture {
    std::string action;
    json::object params;  // subset that must match
    actions::ActionResult result;
    bool once = false;
    bool used = false;
};

Fixture parse_fixture(const YAML::Node& node) {
    check_keys(node, {"action", "params", "event", "state", "error", "handover", "once"}, "a fixture");
    Fixture f;
    if (!node["action"]) throw TestFileError("a fixture needs 'action'" + where(node));
    f.action = node["action"].as<std::string>();
    if (node["params"]) {
        json::value p = to_json(node["params"]);
        if (!p.is_object()) throw TestFileError("fixture 'params' must be a map" + where(node));
        f.params = p.get_object();
    }
    f.result.event = node["event"] ? node["event"].as<std::string>() : "success";
    if (node["state"]) {
        json::value s = to_json(node["state"]);
        if (!s.is_object()) throw TestFileError("fixture 'state' must be a map" + where(node));
        f.result.state = s.get_object();
    }
    if (node["error"]) {
        const auto& e = node["error"];
        actions::ActionError error;
        error.code = e.IsMap() ? (e["code"] ? e["code"].as<std::string>() : "error") : e.as<std::string>();
        error.message = e.IsMap() && e["message"] ? e["message"].as<std::string>() : "fixture error";
        f.result.error = error;
        if (!node["event"]) f.result.event = "error";
    }
    f.result.handover = node["handover"] && node["handover"].as<bool>();
    f.once = node["once"] && node["once"].as<bool>();
    return f;
}

bool subset(const json::value& expected, const json::value* actual) {
    if (!actual) return expected.is_null();
    if (expected.is_object()) {
        if (!actual->is_object()) return false;
        for (const auto& kv : expected.get_object()) {
            if (!subset(kv.value(), actual->get_object().if_contains(kv.key()))) return false;
        }
        return true;
    }
    if (expected.is_number() && actual->is_number()) {
        return expected.to_number<double>() == actual->to_number<double>();
    }
    return expected == *actual;
}

class StaticSettings final : public InstanceSettings {
public:
    explicit StaticSettings(json::object values) : values_(std::move(values)) {}
    std::optional<json::value> get(std::string_view key) const override {
        auto it = values_.find(key);
        if (it == values_.end()) return std::nullopt;
        return it->value();
    }

private:
    json::object values_;
};

std::string quote(std::string_view s) { return json::serialize(json::value(s)); }

std::string describe(const std::vector<Reply>& replies) {
    if (replies.empty()) return "(no replies)";
    std::string out;
    for (const auto& r : replies) {
        if (!out.empty()) out += ", ";
        out += quote(r.text);
        if (!r.buttons.empty()) {
            out += " [";
            for (std::size_t i = 0; i < r.buttons.size(); ++i) out += (i ? " " : "") + r.buttons[i].id;
            out += "]";
        }
    }
    return out;
}

class CaseRunner {
public:
    CaseRunner(const Runtime& runtime, std::vector<Fixture> fixtures, const actions::ActionRegistry& registry)
        : runtime_(runtime), fixtures_(std::move(fixtures)), registry_(registry) {}

    CaseReport run(const YAML::Node& c, std::size_t number) {
        check_keys(c, {"name", "client", "settings", "state", "step_limit", "start", "fixtures", "steps"}, "a case");
        CaseReport report;
        report.name = c["name"] ? c["name"].as<std::string>() : fmt::format("case {}", number);
        if (c["fixtures"]) {
            std::vector<Fixture> own;
            for (const auto& f : c["fixtures"]) own.push_back(parse_fixture(f));
            fixtures_.insert(fixtures_.begin(), own.begin(), own.end());
        }
        if (c["client"]) {
            json::value client = to_json(c["client"]);
            if (!client.is_object()) throw TestFileError("'client' must be a map" + where(c["client"]));
            client_ = client.get_object();
        }
        if (c["settings"]) {
            json::value s = to_json(c["settings"]);
            if (!s.is_object()) throw TestFileError("'settings' must be a map" + where(c["settings"]));
            settings_ = std::make_unique<StaticSettings>(s.get_object());
        }
        if (c["state"]) {
            json::value s = to_json(c["state"]);
            if (!s.is_object()) throw TestFileError("'state' must be a map" + where(c["state"]));
            state_.variables = s.get_object();
        }
        context_.client = &client_;
        context_.settings = settings_.get();
        if (c["step_limit"]) context_.step_limit = c["step_limit"].as<std::uint32_t>();
        bool start = !c["start"] || c["start"].as<bool>();
        RunResult last;
        if (start) last = finish(runtime_.start(state_, context_));
        const YAML::Node steps = c["steps"];
        if (!steps || !steps.IsSequence()) throw TestFileError("a case needs a 'steps' list" + where(c));
        std::size_t index = 0;
        for (const auto& step : steps) {
            ++index;
            check_keys(step, {"say", "press", "contact", "call", "bot", "contains", "buttons", "button_texts", "waiting",
                              "state", "error", "actions", "replies", "note"},
                       "a step");
            std::string label = fmt::format("step {}{}", index, where(step));
            bool has_input = step["say"] || step["press"] || step["contact"] || step["call"];
            if (has_input) {
                actions_called_.clear();
                last = finish(send(step));
            } else if (index != 1) {
                throw TestFileError("a step needs one of say, press, contact, call" + where(step));
            }
            check(step, last, label, report);
        }
        report.passed = report.failures.empty();
        return report;
    }

private:
    RunResult send(const YAML::Node& step) {
        if (step["say"]) return runtime_.on_message(state_, ClientMessage::from_text(step["say"].as<std::string>()), context_);
        if (step["press"]) {
            return runtime_.on_message(state_, ClientMessage::from_button(step["press"].as<std::string>()), context_);
        }
        if (step["contact"]) {
            json::value contact = to_json(step["contact"]);
            if (contact.is_string()) contact = json::object{{"phone", contact}};
            if (!contact.is_object()) throw TestFileError("'contact' is a phone or a map" + where(step["contact"]));
            return runtime_.on_message(state_, ClientMessage::from_contact(contact.get_object()), context_);
        }
        const YAML::Node call = step["call"];
        std::string alias;
        std::string input;
        json::object params;
        if (call.IsScalar()) {
            alias = call.as<std::string>();
        } else {
            check_keys(call, {"alias", "input", "params"}, "'call'");
            if (!call["alias"]) throw TestFileError("'call' needs 'alias'" + where(call));
            alias = call["alias"].as<std::string>();
            if (call["input"]) input = call["input"].as<std::string>();
            if (call["params"]) {
                json::value p = to_json(call["params"]);
                if (p.is_object()) params = p.get_object();
            }
        }
        return runtime_.on_alias_call(state_, alias, input, params, context_);
    }

    actions::ActionResult answer(const ActionRequest& request) {
        for (auto& f : fixtures_) {
            if (f.action != request.action || (f.once && f.used)) continue;
            json::value params = request.params;
            if (!subset(f.params, &params)) continue;
            f.used = true;
            return f.result;
        }
        if (registry_.find(request.action)) {
            actions::ActionCall call;
            call.action = request.action;
            call.params = request.params;
            call.state = state_.variables;
            call.client = client_;
            std::optional<actions::ActionResult> out;
            registry_.run(std::move(call), [&](actions::ActionResult r) { out = std::move(r); });
            if (out) return *out;
            return actions::ActionResult::failure("test_async_action", "the action did not answer inline");
        }
        return actions::ActionResult::failure(
            "unknown_action", "no fixture answers action '" + request.action + "' with params " +
                                  json::serialize(request.params));
    }

    // Answers every action request of the turn from fixtures, like the server does asynchronously.
    RunResult finish(RunResult r) {
        while (r.action) {
            actions_called_.push_back(r.action->action);
            actions::ActionResult result = answer(*r.action);
            RunResult next = runtime_.resume_after_action(state_, result, context_);
            for (auto& reply : next.replies) r.replies.push_back(std::move(reply));
            r.waiting = next.waiting;
            r.action = std::move(next.action);
            r.error = std::move(next.error);
            r.steps += next.steps;
        }
        return r;
    }

    void check(const YAML::Node& step, const RunResult& r, const std::string& label, CaseReport& report) {
        auto failed = [&](std::string message) { report.failures.push_back(label + ": " + message); };
        if (step["bot"]) {
            std::vector<std::string> want = string_list(step["bot"]);
            bool same = want.size() == r.replies.size();
            for (std::size_t i = 0; same && i < want.size(); ++i) same = want[i] == r.replies[i].text;
            if (!same) {
                std::string w;
                for (const auto& s : want) w += (w.empty() ? "" : ", ") + quote(s);
                failed(fmt::format("bot replied {} but expected {}", describe(r.replies), w.empty() ? "(no replies)" : w));
            }
        }
        if (step["contains"]) {
            for (const auto& part : string_list(step["contains"])) {
                bool found = false;
                for (const auto& reply : r.replies) found = found || reply.text.find(part) != std::string::npos;
                if (!found) failed(fmt::format("no reply contains {}; replies: {}", quote(part), describe(r.replies)));
            }
        }
        if (step["replies"]) {
            auto n = step["replies"].as<std::size_t>();
            if (n != r.replies.size()) failed(fmt::format("expected {} replies, got {}: {}", n, r.replies.size(), describe(r.replies)));
        }
        if (step["buttons"] || step["button_texts"]) {
            const Reply* with_buttons = r.replies.empty() ? nullptr : &r.replies.back();
            std::vector<std::string> ids, texts;
            if (with_buttons) {
                for (const auto& b : with_buttons->buttons) {
                    ids.push_back(b.id);
                    texts.push_back(b.text);
                }
            }
            if (step["buttons"] && string_list(step["buttons"]) != ids) {
                failed(fmt::format("last reply has buttons [{}], expected [{}]", fmt::join(ids, ", "),
                                   fmt::join(string_list(step["buttons"]), ", ")));
            }
            if (step["button_texts"] && string_list(step["button_texts"]) != texts) {
                failed(fmt::format("last reply has button texts [{}], expected [{}]", fmt::join(texts, ", "),
                                   fmt::join(string_list(step["button_texts"]), ", ")));
            }
        }
        if (step["waiting"]) {
            std::string want = step["waiting"].as<std::string>();
            if (want != to_string(r.waiting)) failed(fmt::format("bot waits for '{}', expected '{}'", to_string(r.waiting), want));
        }
        std::string want_error = step["error"] ? step["error"].as<std::string>() : "none";
        std::string got_error = r.error ? r.error->code : "none";
        if (want_error != got_error) {
            failed(fmt::format("run error is '{}'{}, expected '{}'", got_error, r.error ? " (" + r.error->message + ")" : "",
                               want_error));
        }
        if (step["state"]) {
            json::value want = to_json(step["state"]);
            if (!want.is_object()) throw TestFileError("'state' must be a map" + where(step["state"]));
            for (const auto& kv : want.get_object()) {
                const json::value* got = state_.variables.if_contains(kv.key());
                if (!subset(kv.value(), got)) {
                    failed(fmt::format("variable '{}' is {}, expected {}", std::string(kv.key()),
                                       got ? json::serialize(*got) : "unset", json::serialize(kv.value())));
                }
            }
        }
        if (step["actions"]) {
            auto want = string_list(step["actions"]);
            if (want != actions_called_) {
                failed(fmt::format("actions called [{}], expected [{}]", fmt::join(actions_called_, ", "), fmt::join(want, ", ")));
            }
        }
    }

    const Runtime& runtime_;
    std::vector<Fixture> fixtures_;
    const actions::ActionRegistry& registry_;
    json::object client_;
    std::unique_ptr<StaticSettings> settings_;
    DialogState state_;
    RunContext context_;
    std::vector<std::string> actions_called_;
};

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw TestFileError("cannot read " + path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

std::size_t TestReport::failed_cases() const {
    std::size_t n = 0;
    for (const auto& c : cases) n += c.passed ? 0 : 1;
    return n;
}

std::string TestReport::to_text() const {
    std::string out;
    for (const auto& e : errors) out += "ERROR " + e + "\n";
    for (const auto& c : cases) {
        out += (c.passed ? "PASS " : "FAIL ") + c.name + "\n";
        for (const auto& f : c.failures) out += "    " + f + "\n";
    }
    out += fmt::format("{}: {} cases, {} failed{}\n", passed ? "OK" : "FAILED", cases.size(), failed_cases(),
                       errors.empty() ? "" : fmt::format(", {} file errors", errors.size()));
    return out;
}

TestReport run_cases(std::string_view scenario_json, std::string_view cases_yaml, const TestOptions& options) {
    TestReport report;
    actions::ActionRegistry builtins;
    actions::register_builtin_actions(builtins);
    const actions::ActionRegistry& registry = options.registry ? *options.registry : builtins;
    try {
        YAML::Node root;
        try {
            root = YAML::Load(std::string(cases_yaml));
        } catch (const YAML::Exception& e) {
            throw TestFileError(std::string("malformed YAML: ") + e.what());
        }
        check_keys(root, {"scenario", "fixtures", "cases", "description"}, "the test file");
        std::string document(scenario_json);
        if (document.empty()) {
            const YAML::Node s = root["scenario"];
            if (!s) throw TestFileError("no scenario: give one or add a 'scenario' key");
            if (s.IsScalar()) {
                document = read_file(std::filesystem::path(options.base_dir) / s.as<std::string>());
            } else {
                document = json::serialize(to_json(s));
            }
        }
        std::vector<actions::ActionInfo> infos = registry.list();
        CompileOptions compile_options;
        compile_options.actions = &infos;
        CompileResult compiled = compile_scenario(document, compile_options);
        if (!compiled.ok()) {
            for (const auto& e : compiled.errors) {
                report.errors.push_back(fmt::format("invalid scenario: {} at {}{}: {}", e.code, e.path,
                                                    e.node.empty() ? "" : " (node " + e.node + ")", e.message));
            }
            report.passed = false;
            return report;
        }
        std::vector<Fixture> fixtures;
        if (root["fixtures"]) {
            for (const auto& f : root["fixtures"]) fixtures.push_back(parse_fixture(f));
        }
        Runtime runtime(compiled.scenario);
        const YAML::Node cases = root["cases"];
        if (!cases || !cases.IsSequence() || cases.size() == 0) throw TestFileError("the file needs a non-empty 'cases' list");
        std::size_t number = 0;
        for (const auto& c : cases) {
            CaseRunner runner(runtime, fixtures, registry);
            report.cases.push_back(runner.run(c, ++number));
        }
    } catch (const TestFileError& e) {
        report.errors.emplace_back(e.what());
    } catch (const YAML::Exception& e) {
        report.errors.push_back(std::string("invalid test file: ") + e.what());
    }
    report.passed = report.errors.empty() && report.failed_cases() == 0;
    return report;
}

TestReport run_case_file(const std::string& yaml_path, const TestOptions& options) {
    std::string yaml;
    try {
        yaml = read_file(yaml_path);
    } catch (const TestFileError& e) {
        TestReport report;
        report.passed = false;
        report.errors.emplace_back(e.what());
        return report;
    }
    TestOptions local = options;
    local.base_dir = std::filesystem::path(yaml_path).parent_path().string();
    return run_cases({}, yaml, local);
}

}  // namespace parley::scenario

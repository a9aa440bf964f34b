#include <fmt/format.h>

#include "actions/actions.h"
#include "core/error.h"
#include "knowledge/knowledge.h"

namespace parley::knowledge {

namespace {

using actions::ActionCall;
using actions::ActionDone;
using actions::ActionResult;

std::string text_param(const json::object& params, std::string_view key) {
    auto* v = params.if_contains(key);
    if (!v || v->is_null()) return {};
    if (v->is_string()) return std::string(v->get_string());
    if (v->is_number() || v->is_bool()) return json::serialize(*v);
    return {};
}

json::object schema() {
    return json::object{
        {"type", "object"},
        {"properties",
         json::object{{"agent_name", json::object{{"type", "string"}, {"description", "the agent's name"}}},
                      {"user_input", json::object{{"type", "string"}, {"description", "the client's question"}}},
                      {"save_response",
                       json::object{{"type", "string"},
                                    {"description", "state variable that receives the answer (default ai_answer)"}}}}},
        {"required", json::array{"agent_name", "user_input"}}};
}

/// `action_fastline_pro`: asks an agent. Events: `success` (answered), `escalate` (hand over to a human: the
/// client asked for one, a configured phrase matched, or the knowledge base had no confident answer), `error`.
/// State: the answer under `save_response`, plus `<save_response>_escalation_reason` when escalating and
/// `<save_response>_sources` (the passages' document names and scores). Runs on the service's query pool;
/// never blocks the caller.
class FastlineProAction final : public actions::BasicAction {
public:
    explicit FastlineProAction(KnowledgeService& service)
        : BasicAction("action_fastline_pro", schema(), {"success", "escalate", "error"}), service_(service) {}

    void run(ActionCall call, ActionDone done) override {
        const auto& p = call.params;
        for (const auto& [key, value] : p) {
            if (key != "agent_name" && key != "user_input" && key != "save_response") {
                done(ActionResult::failure("bad_params",
                                           fmt::format("'{}' is not a param of action_fastline_pro",
                                                       std::string_view(key).substr(0, 64))));
                return;
            }
        }
        AskRequest request;
        request.agent = text_param(p, "agent_name");
        request.input = text_param(p, "user_input");
        std::string save = text_param(p, "save_response");
        if (save.empty()) save = "ai_answer";
        if (request.agent.empty()) {
            done(ActionResult::failure("bad_params", "param 'agent_name' is required"));
            return;
        }
        if (request.input.empty()) {
            done(ActionResult::failure("bad_params", "param 'user_input' is empty"));
            return;
        }
        request.variables = std::move(call.state);
        request.client = std::move(call.client);
        service_.ask_async(std::move(request), [done = std::move(done), save](std::exception_ptr error, AskResult result) {
            if (error) {
                try {
                    std::rethrow_exception(error);
                } catch (const core::Error& e) {
                    done(ActionResult::failure(e.code(), e.what()));
                } catch (const std::exception& e) {
                    done(ActionResult::failure("action_failed", e.what()));
                }
                return;
            }
            ActionResult r;
            r.event = result.escalate ? "escalate" : "success";
            r.state[save] = result.answer;
            json::array sources;
            for (const auto& h : result.sources) {
                sources.push_back(json::object{{"document", h.document_name}, {"chunk", h.chunk}, {"score", h.score}});
            }
            r.state[save + "_sources"] = std::move(sources);
            if (result.escalate) r.state[save + "_escalation_reason"] = result.escalation_reason;
            done(std::move(r));
        });
    }

private:
    KnowledgeService& service_;
};

}  // namespace

void register_actions(actions::ActionRegistry& registry, KnowledgeService& service) {
    registry.add(std::make_shared<FastlineProAction>(service));
}

}  // namespace parley::knowledge

/// HTTP routes of the bots module: bots, scenario documents and versions, translations, lint, the action list,
/// the preview chat, the alias call, macros and the Runs view. See docs/openapi.yaml.
#pragma once

#include "actions/actions.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "bots/triggers.h"

namespace parley::http {
class Router;
}

namespace parley::bots {

void register_routes(http::Router& router, BotService& bots, DialogService& dialogs, TriggerService& triggers,
                     const actions::ActionRegistry& actions);

}  // namespace parley::bots

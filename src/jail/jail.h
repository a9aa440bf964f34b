/// Action Jail: sandboxed JavaScript actions. The public face of module `jail`: the Sandbox (sandbox.h), the
/// JailService with its tables (service.h) and the HTTP routes under /api/v1/jail (permission module `jail`).
#pragma once

#include <boost/json/object.hpp>

#include "http/http.h"
#include "jail/sandbox.h"
#include "jail/service.h"

namespace parley::jail {

/// Registers the Action Jail routes: GET (jail.view); POST/PUT, test, clone, enable/disable, restore
/// (jail.edit); DELETE (jail.delete). `service` must outlive the router.
void register_routes(http::Router& router, JailService& service);

/// API forms.
boost::json::object action_to_json(const JailAction& action, bool with_code = true);
boost::json::object version_to_json(const ActionVersion& version, bool with_code = true);
boost::json::object run_to_json(const RunOutput& output);

}  // namespace parley::jail

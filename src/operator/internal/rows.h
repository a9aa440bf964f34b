/// How the operator module reads its dialog rows: one column list (the first `?` is the viewer's user id, for
/// their read marker), one FROM clause, one row → JSON mapping, shared by every listing and lookup.
#pragma once

#include <boost/json.hpp>

#include "core/principal.h"
#include "store/store.h"

namespace parley::operators::internal {

/// SELECT list; binds one parameter (the viewer's user id) before any of the WHERE clause's.
extern const char* const kDialogColumns;
/// FROM op_dialogs o + the client's name and the dialog's message count.
extern const char* const kDialogFrom;

boost::json::object dialog_json(const store::Row& r);

/// Whether `who` has the supervisor's right (operator.delete): sees, answers, transfers every dialog.
bool supervisor(const core::Principal& who);

/// Throws core::BadRequest `invalid_<field>` with the field in details.
[[noreturn]] void bad_field(const std::string& field, const std::string& message);

}  // namespace parley::operators::internal

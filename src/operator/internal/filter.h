/// How a dialog list becomes SQL: the caller's visibility, a folder (built-in or saved) and a DialogFilter, each
/// turned into a WHERE fragment over `kDialogFrom` (alias `o` = op_dialogs, `c` = clients, `d` = dialogs) with
/// its parameters in order. Pure functions; used by OperatorService only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/principal.h"
#include "operator/operator.h"
#include "store/store.h"

namespace parley::operators::internal {

/// A WHERE fragment and its parameters.
struct Where {
    std::string sql = "1 = 1";
    store::Params params;

    /// Appends `AND (fragment)` with its parameters.
    void add(std::string fragment, store::Params more = {});
};

/// The built-in folders, in their default order; `all` only for supervisors.
std::vector<std::string> builtin_folders(bool supervisor);
bool is_builtin_folder(std::string_view folder);

/// Dialogs `who` may see at all: supervisors every dialog; others waiting dialogs and their own.
void add_visibility(Where& where, const core::Principal& who);

/// A built-in folder. Throws Forbidden for `all` without operator.delete, BadRequest for an unknown name.
void add_builtin_folder(Where& where, const core::Principal& who, std::string_view folder);

/// The filter's conditions; `viewer` is whose read markers `unread` compares with.
void add_filter(Where& where, const DialogFilter& filter, const std::string& viewer);

}  // namespace parley::operators::internal

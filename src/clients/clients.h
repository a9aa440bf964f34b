/// Clients: the end customers who write to bots and operators (the seed's "Clients (BroadcastUsers)"). This is
/// the client directory every other module reads through: one row per client with the standard fields and the
/// administrator-defined fields. Client cards (merging, segments, subscriptions, client fields, search by file)
/// grow here.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actions/actions.h"
#include "core/clock.h"
#include "store/store.h"

namespace parley::http {
class Router;
}

namespace parley::clients {

namespace json = boost::json;

inline constexpr std::size_t kMaxNameBytes = 200;
inline constexpr std::size_t kMaxFieldsBytes = 16 * 1024;

struct Client {
    std::string id;
    std::string name;
    std::string phone;
    std::string email;
    std::string language;
    json::object fields;  ///< administrator-defined fields
    std::int64_t created_at = 0;
    std::int64_t last_seen_at = 0;

    /// What templates see as `client.*` and the API returns: the standard fields plus every custom field
    /// (standard fields win on a name clash).
    json::object to_json() const;
};

/// What a new client starts with. Texts are validated by validate_new_client().
struct NewClient {
    std::string name;
    std::string phone;
    std::string email;
    std::string language;
    json::object fields;
};

/// Migrations of module `clients`.
std::vector<store::Migration> migrations();

/// Checks lengths and the language code (`[a-z]{2,3}` optionally `-XX`); throws core::BadRequest naming the field.
void validate_new_client(const NewClient& client);

/// Inserts a client with a new id (inside the caller's write transaction).
Client create_client(store::Tx& tx, const NewClient& client, std::int64_t now_ms);
std::optional<Client> find_client(store::Tx& tx, std::string_view id);
/// Records that the client wrote (last_seen_at) and, when given, their phone from a shared contact.
void touch_client(store::Tx& tx, std::string_view id, std::int64_t now_ms, std::string_view phone = {});

/// GET /api/v1/clients (q: name/phone/email substring, cursor, limit) and GET /api/v1/clients/{id}
/// (permission clients.view).
void register_routes(http::Router& router, store::Store& store);

/// `registered_users__get` (found, not_found: by `id`, `phone` or `email`, default the dialog's client; the card's
/// fields land in state, or under `save_as`) and `registered_users__set` (success, error: `values` set on the
/// dialog's client — name, phone, email, language and custom fields; also merged into state).
void register_actions(actions::ActionRegistry& registry, store::Store& store, const core::Clock& clock);

}  // namespace parley::clients

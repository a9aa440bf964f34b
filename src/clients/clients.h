/// Clients: the end customers who write to bots and operators (the seed's "Clients (BroadcastUsers)"). This is
/// the client directory every other module reads through: one card per client across channels (cards that share
/// a phone or an e-mail are merged), the standard fields, administrator-defined client fields, segments (saved
/// filters), subscriptions to broadcast topics, search, export and "search clients by file".
///
/// Two layers: free functions that run inside a caller's transaction (create_client, find_client, touch_client:
/// what bots, channels, operator and widget call) and `ClientDirectory`, the service behind the HTTP routes.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actions/actions.h"
#include "core/clock.h"
#include "core/principal.h"
#include "store/store.h"

namespace parley::http {
class Router;
}
namespace parley::events {
class EventHub;
}

namespace parley::clients {

namespace json = boost::json;

// ---- limits (documented in README.md) --------------------------------------------------------------------------
inline constexpr std::size_t kMaxNameBytes = 200;
inline constexpr std::size_t kMaxPhoneBytes = 32;
inline constexpr std::size_t kMaxEmailBytes = 254;
inline constexpr std::size_t kMaxFieldsBytes = 16 * 1024;        ///< a card's custom fields, serialized
inline constexpr std::size_t kMaxClientFields = 200;             ///< administrator-defined fields
inline constexpr std::size_t kMaxFieldTextBytes = 4096;          ///< one text value
inline constexpr std::size_t kMaxSelectOptions = 500;
inline constexpr std::size_t kMaxLabelBytes = 200;               ///< labels, titles, select options
inline constexpr std::size_t kMaxDescriptionBytes = 2000;
inline constexpr std::size_t kMaxSegments = 500;
inline constexpr std::size_t kMaxTopics = 500;
inline constexpr std::size_t kMaxConditions = 20;                ///< per filter
inline constexpr std::size_t kMaxInValues = 100;
inline constexpr std::size_t kMaxMergeBatch = 50;                ///< clients merged by one request
inline constexpr std::size_t kMaxAutoMergeMatches = 10;          ///< more matches of one phone/e-mail: no auto-merge
inline constexpr std::size_t kMaxFileLines = 100'000;            ///< "search clients by file"
inline constexpr std::size_t kMaxFileLineBytes = 1024;
inline constexpr std::size_t kMaxExportBytes = std::size_t{256} << 20;  ///< HTTP export answer

/// One card. `id` is stable; a card merged into another keeps resolving (find_client) to the survivor.
struct Client {
    std::string id;
    std::string name;
    std::string phone;
    std::string email;
    std::string language;
    json::object fields;  ///< administrator-defined and scenario-set fields
    std::int64_t created_at = 0;    ///< first seen
    std::int64_t last_seen_at = 0;  ///< last seen

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

/// Inside the caller's write transaction: a client whose phone or e-mail (normalised, see phone_key/email_key)
/// already belongs to a card gets that card back — blank standard fields and missing custom fields filled from
/// `client`, last seen now — instead of a new one ("one client across channels"). Otherwise inserts a new card
/// (subscribed to the topics marked auto_subscribe).
Client create_client(store::Tx& tx, const NewClient& client, std::int64_t now_ms);
/// The card, also for the id of a card that was merged into another (the survivor is returned).
std::optional<Client> find_client(store::Tx& tx, std::string_view id);
/// Records that the client wrote (last_seen_at) and, when given, their phone from a shared contact; a phone that
/// belongs to other cards merges them (the oldest card survives). Inside the caller's write transaction.
void touch_client(store::Tx& tx, std::string_view id, std::int64_t now_ms, std::string_view phone = {});

/// `+380 (50) 123-45-67` → `380501234567`: separators (space + - ( ) . /) dropped; "" unless 5..15 digits remain.
std::string phone_key(std::string_view phone);
/// ` Olena@Example.COM ` → `olena@example.com`; "" unless it looks like local@domain.
std::string email_key(std::string_view email);

/// GET /api/v1/clients and GET /api/v1/clients/{id} only (permission clients.view): the pre-issue-4 routes.
/// Superseded by register_routes(router, ClientDirectory&), which registers these paths too — call one of them.
void register_routes(http::Router& router, store::Store& store);

/// `registered_users__get` (found, not_found: by `id`, `phone` or `email`, default the dialog's client; the card's
/// fields land in state, or under `save_as`) and `registered_users__set` (success, error: `values` set on the
/// dialog's client — name, phone, email, language and custom fields; also merged into state).
void register_actions(actions::ActionRegistry& registry, store::Store& store, const core::Clock& clock);

// ---- client fields ------------------------------------------------------------------------------------------

enum class FieldType { kText, kNumber, kBoolean, kDate, kSelect };
std::string_view field_type_name(FieldType type);

/// An administrator-defined client field. Values live in the card's `fields`; this definition types and
/// validates them (API writes and registered_users__set).
struct ClientField {
    std::string name;  ///< `[a-z][a-z0-9_]{0,63}`, not a standard name
    std::string label;
    std::string description;
    FieldType type = FieldType::kText;
    std::vector<std::string> options;  ///< select
    bool indexed = false;              ///< an expression index makes equality filters on it fast
    std::int64_t position = 0;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    json::object to_json() const;
};

// ---- filters ---------------------------------------------------------------------------------------------

enum class FilterOp { kEq, kNe, kGt, kGte, kLt, kLte, kContains, kIn, kExists };
std::string_view filter_op_name(FilterOp op);
std::optional<FilterOp> parse_filter_op(std::string_view text);

/// `field op value`. Fields: id, name, phone, email, language, first_seen_at (= created_at), last_seen_at, any
/// client field, and the relations `channel` (a channel id or kind the client wrote from), `topic` (subscribed
/// to that topic) and `segment` (member of that saved segment).
struct Condition {
    std::string field;
    FilterOp op = FilterOp::kEq;
    json::value value;  ///< string, number or bool; an array for `in`
};

struct ClientFilter {
    std::vector<Condition> conditions;
    bool any = false;  ///< conditions joined by OR instead of AND
    std::string q;     ///< substring of name, phone or e-mail
    json::object to_json() const;
};

/// Parses `{"match": "all|any", "conditions": [{"field","op","value"}], "q": "..."}`; BadRequest naming the problem.
ClientFilter parse_filter(const json::value& doc);

struct ClientQuery {
    ClientFilter filter;
    std::string sort = "-id";  ///< id, -id, name, -name, first_seen_at, -first_seen_at, last_seen_at, -last_seen_at
    std::optional<std::string> cursor;
    std::size_t limit = 50;
};

struct ClientPage {
    json::array items;
    std::optional<std::string> next_cursor;
};

// ---- segments, topics -------------------------------------------------------------------------------------

/// A saved filter ("create a segment by filters"). Membership is evaluated when asked, never stored.
struct Segment {
    std::string id;
    std::string name;  ///< `[a-z0-9][a-z0-9_-]{0,63}`, the key in paths and filters
    std::string title;
    std::string description;
    ClientFilter filter;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    json::object to_json() const;
};

/// A broadcast topic clients subscribe to.
struct Topic {
    std::string id;
    std::string name;  ///< `[a-z0-9][a-z0-9_-]{0,63}`
    std::string title;
    std::string description;
    bool active = true;
    bool auto_subscribe = false;  ///< new clients are subscribed on creation
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    json::object to_json() const;
};

// ---- merges, file search, export ----------------------------------------------------------------------------

struct MergeOutcome {
    json::object client;                 ///< the surviving card
    std::vector<std::string> merged;     ///< ids merged by this call
    std::vector<std::string> already;    ///< ids that were already part of the survivor (idempotent repeat)
    json::object moved;                  ///< rows re-pointed per table
};

enum class ListKind { kAuto, kPhone, kEmail, kId };
std::optional<ListKind> parse_list_kind(std::string_view text);

struct FileMatch {
    std::size_t line = 0;
    std::string value;
    std::string client_id;
};
struct FileMiss {
    std::size_t line = 0;
    std::string value;
    std::string reason;  ///< not_found, invalid_value, malformed_line, duplicate
};
struct FileSearchResult {
    std::size_t lines = 0;  ///< data lines read
    std::vector<FileMatch> matched;
    std::vector<FileMiss> unmatched;
    json::object to_json(const std::vector<json::object>& cards) const;
};

struct ExportOptions {
    bool bom = false;        ///< a UTF-8 BOM for Excel
    char delimiter = ',';
};

/// The client directory behind the routes. Thread-safety: every method may be called from any thread; reads run
/// on the caller's thread (`store.read`), writes on the store's writer (`co_write`), HTTP exports on the
/// directory's own one-thread pool. Owns only that pool: destroy the directory before the store. Publishes
/// `client.updated`, `client.merged`, `client.deleted` to `hub` (when given) for users with clients.view.
class ClientDirectory {
public:
    ClientDirectory(store::Store& store, const core::Clock& clock, events::EventHub* hub = nullptr);
    ~ClientDirectory();
    ClientDirectory(const ClientDirectory&) = delete;
    ClientDirectory& operator=(const ClientDirectory&) = delete;

    store::Store& store() { return store_; }

    // cards
    /// API create: a phone/e-mail of an existing card returns that card (second: false) instead of a new one.
    boost::asio::awaitable<std::pair<json::object, bool>> create(json::object body, const core::Principal* actor);
    /// The full card: standard fields, custom fields (also under `fields`), channels, segments, subscriptions.
    std::optional<json::object> card(std::string_view id);
    ClientPage list(const ClientQuery& query);
    std::int64_t count(const ClientFilter& filter);
    /// PATCH: standard fields and `fields` (null removes one); may merge by the new phone/e-mail.
    boost::asio::awaitable<json::object> update(std::string id, json::object body, const core::Principal* actor);
    /// Deletes the card when no other module's row refers to it (a `client_id` column), else erases its personal data
    /// and keeps the id.
    boost::asio::awaitable<json::object> remove(std::string id, const core::Principal* actor);
    boost::asio::awaitable<MergeOutcome> merge(std::string target, std::vector<std::string> ids,
                                               const core::Principal* actor);
    /// The merge audit, newest first; `client_id` narrows to merges into (or of) that client.
    ClientPage merges(std::optional<std::string> client_id, std::optional<std::string> cursor, std::size_t limit);
    /// Where the client has been seen: per channel (id, kind, dialogs, first/last time, identities).
    json::array channels(std::string_view id);

    // client fields
    std::vector<ClientField> fields();
    boost::asio::awaitable<ClientField> create_field(json::object body);
    boost::asio::awaitable<ClientField> update_field(std::string name, json::object body);
    /// Removes the definition; with `purge` also the values from every card.
    boost::asio::awaitable<std::int64_t> remove_field(std::string name, bool purge);

    // segments
    std::vector<Segment> segments();
    std::optional<Segment> segment(std::string_view name);
    boost::asio::awaitable<Segment> create_segment(json::object body);
    boost::asio::awaitable<Segment> update_segment(std::string name, json::object body);
    boost::asio::awaitable<void> remove_segment(std::string name);

    // topics and subscriptions
    std::vector<Topic> topics();
    boost::asio::awaitable<Topic> create_topic(json::object body);
    boost::asio::awaitable<Topic> update_topic(std::string name, json::object body);
    boost::asio::awaitable<void> remove_topic(std::string name);
    /// Subscribes (true) or unsubscribes (false); an unsubscription is remembered (auto-subscribe skips it).
    boost::asio::awaitable<json::object> set_subscription(std::string client_id, std::string topic, bool subscribed);
    json::array subscriptions(std::string_view client_id);
    ClientPage subscribers(std::string_view topic, std::optional<std::string> cursor, std::size_t limit);

    // export and file search
    /// CSV of every client the filter selects, in one read snapshot, handed to `sink` in ≈64 KiB chunks.
    void export_csv(const ClientFilter& filter, const ExportOptions& options,
                    const std::function<void(std::string_view)>& sink);
    /// export_csv on the directory's pool, collected (TooLarge `export_too_large` past kMaxExportBytes).
    boost::asio::awaitable<std::string> export_csv_text(ClientFilter filter, ExportOptions options);
    FileSearchResult search_by_file(std::string_view text, ListKind kind);
    /// The cards (id, name, phone, email) of matched clients, for the answer.
    std::vector<json::object> brief_cards(const std::vector<std::string>& ids);

private:
    void publish(const std::string& type, json::object body);

    store::Store& store_;
    const core::Clock& clock_;
    events::EventHub* hub_;
    boost::asio::thread_pool bulk_{1};
};

/// Every route of the module on `directory` (see docs/api/clients.yaml), permission module `clients`.
void register_routes(http::Router& router, ClientDirectory& directory);

}  // namespace parley::clients

/// Tickets of the operator panel: numbered requests (T-1, T-2, ...) with status, priority, assignee, group,
/// client, linked dialogs, tags, due date and admin-defined custom fields; links between tickets, watchers,
/// public and internal comments, a change log, SLA metrics per ticket, a filtered list with cursor pagination,
/// and live events. Created by hand or from a dialog. See src/operator/TICKETS.md.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/principal.h"
#include "store/store.h"

namespace parley::bots {
class DialogService;
}
namespace parley::events {
class EventHub;
}
namespace parley::http {
class Router;
}

namespace parley::operators {

namespace json = boost::json;

// Limits (documented in TICKETS.md; every one has a test).
inline constexpr std::size_t kMaxTicketTitleBytes = 200;
inline constexpr std::size_t kMaxTicketDescriptionBytes = 64 * 1024;
inline constexpr std::size_t kMaxTicketSubjectBytes = 200;
inline constexpr std::size_t kMaxTagsPerTicket = 20;
inline constexpr std::size_t kMaxTagBytes = 50;
inline constexpr std::size_t kMaxDialogsPerTicket = 20;
inline constexpr std::size_t kMaxLinksPerTicket = 50;
inline constexpr std::size_t kMaxWatchersPerTicket = 50;
inline constexpr std::size_t kMaxCommentBytes = 16 * 1024;
inline constexpr std::size_t kMaxCommentsPerTicket = 2000;
inline constexpr std::size_t kMaxTicketFields = 100;         ///< custom field definitions per instance
inline constexpr std::size_t kMaxSelectOptions = 100;
inline constexpr std::size_t kMaxSelectOptionBytes = 100;
inline constexpr std::size_t kMaxStringFieldBytes = 1000;    ///< custom field type `string`
inline constexpr std::size_t kMaxTextFieldBytes = 16 * 1024;  ///< custom field type `text`
inline constexpr std::size_t kMaxFieldLabelBytes = 200;
inline constexpr std::size_t kMaxCustomStatuses = 50;
inline constexpr std::size_t kMaxIdBytes = 64;               ///< assignee, group, client and dialog ids
inline constexpr std::int64_t kMaxSlaMinutes = 525'600;      ///< one year

/// Migrations of store module `tickets` (independent of module `operator`'s own).
std::vector<store::Migration> ticket_migrations();

/// What tickets need to know about staff, supplied by the app (auth users, skill groups). Any member left empty
/// means: every non-empty id is accepted as a user / nobody is in a group.
struct StaffDirectory {
    std::function<bool(std::string_view user_id)> user_exists;
    std::function<std::vector<std::string>(std::string_view user_id)> groups_of;
    std::function<std::vector<std::string>(std::string_view group_id)> members_of;
};

/// Parses ISO-8601 UTC text ("2026-11-24", "2026-11-24T10:00:00Z", "...T10:00:00.123Z", "...+02:00") to
/// milliseconds since the epoch; nullopt when malformed or out of the years 1970..9999.
std::optional<std::int64_t> parse_iso_time(std::string_view text);

/// The list's filters and order, parsed from query parameters (see TICKETS.md "Listing"). Pure data.
struct TicketFilter {
    std::vector<std::string> statuses;
    std::vector<int> priorities;           ///< ranks 0 low .. 3 urgent
    std::optional<std::string> assignee;   ///< a user id, "me" resolved by the service, or "none"
    std::optional<std::string> group;      ///< a group id or "none"
    std::optional<std::string> client;
    std::optional<std::string> tag;
    std::optional<std::string> dialog;
    std::vector<std::pair<std::string, std::string>> fields;  ///< custom field name → value text (equality)
    std::optional<std::string> text;       ///< case-insensitive substring of title or description
    std::optional<std::int64_t> created_from, created_to, updated_from, updated_to;  ///< ms, from ≤ t < to
    std::optional<bool> breached;
    std::string sort = "-updated_at";      ///< [-]created_at | updated_at | priority | due_at | number
    std::optional<std::string> cursor;
    std::size_t limit = 50;
};

/// Parses list query parameters (BadRequest `invalid_query` naming the parameter on anything malformed or unknown;
/// the cursor's shape is checked against the sort). Fuzzed by tests/fuzz/fuzz_ticket_filter.cpp.
TicketFilter parse_ticket_filter(const std::vector<std::pair<std::string, std::string>>& query);

/// The ticket system. Thread-safety: every method may be called from any thread; every change runs in one write
/// transaction (validated first, so a refused request writes nothing) and is published after it commits.
class TicketService {
public:
    TicketService(store::Store& store, const core::Clock& clock, bots::DialogService& dialogs, events::EventHub* hub,
                  StaffDirectory staff = {});

    // Tickets. `id` is the ticket's id or its number text ("T-12").
    boost::asio::awaitable<json::object> create(const core::Principal& who, json::object body);
    /// `POST /operator/dialogs/{id}/ticket`: client, subject and a transcript reference copied from the dialog.
    boost::asio::awaitable<json::object> create_from_dialog(const core::Principal& who, std::string dialog_id,
                                                            json::object body);
    json::object get(const core::Principal& who, std::string_view id) const;
    boost::asio::awaitable<json::object> update(const core::Principal& who, std::string id, json::object body);
    boost::asio::awaitable<void> remove(const core::Principal& who, std::string id);
    json::array list(const core::Principal& who, const TicketFilter& filter, std::optional<std::string>* next) const;

    // Comments: kind `public` (a reply to the client, posted into the ticket's dialog when it has one) or `internal`.
    boost::asio::awaitable<json::object> comment(const core::Principal& who, std::string id, json::object body);
    json::array comments(const core::Principal& who, std::string_view id, std::optional<std::string> kind,
                         std::optional<std::string> cursor, std::size_t limit, std::optional<std::string>* next) const;

    /// The change log, newest first.
    json::array history(const core::Principal& who, std::string_view id, std::optional<std::string> cursor,
                        std::size_t limit, std::optional<std::string>* next) const;

    // Links (stored once, listed from both sides with the kind seen from `id`).
    boost::asio::awaitable<json::object> link(const core::Principal& who, std::string id, json::object body);
    boost::asio::awaitable<void> unlink(const core::Principal& who, std::string id, std::string link_id);
    json::array links(const core::Principal& who, std::string_view id) const;

    // Watchers.
    boost::asio::awaitable<json::array> watch(const core::Principal& who, std::string id, std::string user_id);
    boost::asio::awaitable<json::array> unwatch(const core::Principal& who, std::string id, std::string user_id);
    json::array watchers(const core::Principal& who, std::string_view id) const;

    /// SLA metrics of one ticket, computed with the clock.
    json::object sla(const core::Principal& who, std::string_view id) const;

    // Definitions (operator_settings.edit for changes).
    json::array fields() const;
    boost::asio::awaitable<json::object> create_field(json::object body);
    boost::asio::awaitable<json::object> update_field(std::string name, json::object body);
    boost::asio::awaitable<void> delete_field(std::string name);
    json::array statuses() const;
    boost::asio::awaitable<json::object> create_status(json::object body);
    boost::asio::awaitable<json::object> update_status(std::string name, json::object body);
    boost::asio::awaitable<void> delete_status(std::string name);
    json::array sla_policies() const;
    boost::asio::awaitable<json::object> put_sla_policy(std::string priority, json::object body);
    boost::asio::awaitable<void> delete_sla_policy(std::string priority);

private:
    /// Resolves `ref` (id or "T-n") and checks that `who` may see the ticket: NotFound / Forbidden.
    std::string visible_id(const core::Principal& who, std::string_view ref) const;
    boost::asio::awaitable<json::object> insert_ticket(const core::Principal& who, json::object body,
                                                       std::optional<std::pair<std::string, std::int64_t>> source,
                                                       std::string client_id, std::string subject);
    /// Unprocessable unless every id names an existing dialog.
    void check_dialogs(const std::vector<std::string>& ids) const;
    /// Unprocessable when the directory says `user_id` is no active user.
    void check_user(std::string_view field, const std::string& user_id) const;

    store::Store& store_;
    const core::Clock& clock_;
    bots::DialogService& dialogs_;
    events::EventHub* hub_;
    StaffDirectory staff_;
};

void register_ticket_routes(http::Router& router, TicketService& service);

}  // namespace parley::operators

// The client directory's transaction-level API (create_client, find_client, touch_client), key normalisation,
// the module's migrations and the pre-issue-4 routes.
#include "clients/clients.h"

#include <fmt/format.h>

#include "auth/permissions.h"
#include "clients/internal/ops.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"

namespace parley::clients {

namespace {

bool valid_language(std::string_view l) {
    if (l.empty()) return true;
    std::size_t i = 0;
    while (i < l.size() && l[i] >= 'a' && l[i] <= 'z') ++i;
    if (i < 2 || i > 3) return false;
    if (i == l.size()) return true;
    if (l[i] != '-' && l[i] != '_') return false;
    std::string_view rest = l.substr(i + 1);
    if (rest.size() < 2 || rest.size() > 4) return false;
    for (char ch : rest) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) return false;
    }
    return true;
}

void check_length(std::string_view field, const std::string& value, std::size_t max) {
    if (value.size() > max) {
        throw core::BadRequest(fmt::format("'{}' is longer than {} bytes", field, max), "too_long",
                               json::array{json::object{{"field", field}}});
    }
}

}  // namespace

json::object Client::to_json() const {
    json::object out = fields;
    out["id"] = id;
    out["name"] = name;
    out["phone"] = phone;
    out["email"] = email;
    out["language"] = language;
    out["created_at"] = created_at ? json::value(core::format_time(created_at)) : json::value(nullptr);
    out["last_seen_at"] = last_seen_at ? json::value(core::format_time(last_seen_at)) : json::value(nullptr);
    return out;
}

std::string phone_key(std::string_view phone) {
    std::string out;
    out.reserve(phone.size());
    for (char ch : phone) {
        if (ch == ' ' || ch == '+' || ch == '-' || ch == '(' || ch == ')' || ch == '.' || ch == '/') continue;
        if (ch < '0' || ch > '9') return {};
        out.push_back(ch);
    }
    if (out.size() < 5 || out.size() > 15) return {};
    return out;
}

std::string email_key(std::string_view email) {
    while (!email.empty() && email.front() == ' ') email.remove_prefix(1);
    while (!email.empty() && email.back() == ' ') email.remove_suffix(1);
    auto at = email.find('@');
    if (at == std::string_view::npos || at == 0 || at + 1 >= email.size()) return {};
    std::string out(email);
    for (char& ch : out) {
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    }
    return out;
}

std::vector<store::Migration> migrations() {
    return {{"clients", 1, "clients",
             R"sql(
CREATE TABLE clients (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  phone TEXT NOT NULL DEFAULT '',
  email TEXT NOT NULL DEFAULT '',
  language TEXT NOT NULL DEFAULT '',
  fields TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL
);
CREATE INDEX clients_phone ON clients(phone) WHERE phone <> '';
CREATE INDEX clients_email ON clients(email) WHERE email <> '';
)sql"},
            // Client cards (issue 4): normalised match keys, client fields, segments, topics, subscriptions and
            // the merge audit. Keys of existing rows are computed here exactly as phone_key()/email_key() do.
            {"clients", 2, "client cards: match keys, fields, segments, topics, subscriptions, merges",
             R"sql(
ALTER TABLE clients ADD COLUMN phone_key TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN email_key TEXT NOT NULL DEFAULT '';
UPDATE clients SET phone_key = replace(replace(replace(replace(replace(replace(replace(phone, ' ', ''), '+', ''),
  '-', ''), '(', ''), ')', ''), '.', ''), '/', '');
UPDATE clients SET phone_key = '' WHERE phone_key GLOB '*[^0-9]*' OR length(phone_key) < 5 OR length(phone_key) > 15;
UPDATE clients SET email_key = lower(trim(email, ' ')) WHERE trim(email, ' ') LIKE '_%@_%';
CREATE INDEX clients_phone_key ON clients(phone_key, created_at);
CREATE INDEX clients_email_key ON clients(email_key, created_at);
CREATE INDEX clients_language ON clients(language, id);
CREATE INDEX clients_last_seen ON clients(last_seen_at, id);
CREATE INDEX clients_created ON clients(created_at, id);
CREATE INDEX clients_name ON clients(name, id);
CREATE TABLE client_fields (
  name TEXT PRIMARY KEY,
  label TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  type TEXT NOT NULL CHECK (type IN ('text', 'number', 'boolean', 'date', 'select')),
  options TEXT NOT NULL DEFAULT '[]',
  indexed INTEGER NOT NULL DEFAULT 0,
  position INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE client_segments (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  filter TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE client_topics (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  active INTEGER NOT NULL DEFAULT 1,
  auto_subscribe INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE client_subscriptions (
  topic_id TEXT NOT NULL,
  client_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('subscribed', 'unsubscribed')),
  source TEXT NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (topic_id, client_id)
) WITHOUT ROWID;
CREATE INDEX client_subscriptions_client ON client_subscriptions(client_id);
CREATE INDEX client_subscriptions_topic ON client_subscriptions(topic_id, status, client_id);
CREATE TABLE client_merges (
  id TEXT PRIMARY KEY,
  absorbed_id TEXT NOT NULL UNIQUE,
  survivor_id TEXT NOT NULL,
  resolves_to TEXT NOT NULL,
  reason TEXT NOT NULL,
  actor_id TEXT,
  actor_email TEXT,
  snapshot TEXT NOT NULL,
  moved TEXT NOT NULL,
  merged_at INTEGER NOT NULL
);
CREATE INDEX client_merges_survivor ON client_merges(survivor_id);
CREATE INDEX client_merges_resolves ON client_merges(resolves_to);
)sql"}};
}

void validate_new_client(const NewClient& c) {
    check_length("name", c.name, kMaxNameBytes);
    check_length("phone", c.phone, kMaxPhoneBytes);
    check_length("email", c.email, kMaxEmailBytes);
    if (!valid_language(c.language)) {
        throw core::BadRequest(fmt::format("'{}' is not a language code like 'uk' or 'en'", c.language),
                               "invalid_language", json::array{json::object{{"field", "language"}}});
    }
    if (json::serialize(c.fields).size() > kMaxFieldsBytes) {
        throw core::TooLarge(fmt::format("client fields exceed {} bytes", kMaxFieldsBytes), "too_large",
                             json::array{json::object{{"field", "fields"}}});
    }
}

Client create_client(store::Tx& tx, const NewClient& n, std::int64_t now_ms) {
    std::string pk = phone_key(n.phone);
    std::string ek = email_key(n.email);
    std::vector<std::string> matches = internal::matching_clients(tx, pk, ek);
    if (!matches.empty() && matches.size() <= kMaxAutoMergeMatches) {
        // Known by phone or e-mail: the same person on another channel. The oldest matching card survives.
        std::string survivor = matches.front();
        auto c = internal::load_client(tx, survivor);
        if (c) {
            if (c->name.empty()) c->name = n.name;
            if (c->phone.empty()) c->phone = n.phone;
            if (c->email.empty()) c->email = n.email;
            if (c->language.empty()) c->language = n.language;
            for (const auto& kv : n.fields) {
                if (!c->fields.contains(kv.key())) c->fields[kv.key()] = kv.value();
            }
            if (json::serialize(c->fields).size() > kMaxFieldsBytes) c->fields = internal::load_client(tx, survivor)->fields;
            c->last_seen_at = std::max(c->last_seen_at, now_ms);
            internal::save_client(tx, *c);
            std::string id = internal::link_by_keys(tx, c->id, now_ms);
            return *internal::load_client(tx, id);
        }
    }
    Client c;
    c.id = core::new_id();
    c.name = n.name;
    c.phone = n.phone;
    c.email = n.email;
    c.language = n.language;
    c.fields = n.fields;
    c.created_at = now_ms;
    c.last_seen_at = now_ms;
    tx.exec("INSERT INTO clients(id, name, phone, email, language, fields, created_at, last_seen_at, phone_key, "
            "email_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            {c.id, c.name, c.phone, c.email, c.language, json::serialize(c.fields), now_ms, now_ms, pk, ek});
    tx.exec("INSERT INTO client_subscriptions(topic_id, client_id, status, source, updated_at) "
            "SELECT id, ?, 'subscribed', 'auto', ? FROM client_topics WHERE active = 1 AND auto_subscribe = 1",
            {c.id, now_ms});
    return c;
}

std::optional<Client> find_client(store::Tx& tx, std::string_view id) {
    if (auto c = internal::load_client(tx, id)) return c;
    auto survivor = internal::resolve_merged(tx, id);
    if (!survivor) return std::nullopt;
    return internal::load_client(tx, *survivor);
}

void touch_client(store::Tx& tx, std::string_view id, std::int64_t now_ms, std::string_view phone) {
    std::string target(id);
    if (tx.exec("UPDATE clients SET last_seen_at = ? WHERE id = ?", {now_ms, target}) == 0) {
        auto survivor = internal::resolve_merged(tx, id);
        if (!survivor) return;
        target = *survivor;
        tx.exec("UPDATE clients SET last_seen_at = ? WHERE id = ?", {now_ms, target});
    }
    if (phone.empty()) return;
    std::string pk = phone_key(phone);
    tx.exec("UPDATE clients SET phone = ?, phone_key = ? WHERE id = ?", {std::string(phone), pk, target});
    if (!pk.empty()) internal::link_by_keys(tx, target, now_ms);
}

void register_routes(http::Router& router, store::Store& store) {
    using http::Request;
    using http::Response;
    store::Store* db = &store;
    const std::string module(auth::kModuleClients);

    router.add(http::Method::kGet, "/api/v1/clients", http::Access::need(module, core::Action::kView),
               [db](Request& req) -> boost::asio::awaitable<Response> {
                   std::size_t limit = http::page_limit(req);
                   auto q = http::query_text(req, "q");
                   auto cursor = http::query_text(req, "cursor", 64);
                   json::array items;
                   std::optional<std::string> next;
                   db->read([&](store::Tx& tx) {
                       std::string sql = fmt::format("SELECT {} FROM clients c WHERE id < ?", internal::kClientColumns);
                       store::Params params{cursor.value_or("~")};
                       if (q) {
                           sql += " AND (instr(lower(name), lower(?)) > 0 OR instr(phone, ?) > 0 OR "
                                  "instr(lower(email), lower(?)) > 0)";
                           params.insert(params.end(), {*q, *q, *q});
                       }
                       sql += " ORDER BY id DESC LIMIT ?";
                       params.emplace_back(static_cast<std::int64_t>(limit + 1));
                       auto rows = tx.query(sql, params);
                       for (std::size_t i = 0; i < rows.size() && i < limit; ++i) {
                           items.push_back(internal::client_from_row(rows[i]).to_json());
                       }
                       if (rows.size() > limit) next = rows[limit - 1].text(0);
                   });
                   co_return Response::json(http::page(std::move(items), next));
               });

    router.add(http::Method::kGet, "/api/v1/clients/{id}", http::Access::need(module, core::Action::kView),
               [db](Request& req) -> boost::asio::awaitable<Response> {
                   std::optional<Client> c;
                   db->read([&](store::Tx& tx) { c = find_client(tx, req.param("id")); });
                   if (!c) throw core::NotFound(fmt::format("no client '{}'", req.param("id")), "client_not_found");
                   co_return Response::json(c->to_json());
               });
}

}  // namespace parley::clients

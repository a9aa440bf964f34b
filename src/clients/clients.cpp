#include "clients/clients.h"

#include <fmt/format.h>

#include "auth/permissions.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/ids.h"
#include "core/json.h"
#include "http/http.h"
#include "http/paging.h"

namespace parley::clients {

namespace {

constexpr const char* kColumns = "id, name, phone, email, language, fields, created_at, last_seen_at";

Client from_row(const store::Row& row) {
    Client c;
    c.id = row.text(0);
    c.name = row.text(1);
    c.phone = row.text(2);
    c.email = row.text(3);
    c.language = row.text(4);
    try {
        auto v = json::parse(row.text(5));
        if (v.is_object()) c.fields = std::move(v.get_object());
    } catch (const std::exception&) {
    }
    c.created_at = row.integer(6);
    c.last_seen_at = row.integer(7);
    return c;
}

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
)sql"}};
}

void validate_new_client(const NewClient& c) {
    check_length("name", c.name, kMaxNameBytes);
    check_length("phone", c.phone, 32);
    check_length("email", c.email, 254);
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
    Client c;
    c.id = core::new_id();
    c.name = n.name;
    c.phone = n.phone;
    c.email = n.email;
    c.language = n.language;
    c.fields = n.fields;
    c.created_at = now_ms;
    c.last_seen_at = now_ms;
    tx.exec("INSERT INTO clients(id, name, phone, email, language, fields, created_at, last_seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            {c.id, c.name, c.phone, c.email, c.language, json::serialize(c.fields), now_ms, now_ms});
    return c;
}

std::optional<Client> find_client(store::Tx& tx, std::string_view id) {
    auto row = tx.query_one(fmt::format("SELECT {} FROM clients WHERE id = ?", kColumns), {std::string(id)});
    if (!row) return std::nullopt;
    return from_row(*row);
}

void touch_client(store::Tx& tx, std::string_view id, std::int64_t now_ms, std::string_view phone) {
    if (phone.empty()) {
        tx.exec("UPDATE clients SET last_seen_at = ? WHERE id = ?", {now_ms, std::string(id)});
    } else {
        tx.exec("UPDATE clients SET last_seen_at = ?, phone = ? WHERE id = ?",
                {now_ms, std::string(phone), std::string(id)});
    }
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
                       std::string sql = fmt::format("SELECT {} FROM clients WHERE id < ?", kColumns);
                       store::Params params{cursor.value_or("~")};
                       if (q) {
                           sql += " AND (instr(lower(name), lower(?)) > 0 OR instr(phone, ?) > 0 OR "
                                  "instr(lower(email), lower(?)) > 0)";
                           params.insert(params.end(), {*q, *q, *q});
                       }
                       sql += " ORDER BY id DESC LIMIT ?";
                       params.emplace_back(static_cast<std::int64_t>(limit + 1));
                       auto rows = tx.query(sql, params);
                       for (std::size_t i = 0; i < rows.size() && i < limit; ++i) items.push_back(from_row(rows[i]).to_json());
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

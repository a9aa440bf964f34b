#include "clients/test_util.h"

#include "auth/auth.h"
#include "core/ids.h"

namespace parley::clients::testing {

namespace {

/// Stand-ins for tables other modules own (same columns the clients module reads).
store::Migration other_modules() {
    return {"testrefs", 1, "tables of other modules", R"sql(
CREATE TABLE dialogs (
  id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, client_id TEXT NOT NULL, channel TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'bot', waiting TEXT NOT NULL DEFAULT 'none', state TEXT NOT NULL DEFAULT '',
  last_n INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX dialogs_client ON dialogs(client_id, bot_id);
CREATE TABLE channels (id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, kind TEXT NOT NULL);
CREATE TABLE channel_identities (
  channel_id TEXT NOT NULL, external_user TEXT NOT NULL, chat_id TEXT NOT NULL, dialog_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY (channel_id, external_user));
CREATE TABLE ref_unique (k TEXT PRIMARY KEY, client_id TEXT UNIQUE);
)sql"};
}

}  // namespace

ClientsTest::ClientsTest() : guard_(boost::asio::make_work_guard(io_)) {
    dir_ = std::filesystem::temp_directory_path() / ("parley-clients-" + core::random_hex(8));
    std::filesystem::create_directories(dir_);
    store::StoreOptions options;
    options.path = (dir_ / "parley.db").string();
    options.durable = false;
    options.readers = 2;
    std::vector<store::Migration> all = auth::migrations();
    for (auto& m : migrations()) all.push_back(m);
    all.push_back(other_modules());
    store_ = store::Store::open_sqlite(options, all);
    directory_ = std::make_unique<ClientDirectory>(*store_, clock_, &hub_);
    admin_.user_id = "admin";
    admin_.email = "admin@example.com";
    admin_.roles = {"administrator"};
    thread_ = std::thread([this] { io_.run(); });
}

ClientsTest::~ClientsTest() {
    guard_.reset();
    io_.stop();
    thread_.join();
    directory_.reset();
    store_->close();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

Client ClientsTest::make(const std::string& name, const std::string& phone, const std::string& email,
                         json::object fields) {
    Client out;
    NewClient n{name, phone, email, "uk", std::move(fields)};
    store_->write_sync([&](store::Tx& tx) { out = create_client(tx, n, clock_.now_ms()); });
    clock_.advance_ms(1000);
    return out;
}

std::string ClientsTest::make_dialog(const std::string& client, const std::string& channel) {
    std::string id = core::new_id();
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("INSERT INTO dialogs(id, bot_id, client_id, channel, created_at, updated_at) VALUES (?, 'bot', ?, ?, ?, ?)",
                {id, client, channel, clock_.now_ms(), clock_.now_ms()});
    });
    return id;
}

std::int64_t ClientsTest::count(const std::string& sql, const store::Params& params) {
    return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql, params)->integer(0); });
}

}  // namespace parley::clients::testing

#include "auth/test_util.h"

#include "auth/internal/crypto.h"
#include "core/ids.h"

namespace parley::auth::testing {

AuthTest::AuthTest() : guard_(boost::asio::make_work_guard(io_)) {
    dir_ = std::filesystem::temp_directory_path() / ("parley-auth-" + core::random_hex(8));
    std::filesystem::create_directories(dir_);
    auto cost = internal::PasswordCost::minimal();
    options_.password_opslimit = cost.opslimit;
    options_.password_memlimit = cost.memlimit;
    options_.base_url = "https://parley.example";
    options_.login_max_failures = 3;
    store::StoreOptions store_options;
    store_options.path = (dir_ / "parley.db").string();
    store_options.durable = false;
    store_options.readers = 2;
    store_ = store::Store::open_sqlite(store_options, migrations());
    thread_ = std::thread([this] { io_.run(); });
    rebuild();
    auth_->ensure_admin("root@example.com", "root password");
    root_.user_id = read_value(*store_, [](store::Tx& tx) {
        return tx.query_one("SELECT id FROM auth_users WHERE email = 'root@example.com'")->text(0);
    });
    root_.email = "root@example.com";
    root_.roles = {"administrator"};
    for (const auto& p : all_permissions()) root_.permissions.insert(p);
}

AuthTest::~AuthTest() {
    guard_.reset();
    io_.stop();
    thread_.join();
    auth_.reset();
    settings_.reset();
    store_->close();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

void AuthTest::rebuild() {
    auth_.reset();
    settings_ = std::make_unique<SettingsService>(*store_, clock_, load_or_create_secret_key(dir_.string()));
    auth_ = std::make_unique<AuthService>(*store_, clock_, *settings_, options_);
}

User AuthTest::make_user(const std::string& email, std::vector<std::string> roles, const std::string& password) {
    NewUser user;
    user.email = email;
    user.name = "User " + email;
    user.password = password;
    user.roles = std::move(roles);
    return run(auth_->create_user(Caller{&root_, "127.0.0.1"}, user));
}

LoginResult AuthTest::login(const std::string& email, const std::string& password, const std::string& ip) {
    return run(auth_->login(email, password, ip));
}

std::shared_ptr<const core::Principal> AuthTest::principal_of(const std::string& token) {
    auto p = auth_->authenticate_token(token);
    return p ? *p : nullptr;
}

std::int64_t AuthTest::count(const std::string& sql) {
    return read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
}

}  // namespace parley::auth::testing

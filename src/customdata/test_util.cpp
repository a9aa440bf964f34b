#include "customdata/test_util.h"

#include "core/ids.h"

namespace parley::customdata::testing {

CustomDataTest::CustomDataTest() : guard_(boost::asio::make_work_guard(io_)) {
    dir_ = std::filesystem::temp_directory_path() / ("parley-customdata-" + core::random_hex(8));
    std::filesystem::create_directories(dir_);
    store::StoreOptions options;
    options.path = (dir_ / "parley.db").string();
    options.durable = false;
    options.readers = 2;
    store_ = store::Store::open_sqlite(options, migrations());
    service_ = std::make_unique<CustomDataService>(*store_, clock_);
    thread_ = std::thread([this] { io_.run(); });
}

CustomDataTest::~CustomDataTest() {
    guard_.reset();
    io_.stop();
    thread_.join();
    service_.reset();
    store_->close();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

Model CustomDataTest::make_model(const std::string& spec) {
    return run(service_->create_model(boost::json::parse(spec).as_object()));
}

json::object CustomDataTest::make_record(const std::string& model, const std::string& values) {
    return run(service_->create_record(model, boost::json::parse(values).as_object()));
}

std::int64_t CustomDataTest::count(const std::string& sql) {
    return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
}

}  // namespace parley::customdata::testing

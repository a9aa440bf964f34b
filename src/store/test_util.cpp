#include "store/test_util.h"

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>

namespace parley::store::testing {

TempDir::TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "parley-store-test-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
}

TempDir::~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

std::vector<Migration> test_migrations() {
    return {
        {"test", 1, "items",
         "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, data BLOB, score REAL);"},
        {"test", 2, "notes",
         "CREATE TABLE notes (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id), body TEXT);\n"
         "CREATE INDEX notes_item ON notes(item_id);"},
    };
}

StoreOptions test_options(const std::string& path, bool durable) {
    StoreOptions options;
    options.path = path;
    options.readers = 2;
    options.durable = durable;
    return options;
}

std::int64_t count_rows(Store& store, const std::string& table) {
    return read_value(store, [&](Tx& tx) { return tx.query_one("SELECT count(*) FROM " + table)->integer(0); });
}

std::string integrity(Store& store) {
    return read_value(store, [](Tx& tx) { return tx.query_one("PRAGMA integrity_check")->text(0); });
}

}  // namespace parley::store::testing

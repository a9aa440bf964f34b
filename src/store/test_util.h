/// Helpers shared by the store tests: a temporary directory and a small two-migration schema.
#pragma once

#include <string>
#include <vector>

#include "store/store.h"

namespace parley::store::testing {

/// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

/// Module "test": v1 items(id, name UNIQUE, data BLOB, score REAL), v2 notes(item_id REFERENCES items).
std::vector<Migration> test_migrations();

StoreOptions test_options(const std::string& path, bool durable = false);

/// Number of rows in `table`.
std::int64_t count_rows(Store& store, const std::string& table);

/// The first row of PRAGMA integrity_check ("ok" when healthy).
std::string integrity(Store& store);

}  // namespace parley::store::testing

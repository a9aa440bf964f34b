#include "store/store.h"

#include <future>
#include <stdexcept>

#include "store/internal/sqlite_store.h"

namespace parley::store {

std::unique_ptr<Store> Store::open_sqlite(const StoreOptions& options, const std::vector<Migration>& migrations,
                                          core::Metrics* metrics) {
    return std::make_unique<internal::SqliteStore>(options, migrations, metrics);
}

void Store::write_sync(std::function<void(Tx&)> fn) {
    if (internal::on_writer_thread()) {
        throw std::logic_error("store: write_sync() on the writer thread would wait for itself");
    }
    std::promise<void> durable;
    auto future = durable.get_future();
    write(std::move(fn), [&durable](std::exception_ptr error) {
        if (error) {
            durable.set_exception(error);
        } else {
            durable.set_value();
        }
    });
    future.get();
}

std::optional<Row> Tx::query_one(std::string_view sql, const Params& params) {
    std::optional<Row> out;
    for_each(sql, params, [&out](const Row& row) {
        out = row;
        return false;
    });
    return out;
}

}  // namespace parley::store

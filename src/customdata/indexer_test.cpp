// Background full-text indexing: imports leave records above the model's watermark, the indexer indexes them in
// batches; search stays correct for updates and deletes on either side of the watermark, a restart resumes, and
// nothing is indexed twice or missed.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <boost/json.hpp>

#include "customdata/customdata.h"
#include "customdata/test_util.h"

namespace parley::customdata {
namespace {

using testing::CustomDataTest;

constexpr const char* kNotes = R"({"name": "notes", "fields": [
    {"name": "text", "type": "text"},
    {"name": "tag", "type": "text", "searchable": false},
    {"name": "n", "type": "number", "indexed": true}]})";

class IndexerTest : public CustomDataTest {
protected:
    /// Replaces the fixture's service (the old one is destroyed after the new one exists, like a second node).
    void restart_service(bool background, std::size_t batch, std::size_t inline_rows = 0) {
        CustomDataOptions options;
        options.background_indexing = background;
        options.index_batch_rows = batch;
        options.import_inline_index_rows = inline_rows;  // 0: every import leaves its rows to the indexer
        service_.reset();
        service_ = std::make_unique<CustomDataService>(*store_, clock_, options);
    }
    /// Closes and reopens the store and the service on the same data dir (a process restart).
    void reopen(bool background, std::size_t batch) {
        service_.reset();
        store_->close();
        store_.reset();
        store::StoreOptions options;
        options.path = (dir_ / "parley.db").string();
        options.durable = false;
        options.readers = 2;
        store_ = store::Store::open_sqlite(options, migrations());
        restart_service(background, batch);
    }
    /// Records `q` finds, counted through every page.
    std::size_t search_count(const std::string& q, const std::string& model = "notes") {
        std::size_t n = 0;
        RecordQuery query = parse_record_query({{"q", q}, {"limit", "200"}}, true);
        for (;;) {
            auto page = service_->list_records(model, query);
            n += page.items.size();
            if (!page.next_cursor) return n;
            query.cursor = *page.next_cursor;
        }
    }
    /// Documents the full-text index holds for `term` (catches double entries search paging would not show).
    std::int64_t index_count(const Model& model, const std::string& term) {
        return count(fmt::format("SELECT count(*) FROM {0} WHERE {0} MATCH '\"{1}\"'", model.fts_table(), term));
    }
    std::size_t filter_count(const std::string& field, const std::string& value) {
        return service_->list_records("notes", parse_record_query({{"filter[" + field + "]", value}, {"limit", "200"}}, true))
            .items.size();
    }
    ImportResult import(const std::string& csv) { return run(service_->import_csv("notes", csv, {})); }
    static std::string rows_csv(std::size_t from, std::size_t to, const std::string& word) {
        std::string csv = "text,tag,n\n";
        for (std::size_t i = from; i < to; ++i) csv += fmt::format("{} unique{} common,t{},{}\n", word, i, i, i % 7);
        return csv;
    }
    void check_index_integrity(const Model& model) {
        store_->write_sync([&](store::Tx& tx) {
            tx.exec(fmt::format("INSERT INTO {0}({0}) VALUES ('integrity-check')", model.fts_table()));
        });
    }
};

TEST_F(IndexerTest, ImportedRowsBecomeSearchableAfterTheIndexerDrains) {
    restart_service(true, 300);  // several batches
    Model model = make_model(kNotes);
    const std::size_t n = 2000;
    auto r = import(rows_csv(0, n, "imported"));
    ASSERT_EQ(r.imported, n);
    EXPECT_LE(r.index_pending, n);  // the report tells a UI how much is left to index
    EXPECT_TRUE(r.to_json().contains("index_pending"));
    // Filters and reads see the records at once.
    EXPECT_EQ(filter_count("tag", "t1234"), 1u);
    EXPECT_EQ(service_->get_record("notes", "2000").at("tag"), "t1999");

    ASSERT_TRUE(service_->wait_search_indexed(std::chrono::seconds(30)));
    EXPECT_EQ(service_->index_pending("notes"), 0);
    EXPECT_EQ(service_->model_json(service_->get_model("notes")).at("index_pending"), 0);
    EXPECT_EQ(search_count("common"), n);
    EXPECT_EQ(index_count(model, "common"), static_cast<std::int64_t>(n));  // no double entries
    EXPECT_EQ(search_count("unique1999"), 1u);
    EXPECT_EQ(search_count("imp"), n);  // prefix
    check_index_integrity(model);

    // With nothing pending, a single create is indexed inline again.
    make_record("notes", R"({"text": "inline right away"})");
    EXPECT_EQ(service_->index_pending("notes"), 0);
    EXPECT_EQ(search_count("inline"), 1u);
}

TEST_F(IndexerTest, UpdatesAndDeletesWhileIndexingIsPendingStayCorrect) {
    restart_service(false, 3);  // no indexer thread: the test moves the watermark itself
    Model model = make_model(kNotes);
    make_record("notes", R"({"text": "alpha first"})");  // rid 1, indexed inline
    EXPECT_EQ(search_count("alpha"), 1u);
    auto r = import(rows_csv(0, 10, "beta"));  // rids 2..11, pending
    ASSERT_EQ(r.imported, 10u);
    EXPECT_EQ(r.index_pending, 10u);
    EXPECT_EQ(service_->index_pending("notes"), 10);
    EXPECT_EQ(service_->model_json(service_->get_model("notes")).at("index_pending"), 10);
    EXPECT_EQ(search_count("beta"), 0u);      // not indexed yet
    EXPECT_EQ(filter_count("n", "3"), 1u);     // filters see them at once

    // Below the watermark: update and the index follows at once.
    run(service_->update_record("notes", "1", boost::json::parse(R"({"text": "gamma changed"})").as_object()));
    EXPECT_EQ(search_count("alpha"), 0u);
    EXPECT_EQ(search_count("gamma"), 1u);
    // Above the watermark: updated and deleted before the indexer gets there.
    run(service_->update_record("notes", "5", boost::json::parse(R"({"text": "delta changed"})").as_object()));
    run(service_->delete_record("notes", "6"));
    // A single create while records are pending queues behind them.
    make_record("notes", R"({"text": "zeta late"})");  // rid 12
    EXPECT_EQ(search_count("zeta"), 0u);

    // One batch: rids 2, 3, 4 are indexed.
    EXPECT_EQ(service_->index_search_batch(), 3u);
    EXPECT_EQ(search_count("beta"), 3u);
    EXPECT_EQ(service_->index_pending("notes"), 8);  // rids 5..12 (6 deleted: an upper bound)
    // Now below the watermark: an update replaces the indexed text, a delete removes it.
    run(service_->update_record("notes", "3", boost::json::parse(R"({"text": "epsilon now"})").as_object()));
    run(service_->delete_record("notes", "4"));
    EXPECT_EQ(search_count("beta"), 1u);
    EXPECT_EQ(search_count("epsilon"), 1u);
    // A non-searchable column changing does not touch the index.
    run(service_->update_record("notes", "2", boost::json::parse(R"({"tag": "other"})").as_object()));
    EXPECT_EQ(search_count("beta"), 1u);

    EXPECT_EQ(service_->drain_search_index(), 7u);  // rids 5, 7..12 (6 no longer exists)
    EXPECT_EQ(service_->index_pending("notes"), 0);
    EXPECT_EQ(search_count("beta"), 6u);  // 2, 7, 8, 9, 10, 11
    EXPECT_EQ(index_count(model, "beta"), 6);
    EXPECT_EQ(search_count("delta"), 1u);
    EXPECT_EQ(search_count("unique3"), 0u);  // rid 5 (row 3) is indexed with its updated text only
    EXPECT_EQ(search_count("unique4"), 0u);  // deleted rid 6
    EXPECT_EQ(search_count("epsilon"), 1u);
    EXPECT_EQ(search_count("zeta"), 1u);
    EXPECT_EQ(search_count("gamma"), 1u);
    EXPECT_EQ(search_count("alpha"), 0u);
    EXPECT_EQ(index_count(model, "common"), 6);
    check_index_integrity(model);

    // The last pending record deleted before it was indexed: the watermark skips its id, and the next single
    // create is indexed inline again.
    import(rows_csv(100, 102, "theta"));  // rids 13, 14
    run(service_->delete_record("notes", "14"));
    EXPECT_EQ(service_->drain_search_index(), 1u);
    make_record("notes", R"({"text": "iota inline"})");  // rid 15
    EXPECT_EQ(search_count("iota"), 1u);
    EXPECT_EQ(search_count("theta"), 1u);
    EXPECT_EQ(service_->index_search_batch(), 0u);
    check_index_integrity(model);
}

TEST_F(IndexerTest, RestartResumesPendingIndexingWithoutDoublesOrGaps) {
    restart_service(false, 4);
    Model model = make_model(kNotes);
    auto r = import(rows_csv(0, 50, "resume"));
    ASSERT_EQ(r.imported, 50u);
    EXPECT_EQ(service_->index_search_batch(), 4u);  // the indexer stopped after one batch
    EXPECT_EQ(search_count("resume"), 4u);

    reopen(true, 7);  // a new process with the indexer running
    ASSERT_TRUE(service_->wait_search_indexed(std::chrono::seconds(30)));
    EXPECT_EQ(service_->index_pending("notes"), 0);
    EXPECT_EQ(search_count("resume"), 50u);
    EXPECT_EQ(index_count(model, "common"), 50);
    for (int i : {0, 3, 4, 49}) EXPECT_EQ(index_count(model, fmt::format("unique{}", i)), 1) << i;
    check_index_integrity(model);
}

TEST_F(IndexerTest, RolledBackImportLeavesSearchAsItWasAndFieldEditsRespectTheWatermark) {
    restart_service(false, 1000);
    Model model = make_model(kNotes);
    auto failed = import("text,n\nkappa ok,1\nkappa bad,x\n");
    EXPECT_TRUE(failed.rolled_back);
    make_record("notes", R"({"text": "lambda inline"})");  // the insert trigger survived the rollback
    EXPECT_EQ(search_count("lambda"), 1u);
    EXPECT_EQ(search_count("kappa"), 0u);

    import(rows_csv(0, 5, "mu"));  // pending
    // Making the tag searchable rebuilds the index: only the rows below the watermark go in; the rest stay pending.
    run(service_->update_field("notes", "tag", boost::json::parse(R"({"searchable": true})").as_object()));
    model = service_->get_model("notes");
    EXPECT_EQ(search_count("mu"), 0u);
    EXPECT_EQ(service_->index_pending("notes"), 5);
    EXPECT_EQ(service_->drain_search_index(), 5u);
    EXPECT_EQ(search_count("mu"), 5u);
    EXPECT_EQ(search_count("t3"), 1u);  // the tag is searchable now
    EXPECT_EQ(index_count(model, "common"), 5);
    check_index_integrity(model);

    // A model without searchable fields never reports pending records.
    make_model(R"({"name": "plain", "fields": [{"name": "n", "type": "number"}]})");
    run(service_->import_csv("plain", "n\n1\n2\n", {}));
    EXPECT_EQ(service_->index_pending("plain"), 0);
}

TEST_F(IndexerTest, SmallImportsAreIndexedBeforeTheyAnswer) {
    restart_service(false, 1000, 5);  // imports leaving at most 5 records pending index them inline
    Model model = make_model(kNotes);
    auto small = import(rows_csv(0, 3, "nu"));
    EXPECT_EQ(small.index_pending, 0u);
    EXPECT_EQ(search_count("nu"), 3u);  // no indexer ran
    auto large = import(rows_csv(3, 13, "xi"));
    EXPECT_EQ(large.index_pending, 10u);
    EXPECT_EQ(search_count("xi"), 0u);
    auto after = import(rows_csv(13, 15, "xi"));  // 12 pending then: left to the indexer too
    EXPECT_EQ(after.index_pending, 12u);
    EXPECT_EQ(service_->drain_search_index(), 12u);
    EXPECT_EQ(search_count("xi"), 12u);
    EXPECT_EQ(index_count(model, "common"), 15);
    check_index_integrity(model);
}

}  // namespace
}  // namespace parley::customdata

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <boost/json.hpp>
#include <set>

#include "customdata/customdata.h"
#include "customdata/test_util.h"

namespace parley::customdata {
namespace {

using testing::CustomDataTest;
using testing::thrown;

constexpr const char* kComplaints = R"({
  "name": "complaints", "label": "Complaints",
  "groups": [{"name": "main", "label": "Main"}],
  "fields": [
    {"name": "text", "type": "text", "required": true, "max_length": 500, "group": "main"},
    {"name": "kind", "type": "select", "options": ["delivery", "quality"]},
    {"name": "amount", "type": "number", "min": 0, "indexed": true},
    {"name": "email", "type": "text", "unique": true, "searchable": false},
    {"name": "urgent", "type": "boolean", "default": false},
    {"name": "day", "type": "date"},
    {"name": "at", "type": "datetime"},
    {"name": "extra", "type": "json"}
  ],
  "display": {"list": {"columns": ["text", "kind", "amount"]}, "form": {"order": ["text", "kind"]}}
})";

class ServiceTest : public CustomDataTest {
protected:
    RecordPage list(const std::vector<std::pair<std::string, std::string>>& params, const std::string& model = "complaints") {
        return service_->list_records(model, parse_record_query(params, true));
    }
    std::vector<std::string> texts(const RecordPage& page, const std::string& field = "text") {
        std::vector<std::string> out;
        for (const auto& item : page.items) out.emplace_back(item.at(field).as_string());
        return out;
    }
    std::string export_all(const std::string& model, const RecordQuery& q = {}) {
        std::string out;
        service_->export_csv(model, q, [&](std::string_view chunk) { out.append(chunk); });
        return out;
    }
    ImportResult import(const std::string& model, const std::string& csv, ImportMode mode = ImportMode::kAllOrNothing) {
        ImportOptions options;
        options.mode = mode;
        return run(service_->import_csv(model, csv, options));
    }
};

TEST_F(ServiceTest, CreateModelAndReadItBack) {
    Model m = make_model(kComplaints);
    EXPECT_EQ(m.name, "complaints");
    ASSERT_EQ(m.fields.size(), 8u);
    EXPECT_EQ(m.fields[0].id, "f1");
    EXPECT_TRUE(m.fields[0].searchable);
    EXPECT_FALSE(m.fields[3].searchable);
    auto json = service_->model_json(service_->get_model("complaints"));
    EXPECT_EQ(json.at("fields").as_array()[1].at("options"), boost::json::parse(R"(["delivery","quality"])"));
    EXPECT_EQ(json.at("display").at("list").at("columns").as_array().size(), 3u);
    EXPECT_EQ(service_->list_models().size(), 1u);
    EXPECT_EQ(thrown([&] { make_model(R"({"name": "complaints"})"); }).code, "model_exists");
    EXPECT_EQ(thrown([&] { service_->get_model("nope"); }).status, 404);
}

TEST_F(ServiceTest, BadModelDefinitionsListEveryProblem) {
    auto t = thrown([&] {
        make_model(R"({"name": "Bad Name", "fields": [
            {"name": "id", "type": "text"},
            {"name": "x", "type": "colour"},
            {"name": "s", "type": "select"},
            {"name": "n", "type": "number", "min": 5, "max": 1, "pattern": "("},
            {"name": "r", "type": "reference"},
            {"name": "d", "type": "text", "default": 5, "bogus": true}
        ]})");
    });
    EXPECT_EQ(t.status, 422);
    EXPECT_EQ(t.code, "invalid_model");
    EXPECT_GE(t.details.size(), 8u);
    EXPECT_EQ(thrown([&] { make_model(R"({"name": "a", "fields": [{"name": "x", "type": "reference", "model": "zz"}]})"); })
                  .status,
              422);
    EXPECT_EQ(thrown([&] { make_model(R"({"name": "a", "colour": 1})"); }).status, 400);
    EXPECT_EQ(thrown([&] { make_model(R"({"name": "a", "display": {"list": {"columns": ["nope"]}}})"); }).status, 422);
    EXPECT_EQ(thrown([&] { make_model(R"({"name": "a", "access": {"fly": ["operator"]}})"); }).status, 422);
    EXPECT_EQ(count("SELECT count(*) FROM cd_models"), 0);
}

TEST_F(ServiceTest, RecordCrudWithTypesDefaultsAndValidation) {
    make_model(kComplaints);
    auto r = make_record("complaints", R"({"text": "Late parcel", "kind": "delivery", "amount": 12.5,
        "email": "a@example.com", "day": "2024-05-01", "at": "2024-05-01T13:00:00+03:00", "extra": {"order": 7}})");
    EXPECT_EQ(r.at("id"), "1");
    EXPECT_EQ(r.at("urgent"), false);  // default
    EXPECT_EQ(r.at("amount"), 12.5);
    EXPECT_EQ(r.at("at"), "2024-05-01T10:00:00.000Z");
    EXPECT_EQ(r.at("extra").at("order"), 7);
    EXPECT_EQ(r.at("created_at"), "2023-11-14T22:13:20.000Z");
    EXPECT_EQ(service_->get_record("complaints", "1"), r);

    auto bad = thrown([&] {
        make_record("complaints", R"({"kind": "other", "amount": "5", "urgent": "yes", "nope": 1, "day": "2024-02-30"})");
    });
    EXPECT_EQ(bad.status, 422);
    EXPECT_EQ(bad.code, "invalid_record");
    EXPECT_EQ(bad.details.size(), 6u);  // text required, kind option, amount type, urgent type, nope, day
    EXPECT_EQ(thrown([&] { make_record("complaints", R"({"text": "x", "amount": -1})"); }).status, 422);
    EXPECT_EQ(thrown([&] { make_record("complaints", "{\"text\": \"" + std::string(501, 'a') + "\"}"); }).status, 422);

    auto dup = thrown([&] { make_record("complaints", R"({"text": "again", "email": "a@example.com"})"); });
    EXPECT_EQ(dup.status, 409);
    EXPECT_EQ(dup.code, "duplicate_value");
    EXPECT_EQ(dup.details.front().at("field"), "email");
    EXPECT_EQ(count("SELECT count(*) FROM cd_models"), 1);

    clock_.advance_ms(1000);
    auto updated = run(service_->update_record("complaints", "1", boost::json::parse(R"({"kind": null, "amount": 3})").as_object()));
    EXPECT_EQ(updated.at("kind"), nullptr);
    EXPECT_EQ(updated.at("amount"), 3);
    EXPECT_EQ(updated.at("text"), "Late parcel");
    EXPECT_NE(updated.at("updated_at"), updated.at("created_at"));
    EXPECT_EQ(thrown([&] { run(service_->update_record("complaints", "1", boost::json::parse(R"({"text": null})").as_object())); })
                  .status,
              422);
    EXPECT_EQ(thrown([&] { run(service_->update_record("complaints", "99", {})); }).status, 404);
    run(service_->delete_record("complaints", "1"));
    EXPECT_EQ(thrown([&] { service_->get_record("complaints", "1"); }).status, 404);
    EXPECT_EQ(thrown([&] { service_->get_record("complaints", "abc"); }).status, 404);
    EXPECT_EQ(thrown([&] { run(service_->delete_record("complaints", "1")); }).status, 404);
}

TEST_F(ServiceTest, FiltersSortAndCursorPages) {
    make_model(kComplaints);
    for (int i = 1; i <= 25; ++i) {
        make_record("complaints", fmt::format(R"({{"text": "item {:02}", "kind": "{}", "amount": {}}})", i,
                                              i % 2 ? "delivery" : "quality", i % 5 == 0 ? "null" : std::to_string(i % 7)));
    }
    EXPECT_EQ(list({{"filter[kind][eq]", "quality"}, {"limit", "100"}}).items.size(), 12u);
    EXPECT_EQ(list({{"filter[kind][ne]", "quality"}, {"limit", "100"}}).items.size(), 13u);
    EXPECT_EQ(list({{"filter[amount][gte]", "5"}, {"limit", "100"}}).items.size(), 4u);
    EXPECT_EQ(list({{"filter[amount][in]", "1,2"}, {"limit", "100"}}).items.size(), 7u);
    EXPECT_EQ(list({{"filter[amount][eq]", ""}, {"limit", "100"}}).items.size(), 5u);
    EXPECT_EQ(list({{"filter[text][contains]", "ITEM 1"}, {"limit", "100"}}).items.size(), 10u);
    EXPECT_EQ(list({{"filter[id][lte]", "3"}}).items.size(), 3u);
    EXPECT_EQ(list({{"filter[created_at][gte]", "2023-11-14T22:13:20Z"}}).items.size(), 25u);
    EXPECT_EQ(thrown([&] { list({{"filter[amount][eq]", "x"}}); }).status, 400);

    // Walk every page of a sort on a column with NULLs and duplicates, both directions.
    for (std::string sort : {"amount", "-amount", "id", "-id", "text"}) {
        std::vector<std::string> seen;
        std::string cursor;
        int pages = 0;
        do {
            std::vector<std::pair<std::string, std::string>> params{{"sort", sort}, {"limit", "4"}};
            if (!cursor.empty()) params.emplace_back("cursor", cursor);
            auto page = list(params);
            for (auto& t : texts(page)) seen.push_back(t);
            cursor = page.next_cursor.value_or("");
            ++pages;
        } while (!cursor.empty() && pages < 20);
        EXPECT_EQ(seen.size(), 25u) << sort;
        std::set<std::string> unique(seen.begin(), seen.end());
        EXPECT_EQ(unique.size(), 25u) << sort;
        if (sort == "-id") {
            EXPECT_EQ(seen.front(), "item 25");
        }
        if (sort == "amount") {
            EXPECT_EQ(seen.front(), "item 05");  // NULL first ascending
        }
    }
}

TEST_F(ServiceTest, FullTextSearchInUkrainianAndEnglish) {
    make_model(kComplaints);
    make_record("complaints", R"({"text": "Посилка запізнилася на тиждень"})");
    make_record("complaints", R"({"text": "The parcel was DAMAGED in transit"})");
    make_record("complaints", R"({"text": "Якість товару погана, ґудзик відірвався"})");
    make_record("complaints", R"({"text": "Café crème", "email": "posylka@example.com"})");
    EXPECT_EQ(texts(list({{"q", "посилка"}})), std::vector<std::string>{"Посилка запізнилася на тиждень"});
    EXPECT_EQ(texts(list({{"q", "ПОСИЛКА"}})).size(), 1u);
    EXPECT_EQ(texts(list({{"q", "запізн"}})).size(), 1u);  // prefix of the last word
    EXPECT_EQ(texts(list({{"q", "damaged parcel"}})).size(), 1u);
    EXPECT_EQ(texts(list({{"q", "ҐУДЗИК"}})).size(), 1u);
    EXPECT_EQ(texts(list({{"q", "cafe creme"}})).size(), 1u);  // diacritics removed
    EXPECT_TRUE(list({{"q", "posylka"}}).items.empty());        // email is not searchable
    EXPECT_TRUE(list({{"q", "?? --"}}).items.empty());
    EXPECT_EQ(texts(list({{"q", "the"}, {"sort", "-id"}})).size(), 1u);
    // Search index follows updates and deletes.
    run(service_->update_record("complaints", "1", boost::json::parse(R"({"text": "Доставка вчасно"})").as_object()));
    EXPECT_TRUE(list({{"q", "посилка"}}).items.empty());
    EXPECT_EQ(list({{"q", "доставка"}}).items.size(), 1u);
    run(service_->delete_record("complaints", "1"));
    EXPECT_TRUE(list({{"q", "доставка"}}).items.empty());
    // Newest first by default; sort=relevance ranks (bm25) and pages with cursors too.
    make_record("complaints", R"({"text": "parcel parcel parcel"})");
    make_record("complaints", R"({"text": "one parcel among many other words here"})");
    EXPECT_EQ(texts(list({{"q", "parcel"}})).front(), "one parcel among many other words here");
    EXPECT_EQ(texts(list({{"q", "parcel"}, {"sort", "relevance"}})).front(), "parcel parcel parcel");
    auto first = list({{"q", "parcel"}, {"sort", "relevance"}, {"limit", "2"}});
    ASSERT_TRUE(first.next_cursor);
    auto rest = list({{"q", "parcel"}, {"sort", "relevance"}, {"limit", "2"}, {"cursor", *first.next_cursor}});
    EXPECT_EQ(first.items.size() + rest.items.size(), 3u);
    EXPECT_FALSE(rest.next_cursor);
}

TEST_F(ServiceTest, ThreeCharacterPrefixesUseThePrefixIndexAndOldIndexesAreUpgraded) {
    Model model = make_model(kComplaints);
    make_record("complaints", R"({"text": "Посилка запізнилася"})");
    make_record("complaints", R"({"text": "parcel delivered"})");
    auto fts_sql = [&] {
        std::string sql;
        store_->read([&](store::Tx& tx) {
            sql = tx.query_one("SELECT sql FROM sqlite_master WHERE name = ?", {model.fts_table()})->text(0);
        });
        return sql;
    };
    EXPECT_NE(fts_sql().find("prefix='3'"), std::string::npos);
    EXPECT_EQ(texts(list({{"q", "пос"}})), std::vector<std::string>{"Посилка запізнилася"});
    EXPECT_EQ(texts(list({{"q", "ПОС"}})).size(), 1u);  // the prefix index folds case like the terms
    EXPECT_EQ(texts(list({{"q", "parcel del"}})).size(), 1u);

    // A data dir from before the prefix index: the next start rebuilds the index once, search keeps working.
    store_->write_sync([&](store::Tx& tx) {
        tx.exec(fmt::format("DROP TABLE {}", model.fts_table()));
        tx.exec(fmt::format("CREATE VIRTUAL TABLE {} USING fts5(body, content='', "
                            "tokenize='unicode61 remove_diacritics 2')", model.fts_table()));
    });
    EXPECT_EQ(fts_sql().find("prefix="), std::string::npos);
    service_ = std::make_unique<CustomDataService>(*store_, clock_);
    EXPECT_NE(fts_sql().find("prefix='3'"), std::string::npos);
    EXPECT_EQ(texts(list({{"q", "пос"}})).size(), 1u);
    EXPECT_EQ(texts(list({{"q", "parcel"}})).size(), 1u);
    make_record("complaints", R"({"text": "another parcel"})");  // the triggers were reinstalled
    EXPECT_EQ(texts(list({{"q", "parcel"}})).size(), 2u);
}

TEST_F(ServiceTest, EditingFieldsKeepsData) {
    make_model(kComplaints);
    make_record("complaints", R"({"text": "one", "amount": 5, "email": "x@example.com"})");
    make_record("complaints", R"({"text": "two", "amount": 7})");

    // Rename: data stays, display follows.
    Model m = run(service_->update_field("complaints", "text", boost::json::parse(R"({"name": "body"})").as_object()));
    EXPECT_TRUE(m.field("body"));
    EXPECT_EQ(service_->get_record("complaints", "1").at("body"), "one");
    EXPECT_EQ(m.display.at("list").at("columns").as_array()[0], "body");
    EXPECT_EQ(list({{"q", "two"}}).items.size(), 1u);

    // Retype number → text converts; text → number refuses values that are not numbers.
    run(service_->update_field("complaints", "amount", boost::json::parse(R"({"type": "text"})").as_object()));
    EXPECT_EQ(service_->get_record("complaints", "1").at("amount"), "5");
    EXPECT_EQ(list({{"q", "7"}}).items.size(), 1u);  // text fields become searchable
    auto bad = thrown([&] {
        run(service_->update_field("complaints", "body", boost::json::parse(R"({"type": "number"})").as_object()));
    });
    EXPECT_EQ(bad.status, 422);
    EXPECT_EQ(bad.code, "incompatible_values");
    EXPECT_EQ(service_->get_record("complaints", "1").at("body"), "one");
    run(service_->update_field("complaints", "amount", boost::json::parse(R"({"type": "number", "min": 0})").as_object()));
    EXPECT_EQ(service_->get_record("complaints", "2").at("amount"), 7);
    EXPECT_EQ(thrown([&] {
                  run(service_->update_field("complaints", "amount", boost::json::parse(R"({"max": 6})").as_object()));
              }).code,
              "incompatible_values");

    // Unique over duplicates is refused; required needs a default when values are missing.
    make_record("complaints", R"({"body": "three", "amount": 7})");
    EXPECT_EQ(thrown([&] {
                  run(service_->update_field("complaints", "amount", boost::json::parse(R"({"unique": true})").as_object()));
              }).code,
              "duplicate_values");
    EXPECT_EQ(thrown([&] {
                  run(service_->update_field("complaints", "kind", boost::json::parse(R"({"required": true})").as_object()));
              }).code,
              "field_has_empty_values");
    run(service_->update_field("complaints", "kind",
                               boost::json::parse(R"({"required": true, "default": "quality"})").as_object()));
    EXPECT_EQ(service_->get_record("complaints", "2").at("kind"), "quality");

    // Add a field (default fills existing records), remove one (needs force when it holds data).
    run(service_->add_field("complaints", boost::json::parse(R"({"name": "score", "type": "number", "default": 1})").as_object()));
    EXPECT_EQ(service_->get_record("complaints", "1").at("score"), 1);
    EXPECT_EQ(thrown([&] {
                  run(service_->add_field("complaints",
                                          boost::json::parse(R"({"name": "must", "type": "text", "required": true})").as_object()));
              }).code,
              "field_needs_default");
    EXPECT_EQ(thrown([&] { run(service_->remove_field("complaints", "email", false)); }).code, "field_has_data");
    run(service_->remove_field("complaints", "email", true));
    run(service_->remove_field("complaints", "body", true));
    EXPECT_FALSE(service_->get_record("complaints", "1").contains("email"));
    EXPECT_TRUE(list({{"q", "one"}}).items.empty());
    EXPECT_EQ(list({{"q", "7"}}).items.size(), 0u);  // amount is a number again: not searchable
    make_record("complaints", R"({"amount": 1, "kind": "delivery"})");
    EXPECT_EQ(thrown([&] { run(service_->remove_field("complaints", "nope", true)); }).status, 404);
}

TEST_F(ServiceTest, ReferencesAreCheckedBothWays) {
    make_model(R"({"name": "customers", "fields": [{"name": "name", "type": "text"}]})");
    make_model(R"({"name": "orders", "fields": [{"name": "customer", "type": "reference", "model": "customers"}]})");
    auto c = make_record("customers", R"({"name": "Olena"})");
    auto o = make_record("orders", R"({"customer": "1"})");
    EXPECT_EQ(o.at("customer"), "1");
    EXPECT_EQ(thrown([&] { make_record("orders", R"({"customer": "9"})"); }).status, 422);
    EXPECT_EQ(thrown([&] { run(service_->delete_record("customers", "1")); }).code, "record_referenced");
    EXPECT_EQ(thrown([&] { run(service_->delete_model("customers")); }).code, "model_referenced");
    auto json = service_->model_json(service_->get_model("orders"));
    EXPECT_EQ(json.at("fields").as_array()[0].at("model"), "customers");
    run(service_->delete_record("orders", "1"));
    run(service_->delete_record("customers", "1"));
    run(service_->delete_model("orders"));
    run(service_->delete_model("customers"));
    EXPECT_EQ(count("SELECT count(*) FROM sqlite_master WHERE name LIKE 'cdr_%'"), 0);
}

TEST_F(ServiceTest, ImportAllOrNothingReportsRowsAndWritesNothing) {
    make_model(kComplaints);
    auto r = import("complaints",
                    "\xEF\xBB\xBFtext,kind,amount\r\n"
                    "ok one,delivery,1\r\n"
                    "bad kind,unknown,2\r\n"
                    "\"multi\nline\",quality,x\r\n"
                    "ragged,delivery\r\n");
    EXPECT_TRUE(r.rolled_back);
    EXPECT_EQ(r.imported, 0u);
    EXPECT_EQ(r.rows, 4u);
    ASSERT_EQ(r.errors.size(), 3u);
    EXPECT_EQ(r.errors[0].row, 2u);
    EXPECT_EQ(r.errors[0].field, "kind");
    EXPECT_EQ(r.errors[1].row, 3u);
    EXPECT_EQ(r.errors[1].field, "amount");
    EXPECT_EQ(r.errors[2].row, 4u);
    EXPECT_EQ(r.errors[2].line, 6u);
    EXPECT_EQ(r.errors[2].field, "");
    EXPECT_TRUE(list({}).items.empty());
}

TEST_F(ServiceTest, ImportHeaderProblemsAreRefusedUpFront) {
    make_model(kComplaints);
    EXPECT_EQ(thrown([&] { import("complaints", "text,colour\nx,red\n"); }).code, "invalid_header");
    EXPECT_EQ(thrown([&] { import("complaints", "kind\ndelivery\n"); }).code, "invalid_header");  // text required
    EXPECT_EQ(thrown([&] { import("complaints", "text,text\nx,y\n"); }).code, "invalid_header");
    EXPECT_EQ(thrown([&] { import("complaints", ""); }).code, "empty_file");
    EXPECT_EQ(thrown([&] { import("complaints", std::string("\xFF\xFEt\0", 4)); }).code, "unsupported_encoding");
    ImportOptions options;
    options.mapping = {{"colour", ""}, {"Опис", "text"}};
    auto r = run(service_->import_csv("complaints", "Опис,colour\nx,red\n", options));
    EXPECT_EQ(r.imported, 1u);
}

TEST_F(ServiceTest, ImportSkipModeAndUpdatesById) {
    make_model(kComplaints);
    make_record("complaints", R"({"text": "existing", "email": "taken@example.com"})");
    auto r = import("complaints",
                    "Text,email\n"
                    "first,a@example.com\n"
                    ",b@example.com\n"
                    "dup,taken@example.com\n"
                    "dup in file,a@example.com\n"
                    "last,\n",
                    ImportMode::kSkipBadRows);
    EXPECT_FALSE(r.rolled_back);
    EXPECT_EQ(r.imported, 2u);
    EXPECT_EQ(r.failed, 3u);
    ASSERT_EQ(r.errors.size(), 3u);
    EXPECT_EQ(r.errors[0].row, 2u);
    EXPECT_EQ(r.errors[0].field, "text");
    EXPECT_EQ(r.errors[1].row, 3u);
    EXPECT_EQ(r.errors[1].field, "email");
    EXPECT_EQ(r.errors[2].row, 4u);
    EXPECT_EQ(list({{"limit", "100"}}).items.size(), 3u);

    auto u = import("complaints", "id,text\n1,changed\n999,nope\n", ImportMode::kSkipBadRows);
    EXPECT_EQ(u.updated, 1u);
    ASSERT_EQ(u.errors.size(), 1u);
    EXPECT_EQ(u.errors[0].field, "id");
    EXPECT_EQ(service_->get_record("complaints", "1").at("text"), "changed");
}

TEST_F(ServiceTest, ExportEscapesFormulasAndImportsBack) {
    make_model(kComplaints);
    make_record("complaints", R"j({"text": "=HYPERLINK(\"http://evil\")", "amount": 5, "kind": "delivery"})j");
    make_record("complaints", R"({"text": "line\nbreak, and comma", "extra": {"a": [1, "x"]}, "urgent": true})");
    std::string csv = export_all("complaints");
    auto first_line = csv.substr(0, csv.find("\r\n"));
    EXPECT_EQ(first_line, "id,text,kind,amount,email,urgent,day,at,extra,created_at,updated_at");
    EXPECT_NE(csv.find("\"'=HYPERLINK(\"\"http://evil\"\")\""), std::string::npos);
    make_model(R"({"name": "temps", "fields": [{"name": "t", "type": "number"}, {"name": "s", "type": "text"}]})");
    make_record("temps", R"({"t": -5, "s": "-5"})");
    EXPECT_NE(export_all("temps").find("\r\n1,-5,'-5,"), std::string::npos);  // numbers are never escaped
    EXPECT_NE(csv.find("\"{\"\"a\"\":[1,\"\"x\"\"]}\""), std::string::npos);

    // Export → import into a copy of the model gives the same values (formula escape undone).
    std::string spec = kComplaints;
    spec.replace(spec.find("\"complaints\""), 12, "\"copy\"");
    make_model(spec);
    ImportOptions options;
    options.mapping = {{"id", ""}};
    auto r = run(service_->import_csv("copy", csv, options));
    ASSERT_EQ(r.imported, 2u) << (r.errors.empty() ? "" : r.errors[0].message);
    auto a = service_->get_record("complaints", "1");
    auto b = service_->get_record("copy", "1");
    EXPECT_EQ(a.at("text"), b.at("text"));
    EXPECT_EQ(a.at("amount"), b.at("amount"));
    auto a2 = service_->get_record("complaints", "2");
    auto b2 = service_->get_record("copy", "2");
    EXPECT_EQ(a2.at("text"), b2.at("text"));
    EXPECT_EQ(a2.at("extra"), b2.at("extra"));
    EXPECT_EQ(a2.at("urgent"), b2.at("urgent"));

    // Filtered export.
    RecordQuery q;
    q.filters.push_back(Condition{"kind", FilterOp::kEq, {"delivery"}});
    std::string filtered = export_all("complaints", q);
    EXPECT_EQ(std::count(filtered.begin(), filtered.end(), '\n'), 2);
}

TEST_F(ServiceTest, AccessListsNarrowRights) {
    Model m = make_model(R"({"name": "secret", "access": {"view": ["supervisor"], "import": []}})");
    core::Principal op;
    op.roles = {"operator"};
    core::Principal sup;
    sup.roles = {"supervisor"};
    core::Principal admin;
    admin.roles = {"administrator"};
    EXPECT_FALSE(m.allows(Right::kView, op));
    EXPECT_TRUE(m.allows(Right::kView, sup));
    EXPECT_TRUE(m.allows(Right::kView, admin));
    EXPECT_TRUE(m.allows(Right::kImport, op));
    Model changed = run(service_->update_model("secret", boost::json::parse(R"({"access": {}, "label": "S"})").as_object()));
    EXPECT_TRUE(changed.allows(Right::kView, op));
    EXPECT_EQ(changed.label, "S");
    EXPECT_EQ(changed.version, 2);
}

}  // namespace
}  // namespace parley::customdata

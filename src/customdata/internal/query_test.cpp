#include "customdata/internal/query.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace parley::customdata::internal {
namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

Model sample() {
    Model m;
    m.id = "01HX0000000000000000000000";
    m.name = "complaints";
    Field text;
    text.id = "f1";
    text.name = "text";
    text.type = FieldType::kText;
    text.searchable = true;
    Field amount;
    amount.id = "f2";
    amount.name = "amount";
    amount.type = FieldType::kNumber;
    Field data;
    data.id = "f3";
    data.name = "data";
    data.type = FieldType::kJson;
    m.fields = {text, amount, data};
    return m;
}

int status_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const core::Error& e) {
        return e.status();
    }
    return 0;
}

TEST(RecordQuery, ParsesFiltersSortLimit) {
    auto q = parse_record_query({{"filter[amount][gte]", "10"}, {"filter[text]", "x"}, {"filter[amount][in]", "1,2,3"},
                                 {"sort", "-amount"}, {"limit", "20"}, {"q", "привіт"}, {"other", "ignored"}},
                                true);
    ASSERT_EQ(q.filters.size(), 3u);
    EXPECT_EQ(q.filters[0].op, FilterOp::kGte);
    EXPECT_EQ(q.filters[1].op, FilterOp::kEq);
    EXPECT_EQ(q.filters[2].values, (std::vector<std::string>{"1", "2", "3"}));
    EXPECT_EQ(q.sort, "-amount");
    EXPECT_EQ(q.limit, 20u);
    EXPECT_EQ(q.q, "привіт");
    EXPECT_EQ(status_of([] { parse_record_query({{"filter[amount][between]", "1"}}, true); }), 400);
    EXPECT_EQ(status_of([] { parse_record_query({{"filter[amount", "1"}}, true); }), 400);
    EXPECT_EQ(status_of([] { parse_record_query({{"filter[][eq]", "1"}}, true); }), 400);
    EXPECT_EQ(status_of([] { parse_record_query({{"limit", "0"}}, true); }), 400);
    EXPECT_EQ(status_of([] { parse_record_query({{"limit", "201"}}, true); }), 400);
    EXPECT_EQ(status_of([] { parse_record_query({{"q", std::string(201, 'a')}}, true); }), 400);
}

TEST(RecordQuery, BuildRejectsBadFieldsOpsAndValues) {
    Model m = sample();
    auto build = [&](Params p) { return build_query(m, parse_record_query(p, true), true); };
    EXPECT_EQ(status_of([&] { build({{"filter[nope][eq]", "1"}}); }), 400);
    EXPECT_EQ(status_of([&] { build({{"filter[amount][eq]", "abc"}}); }), 400);
    EXPECT_EQ(status_of([&] { build({{"filter[amount][contains]", "1"}}); }), 400);
    EXPECT_EQ(status_of([&] { build({{"filter[data][gt]", "1"}}); }), 400);
    EXPECT_EQ(status_of([&] { build({{"sort", "nope"}}); }), 400);
    EXPECT_EQ(status_of([&] { build({{"sort", "relevance"}}); }), 400);
    EXPECT_EQ(status_of([&] { build({{"cursor", "!!!"}}); }), 400);
    EXPECT_EQ(status_of([&] { build({{"cursor", "WzEsMiwzXQ"}}); }), 400);  // [1,2,3]
    auto ok = build({{"filter[amount][gte]", "10"}, {"filter[text][contains]", "50%_off"}, {"sort", "-amount"}});
    EXPECT_TRUE(ok.keyed);
    EXPECT_NE(ok.sql.find("ORDER BY t.f2 DESC, t.rid DESC"), std::string::npos);
    ASSERT_EQ(ok.params.size(), 3u);
    EXPECT_EQ(std::get<std::string>(ok.params[1]), "%50\\%\\_off%");
}

TEST(RecordQuery, CursorMustMatchTheSort) {
    Model m = sample();
    auto q = build_query(m, parse_record_query({{"sort", "amount"}}, true), true);
    store::Row row(std::vector<store::Value>{std::int64_t{7}, std::int64_t{0}, std::int64_t{0}, nullptr, nullptr,
                                             nullptr, std::int64_t{5}});
    std::string cursor = cursor_after(m, q, row);
    EXPECT_NO_THROW(build_query(m, parse_record_query({{"sort", "amount"}, {"cursor", cursor}}, true), true));
    EXPECT_EQ(status_of([&] { build_query(m, parse_record_query({{"sort", "-amount"}, {"cursor", cursor}}, true), true); }),
              400);
}

TEST(RecordQuery, FtsExpressionQuotesWordsAndPrefixesTheLast) {
    EXPECT_EQ(fts_expression("доставка пізно"), "\"доставка\" \"пізно\"*");
    EXPECT_EQ(fts_expression("say \"hi\" -- ??"), "\"say\" \"\"\"hi\"\"\"*");
    EXPECT_EQ(fts_expression("  ?? -- "), "");
    EXPECT_EQ(fts_expression("NEAR(a b) OR c"), "\"NEAR(a\" \"b)\" \"OR\" \"c\"");  // "c" is too short for a prefix
    EXPECT_EQ(fts_expression("пош"), "\"пош\"*");
}

TEST(RecordQuery, RecordIds) {
    EXPECT_EQ(parse_record_id("42"), 42);
    EXPECT_FALSE(parse_record_id("0"));
    EXPECT_FALSE(parse_record_id("-1"));
    EXPECT_FALSE(parse_record_id("+1"));
    EXPECT_FALSE(parse_record_id("1a"));
    EXPECT_FALSE(parse_record_id("99999999999999999999"));
}

}  // namespace
}  // namespace parley::customdata::internal

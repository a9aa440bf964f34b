// The client directory against a real SQLite store: keys, auto-merge, manual merge, client fields, filters,
// segments, topics, export, deletion, the registered_users__* actions.
#include <gtest/gtest.h>

#include <concepts>

#include <fmt/format.h>

#include <future>
#include <set>

#include "actions/actions.h"
#include "auth/auth.h"
#include "clients/clients.h"
#include "clients/internal/filter.h"
#include "clients/test_util.h"
#include "core/ids.h"

// Lets EXPECT_EQ compare a JSON value with a std::string id (found by argument-dependent lookup).
namespace boost::json {
template <typename S>
    requires std::same_as<S, std::string>
bool operator==(const value& v, const S& s) {
    return v.is_string() && v.get_string() == s;
}
}  // namespace boost::json

namespace parley::clients {
namespace {

using testing::ClientsTest;
using testing::thrown;

json::object obj(const std::string& text) { return json::parse(text).as_object(); }

std::vector<std::string> ids_of(const ClientPage& page) {
    std::vector<std::string> out;
    for (const auto& item : page.items) out.emplace_back(item.at("id").as_string());
    return out;
}

TEST(ClientKeys, PhoneAndEmailNormalise) {
    EXPECT_EQ(phone_key("+380 (50) 111-22-33"), "380501112233");
    EXPECT_EQ(phone_key("380501112233"), "380501112233");
    EXPECT_EQ(phone_key("0.50/111"), "050111");
    EXPECT_EQ(phone_key("1234"), "");                 // too short
    EXPECT_EQ(phone_key("1234567890123456"), "");     // too long
    EXPECT_EQ(phone_key("+380 50 abc"), "");          // letters
    EXPECT_EQ(phone_key(""), "");
    EXPECT_EQ(email_key("  Olena@Example.COM "), "olena@example.com");
    EXPECT_EQ(email_key("no-at-sign"), "");
    EXPECT_EQ(email_key("@example.com"), "");
    EXPECT_EQ(email_key("olena@"), "");
}

TEST(ClientTimes, FastIsoFormatMatchesCore) {
    std::vector<std::int64_t> samples = {0, 1, 999, 86'399'999, 951'782'400'000 /* 2000-02-29 */, 1'700'000'000'123,
                                         4'102'444'799'999, 253'402'300'799'999, 253'402'300'800'000, -1};
    for (std::int64_t ms = 0; ms < 253'402'300'800'000; ms += 7'777'777'777'777) samples.push_back(ms);
    for (std::int64_t ms : samples) {
        std::string out;
        internal::append_iso_time(out, ms);
        EXPECT_EQ(out, core::format_time(ms)) << ms;
    }
}

TEST(ClientMigrations, BackfillMatchesTheCode) {
    auto dir = std::filesystem::temp_directory_path() / ("parley-clients-mig-" + core::random_hex(8));
    std::filesystem::create_directories(dir);
    store::StoreOptions options;
    options.path = (dir / "parley.db").string();
    options.durable = false;
    const std::vector<std::string> phones = {"+380 (50) 111-22-33", "0501112233", "1234", "+38 050 abc", "", "12.34.56/7"};
    const std::vector<std::string> emails = {" A@B.c ", "x", "@b", "ok@site.ua", "", "Mixed@CASE.org"};
    {
        auto all = migrations();
        all.resize(1);  // the schema before issue 4
        auto store = store::Store::open_sqlite(options, all);
        store->write_sync([&](store::Tx& tx) {
            for (std::size_t i = 0; i < phones.size(); ++i) {
                tx.exec("INSERT INTO clients(id, phone, email, created_at, last_seen_at) VALUES (?, ?, ?, 1, 1)",
                        {std::to_string(i), phones[i], emails[i]});
            }
        });
        store->close();
    }
    auto store = store::Store::open_sqlite(options, migrations());
    store->read([&](store::Tx& tx) {
        for (std::size_t i = 0; i < phones.size(); ++i) {
            auto r = tx.query_one("SELECT phone_key, email_key FROM clients WHERE id = ?", {std::to_string(i)});
            EXPECT_EQ(r->text(0), phone_key(phones[i])) << phones[i];
            EXPECT_EQ(r->text(1), email_key(emails[i])) << emails[i];
        }
    });
    store->close();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

class DirectoryTest : public ClientsTest {};

TEST_F(DirectoryTest, CreateClientReturnsTheCardKnownByPhoneOrEmail) {
    Client a = make("Olena", "+380 50 111 22 33");
    Client same;
    store_->write_sync([&](store::Tx& tx) {
        same = create_client(tx, NewClient{"", "380501112233", "olena@example.com", "en", obj(R"({"city": "Lviv"})")},
                             clock_.now_ms());
    });
    EXPECT_EQ(same.id, a.id);
    EXPECT_EQ(same.name, "Olena");             // the existing value wins
    EXPECT_EQ(same.email, "olena@example.com");  // blanks are filled
    EXPECT_EQ(same.language, "uk");
    EXPECT_EQ(same.fields.at("city"), "Lviv");
    Client by_mail;
    store_->write_sync([&](store::Tx& tx) {
        by_mail = create_client(tx, NewClient{"O.", "", "OLENA@example.com", "", {}}, clock_.now_ms());
    });
    EXPECT_EQ(by_mail.id, a.id);
    EXPECT_EQ(count("SELECT count(*) FROM clients"), 1);
    Client other = make("Ivan");  // no phone, no e-mail: always a new card
    EXPECT_NE(other.id, a.id);
}

TEST_F(DirectoryTest, SharedContactMergesTheNewCardIntoTheKnownOne) {
    Client known = make("Olena", "+380501112233", "", obj(R"({"tier": "gold"})"));
    Client fresh = make("tg user", "", "", obj(R"({"tier": "new", "source": "telegram"})"));
    std::string dialog = make_dialog(fresh.id, "tg-channel");
    store_->write_sync([&](store::Tx& tx) { touch_client(tx, fresh.id, clock_.now_ms(), "+380 50 111 22 33"); });
    EXPECT_EQ(count("SELECT count(*) FROM clients"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM dialogs WHERE client_id = ?", {known.id}), 1);
    std::optional<Client> via_old;
    store_->read([&](store::Tx& tx) { via_old = find_client(tx, fresh.id); });
    ASSERT_TRUE(via_old);
    EXPECT_EQ(via_old->id, known.id);  // the absorbed id keeps resolving
    EXPECT_EQ(via_old->name, "Olena");
    EXPECT_EQ(via_old->fields.at("tier"), "gold");       // survivor's custom field wins
    EXPECT_EQ(via_old->fields.at("source"), "telegram");  // the other's are added
    EXPECT_EQ(count("SELECT count(*) FROM client_merges WHERE reason = 'auto_phone' AND absorbed_id = ?", {fresh.id}), 1);
    // touch_client through the absorbed id still works.
    clock_.advance_ms(60'000);
    store_->write_sync([&](store::Tx& tx) { touch_client(tx, fresh.id, clock_.now_ms()); });
    EXPECT_EQ(count("SELECT last_seen_at FROM clients WHERE id = ?", {known.id}), clock_.now_ms());
}

TEST_F(DirectoryTest, ManualMergeMovesEverythingAndIsIdempotent) {
    Client a = make("Olena", "", "", obj(R"({"tier": "gold"})"));
    Client b = make("", "", "olena@example.com", obj(R"({"tier": "silver", "city": "Lviv"})"));
    Client c = make("Olena K", "+380501112233");
    make_dialog(a.id, "web");
    make_dialog(b.id, "tg");
    make_dialog(b.id, "tg");
    make_dialog(c.id, "viber");
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("INSERT INTO ref_unique(k, client_id) VALUES ('ka', ?), ('kb', ?), ('kc', ?)", {a.id, b.id, c.id});
    });
    Topic news = run(directory_->create_topic(obj(R"({"name": "news"})")));
    run(directory_->set_subscription(b.id, "news", true));
    clock_.advance_ms(10);
    run(directory_->set_subscription(a.id, "news", false));  // the newer choice wins

    MergeOutcome out = run(directory_->merge(a.id, {b.id, c.id}, &admin_));
    EXPECT_EQ(out.merged, (std::vector<std::string>{b.id, c.id}));
    EXPECT_TRUE(out.already.empty());
    EXPECT_EQ(out.client.at("name"), "Olena");                 // the target's non-empty value wins
    EXPECT_EQ(out.client.at("email"), "olena@example.com");    // then the merged cards' in the order given
    EXPECT_EQ(out.client.at("phone"), "+380501112233");
    EXPECT_EQ(out.client.at("tier"), "gold");
    EXPECT_EQ(out.client.at("city"), "Lviv");
    EXPECT_EQ(out.moved.at("dialogs").as_int64(), 3);
    EXPECT_EQ(count("SELECT count(*) FROM dialogs"), 4);  // no dialog lost
    EXPECT_EQ(count("SELECT count(*) FROM dialogs WHERE client_id = ?", {a.id}), 4);
    EXPECT_EQ(count("SELECT count(*) FROM clients"), 1);
    // A unique client_id elsewhere: the conflicting rows stay on the absorbed ids (which resolve), none is lost.
    EXPECT_EQ(count("SELECT count(*) FROM ref_unique"), 3);
    EXPECT_EQ(count("SELECT count(*) FROM client_subscriptions WHERE client_id = ? AND status = 'unsubscribed'", {a.id}), 1);
    EXPECT_EQ(count("SELECT count(*) FROM client_subscriptions WHERE client_id <> ?", {a.id}), 0);
    EXPECT_EQ(count("SELECT count(*) FROM audit_log WHERE action = 'client.merge'"), 2);
    (void)news;

    // Again: nothing changes, both reported as already merged.
    MergeOutcome again = run(directory_->merge(a.id, {b.id, c.id}, &admin_));
    EXPECT_TRUE(again.merged.empty());
    EXPECT_EQ(again.already, (std::vector<std::string>{b.id, c.id}));
    EXPECT_EQ(count("SELECT count(*) FROM client_merges"), 2);
    EXPECT_EQ(count("SELECT count(*) FROM dialogs WHERE client_id = ?", {a.id}), 4);

    auto audit = directory_->merges(a.id, std::nullopt, 10);
    ASSERT_EQ(audit.items.size(), 2u);
    EXPECT_EQ(audit.items[0].at("reason"), "manual");
    EXPECT_EQ(audit.items[0].at("actor_email"), "admin@example.com");
    EXPECT_TRUE(audit.items[0].at("absorbed").is_object());  // the snapshot of the absorbed card
}

TEST_F(DirectoryTest, MergeChainsResolveAndBadMergesChangeNothing) {
    Client a = make("A"), b = make("B"), c = make("C");
    make_dialog(b.id, "web");
    EXPECT_EQ(thrown([&] { run(directory_->merge(a.id, {b.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, &admin_)); }).code,
              "client_not_found");
    EXPECT_EQ(count("SELECT count(*) FROM clients"), 3);  // nothing half-written
    EXPECT_EQ(count("SELECT count(*) FROM dialogs WHERE client_id = ?", {b.id}), 1);
    EXPECT_EQ(thrown([&] { run(directory_->merge(a.id, {a.id}, &admin_)); }).code, "merge_self");
    EXPECT_EQ(thrown([&] { run(directory_->merge(a.id, {}, &admin_)); }).status, 400);
    EXPECT_EQ(thrown([&] { run(directory_->merge("nobody", {b.id}, &admin_)); }).status, 404);

    run(directory_->merge(a.id, {b.id}, &admin_));
    run(directory_->merge(c.id, {a.id}, &admin_));
    auto card = directory_->card(b.id);
    ASSERT_TRUE(card);
    EXPECT_EQ(card->at("id"), c.id);  // b → a → c
    EXPECT_EQ(count("SELECT count(*) FROM dialogs WHERE client_id = ?", {c.id}), 1);
    // Merging b "again" into c: it is already part of c.
    auto again = run(directory_->merge(c.id, {b.id}, &admin_));
    EXPECT_EQ(again.already.size(), 1u);
}

TEST_F(DirectoryTest, ClientFieldsAreTypedAndValidated) {
    run(directory_->create_field(obj(R"({"name": "age", "type": "number", "indexed": true})")));
    run(directory_->create_field(obj(R"({"name": "vip", "type": "boolean"})")));
    run(directory_->create_field(obj(R"({"name": "birthday", "type": "date"})")));
    run(directory_->create_field(obj(R"({"name": "segment", "type": "select", "options": ["retail", "b2b"]})")));
    EXPECT_EQ(directory_->fields().size(), 4u);
    EXPECT_EQ(thrown([&] { run(directory_->create_field(obj(R"({"name": "age", "type": "text"})"))); }).code, "field_exists");
    EXPECT_EQ(thrown([&] { run(directory_->create_field(obj(R"({"name": "phone", "type": "text"})"))); }).code, "reserved_name");
    EXPECT_EQ(thrown([&] { run(directory_->create_field(obj(R"({"name": "Bad Name", "type": "text"})"))); }).code, "invalid_name");
    EXPECT_EQ(thrown([&] { run(directory_->create_field(obj(R"({"name": "x", "type": "colour"})"))); }).code, "invalid_type");
    EXPECT_EQ(thrown([&] { run(directory_->create_field(obj(R"({"name": "x", "type": "select"})"))); }).code, "invalid_options");
    EXPECT_EQ(thrown([&] { run(directory_->create_field(obj(R"({"name": "x", "type": "text", "extra": 1})"))); }).code, "unknown_field");

    Client c = make("Olena");
    auto bad = thrown([&] {
        run(directory_->update(c.id, obj(R"({"name": "New", "fields": {"age": "old", "vip": 1, "birthday": "2023-02-30",
                                                               "segment": "gov", "nope": 1}})"), &admin_));
    });
    EXPECT_EQ(bad.status, 422);
    EXPECT_EQ(bad.code, "invalid_client");
    EXPECT_EQ(bad.details.size(), 5u);  // every problem at once
    EXPECT_EQ(directory_->card(c.id)->at("name"), "Olena");  // nothing written
    auto card = run(directory_->update(c.id, obj(R"({"fields": {"age": 41, "vip": true, "birthday": "2000-02-29",
                                                                "segment": "b2b"}})"), &admin_));
    EXPECT_EQ(card.at("age").as_int64(), 41);
    EXPECT_EQ(card.at("fields").at("segment"), "b2b");
    card = run(directory_->update(c.id, obj(R"({"fields": {"vip": null}})"), &admin_));
    EXPECT_FALSE(card.at("fields").as_object().contains("vip"));
    // Removing a field keeps values unless purged.
    EXPECT_EQ(run(directory_->remove_field("age", false)), 0);
    EXPECT_EQ(directory_->card(c.id)->at("fields").at("age").as_int64(), 41);
    run(directory_->create_field(obj(R"({"name": "age", "type": "number"})")));
    EXPECT_EQ(run(directory_->remove_field("age", true)), 1);
    EXPECT_FALSE(directory_->card(c.id)->at("fields").as_object().contains("age"));
    EXPECT_EQ(thrown([&] { run(directory_->remove_field("age", true)); }).status, 404);
}

TEST_F(DirectoryTest, DefiningOrRetypingAFieldChecksAndConvertsExistingValues) {
    Client a = make("A", "", "", obj(R"({"score": "12", "level": "gold"})"));
    Client b = make("B", "", "", obj(R"({"score": "7.5"})"));
    run(directory_->create_field(obj(R"({"name": "score", "type": "number"})")));
    EXPECT_EQ(directory_->card(a.id)->at("score").as_int64(), 12);  // text from scenarios converted
    EXPECT_EQ(directory_->card(b.id)->at("score").as_double(), 7.5);
    Client c = make("C", "", "", obj(R"({"level": "platinum"})"));
    auto refused = thrown([&] {
        run(directory_->create_field(obj(R"({"name": "level", "type": "select", "options": ["gold", "silver"]})")));
    });
    EXPECT_EQ(refused.code, "incompatible_values");
    ASSERT_EQ(refused.details.size(), 1u);
    EXPECT_EQ(refused.details[0].at("client_id"), c.id);
    EXPECT_EQ(directory_->fields().size(), 1u);  // nothing changed
    run(directory_->create_field(obj(R"({"name": "level", "type": "text"})")));
    EXPECT_EQ(thrown([&] { run(directory_->update_field("level", obj(R"({"type": "select", "options": ["gold"]})"))); }).code,
              "incompatible_values");
    auto f = run(directory_->update_field("level", obj(R"({"type": "select", "options": ["gold", "platinum"], "label": "Level"})")));
    EXPECT_EQ(f.label, "Level");
    EXPECT_EQ(thrown([&] { run(directory_->update_field("level", obj(R"({"name": "lvl"})"))); }).code, "immutable_field");
}

TEST_F(DirectoryTest, FiltersSortsAndCursorsCoverEveryClientOnce) {
    run(directory_->create_field(obj(R"({"name": "age", "type": "number", "indexed": true})")));
    run(directory_->create_field(obj(R"({"name": "kind", "type": "select", "options": ["retail", "b2b"]})")));
    std::vector<Client> all;
    for (int i = 0; i < 25; ++i) {
        json::object f{{"age", 20 + i}, {"kind", i % 2 ? "b2b" : "retail"}};
        all.push_back(make(fmt::format("Client {:02}", i), fmt::format("+38050000{:04}", i), "", std::move(f)));
    }
    make_dialog(all[3].id, "tg-1");
    store_->write_sync([&](store::Tx& tx) { tx.exec("INSERT INTO channels(id, bot_id, kind) VALUES ('tg-1', 'bot', 'telegram')"); });

    auto query = [&](std::vector<Condition> conds, bool any = false, std::string q = "") {
        ClientFilter f;
        f.conditions = std::move(conds);
        f.any = any;
        f.q = std::move(q);
        return directory_->count(f);
    };
    EXPECT_EQ(query({{"age", FilterOp::kGte, 40}}), 5);
    EXPECT_EQ(query({{"age", FilterOp::kLt, "22"}}), 2);
    EXPECT_EQ(query({{"kind", FilterOp::kEq, "b2b"}}), 12);
    EXPECT_EQ(query({{"kind", FilterOp::kEq, "b2b"}, {"age", FilterOp::kGt, 40}}), 2);
    EXPECT_EQ(query({{"kind", FilterOp::kEq, "b2b"}, {"age", FilterOp::kGt, 40}}, true), 14);
    EXPECT_EQ(query({{"phone", FilterOp::kEq, "+380 50 000 0007"}}), 1);
    EXPECT_EQ(query({{"phone", FilterOp::kContains, "0000"}}), 25);
    EXPECT_EQ(query({{"name", FilterOp::kIn, json::array{"Client 01", "Client 02", "nobody"}}}), 2);
    EXPECT_EQ(query({{"name", FilterOp::kIn, "Client 01,Client 03"}}), 2);
    EXPECT_EQ(query({{"email", FilterOp::kExists, false}}), 25);
    EXPECT_EQ(query({{"channel", FilterOp::kEq, "telegram"}}), 1);
    EXPECT_EQ(query({{"channel", FilterOp::kEq, "tg-1"}}), 1);
    EXPECT_EQ(query({{"channel", FilterOp::kExists, false}}), 24);
    EXPECT_EQ(query({{"undefined_key", FilterOp::kEq, ""}}), 25);  // scenario-set fields compare as text
    EXPECT_EQ(query({}, false, "client 1"), 10);
    EXPECT_EQ(query({{"first_seen_at", FilterOp::kGte, json::value(core::format_time(all[20].created_at))}}), 5);
    EXPECT_EQ(query({{"last_seen_at", FilterOp::kLt, json::value(std::to_string(all[1].created_at))}}), 1);

    EXPECT_EQ(thrown([&] { query({{"age", FilterOp::kEq, "abc"}}); }).code, "invalid_filter");
    EXPECT_EQ(thrown([&] { query({{"kind", FilterOp::kEq, "gov"}}); }).code, "invalid_filter");
    EXPECT_EQ(thrown([&] { query({{"age", FilterOp::kContains, "1"}}); }).code, "invalid_filter");
    EXPECT_EQ(thrown([&] { query({{"first_seen_at", FilterOp::kGt, "yesterday"}}); }).code, "invalid_filter");
    EXPECT_EQ(thrown([&] { query({{"segment", FilterOp::kEq, "nope"}}); }).code, "unknown_segment");
    EXPECT_EQ(thrown([&] { query({{"bad-name", FilterOp::kEq, "x"}}); }).code, "invalid_filter");

    for (std::string sort : {"-id", "id", "name", "-name", "first_seen_at", "-last_seen_at"}) {
        ClientQuery q;
        q.sort = sort;
        q.limit = 7;
        std::vector<std::string> seen;
        for (int pages = 0; pages < 10; ++pages) {
            ClientPage page = directory_->list(q);
            for (auto& id : ids_of(page)) seen.push_back(id);
            if (!page.next_cursor) break;
            q.cursor = page.next_cursor;
        }
        EXPECT_EQ(seen.size(), 25u) << sort;
        std::set<std::string> unique(seen.begin(), seen.end());
        EXPECT_EQ(unique.size(), 25u) << sort;
    }
    ClientQuery by_name;
    by_name.sort = "name";
    by_name.limit = 3;
    auto first = directory_->list(by_name);
    EXPECT_EQ(first.items[0].at("name"), "Client 00");
    ClientQuery wrong = by_name;
    wrong.sort = "-name";
    wrong.cursor = first.next_cursor;
    EXPECT_EQ(thrown([&] { directory_->list(wrong); }).code, "invalid_cursor");
    ClientQuery bad_sort;
    bad_sort.sort = "phone";
    EXPECT_EQ(thrown([&] { directory_->list(bad_sort); }).code, "invalid_sort");
    // The list shows channels per card.
    ClientQuery one;
    one.filter.conditions.push_back({"id", FilterOp::kEq, json::value(all[3].id)});
    EXPECT_EQ(directory_->list(one).items[0].at("channels"), json::array{"telegram"});
}

TEST_F(DirectoryTest, IndexedFieldFiltersUseTheExpressionIndex) {
    run(directory_->create_field(obj(R"({"name": "age", "type": "number", "indexed": true})")));
    ClientFilter f;
    f.conditions.push_back({"age", FilterOp::kEq, 30});
    std::string plan;
    store_->read([&](store::Tx& tx) {
        auto where = internal::build_where(tx, f, internal::field_map(tx), internal::probe_schema(tx));
        for (const auto& r : tx.query("EXPLAIN QUERY PLAN SELECT c.id FROM clients c WHERE " + where.sql, where.params)) {
            plan += r.text(3) + "\n";
        }
    });
    EXPECT_NE(plan.find("client_field_age"), std::string::npos) << plan;
    // Matching by phone / e-mail (auto-merge, filters, file search) is an index lookup, never a scan.
    for (const char* sql : {"SELECT id, created_at FROM clients WHERE phone_key = ? ORDER BY created_at, id LIMIT 11",
                            "SELECT id, created_at FROM clients WHERE email_key = ? ORDER BY created_at, id LIMIT 11"}) {
        std::string p;
        store_->read([&](store::Tx& tx) {
            for (const auto& r : tx.query(std::string("EXPLAIN QUERY PLAN ") + sql, {std::string("x")})) p += r.text(3);
        });
        EXPECT_NE(p.find("USING INDEX"), std::string::npos) << p;
    }
}

TEST_F(DirectoryTest, SegmentsAreSavedFilters) {
    run(directory_->create_field(obj(R"({"name": "age", "type": "number"})")));
    Client young = make("Young", "", "", obj(R"({"age": 20})"));
    Client old = make("Old", "", "", obj(R"({"age": 70})"));
    Segment s = run(directory_->create_segment(
        obj(R"({"name": "seniors", "title": "Seniors", "filter": {"conditions": [{"field": "age", "op": "gte", "value": 65}]}})")));
    EXPECT_EQ(s.name, "seniors");
    ClientFilter members;
    members.conditions.push_back({"segment", FilterOp::kEq, "seniors"});
    EXPECT_EQ(directory_->count(members), 1);
    EXPECT_EQ(directory_->card(old.id)->at("segments"), json::array{"seniors"});
    EXPECT_EQ(directory_->card(young.id)->at("segments"), json::array{});
    members.conditions[0].op = FilterOp::kNe;
    EXPECT_EQ(directory_->count(members), 1);

    EXPECT_EQ(thrown([&] { run(directory_->create_segment(obj(R"({"name": "seniors", "filter": {}})"))); }).code, "segment_exists");
    EXPECT_EQ(thrown([&] {
                  run(directory_->create_segment(obj(
                      R"({"name": "nested", "filter": {"conditions": [{"field": "segment", "value": "seniors"}]}})")));
              }).code,
              "invalid_filter");
    EXPECT_EQ(thrown([&] {
                  run(directory_->create_segment(obj(
                      R"({"name": "bad", "filter": {"conditions": [{"field": "age", "op": "gte", "value": "x"}]}})")));
              }).code,
              "invalid_filter");
    EXPECT_EQ(thrown([&] { run(directory_->create_segment(obj(R"({"name": "Bad Name", "filter": {}})"))); }).code, "invalid_name");
    EXPECT_EQ(thrown([&] { run(directory_->create_segment(obj(R"({"name": "x"})"))); }).code, "missing_field");

    s = run(directory_->update_segment("seniors", obj(R"({"filter": {"conditions": [{"field": "age", "op": "lt", "value": 30}]}})")));
    EXPECT_EQ(directory_->count(s.filter), 1);
    members.conditions[0].op = FilterOp::kEq;
    EXPECT_EQ(ids_of(directory_->list(ClientQuery{members, "-id", std::nullopt, 50})), std::vector<std::string>{young.id});
    run(directory_->remove_segment("seniors"));
    EXPECT_EQ(thrown([&] { run(directory_->remove_segment("seniors")); }).status, 404);
    EXPECT_TRUE(directory_->segments().empty());
}

TEST_F(DirectoryTest, TopicsSubscriptionsAndAutoSubscribe) {
    run(directory_->create_topic(obj(R"({"name": "news", "title": "News", "auto_subscribe": true})")));
    run(directory_->create_topic(obj(R"({"name": "promo"})")));
    Client a = make("A");
    Client b = make("B");
    EXPECT_EQ(directory_->card(a.id)->at("subscriptions"), json::array{"news"});
    run(directory_->set_subscription(a.id, "promo", true));
    run(directory_->set_subscription(b.id, "news", false));
    EXPECT_EQ(ids_of(directory_->subscribers("news", std::nullopt, 50)), std::vector<std::string>{a.id});
    EXPECT_EQ(directory_->subscriptions(b.id).size(), 1u);
    EXPECT_EQ(directory_->subscriptions(b.id)[0].at("status"), "unsubscribed");
    ClientFilter f;
    f.conditions.push_back({"topic", FilterOp::kEq, "promo"});
    EXPECT_EQ(directory_->count(f), 1);
    run(directory_->update_topic("promo", obj(R"({"active": false})")));
    EXPECT_EQ(thrown([&] { run(directory_->set_subscription(b.id, "promo", true)); }).code, "topic_inactive");
    EXPECT_EQ(thrown([&] { run(directory_->set_subscription(b.id, "nope", true)); }).code, "topic_not_found");
    EXPECT_EQ(thrown([&] { run(directory_->set_subscription("nobody", "news", true)); }).code, "client_not_found");
    EXPECT_EQ(thrown([&] { run(directory_->create_topic(obj(R"({"name": "news"})"))); }).code, "topic_exists");
    run(directory_->remove_topic("promo"));
    EXPECT_EQ(count("SELECT count(*) FROM client_subscriptions"), 2);
    EXPECT_EQ(directory_->topics().size(), 1u);
}

TEST_F(DirectoryTest, ExportEscapesFormulasAndQuotes) {
    run(directory_->create_field(obj(R"({"name": "note", "type": "text"})")));
    run(directory_->create_field(obj(R"({"name": "balance", "type": "number"})")));
    Client evil = make("=HYPERLINK(\"http://x\",\"y\")", "+380501112233", "", obj(R"j({"note": "@SUM(A1)", "balance": -5})j"));
    Client plain = make("Ivan, Jr.", "", "ivan@example.com", obj(R"({"note": "-minus\nline"})"));
    make_dialog(plain.id, "web");
    std::string csv;
    directory_->export_csv({}, {}, [&](std::string_view chunk) { csv.append(chunk); });
    EXPECT_EQ(csv.substr(0, csv.find("\r\n")), "id,name,phone,email,language,channels,first_seen_at,last_seen_at,note,balance");
    EXPECT_NE(csv.find("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""), std::string::npos) << csv;
    EXPECT_NE(csv.find(",'+380501112233,"), std::string::npos) << csv;
    EXPECT_NE(csv.find(",'@SUM(A1),-5\r\n"), std::string::npos) << csv;  // numbers are never escaped
    EXPECT_NE(csv.find("\"Ivan, Jr.\""), std::string::npos);
    EXPECT_NE(csv.find("\"'-minus\nline\""), std::string::npos);
    EXPECT_NE(csv.find(",web,"), std::string::npos);
    ClientFilter only;
    only.conditions.push_back({"email", FilterOp::kEq, "IVAN@example.com"});
    std::string filtered = run(directory_->export_csv_text(only, ExportOptions{true, ';'}));
    EXPECT_EQ(filtered.substr(0, 3), "\xEF\xBB\xBF");
    EXPECT_EQ(std::count(filtered.begin(), filtered.end(), '\n'), 3);  // header, the row with a newline inside
    EXPECT_NE(filtered.find("id;name;phone"), std::string::npos);
    (void)evil;
}

TEST_F(DirectoryTest, FileSearchReportsMatchesAndEveryUnmatchedLine) {
    Client a = make("A", "+380501112233");
    Client b = make("B", "", "b@example.com");
    std::string file = "phone\n+380 50 111 22 33\n0000\n\"unterminated\n380671234567\n380501112233\n";
    FileSearchResult r = directory_->search_by_file(file, ListKind::kAuto);
    EXPECT_EQ(r.lines, 5u);
    ASSERT_EQ(r.matched.size(), 1u);
    EXPECT_EQ(r.matched[0].client_id, a.id);
    EXPECT_EQ(r.matched[0].line, 2u);
    ASSERT_EQ(r.unmatched.size(), 4u);
    EXPECT_EQ(r.unmatched[0].reason, "invalid_value");
    EXPECT_EQ(r.unmatched[0].line, 3u);
    EXPECT_EQ(r.unmatched[1].reason, "malformed_line");
    EXPECT_EQ(r.unmatched[2].reason, "not_found");
    EXPECT_EQ(r.unmatched[3].reason, "duplicate");
    FileSearchResult mixed = directory_->search_by_file(b.id + "\nB@EXAMPLE.com\n" + a.id + "\n", ListKind::kAuto);
    EXPECT_EQ(mixed.matched.size(), 3u);
    EXPECT_TRUE(mixed.unmatched.empty());
}

TEST_F(DirectoryTest, DeleteRemovesOrErasesAndPublishesEvents) {
    Client lonely = make("Lonely", "+380501112233");
    Client talker = make("Talker", "+380671112233", "t@example.com");
    make_dialog(talker.id, "web");
    auto before = hub_.last_id();
    auto gone = run(directory_->remove(lonely.id, &admin_));
    EXPECT_TRUE(gone.at("deleted").as_bool());
    EXPECT_FALSE(directory_->card(lonely.id));
    auto erased = run(directory_->remove(talker.id, &admin_));
    EXPECT_TRUE(erased.at("erased").as_bool());
    auto card = directory_->card(talker.id);
    ASSERT_TRUE(card);
    EXPECT_EQ(card->at("name"), "");
    EXPECT_EQ(card->at("phone"), "");
    EXPECT_EQ(hub_.last_id(), before + 2);
    EXPECT_EQ(count("SELECT count(*) FROM audit_log WHERE action IN ('client.delete', 'client.erase')"), 2);
    EXPECT_EQ(thrown([&] { run(directory_->remove(lonely.id, &admin_)); }).status, 404);
}

TEST_F(DirectoryTest, UpdateWithAKnownPhoneMergesAndAnnounces) {
    Client old = make("Olena", "+380501112233");
    Client fresh = make("New card");
    auto before = hub_.last_id();
    auto card = run(directory_->update(fresh.id, obj(R"({"phone": "+380 50 111 22 33"})"), &admin_));
    EXPECT_EQ(card.at("id"), old.id);
    EXPECT_EQ(card.at("merged"), json::array{fresh.id});
    EXPECT_EQ(hub_.last_id(), before + 2);  // client.merged + client.updated
    EXPECT_EQ(thrown([&] { run(directory_->update(old.id, obj(R"({"phone": "call me"})"), &admin_)); }).code, "invalid_phone");
    EXPECT_EQ(thrown([&] { run(directory_->update(old.id, obj(R"({"email": "nope"})"), &admin_)); }).code, "invalid_email");
    EXPECT_EQ(thrown([&] { run(directory_->update(old.id, obj(R"({"language": "English"})"), &admin_)); }).code,
              "invalid_language");
    EXPECT_EQ(thrown([&] { run(directory_->update(old.id, obj(R"({"colour": "red"})"), &admin_)); }).code, "unknown_field");
    EXPECT_EQ(thrown([&] { run(directory_->update("nobody", obj(R"({"name": "x"})"), &admin_)); }).status, 404);
}

TEST_F(DirectoryTest, ChannelsOfAClient) {
    Client c = make("Olena");
    std::string d1 = make_dialog(c.id, "tg-1");
    make_dialog(c.id, "preview");
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("INSERT INTO channels(id, bot_id, kind) VALUES ('tg-1', 'bot', 'telegram')");
        tx.exec("INSERT INTO channel_identities(channel_id, external_user, chat_id, dialog_id, created_at) "
                "VALUES ('tg-1', '42', '42', ?, 1)",
                {d1});
    });
    json::array channels = directory_->channels(c.id);
    ASSERT_EQ(channels.size(), 2u);
    bool saw_telegram = false;
    for (const auto& ch : channels) {
        if (ch.at("kind") == "telegram") {
            saw_telegram = true;
            EXPECT_EQ(ch.at("identities").as_array().size(), 1u);
            EXPECT_EQ(ch.at("identities").as_array()[0].at("external_user"), "42");
        }
    }
    EXPECT_TRUE(saw_telegram);
    EXPECT_EQ(directory_->card(c.id)->at("channels"), (json::array{"preview", "telegram"}));
    EXPECT_EQ(thrown([&] { directory_->channels("nobody"); }).status, 404);
}

actions::ActionResult run_action(actions::ActionRegistry& registry, actions::ActionCall call) {
    std::promise<actions::ActionResult> p;
    registry.run(std::move(call), [&](actions::ActionResult r) { p.set_value(std::move(r)); });
    return p.get_future().get();
}

TEST_F(DirectoryTest, RegisteredUsersActionsKeepWorkingWithTypedFieldsAndMerges) {
    actions::ActionRegistry registry;
    register_actions(registry, *store_, clock_);
    run(directory_->create_field(obj(R"({"name": "age", "type": "number"})")));
    run(directory_->create_segment(obj(R"({"name": "adults", "filter": {"conditions": [{"field": "age", "op": "gte", "value": 18}]}})")));
    Client known = make("Olena", "+380501112233");
    Client fresh = make("Widget visitor");

    actions::ActionCall set;
    set.action = "registered_users__set";
    set.client_id = fresh.id;
    set.params = obj(R"({"values": {"age": "30", "segment": "vip", "phone": "+380 50 111 22 33"}})");
    auto r = run_action(registry, set);
    EXPECT_EQ(r.event, "success") << (r.error ? r.error->message : "");
    EXPECT_EQ(r.state.at("segment"), "vip");
    auto card = directory_->card(fresh.id);  // merged into the card known by that phone
    ASSERT_TRUE(card);
    EXPECT_EQ(card->at("id"), known.id);
    EXPECT_EQ(card->at("age").as_int64(), 30);

    set.params = obj(R"({"values": {"age": "thirty"}})");
    r = run_action(registry, set);
    EXPECT_EQ(r.event, "error");
    EXPECT_EQ(r.error->code, "bad_params");
    EXPECT_EQ(directory_->card(known.id)->at("age").as_int64(), 30);

    actions::ActionCall get;
    get.action = "registered_users__get";
    get.client_id = fresh.id;
    get.params = obj(R"({"phone": "380501112233"})");
    r = run_action(registry, get);
    ASSERT_EQ(r.event, "found");
    EXPECT_EQ(r.state.at("client_id"), known.id);
    EXPECT_EQ(r.state.at("segment"), "vip");  // {{segment}}: the card's field, as before
    EXPECT_EQ(r.state.at("segments"), json::array{"adults"});
    get.params = obj(R"({"save_as": "card"})");
    r = run_action(registry, get);  // the dialog's own (absorbed) client id resolves
    ASSERT_EQ(r.event, "found");
    EXPECT_EQ(r.state.at("card").at("name"), "Olena");
    get.params = obj(R"({"email": "nobody@example.com"})");
    EXPECT_EQ(run_action(registry, get).event, "not_found");
}

}  // namespace
}  // namespace parley::clients

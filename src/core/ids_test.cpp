#include <chrono>
#include "core/ids.h"

#include <gtest/gtest.h>

#include <set>

namespace parley::core {
namespace {

TEST(Ids, UniqueSortableAndWellFormed) {
    std::set<std::string> seen;
    std::string previous;
    for (int i = 0; i < 10000; ++i) {
        auto id = new_id();
        EXPECT_TRUE(looks_like_id(id)) << id;
        EXPECT_TRUE(seen.insert(id).second);
        EXPECT_GE(id.substr(0, 10), previous.substr(0, std::min<std::size_t>(10, previous.size())));
        previous = id;
    }
    EXPECT_FALSE(looks_like_id("abc"));
    EXPECT_FALSE(looks_like_id("0123456789ABCDEFGHJKMNPQRU"));  // U is not Crockford
}

TEST(Ids, RandomHex) {
    auto a = random_hex(32);
    EXPECT_EQ(a.size(), 64u);
    EXPECT_NE(a, random_hex(32));
}

}  // namespace
}  // namespace parley::core

namespace parley::core {
TEST(Ids, IdsMadeByOneThreadSortInOrder) {
    std::string last = new_id();
    for (int i = 0; i < 10000; ++i) {
        std::string id = new_id();
        ASSERT_LT(last, id);
        last = id;
    }
}
}  // namespace parley::core

namespace parley::core {
TEST(Ids, FloorSortsBeforeIdsOfThatTime) {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::string id = new_id();
    EXPECT_LE(id_floor(now - 1), id);
    EXPECT_GT(id_floor(now + 5000), id);
}
}  // namespace parley::core

#include "knowledge/internal/chunker.h"

#include <gtest/gtest.h>

#include "knowledge/internal/analyzer.h"

namespace parley::knowledge::internal {
namespace {

Block heading(int level, std::string text) { return Block{Block::Kind::kHeading, level, std::move(text)}; }
Block para(std::string text) { return Block{Block::Kind::kParagraph, 0, std::move(text)}; }
Block row(std::string text) { return Block{Block::Kind::kRow, 0, std::move(text)}; }

std::string sentences(int n, const std::string& word) {
    std::string out;
    for (int i = 0; i < n; ++i) out += "Sentence " + std::to_string(i) + " about " + word + " goes here. ";
    return out;
}

TEST(Chunker, SplitsSentences) {
    auto s = split_sentences("One. Two! Three?\nFour… five 3.5 kg.");
    ASSERT_EQ(s.size(), 5u);
    EXPECT_EQ(s[0], "One.");
    EXPECT_EQ(s[2], "Three?");
    EXPECT_EQ(s[3], "Four…");
    EXPECT_EQ(s[4], "five 3.5 kg.");
}

TEST(Chunker, HeadingsStartChunksAndNameTheSection) {
    ChunkSettings cs;
    auto chunks = chunk_blocks({heading(1, "Delivery"), para("Short text."), heading(2, "Cost"), para("It costs 70.")}, cs);
    ASSERT_EQ(chunks.size(), 2u);
    EXPECT_EQ(chunks[0].heading, "Delivery");
    EXPECT_EQ(chunks[0].text, "Short text.");
    EXPECT_EQ(chunks[1].heading, "Delivery › Cost");
    EXPECT_EQ(chunks[1].text, "It costs 70.");
    cs.split_on_headings = false;
    chunks = chunk_blocks({heading(1, "Delivery"), para("Short text."), heading(2, "Cost"), para("It costs 70.")}, cs);
    ASSERT_EQ(chunks.size(), 1u);
    EXPECT_NE(chunks[0].text.find("Cost"), std::string::npos);
}

TEST(Chunker, RespectsSizeAndOverlaps) {
    ChunkSettings cs;
    cs.size = 200;
    cs.overlap = 60;
    auto chunks = chunk_blocks({para(sentences(20, "delivery"))}, cs);
    ASSERT_GT(chunks.size(), 3u);
    for (const auto& c : chunks) EXPECT_LE(char_count(c.text), 200u) << c.text;
    // The start of each later chunk repeats the end of the previous one.
    for (std::size_t i = 1; i < chunks.size(); ++i) {
        auto first = split_sentences(chunks[i].text).front();
        EXPECT_NE(chunks[i - 1].text.find(first), std::string::npos) << i;
    }
    cs.overlap = 0;
    auto plain = chunk_blocks({para(sentences(20, "delivery"))}, cs);
    EXPECT_LE(plain.size(), chunks.size());
}

TEST(Chunker, PacksParagraphsAndSplitsHugeWords) {
    ChunkSettings cs;
    cs.size = 100;
    cs.overlap = 0;
    auto chunks = chunk_blocks({para("First."), para("Second."), para(std::string(250, 'x'))}, cs);
    ASSERT_EQ(chunks.size(), 4u);
    EXPECT_EQ(chunks[0].text, "First.\n\nSecond.");
    EXPECT_EQ(char_count(chunks[1].text), 100u);
}

TEST(Chunker, RowsAreChunksOfTheirOwn) {
    ChunkSettings cs;
    auto chunks = chunk_blocks({para("Intro."), row("A: 1\nB: 2"), row("A: 3\nB: 4")}, cs);
    ASSERT_EQ(chunks.size(), 3u);
    EXPECT_EQ(chunks[1].text, "A: 1\nB: 2");
}

TEST(Chunker, SentenceStreamWithoutParagraphs) {
    ChunkSettings cs;
    cs.split_on_paragraphs = false;
    auto chunks = chunk_blocks({para("One. Two."), para("Three.")}, cs);
    ASSERT_EQ(chunks.size(), 1u);
    EXPECT_EQ(chunks[0].text, "One. Two. Three.");
}

}  // namespace
}  // namespace parley::knowledge::internal

namespace parley::knowledge::internal {
namespace {

TEST(Chunker, OverlapThatDoesNotFitIsDropped) {
    ChunkSettings cs;
    cs.size = 100;
    cs.overlap = 40;
    std::vector<Block> blocks;
    for (int i = 0; i < 6; ++i) blocks.push_back(para(std::string(90, static_cast<char>('a' + i)) + "."));
    for (const auto& c : chunk_blocks(blocks, cs)) EXPECT_LE(char_count(c.text), 100u) << c.text;
}

}  // namespace
}  // namespace parley::knowledge::internal

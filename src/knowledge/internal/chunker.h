/// Splits extracted blocks into retrieval chunks by the knowledge base's settings: target size with overlap,
/// new chunks at headings, breaks at paragraph then sentence then word boundaries; CSV rows stay one each.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "knowledge/internal/extract.h"

namespace parley::knowledge::internal {

struct ChunkSettings {
    std::size_t size = 1000;      ///< target characters (code points) of a chunk's text
    std::size_t overlap = 150;    ///< characters repeated from the end of the previous chunk of the same section
    bool split_on_headings = true;    ///< a heading starts a new chunk (and names the chunk's section)
    bool split_on_paragraphs = true;  ///< pack whole paragraphs; otherwise a stream of sentences
};

struct Chunk {
    std::string heading;  ///< the section path ("Delivery › Courier"), may be empty
    std::string text;
};

std::vector<Chunk> chunk_blocks(const std::vector<Block>& blocks, const ChunkSettings& settings);

/// Sentences of a text: ends at . ! ? … followed by white space, and at line breaks. Views into `text`,
/// trimmed, never empty.
std::vector<std::string_view> split_sentences(std::string_view text);

}  // namespace parley::knowledge::internal

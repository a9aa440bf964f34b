#include "knowledge/internal/chunker.h"

#include <algorithm>

#include "knowledge/internal/analyzer.h"

namespace parley::knowledge::internal {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

/// Pieces of at most `size` characters, cut at spaces where possible.
std::vector<std::string_view> split_words(std::string_view text, std::size_t size) {
    std::vector<std::string_view> out;
    while (char_count(text) > size) {
        std::size_t limit = byte_offset_of_char(text, size);
        std::size_t cut = text.rfind(' ', limit);
        if (cut == std::string_view::npos || cut < limit / 2) cut = limit;
        auto piece = trim(text.substr(0, cut));
        if (!piece.empty()) out.push_back(piece);
        text = trim(text.substr(cut));
    }
    if (!text.empty()) out.push_back(text);
    return out;
}

class Packer {
public:
    Packer(const ChunkSettings& settings, std::vector<Chunk>& out) : settings_(settings), out_(out) {}

    void set_heading(std::string heading) {
        emit(false);
        heading_ = std::move(heading);
    }

    /// Adds one unit (a paragraph or a piece of one) with `separator` before it when the chunk is not empty.
    void add(std::string_view unit, std::string_view separator) {
        std::size_t unit_chars = char_count(unit);
        if (unit_chars > settings_.size) {
            for (auto sentence : split_sentences(unit)) {
                for (auto piece : split_words(sentence, settings_.size)) add(piece, " ");
            }
            return;
        }
        if (!text_.empty() && chars_ + char_count(separator) + unit_chars > settings_.size) {
            emit(true);
            if (chars_ + char_count(separator) + unit_chars > settings_.size) {  // the overlap does not fit
                text_.clear();
                chars_ = 0;
            }
        }
        if (!text_.empty()) {
            text_ += separator;
            chars_ += char_count(separator);
        }
        text_ += unit;
        chars_ += unit_chars;
        fresh_ = false;
    }

    /// A unit that is a chunk of its own (a CSV row).
    void add_alone(std::string_view unit) {
        emit(false);
        add(unit, " ");
        emit(false);
    }

    /// Ends the current chunk; with `carry`, its tail opens the next one.
    void emit(bool carry) {
        if (text_.empty() || fresh_) {  // nothing new since the last chunk: drop the overlap too
            text_.clear();
            chars_ = 0;
            fresh_ = true;
            return;
        }
        out_.push_back(Chunk{heading_, text_});
        std::string tail = carry ? overlap_tail(text_) : std::string();
        text_ = tail;
        chars_ = char_count(tail);
        fresh_ = true;  // only overlap so far: not a chunk by itself
    }

private:
    std::string overlap_tail(std::string_view text) const {
        if (settings_.overlap == 0) return {};
        auto sentences = split_sentences(text);
        std::size_t total = 0;
        std::size_t first = sentences.size();
        while (first > 0) {
            std::size_t n = char_count(sentences[first - 1]);
            if (total + n > settings_.overlap) break;
            total += n + 1;
            --first;
        }
        if (first < sentences.size()) {
            auto begin = static_cast<std::size_t>(sentences[first].data() - text.data());
            return std::string(trim(text.substr(begin)));
        }
        // The last sentence alone is longer than the overlap: its last words.
        std::size_t chars = char_count(text);
        std::size_t start = byte_offset_of_char(text, chars - std::min(chars, settings_.overlap));
        auto space = text.find(' ', start);
        if (space == std::string_view::npos) return {};
        return std::string(trim(text.substr(space)));
    }

    const ChunkSettings& settings_;
    std::vector<Chunk>& out_;
    std::string heading_;
    std::string text_;
    std::size_t chars_ = 0;
    bool fresh_ = true;
};

}  // namespace

std::vector<std::string_view> split_sentences(std::string_view text) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    auto push = [&](std::size_t end) {
        auto s = trim(text.substr(start, end - start));
        if (!s.empty()) out.push_back(s);
        start = end;
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '\n') {
            push(i);
            continue;
        }
        bool end = c == '.' || c == '!' || c == '?';
        std::size_t after = i + 1;
        if (!end && static_cast<unsigned char>(c) == 0xE2 && i + 2 < text.size() &&
            static_cast<unsigned char>(text[i + 1]) == 0x80 && static_cast<unsigned char>(text[i + 2]) == 0xA6) {
            end = true;  // …
            after = i + 3;
        }
        if (!end) continue;
        while (after < text.size() && (text[after] == '.' || text[after] == '!' || text[after] == '?' ||
                                       text[after] == '"' || text[after] == ')')) {
            ++after;
        }
        if (after >= text.size() || text[after] == ' ' || text[after] == '\n' || text[after] == '\t') {
            push(after);
            i = after - 1;
        }
    }
    push(text.size());
    return out;
}

std::vector<Chunk> chunk_blocks(const std::vector<Block>& blocks, const ChunkSettings& settings) {
    std::vector<Chunk> out;
    Packer packer(settings, out);
    std::vector<std::string> path;  // headings by level
    for (const auto& block : blocks) {
        switch (block.kind) {
            case Block::Kind::kHeading: {
                if (!settings.split_on_headings) {
                    packer.add(block.text, settings.split_on_paragraphs ? "\n\n" : " ");
                    break;
                }
                auto level = static_cast<std::size_t>(std::max(block.level, 1));
                path.resize(level - 1);
                path.push_back(block.text);
                std::string heading;
                std::size_t shown = 0;
                for (std::size_t i = path.size(); i > 0 && shown < 2; --i) {
                    if (path[i - 1].empty()) continue;
                    heading = heading.empty() ? path[i - 1] : path[i - 1] + " › " + heading;
                    ++shown;
                }
                packer.set_heading(std::move(heading));
                break;
            }
            case Block::Kind::kRow: packer.add_alone(block.text); break;
            case Block::Kind::kParagraph:
                if (settings.split_on_paragraphs) {
                    packer.add(block.text, "\n\n");
                } else {
                    for (auto sentence : split_sentences(block.text)) packer.add(sentence, " ");
                }
                break;
        }
    }
    packer.emit(false);
    return out;
}

}  // namespace parley::knowledge::internal

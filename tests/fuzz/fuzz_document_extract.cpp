// Fuzz target: format detection and the text extractors of knowledge documents (plain text, Markdown, HTML,
// CSV, DOCX), then chunking and analysis of whatever they produce. The first byte picks the declared format;
// the rest is the file. PDF (poppler, a third-party parser) is left out: see src/knowledge/README.md.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "knowledge/internal/analyzer.h"
#include "knowledge/internal/chunker.h"
#include "knowledge/internal/extract.h"

using namespace parley::knowledge::internal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    static const Format formats[] = {Format::kText, Format::kMarkdown, Format::kHtml, Format::kCsv, Format::kDocx};
    static const char* names[] = {"a.txt", "a.md", "a.html", "a.csv", "a.docx"};
    std::size_t pick = data[0] % 5;
    std::string_view content(reinterpret_cast<const char*>(data + 1), size - 1);
    Detection d = detect_format(content, names[pick], "");
    Format format = formats[pick];
    if (d.error.empty() && d.format != Format::kPdf) format = d.format;
    if (format == Format::kPdf) return 0;
    try {
        auto blocks = extract(format, content);
        for (const auto& b : blocks) {
            if (!valid_utf8(b.text) && format != Format::kDocx) __builtin_trap();
        }
        ChunkSettings settings;
        settings.size = 100 + (data[0] >> 3) * 20;
        settings.overlap = (data[0] >> 3) * 5;
        auto chunks = chunk_blocks(blocks, settings);
        for (const auto& c : chunks) {
            if (c.text.empty()) __builtin_trap();
            if (char_count(c.text) > settings.size) __builtin_trap();
            (void)analyze(c.text);
        }
    } catch (const ExtractError&) {
    }
    return 0;
}

#include "knowledge/internal/extract.h"

#include <fmt/format.h>
#include <gumbo.h>
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page.h>
#include <unicode/ucnv.h>
#include <zip.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <pugixml.hpp>

#include "knowledge/internal/analyzer.h"

namespace parley::knowledge::internal {

namespace {

std::string lower_ascii(std::string_view s) {
    std::string out(s);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n' ||
                          s.front() == '\f' || s.front() == '\v')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n' ||
                          s.back() == '\f' || s.back() == '\v')) {
        s.remove_suffix(1);
    }
    return s;
}

/// Collapses runs of spaces/tabs to one space, trims each line, drops empty lines at the ends.
std::string collapse_spaces(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    bool space = false;
    for (char c : s) {
        if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            space = true;
            continue;
        }
        if (c == '\n') {
            while (!out.empty() && out.back() == ' ') out.pop_back();
            if (!out.empty() && out.back() != '\n') out.push_back('\n');
            space = false;
            continue;
        }
        if (space && !out.empty() && out.back() != '\n') out.push_back(' ');
        space = false;
        out.push_back(c);
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
    return out;
}

bool ends_sentence(std::string_view line) {
    line = trim(line);
    if (line.empty()) return true;
    char c = line.back();
    return c == '.' || c == '!' || c == '?' || c == ':' || c == ';' || ends_with(line, "…");
}

bool starts_lower(std::string_view line) {
    line = trim(line);
    if (line.empty()) return false;
    unsigned char c = static_cast<unsigned char>(line[0]);
    if (c >= 'a' && c <= 'z') return true;
    // Cyrillic lower case а..я (U+0430..U+044F: D0 B0..D1 8F) and і ї є ґ (D1 96, D1 97, D1 94, D2 91).
    if (line.size() >= 2) {
        unsigned char d = static_cast<unsigned char>(line[1]);
        if (c == 0xD0 && d >= 0xB0) return true;
        if (c == 0xD1 && (d <= 0x8F || d == 0x96 || d == 0x97 || d == 0x94)) return true;
        if (c == 0xD2 && d == 0x91) return true;
    }
    return false;
}

bool is_list_item(std::string_view line) {
    line = trim(line);
    if (line.size() >= 2 && (line[0] == '-' || line[0] == '*' || line[0] == '+') && line[1] == ' ') return true;
    if (line.rfind("• ", 0) == 0) return true;
    std::size_t i = 0;
    while (i < line.size() && i < 4 && line[i] >= '0' && line[i] <= '9') ++i;
    return i > 0 && i + 1 < line.size() && (line[i] == '.' || line[i] == ')') && line[i + 1] == ' ';
}

/// Joins hard-wrapped lines of one paragraph: a line that does not end a sentence followed by one that starts
/// in lower case continues it (a hyphen at the break is removed); other breaks stay newlines.
std::string join_wrapped(const std::vector<std::string_view>& lines) {
    std::string out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        std::string_view line = trim(lines[i]);
        if (line.empty()) continue;
        if (!out.empty()) {
            bool continues = !ends_sentence(out) && starts_lower(line) && !is_list_item(line);
            if (continues && out.back() == '-' && out.size() >= 2 && out[out.size() - 2] != ' ') {
                out.pop_back();
            } else {
                out.push_back(continues ? ' ' : '\n');
            }
        }
        out += line;
    }
    return collapse_spaces(out);
}

struct BlockSink {
    std::vector<Block> blocks;
    std::size_t bytes = 0;

    void add(Block::Kind kind, int level, std::string text) {
        if (trim(text).empty()) return;
        bytes += text.size();
        if (bytes > kMaxExtractedBytes) {
            throw ExtractError(fmt::format("the document has more than {} MB of text", kMaxExtractedBytes >> 20));
        }
        blocks.push_back(Block{kind, level, std::move(text)});
    }
    void paragraph(std::string text) { add(Block::Kind::kParagraph, 0, std::move(text)); }
    void heading(int level, std::string text) { add(Block::Kind::kHeading, std::clamp(level, 1, 6), std::move(text)); }
};

std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    std::size_t start = 0;
    while (start <= text.size()) {
        auto nl = text.find('\n', start);
        if (nl == std::string_view::npos) {
            lines.push_back(text.substr(start));
            break;
        }
        lines.push_back(text.substr(start, nl - start));
        start = nl + 1;
    }
    return lines;
}

bool looks_like_heading(std::string_view line) {
    line = trim(line);
    if (line.empty() || char_count(line) > 80) return false;
    char c = line.back();
    if (c == '.' || c == ',' || c == ';' || c == '?' || c == '!') return false;
    return !is_list_item(line);
}

// --- plain text -------------------------------------------------------------------------------------------

void extract_text(std::string_view text, BlockSink& sink) {
    auto lines = split_lines(text);
    std::vector<std::string_view> para;
    std::vector<std::vector<std::string_view>> paragraphs;
    for (auto line : lines) {
        if (trim(line).empty()) {
            if (!para.empty()) paragraphs.push_back(std::move(para));
            para.clear();
        } else {
            para.push_back(line);
        }
    }
    if (!para.empty()) paragraphs.push_back(std::move(para));
    for (std::size_t i = 0; i < paragraphs.size(); ++i) {
        const auto& p = paragraphs[i];
        // A lone short line without closing punctuation before more text reads as a section title.
        if (p.size() == 1 && i + 1 < paragraphs.size() && looks_like_heading(p[0])) {
            sink.heading(2, std::string(trim(p[0])));
        } else {
            sink.paragraph(join_wrapped(p));
        }
    }
}

// --- Markdown -----------------------------------------------------------------------------------------------

/// Inline Markdown to text: links and images keep their text, emphasis and code marks and inline HTML tags go.
std::string md_inline(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        char c = s[i];
        if (c == '!' && i + 1 < s.size() && s[i + 1] == '[') {
            ++i;
            continue;
        }
        if (c == '[') {
            auto close = s.find(']', i + 1);
            if (close != std::string_view::npos && close + 1 < s.size() && s[close + 1] == '(') {
                auto paren = s.find(')', close + 2);
                if (paren != std::string_view::npos) {
                    out += md_inline(s.substr(i + 1, close - i - 1));
                    i = paren + 1;
                    continue;
                }
            }
        }
        if (c == '*' || c == '`' || (c == '_' && i + 1 < s.size() && s[i + 1] == '_')) {
            ++i;
            if (c == '_') ++i;
            continue;
        }
        if (c == '<') {
            auto close = s.find('>', i + 1);
            if (close != std::string_view::npos && close - i < 200 && i + 1 < s.size() &&
                (std::isalpha(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '/')) {
                i = close + 1;
                continue;
            }
        }
        if (c == '\\' && i + 1 < s.size() && std::ispunct(static_cast<unsigned char>(s[i + 1]))) {
            out.push_back(s[i + 1]);
            i += 2;
            continue;
        }
        out.push_back(c);
        ++i;
    }
    return out;
}

void extract_markdown(std::string_view text, BlockSink& sink) {
    auto lines = split_lines(text);
    std::vector<std::string_view> para;
    auto flush = [&] {
        if (!para.empty()) {
            std::vector<std::string> cleaned;
            for (auto l : para) cleaned.push_back(md_inline(l));
            std::vector<std::string_view> views(cleaned.begin(), cleaned.end());
            sink.paragraph(join_wrapped(views));
        }
        para.clear();
    };
    bool fenced = false;
    std::string code;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        std::string_view raw = lines[i];
        std::string_view line = trim(raw);
        if (line.rfind("```", 0) == 0 || line.rfind("~~~", 0) == 0) {
            if (fenced) {
                sink.paragraph(std::string(trim(code)));
                code.clear();
            } else {
                flush();
            }
            fenced = !fenced;
            continue;
        }
        if (fenced) {
            code.append(raw).push_back('\n');
            continue;
        }
        if (line.empty()) {
            flush();
            continue;
        }
        if (line[0] == '#') {
            std::size_t level = 0;
            while (level < line.size() && line[level] == '#') ++level;
            if (level <= 6 && (level == line.size() || line[level] == ' ')) {
                flush();
                std::string_view title = trim(line.substr(level));
                while (!title.empty() && title.back() == '#') title.remove_suffix(1);
                sink.heading(static_cast<int>(level), collapse_spaces(md_inline(trim(title))));
                continue;
            }
        }
        // Setext headings: a text line underlined with === or ---.
        if (para.size() == 1 && (line.find_first_not_of('=') == std::string_view::npos ||
                                 (line.size() >= 3 && line.find_first_not_of('-') == std::string_view::npos))) {
            sink.heading(line[0] == '=' ? 1 : 2, collapse_spaces(md_inline(trim(para[0]))));
            para.clear();
            continue;
        }
        if (line.find_first_not_of("-*_ ") == std::string_view::npos && line.size() >= 3) {
            flush();  // thematic break
            continue;
        }
        if (line[0] == '|') {
            // Table row: cells joined with " | "; the |---|---| separator row is skipped.
            if (line.find_first_not_of("|-: ") == std::string_view::npos) continue;
            std::string row;
            std::size_t start = 1;
            while (start < line.size()) {
                auto bar = line.find('|', start);
                auto cell = trim(line.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start));
                if (!cell.empty()) {
                    if (!row.empty()) row += " | ";
                    row += md_inline(cell);
                }
                if (bar == std::string_view::npos) break;
                start = bar + 1;
            }
            flush();
            sink.paragraph(collapse_spaces(row));
            continue;
        }
        if (line[0] == '>') line = trim(line.substr(1));
        if (is_list_item(line)) {
            std::size_t skip = line.find(' ');
            if (line[0] == '-' || line[0] == '*' || line[0] == '+') {
                line = trim(line.substr(skip));
            }
        }
        para.push_back(line);
    }
    if (fenced && !code.empty()) sink.paragraph(std::string(trim(code)));
    flush();
}

// --- CSV ----------------------------------------------------------------------------------------------------

char guess_delimiter(std::string_view text) {
    auto header = text.substr(0, std::min(text.find('\n'), std::size_t{4096}));
    std::size_t commas = 0, semis = 0, tabs = 0;
    bool quoted = false;
    for (char c : header) {
        if (c == '"') quoted = !quoted;
        if (quoted) continue;
        commas += c == ',';
        semis += c == ';';
        tabs += c == '\t';
    }
    if (tabs > commas && tabs > semis) return '\t';
    if (semis > commas) return ';';
    return ',';
}

void extract_csv(std::string_view text, BlockSink& sink) {
    auto rows = parse_csv(text);
    if (rows.empty()) return;
    const auto& header = rows.front();
    bool has_header = true;
    for (const auto& h : header) has_header &= !trim(h).empty();
    for (std::size_t r = has_header ? 1 : 0; r < rows.size(); ++r) {
        std::string passage;
        for (std::size_t c = 0; c < rows[r].size(); ++c) {
            std::string value = collapse_spaces(rows[r][c]);
            if (value.empty()) continue;
            if (!passage.empty()) passage.push_back('\n');
            if (has_header && c < header.size()) {
                passage += collapse_spaces(header[c]);
                passage += ": ";
            }
            passage += value;
        }
        if (!passage.empty()) sink.add(Block::Kind::kRow, 0, std::move(passage));
    }
}

// --- HTML ---------------------------------------------------------------------------------------------------

bool boilerplate_word(std::string_view value) {
    static const char* words[] = {"nav", "navbar", "navigation", "menu", "footer", "header", "sidebar",
                                  "breadcrumb", "breadcrumbs", "cookie", "cookies", "cookie-banner", "advert",
                                  "ads", "social", "share", "skip-link", "site-header", "site-footer", "topbar"};
    std::string lower = lower_ascii(value);
    std::size_t start = 0;
    while (start < lower.size()) {
        auto space = lower.find_first_of(" \t\n", start);
        std::string_view word(lower.data() + start, (space == std::string::npos ? lower.size() : space) - start);
        for (const char* w : words) {
            if (word == w) return true;
        }
        if (space == std::string::npos) break;
        start = space + 1;
    }
    return false;
}

bool skipped_element(const GumboElement& e) {
    switch (e.tag) {
        case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE: case GUMBO_TAG_NOSCRIPT: case GUMBO_TAG_TEMPLATE:
        case GUMBO_TAG_NAV: case GUMBO_TAG_FOOTER: case GUMBO_TAG_ASIDE: case GUMBO_TAG_FORM:
        case GUMBO_TAG_IFRAME: case GUMBO_TAG_SVG: case GUMBO_TAG_CANVAS: case GUMBO_TAG_BUTTON:
        case GUMBO_TAG_SELECT: case GUMBO_TAG_TEXTAREA: case GUMBO_TAG_HEAD: case GUMBO_TAG_MENU:
        case GUMBO_TAG_OBJECT: case GUMBO_TAG_EMBED: case GUMBO_TAG_HEADER:
            return true;
        default: break;
    }
    if (const GumboAttribute* role = gumbo_get_attribute(&e.attributes, "role")) {
        std::string r = lower_ascii(role->value);
        if (r == "navigation" || r == "banner" || r == "contentinfo" || r == "search" || r == "complementary") {
            return true;
        }
    }
    if (const GumboAttribute* hidden = gumbo_get_attribute(&e.attributes, "aria-hidden")) {
        if (lower_ascii(hidden->value) == "true") return true;
    }
    if (gumbo_get_attribute(&e.attributes, "hidden")) return true;
    for (const char* name : {"class", "id"}) {
        if (const GumboAttribute* a = gumbo_get_attribute(&e.attributes, name)) {
            if (boilerplate_word(a->value)) return true;
        }
    }
    return false;
}

bool is_block(GumboTag tag) {
    switch (tag) {
        case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_LI: case GUMBO_TAG_UL: case GUMBO_TAG_OL:
        case GUMBO_TAG_DL: case GUMBO_TAG_DT: case GUMBO_TAG_DD: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_PRE:
        case GUMBO_TAG_TABLE: case GUMBO_TAG_TR: case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE:
        case GUMBO_TAG_MAIN: case GUMBO_TAG_BODY: case GUMBO_TAG_FIGURE: case GUMBO_TAG_FIGCAPTION:
        case GUMBO_TAG_ADDRESS: case GUMBO_TAG_DETAILS: case GUMBO_TAG_SUMMARY: case GUMBO_TAG_HR:
        case GUMBO_TAG_CAPTION: case GUMBO_TAG_THEAD: case GUMBO_TAG_TBODY: case GUMBO_TAG_TFOOT:
            return true;
        default: return false;
    }
}

int heading_level(GumboTag tag) {
    switch (tag) {
        case GUMBO_TAG_H1: return 1;
        case GUMBO_TAG_H2: return 2;
        case GUMBO_TAG_H3: return 3;
        case GUMBO_TAG_H4: return 4;
        case GUMBO_TAG_H5: return 5;
        case GUMBO_TAG_H6: return 6;
        default: return 0;
    }
}

class HtmlWalker {
public:
    explicit HtmlWalker(BlockSink& sink) : sink_(sink) {}

    void walk(const GumboNode* node, std::size_t depth) {
        if (depth > kMaxTreeDepth) return;
        if (node->type == GUMBO_NODE_TEXT || node->type == GUMBO_NODE_CDATA) {
            text_ += node->v.text.text;
            return;
        }
        if (node->type == GUMBO_NODE_WHITESPACE) {
            text_.push_back(' ');
            return;
        }
        if (node->type != GUMBO_NODE_ELEMENT && node->type != GUMBO_NODE_TEMPLATE) return;
        const GumboElement& e = node->v.element;
        if (skipped_element(e)) return;
        if (e.tag == GUMBO_TAG_BR) {
            text_.push_back('\n');
            return;
        }
        if (int level = heading_level(e.tag)) {
            flush();
            walk_children(e, depth);
            std::string title = collapse_spaces(text_);
            std::replace(title.begin(), title.end(), '\n', ' ');
            text_.clear();
            sink_.heading(level, std::move(title));
            return;
        }
        if (e.tag == GUMBO_TAG_TR) {
            flush();
            std::string row;
            for (unsigned i = 0; i < e.children.length; ++i) {
                auto* cell = static_cast<const GumboNode*>(e.children.data[i]);
                if (cell->type != GUMBO_NODE_ELEMENT) continue;
                walk_children(cell->v.element, depth + 1);
                std::string value = collapse_spaces(text_);
                text_.clear();
                std::replace(value.begin(), value.end(), '\n', ' ');
                if (value.empty()) continue;
                if (!row.empty()) row += " | ";
                row += value;
            }
            sink_.paragraph(std::move(row));
            return;
        }
        bool block = is_block(e.tag);
        if (block) flush();
        walk_children(e, depth);
        if (block) flush();
    }

    void flush() {
        std::string text = collapse_spaces(text_);
        text_.clear();
        if (!text.empty()) sink_.paragraph(std::move(text));
    }

private:
    void walk_children(const GumboElement& e, std::size_t depth) {
        for (unsigned i = 0; i < e.children.length; ++i) walk(static_cast<const GumboNode*>(e.children.data[i]), depth + 1);
    }

    BlockSink& sink_;
    std::string text_;
};

/// The first <main>, <article> or role=main element, if the page marks its content.
const GumboNode* find_main(const GumboNode* node, std::size_t depth) {
    if (depth > kMaxTreeDepth || node->type != GUMBO_NODE_ELEMENT) return nullptr;
    const GumboElement& e = node->v.element;
    if (e.tag == GUMBO_TAG_MAIN || e.tag == GUMBO_TAG_ARTICLE) return node;
    if (const GumboAttribute* role = gumbo_get_attribute(&e.attributes, "role")) {
        if (lower_ascii(role->value) == "main") return node;
    }
    for (unsigned i = 0; i < e.children.length; ++i) {
        if (auto* found = find_main(static_cast<const GumboNode*>(e.children.data[i]), depth + 1)) return found;
    }
    return nullptr;
}

void extract_html(std::string_view text, BlockSink& sink) {
    GumboOptions options = kGumboDefaultOptions;
    options.max_errors = 1000;
    std::unique_ptr<GumboOutput, void (*)(GumboOutput*)> output(
        gumbo_parse_with_options(&options, text.data(), text.size()),
        [](GumboOutput* o) { gumbo_destroy_output(&kGumboDefaultOptions, o); });
    if (!output) throw ExtractError("the HTML could not be parsed");
    const GumboNode* root = find_main(output->root, 0);
    if (!root) root = output->root;
    HtmlWalker walker(sink);
    walker.walk(root, 0);
    walker.flush();
}

// --- PDF ----------------------------------------------------------------------------------------------------

void quiet_poppler(const std::string&, void*) {}

void extract_pdf(std::string_view content, BlockSink& sink, const std::function<void(double)>& progress) {
    static std::once_flag quiet;
    std::call_once(quiet, [] { poppler::set_debug_error_function(&quiet_poppler, nullptr); });
    std::unique_ptr<poppler::document> doc(
        poppler::document::load_from_raw_data(content.data(), static_cast<int>(content.size())));
    if (!doc) throw ExtractError("the PDF could not be read (malformed or damaged file)");
    if (doc->is_locked()) throw ExtractError("the PDF is encrypted (password protected); upload it without a password");
    int pages = doc->pages();
    if (pages <= 0) throw ExtractError("the PDF has no pages");
    if (pages > kMaxPdfPages) throw ExtractError(fmt::format("the PDF has more than {} pages", kMaxPdfPages));
    for (int i = 0; i < pages; ++i) {
        std::unique_ptr<poppler::page> page(doc->create_page(i));
        if (!page) continue;
        auto bytes = page->text().to_utf8();
        std::string text(bytes.begin(), bytes.end());
        std::replace(text.begin(), text.end(), '\f', '\n');
        extract_text(text, sink);
        if (progress) progress(static_cast<double>(i + 1) / pages);
    }
    if (sink.blocks.empty()) {
        throw ExtractError("the PDF has no text layer (scanned or image-only); run OCR on it first");
    }
}

// --- DOCX ---------------------------------------------------------------------------------------------------

std::string read_zip_entry(zip_t* archive, zip_int64_t index, std::size_t cap) {
    std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> file(zip_fopen_index(archive, static_cast<zip_uint64_t>(index), 0),
                                                           &zip_fclose);
    if (!file) throw ExtractError("the DOCX could not be read (damaged or encrypted ZIP entry)");
    std::string out;
    char buffer[64 * 1024];
    for (;;) {
        zip_int64_t n = zip_fread(file.get(), buffer, sizeof buffer);
        if (n < 0) throw ExtractError("the DOCX could not be read (corrupt compressed data)");
        if (n == 0) break;
        out.append(buffer, static_cast<std::size_t>(n));
        if (out.size() > cap) {
            throw ExtractError(fmt::format("the DOCX expands to more than {} MB (refused as a possible zip bomb)",
                                           cap >> 20));
        }
    }
    return out;
}

struct ZipArchive {
    zip_t* archive = nullptr;
    ~ZipArchive() {
        if (archive) zip_discard(archive);
    }
};

/// Opens a ZIP from memory; nullptr when it is not a readable ZIP.
void open_zip(std::string_view content, ZipArchive& out) {
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* source = zip_source_buffer_create(content.data(), content.size(), 0, &error);
    if (!source) {
        zip_error_fini(&error);
        return;
    }
    out.archive = zip_open_from_source(source, ZIP_RDONLY, &error);
    if (!out.archive) zip_source_free(source);
    zip_error_fini(&error);
}

int docx_heading_level(const pugi::xml_node& paragraph) {
    pugi::xml_node ppr = paragraph.child("w:pPr");
    if (!ppr) return 0;
    if (pugi::xml_node outline = ppr.child("w:outlineLvl")) {
        int level = outline.attribute("w:val").as_int(-1);
        if (level >= 0 && level < 9) return std::min(level + 1, 6);
    }
    std::string style = lower_ascii(ppr.child("w:pStyle").attribute("w:val").as_string());
    if (style == "title") return 1;
    for (std::string_view prefix : {"heading", "заголовок"}) {
        if (style.rfind(prefix, 0) == 0) {
            std::string_view rest(style);
            rest.remove_prefix(prefix.size());
            rest = trim(rest);
            int level = rest.empty() ? 1 : rest[0] - '0';
            if (level >= 1 && level <= 9) return std::min(level, 6);
        }
    }
    return 0;
}

void docx_text(const pugi::xml_node& node, std::string& out, std::size_t depth) {
    if (depth > kMaxTreeDepth) return;
    for (pugi::xml_node child : node.children()) {
        std::string_view name = child.name();
        if (name == "w:t") {
            out += child.text().get();
        } else if (name == "w:tab") {
            out.push_back(' ');
        } else if (name == "w:br" || name == "w:cr") {
            out.push_back('\n');
        } else if (name == "w:delText" || name == "w:instrText" || name == "w:pPr" || name == "w:rPr") {
            continue;
        } else if (child.type() == pugi::node_element) {
            docx_text(child, out, depth + 1);
        }
    }
}

void docx_body(const pugi::xml_node& node, BlockSink& sink, std::size_t depth) {
    if (depth > kMaxTreeDepth) return;
    for (pugi::xml_node child : node.children()) {
        std::string_view name = child.name();
        if (name == "w:p") {
            std::string text;
            docx_text(child, text, depth + 1);
            text = collapse_spaces(text);
            if (int level = docx_heading_level(child)) {
                std::replace(text.begin(), text.end(), '\n', ' ');
                sink.heading(level, std::move(text));
            } else {
                sink.paragraph(std::move(text));
            }
        } else if (name == "w:tbl") {
            for (pugi::xml_node tr : child.children("w:tr")) {
                std::string row;
                for (pugi::xml_node tc : tr.children("w:tc")) {
                    std::string cell;
                    docx_text(tc, cell, depth + 2);
                    cell = collapse_spaces(cell);
                    std::replace(cell.begin(), cell.end(), '\n', ' ');
                    if (cell.empty()) continue;
                    if (!row.empty()) row += " | ";
                    row += cell;
                }
                sink.paragraph(std::move(row));
            }
        } else if (name == "w:sdt" || name == "w:sdtContent" || name == "w:customXml" || name == "w:ins") {
            docx_body(name == "w:sdt" ? child.child("w:sdtContent") : child, sink, depth + 1);
        }
    }
}

void extract_docx(std::string_view content, BlockSink& sink) {
    ZipArchive zip;
    open_zip(content, zip);
    if (!zip.archive) throw ExtractError("the DOCX is not a readable ZIP archive");
    zip_int64_t entries = zip_get_num_entries(zip.archive, 0);
    if (entries < 0 || static_cast<std::size_t>(entries) > kMaxZipEntries) {
        throw ExtractError(fmt::format("the DOCX has more than {} entries", kMaxZipEntries));
    }
    zip_int64_t index = zip_name_locate(zip.archive, "word/document.xml", 0);
    if (index < 0) throw ExtractError("the DOCX has no word/document.xml");
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip.archive, static_cast<zip_uint64_t>(index), 0, &st) == 0) {
        if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
            throw ExtractError("the DOCX is encrypted; upload it without a password");
        }
        if ((st.valid & ZIP_STAT_SIZE) && st.size > kMaxDocxXmlBytes) {
            throw ExtractError(fmt::format("the DOCX expands to more than {} MB (refused as a possible zip bomb)",
                                           kMaxDocxXmlBytes >> 20));
        }
    }
    std::string xml = read_zip_entry(zip.archive, index, kMaxDocxXmlBytes);
    pugi::xml_document doc;
    auto parsed = doc.load_buffer(xml.data(), xml.size(), pugi::parse_default);
    if (!parsed) throw ExtractError(fmt::format("the DOCX text is not valid XML ({})", parsed.description()));
    pugi::xml_node body = doc.child("w:document").child("w:body");
    if (!body) throw ExtractError("the DOCX has no document body");
    docx_body(body, sink, 0);
}

}  // namespace

std::string_view format_name(Format format) {
    switch (format) {
        case Format::kText: return "txt";
        case Format::kMarkdown: return "md";
        case Format::kHtml: return "html";
        case Format::kCsv: return "csv";
        case Format::kPdf: return "pdf";
        case Format::kDocx: return "docx";
    }
    return "txt";
}

std::optional<Format> parse_format(std::string_view name) {
    for (Format f : {Format::kText, Format::kMarkdown, Format::kHtml, Format::kCsv, Format::kPdf, Format::kDocx}) {
        if (format_name(f) == name) return f;
    }
    return std::nullopt;
}

std::string decode_text(std::string_view content) {
    if (content.size() >= 3 && content.substr(0, 3) == "\xEF\xBB\xBF") content.remove_prefix(3);
    if (content.size() >= 2 && (content.substr(0, 2) == "\xFF\xFE" || content.substr(0, 2) == "\xFE\xFF")) {
        throw ExtractError("UTF-16 text is not supported; save the file as UTF-8");
    }
    std::size_t controls = 0;
    for (unsigned char c : content.substr(0, 64 * 1024)) {
        if (c == 0) throw ExtractError("the file is binary data, not text");
        if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') ++controls;
    }
    if (controls * 10 > std::min(content.size(), std::size_t{64 * 1024})) {
        throw ExtractError("the file is binary data, not text");
    }
    if (valid_utf8(content)) return std::string(content);
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<UConverter, void (*)(UConverter*)> conv(ucnv_open("windows-1251", &status), &ucnv_close);
    if (U_FAILURE(status)) throw ExtractError("the text is not UTF-8");
    std::string out(content.size() * 3 + 1, '\0');
    std::int32_t n = ucnv_toAlgorithmic(UCNV_UTF8, conv.get(), out.data(), static_cast<std::int32_t>(out.size()),
                                        content.data(), static_cast<std::int32_t>(content.size()), &status);
    if (U_FAILURE(status)) throw ExtractError("the text is neither UTF-8 nor Windows-1251");
    out.resize(static_cast<std::size_t>(n));
    return out;
}

Detection detect_format(std::string_view content, std::string_view filename, std::string_view content_type) {
    Detection d;
    std::string name = lower_ascii(filename);
    std::string type = lower_ascii(content_type.substr(0, content_type.find(';')));
    type = std::string(trim(type));
    if (content.substr(0, std::min<std::size_t>(content.size(), 1024)).find("%PDF-") != std::string_view::npos) {
        d.format = Format::kPdf;
        return d;
    }
    if (content.size() >= 4 && content.substr(0, 4) == std::string_view("PK\x03\x04", 4)) {
        ZipArchive zip;
        open_zip(content, zip);
        if (!zip.archive) {
            d.error = "the file is a damaged ZIP archive";
        } else if (zip_name_locate(zip.archive, "word/document.xml", 0) >= 0) {
            d.format = Format::kDocx;
        } else {
            d.error = "the file is a ZIP archive but not a DOCX document";
        }
        return d;
    }
    if (content.size() >= 4 && content.substr(0, 4) == std::string_view("\xD0\xCF\x11\xE0", 4)) {
        d.error = "legacy Word (.doc) and password-protected Office files are not supported; save it as .docx "
                  "without a password";
        return d;
    }
    std::string text;
    try {
        text = decode_text(content.substr(0, std::min<std::size_t>(content.size(), 64 * 1024)));
    } catch (const ExtractError& e) {
        // A cut in the middle of a character is not an error: decode_text falls back to Windows-1251 then.
        d.error = e.what();
        return d;
    }
    std::string head = lower_ascii(trim(std::string_view(text).substr(0, 1024)));
    bool markup = head.rfind("<!doctype html", 0) == 0 || head.rfind("<html", 0) == 0 ||
                  head.find("<body") != std::string::npos || head.find("<head") != std::string::npos;
    bool html_name = ends_with(name, ".html") || ends_with(name, ".htm") || type == "text/html" ||
                     type == "application/xhtml+xml";
    if (markup || (html_name && head.find('<') != std::string::npos)) {
        d.format = Format::kHtml;
    } else if (ends_with(name, ".csv") || type == "text/csv" || type == "application/csv") {
        d.format = Format::kCsv;
    } else if (ends_with(name, ".md") || ends_with(name, ".markdown") || type == "text/markdown") {
        d.format = Format::kMarkdown;
    } else {
        d.format = Format::kText;
    }
    return d;
}

std::vector<std::vector<std::string>> parse_csv(std::string_view text) {
    std::vector<std::vector<std::string>> rows;
    if (text.empty()) return rows;
    const char delimiter = guess_delimiter(text);
    std::vector<std::string> row;
    std::string cell;
    bool quoted = false;
    bool any = false;
    auto end_cell = [&] {
        if (row.size() < kMaxCsvColumns) row.push_back(std::move(cell));
        cell.clear();
    };
    auto end_row = [&] {
        end_cell();
        bool empty = row.size() == 1 && row[0].empty();
        if (!empty) rows.push_back(std::move(row));
        row.clear();
        any = false;
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (quoted) {
            if (c == '"') {
                if (i + 1 < text.size() && text[i + 1] == '"') {
                    cell.push_back('"');
                    ++i;
                } else {
                    quoted = false;
                }
            } else {
                cell.push_back(c);
            }
            continue;
        }
        if (c == '"' && cell.empty()) {
            quoted = true;
            any = true;
        } else if (c == delimiter) {
            end_cell();
            any = true;
        } else if (c == '\n') {
            end_row();
        } else if (c == '\r') {
            if (i + 1 < text.size() && text[i + 1] == '\n') continue;
            end_row();
        } else {
            cell.push_back(c);
            any = true;
        }
    }
    if (any || !cell.empty() || !row.empty()) end_row();
    return rows;
}

std::vector<Block> extract(Format format, std::string_view content, const std::function<void(double)>& progress) {
    BlockSink sink;
    switch (format) {
        case Format::kPdf: extract_pdf(content, sink, progress); break;
        case Format::kDocx: extract_docx(content, sink); break;
        case Format::kHtml: extract_html(decode_text(content), sink); break;
        case Format::kCsv: extract_csv(decode_text(content), sink); break;
        case Format::kMarkdown: extract_markdown(decode_text(content), sink); break;
        case Format::kText: extract_text(decode_text(content), sink); break;
    }
    if (progress) progress(1.0);
    bool any_text = false;
    for (const auto& b : sink.blocks) any_text |= b.kind != Block::Kind::kHeading;
    if (!any_text) throw ExtractError("the document contains no text");
    return std::move(sink.blocks);
}

}  // namespace parley::knowledge::internal

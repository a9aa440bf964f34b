// The pure parts of the email channel: MIME → Mail (GMime 3), HTML → text (gumbo), quoted-reply stripping, the
// composer of replies, and reading the channel's settings from its credentials.
#include <fmt/format.h>
#include <gmime/gmime.h>
#include <gumbo.h>
#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <mutex>
#include <utility>

#include "channels/adapter.h"
#include "channels/email.h"
#include "channels/internal/adapters.h"
#include "core/error.h"

namespace parley::channels::email {

namespace {

void init_gmime() {
    static std::once_flag once;
    std::call_once(once, [] { g_mime_init(); });
}

/// g_object_unref on scope exit.
template <typename T>
struct Ref {
    T* p = nullptr;
    explicit Ref(T* x) : p(x) {}
    ~Ref() {
        if (p) g_object_unref(p);
    }
    Ref(const Ref&) = delete;
    Ref& operator=(const Ref&) = delete;
};

struct GFreeStr {
    char* p;
    ~GFreeStr() { g_free(p); }
};

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string trim(std::string_view s) {
    std::size_t b = 0;
    std::size_t e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

std::string hash_hex(std::string_view bytes) {
    unsigned char h[16];
    crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, 0);
    char hex[sizeof h * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    return hex;
}

/// A Message-ID usable in headers: printable ASCII, no brackets or spaces.
bool clean_id(std::string_view id) {
    if (id.empty() || id.size() > 998) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u < 0x7f && c != '<' && c != '>';
    });
}

std::vector<std::string> parse_ids(const char* header) {
    std::vector<std::string> out;
    if (!header) return out;
    GMimeReferences* refs = g_mime_references_parse(nullptr, header);
    if (!refs) return out;
    int n = g_mime_references_length(refs);
    for (int i = 0; i < n; ++i) {
        const char* id = g_mime_references_get_message_id(refs, i);
        if (id && clean_id(id)) out.emplace_back(id);
    }
    g_mime_references_free(refs);
    return out;
}

void mailbox_of(InternetAddressList* list, std::string* address, std::string* name) {
    if (!list) return;
    int n = internet_address_list_length(list);
    for (int i = 0; i < n; ++i) {
        InternetAddress* ia = internet_address_list_get_address(list, i);
        if (!ia || !INTERNET_ADDRESS_IS_MAILBOX(ia)) continue;
        const char* addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
        if (!addr) continue;
        std::string a = lower(readable_text(addr));
        if (a.empty() || a.find('@') == std::string::npos || a.size() > 320 ||
            a.find_first_of(" \t\n<>\"") != std::string::npos) {
            continue;
        }
        *address = std::move(a);
        if (name) {
            const char* nm = internet_address_get_name(ia);
            *name = nm ? readable_text(nm) : "";
            *name = cut_bytes(*name, 200);
        }
        return;
    }
}

struct Walk {
    std::string plain;
    std::string html;
    std::vector<Attachment> attachments;
    std::size_t dropped = 0;
};

std::string part_bytes(GMimePart* part) {
    GMimeDataWrapper* content = g_mime_part_get_content(part);
    if (!content) return {};
    Ref<GMimeStream> mem(g_mime_stream_mem_new());
    g_mime_data_wrapper_write_to_stream(content, mem.p);
    GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.p));
    return bytes ? std::string(reinterpret_cast<const char*>(bytes->data), bytes->len) : std::string();
}

std::string text_of(GMimePart* part) {
    if (GMIME_IS_TEXT_PART(part)) {
        if (char* text = g_mime_text_part_get_text(GMIME_TEXT_PART(part))) {
            GFreeStr free_text{text};
            return readable_text(text);
        }
    }
    return readable_text(part_bytes(part));
}

void add_attachment(Walk& w, Attachment a) {
    if (w.attachments.size() >= kMaxAttachments) {
        ++w.dropped;
        return;
    }
    w.attachments.push_back(std::move(a));
}

void walk(GMimeObject* object, std::size_t depth, Walk& w) {
    if (!object || depth > kMaxMimeDepth) return;
    if (GMIME_IS_MULTIPART(object)) {
        GMimeMultipart* mp = GMIME_MULTIPART(object);
        int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n; ++i) walk(g_mime_multipart_get_part(mp, i), depth + 1, w);
        return;
    }
    if (GMIME_IS_MESSAGE_PART(object)) {  // a forwarded mail: kept as an .eml attachment
        GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(object));
        if (!inner) return;
        char* text = g_mime_object_to_string(GMIME_OBJECT(inner), nullptr);
        GFreeStr free_text{text};
        const char* subject = g_mime_message_get_subject(inner);
        std::string name = subject && *subject ? readable_text(subject) + ".eml" : "message.eml";
        add_attachment(w, Attachment{cut_bytes(name, 255), "message/rfc822", text ? text : ""});
        return;
    }
    if (!GMIME_IS_PART(object)) return;
    GMimePart* part = GMIME_PART(object);
    GMimeContentType* type = g_mime_object_get_content_type(object);
    bool attachment = g_mime_part_is_attachment(part);
    const char* filename = g_mime_part_get_filename(part);
    if (!attachment && !filename && type && g_mime_content_type_is_type(type, "text", "plain")) {
        std::string text = text_of(part);
        if (!w.plain.empty() && !text.empty()) w.plain += "\n\n";
        w.plain += text;
        return;
    }
    if (!attachment && !filename && type && g_mime_content_type_is_type(type, "text", "html")) {
        std::string text = text_of(part);
        if (!w.html.empty()) w.html += "<br>";
        w.html += text;
        return;
    }
    Attachment a;
    a.filename = filename ? cut_bytes(readable_text(filename), 255) : "";
    if (type) {
        char* mime = g_mime_content_type_get_mime_type(type);
        GFreeStr free_mime{mime};
        a.content_type = mime ? lower(readable_text(mime)) : "application/octet-stream";
    } else {
        a.content_type = "application/octet-stream";
    }
    a.data = part_bytes(part);
    add_attachment(w, std::move(a));
}

std::string header_block(std::string_view raw) {
    std::size_t end = raw.find("\r\n\r\n");
    if (end == std::string_view::npos) end = raw.find("\n\n");
    if (end == std::string_view::npos) end = raw.size();
    return std::string(raw.substr(0, std::min<std::size_t>(end, 64 * 1024)));
}

// --- HTML → text ---------------------------------------------------------------------------------------------------

bool is_block(GumboTag tag) {
    switch (tag) {
        case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3:
        case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6: case GUMBO_TAG_UL: case GUMBO_TAG_OL:
        case GUMBO_TAG_TABLE: case GUMBO_TAG_TR: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_PRE:
        case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_HEADER: case GUMBO_TAG_FOOTER:
        case GUMBO_TAG_HR: case GUMBO_TAG_DL: case GUMBO_TAG_DT: case GUMBO_TAG_DD: case GUMBO_TAG_ADDRESS:
        case GUMBO_TAG_CENTER: case GUMBO_TAG_FORM: case GUMBO_TAG_NAV: case GUMBO_TAG_MAIN: case GUMBO_TAG_BODY:
            return true;
        default:
            return false;
    }
}

bool is_paragraph(GumboTag tag) {
    switch (tag) {
        case GUMBO_TAG_P: case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3: case GUMBO_TAG_H4:
        case GUMBO_TAG_H5: case GUMBO_TAG_H6: case GUMBO_TAG_TABLE: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_UL:
        case GUMBO_TAG_OL:
            return true;
        default:
            return false;
    }
}

bool is_skipped(GumboTag tag) {
    return tag == GUMBO_TAG_SCRIPT || tag == GUMBO_TAG_STYLE || tag == GUMBO_TAG_HEAD || tag == GUMBO_TAG_TITLE ||
           tag == GUMBO_TAG_TEMPLATE || tag == GUMBO_TAG_NOSCRIPT || tag == GUMBO_TAG_OBJECT ||
           tag == GUMBO_TAG_IFRAME || tag == GUMBO_TAG_SVG;
}

class TextOut {
public:
    void text(std::string_view t, bool pre) {
        for (char c : t) {
            if (!pre && (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f')) {
                space_ = true;
                continue;
            }
            if (space_ && !out_.empty() && out_.back() != '\n' && out_.back() != ' ') out_ += ' ';
            space_ = false;
            if (pre && c == '\r') continue;
            out_ += c;
        }
    }
    void newline(int count) {
        space_ = false;
        while (!out_.empty() && out_.back() == ' ') out_.pop_back();
        if (out_.empty()) return;
        int have = 0;
        for (auto it = out_.rbegin(); it != out_.rend() && *it == '\n'; ++it) ++have;
        for (; have < count; ++have) out_ += '\n';
    }
    void raw(std::string_view t) {
        space_ = false;
        out_ += t;
    }
    std::size_t size() const { return out_.size(); }
    std::string_view since(std::size_t at) const { return std::string_view(out_).substr(at); }
    std::string take() {
        while (!out_.empty() && (out_.back() == '\n' || out_.back() == ' ')) out_.pop_back();
        return std::move(out_);
    }

private:
    std::string out_;
    bool space_ = false;
};

/// A last resort for pathological HTML (too many tags to build a tree safely): tags removed, entities kept.
std::string strip_tags(std::string_view html) {
    std::string out;
    bool in_tag = false;
    for (char c : html) {
        if (c == '<') {
            in_tag = true;
        } else if (c == '>') {
            in_tag = false;
            out += ' ';
        } else if (!in_tag) {
            out += c;
        }
    }
    return out;
}

}  // namespace

std::string readable_text(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    std::size_t i = 0;
    while (i < bytes.size()) {
        auto c = static_cast<unsigned char>(bytes[i]);
        if (c < 0x80) {
            if (c == '\r') {
                if (i + 1 >= bytes.size() || bytes[i + 1] != '\n') out += '\n';
            } else if (c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f)) {
                out += static_cast<char>(c);
            }
            ++i;
            continue;
        }
        std::size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
        bool ok = len > 0 && i + len <= bytes.size();
        for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(bytes[i + k]) & 0xC0) == 0x80;
        if (ok && len == 3) {
            auto c1 = static_cast<unsigned char>(bytes[i + 1]);
            ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
        }
        if (ok && len == 4) {
            auto c1 = static_cast<unsigned char>(bytes[i + 1]);
            ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
        }
        if (ok) {
            out.append(bytes.substr(i, len));
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

std::string html_to_text(std::string_view input) {
    std::string_view html = input.substr(0, std::min(input.size(), kMaxHtmlBytes));
    if (std::count(html.begin(), html.end(), '<') > 20'000) return readable_text(trim(strip_tags(html)));
    GumboOutput* output = gumbo_parse_with_options(&kGumboDefaultOptions, html.data(), html.size());
    TextOut out;
    struct Frame {
        GumboNode* node;
        unsigned index;
        std::size_t start;  // output size at entry (link text)
        int pre;
    };
    std::vector<Frame> stack;
    stack.push_back(Frame{output->root, 0, 0, 0});
    while (!stack.empty()) {
        Frame& f = stack.back();
        GumboNode* node = f.node;
        if (node->type != GUMBO_NODE_ELEMENT && node->type != GUMBO_NODE_TEMPLATE &&
            node->type != GUMBO_NODE_DOCUMENT) {
            if (node->type == GUMBO_NODE_TEXT || node->type == GUMBO_NODE_WHITESPACE ||
                node->type == GUMBO_NODE_CDATA) {
                out.text(node->v.text.text, f.pre > 0);
            }
            stack.pop_back();
            continue;
        }
        const GumboVector& children =
            node->type == GUMBO_NODE_DOCUMENT ? node->v.document.children : node->v.element.children;
        GumboTag tag = node->type == GUMBO_NODE_DOCUMENT ? GUMBO_TAG_UNKNOWN : node->v.element.tag;
        if (f.index == 0) {  // entering
            if (node->type != GUMBO_NODE_DOCUMENT && is_skipped(tag)) {
                stack.pop_back();
                continue;
            }
            if (tag == GUMBO_TAG_BR) out.raw("\n");
            if (tag == GUMBO_TAG_LI) {
                out.newline(1);
                out.raw("• ");
            }
            if (is_block(tag)) out.newline(is_paragraph(tag) ? 2 : 1);
            if (tag == GUMBO_TAG_TD || tag == GUMBO_TAG_TH) out.text(" ", false);
            if (tag == GUMBO_TAG_PRE) ++f.pre;
            f.start = out.size();
        }
        if (f.index < children.length) {
            auto* child = static_cast<GumboNode*>(children.data[f.index++]);
            int pre = f.pre;
            stack.push_back(Frame{child, 0, 0, pre});
            continue;
        }
        // leaving
        if (tag == GUMBO_TAG_A) {
            if (GumboAttribute* href = gumbo_get_attribute(&node->v.element.attributes, "href")) {
                std::string url = trim(href->value);
                std::string shown = trim(out.since(f.start));
                bool linkable = url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0 ||
                                url.rfind("mailto:", 0) == 0;
                if (linkable && url != shown && "mailto:" + shown != url) {
                    out.raw(shown.empty() ? url : " (" + url + ")");
                }
            }
        }
        if (is_block(tag) || tag == GUMBO_TAG_LI) out.newline(is_paragraph(tag) ? 2 : 1);
        stack.pop_back();
    }
    gumbo_destroy_output(&kGumboDefaultOptions, output);
    // Trim each line, at most one empty line in a row.
    std::string text = out.take();
    std::string result;
    int empty = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::string line = trim(std::string_view(text).substr(pos, nl - pos));
        if (line.empty()) {
            ++empty;
        } else {
            if (!result.empty()) result += empty > 0 ? "\n\n" : "\n";
            result += line;
            empty = 0;
        }
        pos = nl + 1;
    }
    return readable_text(result);
}

std::string strip_quoted(std::string_view text) {
    std::vector<std::string_view> lines;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        lines.push_back(text.substr(pos, nl - pos));
        pos = nl + 1;
    }
    auto wrote = [](std::string_view l) {
        std::string t = trim(l);
        if (t.size() < 6 || t.back() != ':') return false;
        std::string low = lower(t);
        // "On <date>, <name> wrote:" (English), "... пише:" / "... написав(ла):" (Ukrainian), "Am ... schrieb:"
        bool starts = low.rfind("on ", 0) == 0 || low.rfind("am ", 0) == 0 || low.rfind("le ", 0) == 0 ||
                      low.find("пише") != std::string::npos || low.find("написа") != std::string::npos;
        bool ends = low.size() >= 6 && (low.ends_with("wrote:") || low.ends_with("schrieb:") ||
                                        low.ends_with("écrit :") || low.ends_with("a écrit:") ||
                                        low.ends_with("пише:") || low.ends_with("написав:") ||
                                        low.ends_with("написала:") || low.ends_with("написав(ла):"));
        return starts && ends;
    };
    std::size_t cut = lines.size();
    for (std::size_t i = 0; i < lines.size(); ++i) {
        std::string t = trim(lines[i]);
        if (wrote(lines[i]) || t.rfind("-----Original Message-----", 0) == 0 ||
            t.rfind("-----Оригінальне повідомлення-----", 0) == 0 ||
            (t.rfind("From: ", 0) == 0 && i + 1 < lines.size() &&
             (trim(lines[i + 1]).rfind("Sent: ", 0) == 0 || trim(lines[i + 1]).rfind("Date: ", 0) == 0))) {
            cut = i;
            break;
        }
        // "On Mon, 1 Jan 2024 at 10:00, Olena <o@example.com>" + "wrote:" on the next line
        if (i + 1 < lines.size() && lower(t).rfind("on ", 0) == 0 && trim(lines[i + 1]) == "wrote:") {
            cut = i;
            break;
        }
    }
    std::string out;
    for (std::size_t i = 0; i < cut; ++i) {
        if (!trim(lines[i]).empty() && trim(lines[i])[0] == '>') continue;
        out += lines[i];
        out += '\n';
    }
    std::string result = trim(out);
    return result.empty() ? trim(text) : result;
}

std::string Mail::thread_key() const {
    if (!references.empty()) return references.front();
    if (!in_reply_to.empty()) return in_reply_to;
    return message_id;
}

std::string Mail::key(std::string_view raw) const {
    if (!message_id.empty()) return message_id.size() <= kMaxKeyBytes ? message_id : "h:" + hash_hex(message_id);
    return "h:" + hash_hex(header_block(raw));
}

Mail parse_mail(std::string_view raw) {
    init_gmime();
    Mail mail;
    Ref<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(raw.data(), raw.size()));
    Ref<GMimeParser> parser(g_mime_parser_new_with_stream(stream.p));
    Ref<GMimeMessage> message(g_mime_parser_construct_message(parser.p, nullptr));
    if (!message.p) {
        mail.malformed = true;
        mail.text = cut_bytes(trim(readable_text(raw.substr(0, kMaxTextBytes * 2))), kMaxTextBytes);
        return mail;
    }
    GMimeObject* object = GMIME_OBJECT(message.p);
    if (const char* id = g_mime_message_get_message_id(message.p); id && clean_id(id)) mail.message_id = id;
    auto in_reply_to = parse_ids(g_mime_object_get_header(object, "In-Reply-To"));
    if (!in_reply_to.empty()) mail.in_reply_to = in_reply_to.front();
    mail.references = parse_ids(g_mime_object_get_header(object, "References"));
    if (mail.references.size() > kMaxReferences) {  // keep the root and the most recent ones
        mail.references.erase(mail.references.begin() + 1,
                              mail.references.end() - static_cast<std::ptrdiff_t>(kMaxReferences - 1));
    }
    if (const char* subject = g_mime_message_get_subject(message.p)) {
        mail.subject = cut_bytes(trim(readable_text(subject)), kMaxSubjectBytes);
        std::replace(mail.subject.begin(), mail.subject.end(), '\n', ' ');
        std::replace(mail.subject.begin(), mail.subject.end(), '\t', ' ');
    }
    mailbox_of(g_mime_message_get_from(message.p), &mail.from_address, &mail.from_name);
    std::string reply_to;
    mailbox_of(g_mime_message_get_reply_to(message.p), &reply_to, nullptr);
    if (reply_to != mail.from_address) mail.reply_to = reply_to;
    if (GDateTime* date = g_mime_message_get_date(message.p)) mail.date_ms = g_date_time_to_unix(date) * 1000;
    auto header = [&](const char* name) {
        const char* v = g_mime_object_get_header(object, name);
        return v ? lower(trim(v)) : std::string();
    };
    std::string auto_submitted = header("Auto-Submitted");
    std::string precedence = header("Precedence");
    mail.automatic = (!auto_submitted.empty() && auto_submitted != "no") || precedence == "bulk" ||
                     precedence == "junk" || precedence == "list" ||
                     g_mime_object_get_header(object, "X-Autoreply") != nullptr ||
                     g_mime_object_get_header(object, "X-Autorespond") != nullptr;
    Walk w;
    walk(g_mime_message_get_mime_part(message.p), 0, w);
    std::string text = trim(w.plain);
    if (text.empty() && !w.html.empty()) text = html_to_text(w.html);
    mail.text = cut_bytes(strip_quoted(text), kMaxTextBytes);
    mail.attachments = std::move(w.attachments);
    mail.attachments_dropped = w.dropped;
    return mail;
}

std::string reply_subject(std::string_view subject) {
    std::string s = trim(subject);
    std::string low = lower(s);
    for (std::string_view prefix : {"re:", "fwd:", "fw:", "aw:", "відп:", "re["}) {
        if (low.rfind(prefix, 0) == 0) return s;
    }
    return s.empty() ? "Re: your message" : "Re: " + s;
}

std::string compose(const Outgoing& mail) {
    init_gmime();
    Ref<GMimeMessage> message(g_mime_message_new(TRUE));
    GMimeObject* object = GMIME_OBJECT(message.p);
    g_mime_message_add_mailbox(message.p, GMIME_ADDRESS_TYPE_FROM,
                               mail.from_name.empty() ? nullptr : mail.from_name.c_str(), mail.from_address.c_str());
    g_mime_message_add_mailbox(message.p, GMIME_ADDRESS_TYPE_TO, nullptr, mail.to_address.c_str());
    std::string subject = cut_bytes(readable_text(mail.subject), kMaxSubjectBytes);
    std::replace(subject.begin(), subject.end(), '\n', ' ');
    g_mime_message_set_subject(message.p, subject.c_str(), "utf-8");
    if (clean_id(mail.message_id)) g_mime_message_set_message_id(message.p, mail.message_id.c_str());
    if (clean_id(mail.in_reply_to)) {
        g_mime_object_set_header(object, "In-Reply-To", ("<" + mail.in_reply_to + ">").c_str(), nullptr);
    }
    std::string refs;
    for (const auto& r : mail.references) {
        if (!clean_id(r)) continue;
        if (!refs.empty()) refs += ' ';
        refs += "<" + r + ">";
    }
    if (!refs.empty()) g_mime_object_set_header(object, "References", refs.c_str(), nullptr);
    GDateTime* date = g_date_time_new_from_unix_utc(mail.date_ms / 1000);
    if (date) {
        g_mime_message_set_date(message.p, date);
        g_date_time_unref(date);
    }
    g_mime_object_set_header(object, "Auto-Submitted", "auto-replied", nullptr);
    std::string text = readable_text(mail.text);
    GMimeTextPart* plain = g_mime_text_part_new_with_subtype("plain");
    g_mime_text_part_set_text(plain, text.c_str());
    if (mail.html) {
        std::string html = "<html><body>";
        std::size_t pos = 0;
        while (pos <= text.size()) {
            std::size_t end = text.find("\n\n", pos);
            if (end == std::string::npos) end = text.size();
            std::string para = text.substr(pos, end - pos);
            std::string escaped;
            for (char c : para) {
                switch (c) {
                    case '<': escaped += "&lt;"; break;
                    case '>': escaped += "&gt;"; break;
                    case '&': escaped += "&amp;"; break;
                    case '"': escaped += "&quot;"; break;
                    case '\n': escaped += "<br>"; break;
                    default: escaped += c;
                }
            }
            if (!escaped.empty()) html += "<p>" + escaped + "</p>";
            pos = end + 2;
        }
        html += "</body></html>";
        GMimeTextPart* rich = g_mime_text_part_new_with_subtype("html");
        g_mime_text_part_set_text(rich, html.c_str());
        GMimeMultipart* alternative = g_mime_multipart_new_with_subtype("alternative");
        g_mime_multipart_add(alternative, GMIME_OBJECT(plain));
        g_mime_multipart_add(alternative, GMIME_OBJECT(rich));
        g_object_unref(plain);
        g_object_unref(rich);
        g_mime_message_set_mime_part(message.p, GMIME_OBJECT(alternative));
        g_object_unref(alternative);
    } else {
        g_mime_message_set_mime_part(message.p, GMIME_OBJECT(plain));
        g_object_unref(plain);
    }
    g_mime_object_encode(object, GMIME_ENCODING_CONSTRAINT_7BIT);
    GMimeFormatOptions* options = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(options, GMIME_NEWLINE_FORMAT_DOS);
    char* out = g_mime_object_to_string(object, options);
    g_mime_format_options_free(options);
    GFreeStr free_out{out};
    return out ? std::string(out) : std::string();
}

// --- settings ----------------------------------------------------------------------------------------------------

namespace {

struct Preset {
    const char* imap_host;
    int imap_port;
    const char* imap_security;
    const char* smtp_host;
    int smtp_port;
    const char* smtp_security;
};

const Preset* preset_of(std::string_view provider) {
    static const Preset gmail{"imap.gmail.com", 993, "tls", "smtp.gmail.com", 465, "tls"};
    static const Preset outlook{"outlook.office365.com", 993, "tls", "smtp.office365.com", 587, "starttls"};
    if (provider == "gmail") return &gmail;
    if (provider == "outlook") return &outlook;
    return nullptr;
}

bool valid_host(std::string_view h) {
    if (h.empty() || h.size() > 253) return false;
    return std::all_of(h.begin(), h.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' ||
               c == ']' || c == '_';
    });
}

bool valid_address(std::string_view a) {
    auto at = a.find('@');
    if (at == std::string_view::npos || at == 0 || at + 1 >= a.size() || a.size() > 254) return false;
    return std::all_of(a.begin(), a.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u < 0x7f && c != '<' && c != '>' && c != '"' && c != ',' && c != ';' && c != '\\';
    });
}

/// A credential given as a string or an integer → its string form ("" when absent).
std::string scalar(const json::object& in, std::string_view key) {
    auto it = in.find(key);
    if (it == in.end() || it->value().is_null()) return {};
    if (it->value().is_int64()) return std::to_string(it->value().get_int64());
    if (it->value().is_bool()) return it->value().get_bool() ? "true" : "false";
    return internal::optional_credential(in, key, 512);
}

std::int64_t number(const json::object& in, std::string_view key, std::int64_t min, std::int64_t max,
                    std::int64_t fallback) {
    std::string v = scalar(in, key);
    if (v.empty()) return fallback;
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size() || n < min || n > max) {
        internal::bad_credential(key, fmt::format("must be an integer from {} to {}", min, max));
    }
    return n;
}

bool flag(const json::object& in, std::string_view key, bool fallback) {
    std::string v = scalar(in, key);
    if (v.empty()) return fallback;
    if (v == "true") return true;
    if (v == "false") return false;
    internal::bad_credential(key, "must be true or false");
}

std::string security(const json::object& in, std::string_view key, const std::string& fallback) {
    std::string v = scalar(in, key);
    if (v.empty()) return fallback;
    if (v != "tls" && v != "starttls" && v != "none") internal::bad_credential(key, "must be tls, starttls or none");
    return v;
}

}  // namespace

json::object Settings::validate(const json::object& in) {
    static constexpr std::string_view kKeys[] = {
        "provider", "imap_host", "imap_port", "imap_security", "smtp_host", "smtp_port", "smtp_security",
        "username", "password", "address", "from_name", "folder", "poll_interval", "html", "mark_seen"};
    for (const auto& kv : in) {
        if (std::find(std::begin(kKeys), std::end(kKeys), kv.key()) == std::end(kKeys)) {
            internal::bad_credential(kv.key(), "is not an email setting");
        }
    }
    Settings s;
    s.provider = scalar(in, "provider");
    if (s.provider.empty()) s.provider = "custom";
    const Preset* preset = preset_of(s.provider);
    if (!preset && s.provider != "custom") internal::bad_credential("provider", "must be gmail, outlook or custom");
    s.imap_host = scalar(in, "imap_host");
    s.smtp_host = scalar(in, "smtp_host");
    if (s.imap_host.empty() && preset) s.imap_host = preset->imap_host;
    if (s.smtp_host.empty() && preset) s.smtp_host = preset->smtp_host;
    if (!valid_host(s.imap_host)) internal::bad_credential("imap_host", "must be a host name or an IP address");
    if (!valid_host(s.smtp_host)) internal::bad_credential("smtp_host", "must be a host name or an IP address");
    s.imap_security = security(in, "imap_security", preset ? preset->imap_security : "tls");
    s.smtp_security = security(in, "smtp_security", preset ? preset->smtp_security : "tls");
    s.imap_port = static_cast<int>(number(in, "imap_port", 1, 65535,
                                          preset ? preset->imap_port : (s.imap_security == "tls" ? 993 : 143)));
    s.smtp_port = static_cast<int>(number(in, "smtp_port", 1, 65535,
                                          preset ? preset->smtp_port
                                                 : (s.smtp_security == "tls" ? 465
                                                    : s.smtp_security == "starttls" ? 587 : 25)));
    s.username = internal::optional_credential(in, "username", 320);
    if (s.username.empty()) internal::bad_credential("username", "is required");
    s.password = internal::optional_credential(in, "password", 1024, true);
    if (s.password.empty()) internal::bad_credential("password", "is required (an app password for Gmail/Outlook)");
    s.address = internal::optional_credential(in, "address", 254);
    if (s.address.empty()) s.address = s.username;
    if (!valid_address(s.address)) {
        internal::bad_credential(in.contains("address") ? "address" : "username",
                                 "must be an e-mail address (the From of replies)");
    }
    s.from_name = internal::optional_credential(in, "from_name", 200, true);
    s.folder = internal::optional_credential(in, "folder", 200, true);
    if (s.folder.empty()) s.folder = "INBOX";
    if (s.folder.find_first_of("\"\\*%") != std::string::npos) {
        internal::bad_credential("folder", "may not contain \" \\ * or %");
    }
    s.poll_interval_s = number(in, "poll_interval", kMinPollIntervalS, kMaxPollIntervalS, kDefaultPollIntervalS);
    s.send_html = flag(in, "html", false);
    s.mark_seen = flag(in, "mark_seen", true);
    json::object out{{"provider", s.provider},
                     {"imap_host", s.imap_host},
                     {"imap_port", std::to_string(s.imap_port)},
                     {"imap_security", s.imap_security},
                     {"smtp_host", s.smtp_host},
                     {"smtp_port", std::to_string(s.smtp_port)},
                     {"smtp_security", s.smtp_security},
                     {"username", s.username},
                     {"password", s.password},
                     {"address", s.address},
                     {"folder", s.folder},
                     {"poll_interval", std::to_string(s.poll_interval_s)},
                     {"html", s.send_html ? "true" : "false"},
                     {"mark_seen", s.mark_seen ? "true" : "false"}};
    if (!s.from_name.empty()) out["from_name"] = s.from_name;
    return out;
}

Settings Settings::from(const json::object& credentials) {
    Settings s;
    auto get = [&](std::string_view key) {
        auto it = credentials.find(key);
        return it != credentials.end() && it->value().is_string() ? std::string(it->value().get_string())
                                                                   : std::string();
    };
    auto integer = [&](std::string_view key, std::int64_t fallback) {
        std::string v = get(key);
        std::int64_t n = fallback;
        if (!v.empty()) std::from_chars(v.data(), v.data() + v.size(), n);
        return n;
    };
    s.provider = get("provider");
    s.imap_host = get("imap_host");
    s.imap_port = static_cast<int>(integer("imap_port", 993));
    s.imap_security = get("imap_security");
    s.smtp_host = get("smtp_host");
    s.smtp_port = static_cast<int>(integer("smtp_port", 465));
    s.smtp_security = get("smtp_security");
    s.username = get("username");
    s.password = get("password");
    s.address = get("address");
    s.from_name = get("from_name");
    s.folder = get("folder");
    if (s.folder.empty()) s.folder = "INBOX";
    s.poll_interval_s = std::clamp(integer("poll_interval", kDefaultPollIntervalS), kMinPollIntervalS, kMaxPollIntervalS);
    s.send_html = get("html") == "true";
    s.mark_seen = get("mark_seen") != "false";
    return s;
}

}  // namespace parley::channels::email

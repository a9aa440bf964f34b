#include "scenario/internal/regex.h"

#include <memory>

#include "core/template.h"

namespace parley::scenario::internal {

char32_t next_code_point(std::string_view s, std::size_t& i) {
    auto b0 = static_cast<unsigned char>(s[i]);
    auto cont = [&](std::size_t k) {
        return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    };
    if (b0 >= 0xC2 && b0 < 0xE0 && cont(1)) {
        char32_t c = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
        i += 2;
        return c;
    }
    if (b0 >= 0xE0 && b0 < 0xF0 && cont(1) && cont(2)) {
        char32_t c = ((b0 & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
                     (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
        i += 3;
        return c;
    }
    if (b0 >= 0xF0 && b0 < 0xF5 && cont(1) && cont(2) && cont(3)) {
        char32_t c = ((b0 & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
                     ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) |
                     (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
        i += 4;
        return c;
    }
    ++i;
    return b0;
}

namespace {

using Inst = Regex::Inst;
using Op = Regex::Op;

char32_t lower_cp(char32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    std::string enc;
    if (c < 0x800) {
        enc.push_back(static_cast<char>(0xC0 | (c >> 6)));
        enc.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        return c;
    }
    std::string low = core::utf8_lower(enc);
    std::size_t i = 0;
    return next_code_point(low, i);
}

struct Node {
    enum Kind { kChar, kAny, kClass, kBol, kEol, kConcat, kAlt, kRepeat } kind;
    char32_t c = 0;
    std::uint32_t cls = 0;
    int min = 0, max = -1;  // repeat
    std::vector<std::unique_ptr<Node>> kids;
};

class Parser {
public:
    Parser(std::string_view p, std::vector<Regex::Class>& classes, bool icase)
        : p_(p), classes_(classes), icase_(icase) {}

    std::unique_ptr<Node> parse() {
        auto n = alt(0);
        if (!error_.empty()) return nullptr;
        if (i_ < p_.size()) {
            fail("unexpected ')'");
            return nullptr;
        }
        return n;
    }
    const std::string& error() const { return error_; }

private:
    void fail(std::string msg) {
        if (error_.empty()) error_ = msg + " at offset " + std::to_string(i_);
    }
    bool more() const { return i_ < p_.size() && error_.empty(); }

    std::unique_ptr<Node> alt(int depth) {
        if (depth > 32) {
            fail("groups nested too deeply");
            return nullptr;
        }
        auto first = concat(depth);
        if (!more() || p_[i_] != '|') return first;
        auto n = std::make_unique<Node>(Node{Node::kAlt});
        n->kids.push_back(std::move(first));
        while (more() && p_[i_] == '|') {
            ++i_;
            n->kids.push_back(concat(depth));
        }
        return n;
    }

    std::unique_ptr<Node> concat(int depth) {
        auto n = std::make_unique<Node>(Node{Node::kConcat});
        while (more() && p_[i_] != '|' && p_[i_] != ')') {
            auto a = atom(depth);
            if (!a) return n;
            a = quantifiers(std::move(a));
            n->kids.push_back(std::move(a));
        }
        return n;
    }

    bool number(int& out) {
        std::size_t start = i_;
        out = 0;
        while (i_ < p_.size() && p_[i_] >= '0' && p_[i_] <= '9') {
            out = out * 10 + (p_[i_] - '0');
            if (out > 1000) {
                fail("repetition count too large");
                return false;
            }
            ++i_;
        }
        return i_ > start;
    }

    std::unique_ptr<Node> quantifiers(std::unique_ptr<Node> a) {
        while (more()) {
            char c = p_[i_];
            int min = 0, max = -1;
            if (c == '*') {
                ++i_;
            } else if (c == '+') {
                min = 1;
                ++i_;
            } else if (c == '?') {
                max = 1;
                ++i_;
            } else if (c == '{') {
                std::size_t save = i_;
                ++i_;
                if (!number(min)) {
                    if (!error_.empty()) return a;
                    i_ = save;  // a literal '{'
                    return a;
                }
                if (i_ < p_.size() && p_[i_] == ',') {
                    ++i_;
                    if (!number(max)) max = -1;
                } else {
                    max = min;
                }
                if (i_ >= p_.size() || p_[i_] != '}') {
                    fail("malformed {n,m} repetition");
                    return a;
                }
                ++i_;
                if (max >= 0 && max < min) {
                    fail("repetition {n,m} with m < n");
                    return a;
                }
                if (min > 100 || max > 100) {
                    fail("repetition counts above 100 are not supported");
                    return a;
                }
            } else {
                return a;
            }
            if (i_ < p_.size() && p_[i_] == '?') ++i_;  // lazy: same match/no-match answer
            if (a->kind == Node::kBol || a->kind == Node::kEol) {
                fail("nothing to repeat");
                return a;
            }
            auto r = std::make_unique<Node>(Node{Node::kRepeat});
            r->min = min;
            r->max = max;
            r->kids.push_back(std::move(a));
            a = std::move(r);
        }
        return a;
    }

    char32_t fold(char32_t c) const { return icase_ ? lower_cp(c) : c; }

    // Adds the ranges of \d \w \s (and their negations) to `cls`; returns false for other letters.
    static bool class_escape(char e, Regex::Class& cls) {
        switch (e) {
            case 'd':
                cls.ranges.push_back({'0', '9'});
                return true;
            case 'w':
                cls.ranges.insert(cls.ranges.end(), {{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'_', '_'}});
                return true;
            case 's':
                cls.ranges.insert(cls.ranges.end(), {{' ', ' '}, {'\t', '\r'}, {0xA0, 0xA0}});
                return true;
            default:
                return false;
        }
    }

    char32_t escaped_char(char e) {
        switch (e) {
            case 'n':
                return '\n';
            case 't':
                return '\t';
            case 'r':
                return '\r';
            default:
                if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
                    fail(std::string("unsupported escape \\") + e);
                }
                return static_cast<unsigned char>(e);
        }
    }

    std::unique_ptr<Node> make_class(Regex::Class cls) {
        if (icase_) {
            for (auto& r : cls.ranges) {
                char32_t lo = lower_cp(r.lo), hi = lower_cp(r.hi);
                if (lo <= hi) cls.ranges.push_back({lo, hi});
            }
        }
        classes_.push_back(std::move(cls));
        auto n = std::make_unique<Node>(Node{Node::kClass});
        n->cls = static_cast<std::uint32_t>(classes_.size() - 1);
        return n;
    }

    std::unique_ptr<Node> atom(int depth) {
        char c = p_[i_];
        if (c == '(') {
            ++i_;
            if (p_.substr(i_, 2) == "?:") i_ += 2;
            else if (i_ < p_.size() && p_[i_] == '?') {
                fail("unsupported group syntax '(?'");
                return nullptr;
            }
            auto inner = alt(depth + 1);
            if (!error_.empty()) return nullptr;
            if (i_ >= p_.size() || p_[i_] != ')') {
                fail("missing ')'");
                return nullptr;
            }
            ++i_;
            return inner;
        }
        if (c == '*' || c == '+' || c == '?') {
            fail("nothing to repeat");
            return nullptr;
        }
        if (c == '.') {
            ++i_;
            return std::make_unique<Node>(Node{Node::kAny});
        }
        if (c == '^') {
            ++i_;
            return std::make_unique<Node>(Node{Node::kBol});
        }
        if (c == '$') {
            ++i_;
            return std::make_unique<Node>(Node{Node::kEol});
        }
        if (c == '[') return bracket();
        if (c == '\\') {
            ++i_;
            if (i_ >= p_.size()) {
                fail("trailing backslash");
                return nullptr;
            }
            char e = p_[i_++];
            Regex::Class cls;
            char lower = static_cast<char>(e | 0x20);
            if (class_escape(lower, cls)) {
                cls.negated = e != lower;
                return make_class(std::move(cls));
            }
            auto n = std::make_unique<Node>(Node{Node::kChar});
            n->c = fold(escaped_char(e));
            return n;
        }
        auto n = std::make_unique<Node>(Node{Node::kChar});
        n->c = fold(next_code_point(p_, i_));
        return n;
    }

    std::unique_ptr<Node> bracket() {
        ++i_;  // '['
        Regex::Class cls;
        if (i_ < p_.size() && p_[i_] == '^') {
            cls.negated = true;
            ++i_;
        }
        bool first = true;
        while (true) {
            if (i_ >= p_.size()) {
                fail("missing ']'");
                return nullptr;
            }
            if (p_[i_] == ']' && !first) {
                ++i_;
                break;
            }
            first = false;
            char32_t lo;
            if (p_[i_] == '\\') {
                ++i_;
                if (i_ >= p_.size()) {
                    fail("trailing backslash");
                    return nullptr;
                }
                char e = p_[i_++];
                char lower = static_cast<char>(e | 0x20);
                Regex::Class sub;
                if (class_escape(lower, sub)) {
                    if (e != lower) {
                        fail("negated class escapes inside [...] are not supported");
                        return nullptr;
                    }
                    cls.ranges.insert(cls.ranges.end(), sub.ranges.begin(), sub.ranges.end());
                    continue;
                }
                lo = escaped_char(e);
            } else {
                lo = next_code_point(p_, i_);
            }
            char32_t hi = lo;
            if (i_ + 1 < p_.size() && p_[i_] == '-' && p_[i_ + 1] != ']') {
                ++i_;
                if (p_[i_] == '\\') {
                    ++i_;
                    if (i_ >= p_.size()) {
                        fail("trailing backslash");
                        return nullptr;
                    }
                    hi = escaped_char(p_[i_++]);
                } else {
                    hi = next_code_point(p_, i_);
                }
                if (hi < lo) {
                    fail("class range out of order");
                    return nullptr;
                }
            }
            cls.ranges.push_back({lo, hi});
        }
        return make_class(std::move(cls));
    }

    std::string_view p_;
    std::size_t i_ = 0;
    std::vector<Regex::Class>& classes_;
    bool icase_;
    std::string error_;
};

class Emitter {
public:
    explicit Emitter(std::vector<Inst>& prog) : prog_(prog) {}
    bool ok() const { return ok_; }

    void emit(const Node& n) {
        if (!ok_) return;
        if (prog_.size() > Regex::kMaxProgram) {
            ok_ = false;
            return;
        }
        switch (n.kind) {
            case Node::kChar:
                prog_.push_back({Op::kChar, n.c});
                return;
            case Node::kAny:
                prog_.push_back({Op::kAny});
                return;
            case Node::kClass:
                prog_.push_back({Op::kClass, n.cls});
                return;
            case Node::kBol:
                prog_.push_back({Op::kBol});
                return;
            case Node::kEol:
                prog_.push_back({Op::kEol});
                return;
            case Node::kConcat:
                for (const auto& k : n.kids) emit(*k);
                return;
            case Node::kAlt: {
                std::vector<std::size_t> jumps;
                for (std::size_t k = 0; k < n.kids.size(); ++k) {
                    if (k + 1 < n.kids.size()) {
                        std::size_t split = prog_.size();
                        prog_.push_back({Op::kSplit, static_cast<std::uint32_t>(split + 1), 0});
                        emit(*n.kids[k]);
                        jumps.push_back(prog_.size());
                        prog_.push_back({Op::kJmp});
                        prog_[split].b = static_cast<std::uint32_t>(prog_.size());
                    } else {
                        emit(*n.kids[k]);
                    }
                }
                for (auto j : jumps) prog_[j].a = static_cast<std::uint32_t>(prog_.size());
                return;
            }
            case Node::kRepeat: {
                const Node& a = *n.kids[0];
                for (int k = 0; k < n.min; ++k) emit(a);
                if (n.max < 0) {
                    std::size_t split = prog_.size();
                    prog_.push_back({Op::kSplit, static_cast<std::uint32_t>(split + 1), 0});
                    emit(a);
                    prog_.push_back({Op::kJmp, static_cast<std::uint32_t>(split)});
                    prog_[split].b = static_cast<std::uint32_t>(prog_.size());
                } else {
                    std::vector<std::size_t> splits;
                    for (int k = n.min; k < n.max; ++k) {
                        splits.push_back(prog_.size());
                        prog_.push_back({Op::kSplit, static_cast<std::uint32_t>(prog_.size() + 1), 0});
                        emit(a);
                    }
                    for (auto s : splits) prog_[s].b = static_cast<std::uint32_t>(prog_.size());
                }
                return;
            }
        }
    }

private:
    std::vector<Inst>& prog_;
    bool ok_ = true;
};

bool in_class(const Regex::Class& cls, char32_t c) {
    bool hit = false;
    for (const auto& r : cls.ranges) {
        if (c >= r.lo && c <= r.hi) {
            hit = true;
            break;
        }
    }
    return hit != cls.negated;
}

}  // namespace

std::variant<Regex, std::string> Regex::compile(std::string_view pattern) {
    if (pattern.size() > kMaxPatternBytes) {
        return "pattern longer than " + std::to_string(kMaxPatternBytes) + " bytes";
    }
    Regex re;
    if (pattern.substr(0, 4) == "(?i)") {
        re.icase_ = true;
        pattern.remove_prefix(4);
    }
    Parser parser(pattern, re.classes_, re.icase_);
    auto root = parser.parse();
    if (!root) return parser.error().empty() ? std::string("invalid pattern") : parser.error();
    Emitter emitter(re.program_);
    emitter.emit(*root);
    if (!emitter.ok() || re.program_.size() > kMaxProgram) return std::string("pattern too complex");
    re.program_.push_back({Op::kMatch});
    return re;
}

bool Regex::run(std::string_view input, bool full) const {
    if (program_.empty()) return false;
    std::string lowered;
    std::string_view text = input;
    if (icase_) {
        lowered = core::utf8_lower(input);
        text = lowered;
    }
    const std::size_t n = program_.size();
    std::vector<std::uint32_t> current, next, stack;
    std::vector<std::size_t> mark(n, SIZE_MAX);  // generation a pc was last added in
    current.reserve(n);
    next.reserve(n);
    std::size_t generation = 0;
    bool matched = false;

    // Follows split/jmp/anchors from `pc` at position `pos`, adding char-consuming and match states to `list`.
    auto add = [&](std::vector<std::uint32_t>& list, std::uint32_t pc0, std::size_t pos) {
        stack.clear();
        stack.push_back(pc0);
        while (!stack.empty()) {
            std::uint32_t pc = stack.back();
            stack.pop_back();
            if (mark[pc] == generation) continue;
            mark[pc] = generation;
            const Inst& in = program_[pc];
            switch (in.op) {
                case Op::kJmp:
                    stack.push_back(in.a);
                    break;
                case Op::kSplit:
                    stack.push_back(in.b);
                    stack.push_back(in.a);
                    break;
                case Op::kBol:
                    if (pos == 0) stack.push_back(pc + 1);
                    break;
                case Op::kEol:
                    if (pos == text.size()) stack.push_back(pc + 1);
                    break;
                case Op::kMatch:
                    if (!full || pos == text.size()) matched = true;
                    break;
                default:
                    list.push_back(pc);
            }
        }
    };

    std::size_t pos = 0;
    add(current, 0, 0);
    while (true) {
        if (matched) return true;
        if (pos >= text.size()) break;
        char32_t c = next_code_point(text, pos);
        ++generation;
        next.clear();
        for (std::uint32_t pc : current) {
            const Inst& in = program_[pc];
            bool ok = false;
            switch (in.op) {
                case Op::kChar:
                    ok = in.a == c;
                    break;
                case Op::kAny:
                    ok = c != '\n';
                    break;
                case Op::kClass:
                    ok = in_class(classes_[in.a], c);
                    break;
                default:
                    break;
            }
            if (ok) add(next, pc + 1, pos);
        }
        if (!full) add(next, 0, pos);  // unanchored search: a new attempt may start at every position
        std::swap(current, next);
        if (current.empty() && !matched) return false;
    }
    return matched;
}

}  // namespace parley::scenario::internal

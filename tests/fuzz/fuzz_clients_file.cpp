// Fuzz target: "search clients by file" — the list parser (TXT/CSV, headers, kinds, bad lines) and the
// multipart/form-data extraction. The first byte picks the list kind and whether the input is wrapped as a
// multipart body. Invariants: only core::Error escapes; every entry has a key of its kind and a line inside the
// input; entries + problems = data lines; the file part is a view inside the body.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "clients/clients.h"
#include "clients/internal/file_list.h"
#include "core/error.h"

using namespace parley::clients;
using namespace parley::clients::internal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const ListKind kinds[] = {ListKind::kAuto, ListKind::kPhone, ListKind::kEmail, ListKind::kId};
    ListKind kind = kinds[data[0] % 4];
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    std::string_view text = input;
    if (data[0] & 4) {
        try {
            auto file = multipart_file("multipart/form-data; boundary=zz", input);
            if (!file) __builtin_trap();
            if (file->data() < input.data() || file->data() + file->size() > input.data() + input.size()) __builtin_trap();
            text = *file;
        } catch (const parley::core::Error&) {
            return 0;
        }
    }
    std::size_t physical = 1;
    for (char c : text) physical += c == '\n' || c == '\r';
    try {
        ParsedList list = parse_client_list(text, kind);
        if (list.entries.size() + list.problems.size() != list.lines) __builtin_trap();
        if (list.lines > kMaxFileLines) __builtin_trap();
        std::set<std::pair<int, std::string>> keys;
        for (const auto& e : list.entries) {
            if (e.key.empty() || e.kind == ListKind::kAuto || e.line == 0 || e.line > physical) __builtin_trap();
            if (e.kind == ListKind::kPhone && phone_key(e.value) != e.key) __builtin_trap();
            if (e.kind == ListKind::kEmail && email_key(e.value) != e.key) __builtin_trap();
            if (!keys.insert({static_cast<int>(e.kind), e.key}).second) __builtin_trap();  // repeats are problems
        }
        for (const auto& p : list.problems) {
            if (p.line == 0 || p.line > physical || p.value.size() > 200 || p.reason.empty()) __builtin_trap();
        }
    } catch (const parley::core::Error&) {
    }
    return 0;
}

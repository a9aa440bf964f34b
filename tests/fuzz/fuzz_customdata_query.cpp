// Fuzz target: the record query parser and SQL builder (filters, sort, cursors, full-text words) against a fixed
// model. Any input must either build a query or throw core::Error; built SQL binds exactly its placeholders.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "customdata/customdata.h"
#include "customdata/internal/query.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::customdata;
    static const Model model = [] {
        Model m;
        m.id = "01HX0000000000000000000000";
        m.name = "fuzz";
        const std::pair<const char*, FieldType> fields[] = {
            {"text", FieldType::kText},         {"amount", FieldType::kNumber}, {"flag", FieldType::kBoolean},
            {"day", FieldType::kDate},           {"at", FieldType::kDatetime},   {"data", FieldType::kJson},
            {"kind", FieldType::kSelect},        {"ref", FieldType::kReference}};
        int n = 1;
        for (auto [name, type] : fields) {
            Field f;
            f.id = "f" + std::to_string(n++);
            f.name = name;
            f.type = type;
            f.searchable = type == FieldType::kText;
            if (type == FieldType::kSelect) f.options = {"a", "b"};
            m.fields.push_back(f);
        }
        return m;
    }();
    // Input: lines "key=value".
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<std::pair<std::string, std::string>> params;
    while (!text.empty() && params.size() < 64) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        auto eq = line.find('=');
        params.emplace_back(std::string(line.substr(0, eq)),
                            eq == std::string_view::npos ? std::string() : std::string(line.substr(eq + 1)));
    }
    try {
        RecordQuery q = parse_record_query(params, true);
        auto sql = internal::build_query(model, q, true);
        auto placeholders = static_cast<std::size_t>(std::count(sql.sql.begin(), sql.sql.end(), '?'));
        // LIKE patterns never add '?' to the SQL text: values are always bound.
        if (placeholders != sql.params.size()) __builtin_trap();
        (void)internal::fts_expression(q.q);
    } catch (const parley::core::Error& e) {
        if (e.status() != 400) __builtin_trap();
    }
    return 0;
}

#include "scenario/translations.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace parley::scenario {

namespace json = boost::json;

namespace {

void append_cell(std::string& out, std::string_view cell) {
    if (cell.find_first_of(",\"\r\n") == std::string_view::npos) {
        out += cell;
        return;
    }
    out.push_back('"');
    for (char c : cell) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
}

void append_row(std::string& out, const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
        if (i) out.push_back(',');
        append_cell(out, cells[i]);
    }
    out += "\r\n";
}

/// Visits every translatable text of a document: (node object, field name as in the CSV, the text value).
template <typename F>
void for_each_text(json::value& document, F&& visit) {
    auto* root = document.if_object();
    if (!root) return;
    auto* sections = root->if_contains("sections");
    if (!sections || !sections->is_array()) return;
    for (auto& section : sections->get_array()) {
        auto* so = section.if_object();
        auto* nodes = so ? so->if_contains("nodes") : nullptr;
        if (!nodes || !nodes->is_array()) continue;
        for (auto& node : nodes->get_array()) {
            auto* no = node.if_object();
            if (!no) continue;
            auto* id = no->if_contains("id");
            auto* type = no->if_contains("type");
            if (!id || !id->is_string() || !type || !type->is_string()) continue;
            std::string node_id(id->get_string());
            if (type->get_string() == "message") {
                if (auto* t = no->if_contains("text")) visit(node_id, std::string("text"), *t);
                if (auto* b = no->if_contains("buttons"); b && b->is_array()) {
                    for (auto& button : b->get_array()) {
                        auto* bo = button.if_object();
                        if (!bo) continue;
                        auto* bid = bo->if_contains("id");
                        auto* bt = bo->if_contains("text");
                        if (bid && bid->is_string() && bt) {
                            visit(node_id, "buttons." + std::string(bid->get_string()) + ".text", *bt);
                        }
                    }
                }
            } else if (type->get_string() == "input") {
                if (auto* t = no->if_contains("prompt")) visit(node_id, std::string("prompt"), *t);
                if (auto* t = no->if_contains("retry_text")) visit(node_id, std::string("retry_text"), *t);
            }
        }
    }
}

}  // namespace

std::string export_translations_csv(const Scenario& scenario) {
    const auto& languages = scenario.languages();
    std::string out;
    std::vector<std::string> header{"node_id", "field"};
    header.insert(header.end(), languages.begin(), languages.end());
    append_row(out, header);
    json::value doc = scenario.document();
    for_each_text(doc, [&](const std::string& node, const std::string& field, json::value& text) {
        std::vector<std::string> row{node, field};
        row.resize(2 + languages.size());
        if (text.is_string()) {
            row[2] = text.get_string();
        } else if (text.is_object()) {
            for (std::size_t i = 0; i < languages.size(); ++i) {
                if (auto* t = text.get_object().if_contains(languages[i]); t && t->is_string()) row[2 + i] = t->get_string();
            }
        }
        append_row(out, row);
    });
    return out;
}

CsvTable parse_csv(std::string_view text) {
    CsvTable table;
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
    std::size_t line = 1;
    std::size_t i = 0;
    while (i < text.size()) {
        std::vector<std::string> row;
        std::size_t row_line = line;
        while (true) {
            std::string cell;
            if (i < text.size() && text[i] == '"') {
                std::size_t open_line = line;
                ++i;
                bool closed = false;
                while (i < text.size()) {
                    char c = text[i++];
                    if (c == '"') {
                        if (i < text.size() && text[i] == '"') {
                            cell.push_back('"');
                            ++i;
                        } else {
                            closed = true;
                            break;
                        }
                    } else {
                        if (c == '\n') ++line;
                        cell.push_back(c);
                    }
                }
                if (!closed) {
                    table.error = fmt::format("malformed CSV: the quoted cell opened on line {} is never closed", open_line);
                    return table;
                }
                if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
                    table.error = fmt::format("malformed CSV on line {}: text after a closing quote", line);
                    return table;
                }
            } else {
                while (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
                    if (text[i] == '"') {
                        table.error = fmt::format("malformed CSV on line {}: a quote inside an unquoted cell", line);
                        return table;
                    }
                    cell.push_back(text[i++]);
                }
            }
            row.push_back(std::move(cell));
            if (i < text.size() && text[i] == ',') {
                ++i;
                continue;
            }
            break;
        }
        if (i < text.size() && text[i] == '\r') ++i;
        if (i < text.size() && text[i] == '\n') ++i;
        ++line;
        bool blank = row.size() == 1 && row[0].empty();
        if (!blank) {
            table.rows.push_back(std::move(row));
            table.lines.push_back(row_line);
        }
    }
    return table;
}

TranslationImport import_translations_csv(const json::value& document, std::string_view csv) {
    TranslationImport out;
    out.document = document;
    auto fail = [&](std::string code, std::string node, std::string path, std::string message) {
        out.errors.push_back({std::move(code), "", std::move(node), std::move(path), std::move(message)});
    };
    if (csv.size() > Limits::kMaxDocumentBytes * 2) {
        fail("too_large", "", "", "the CSV is larger than the limit");
        return out;
    }
    CsvTable table = parse_csv(csv);
    if (!table.error.empty()) {
        fail("invalid_csv", "", "", table.error);
        return out;
    }
    if (table.rows.empty() || table.rows[0].size() < 3 || table.rows[0][0] != "node_id" || table.rows[0][1] != "field") {
        fail("invalid_csv", "", "line 1", "the header must be node_id,field,<language>,...");
        return out;
    }
    // The document's languages decide which column is the fallback; new columns become new languages.
    CompileResult compiled = compile_scenario_value(document);
    if (!compiled.ok()) {
        out.errors = std::move(compiled.errors);
        return out;
    }
    std::vector<std::string> languages = compiled.scenario->languages();
    const auto& header = table.rows[0];
    std::vector<std::string> columns(header.begin() + 2, header.end());
    for (std::size_t c = 0; c < columns.size(); ++c) {
        const std::string& code = columns[c];
        bool valid = code.size() >= 2 && code.size() <= 35 &&
                     std::all_of(code.begin(), code.end(), [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_'; }) &&
                     std::islower(static_cast<unsigned char>(code[0]));
        if (!valid) {
            fail("unknown_language", "", "line 1", fmt::format("column {} ('{}') is not a language code", c + 3, code));
            continue;
        }
        if (std::count(columns.begin(), columns.end(), code) > 1) {
            fail("invalid_csv", "", "line 1", "language column '" + code + "' appears twice");
            return out;
        }
        if (std::find(languages.begin(), languages.end(), code) == languages.end()) languages.push_back(code);
    }
    if (!out.errors.empty()) return out;

    std::map<std::pair<std::string, std::string>, std::pair<std::vector<std::string>, std::size_t>> rows;
    for (std::size_t r = 1; r < table.rows.size(); ++r) {
        const auto& row = table.rows[r];
        std::string where = fmt::format("line {}", table.lines[r]);
        if (row.size() != header.size()) {
            fail("invalid_csv", row.empty() ? "" : row[0], where,
                 fmt::format("expected {} cells, found {}", header.size(), row.size()));
            continue;
        }
        if (!rows.emplace(std::make_pair(row[0], row[1]), std::make_pair(std::vector<std::string>(row.begin() + 2, row.end()), table.lines[r])).second) {
            fail("invalid_csv", row[0], where, "the same node and field appear twice");
        }
    }
    if (!out.errors.empty()) return out;

    for_each_text(out.document, [&](const std::string& node, const std::string& field, json::value& text) {
        auto it = rows.find({node, field});
        if (it == rows.end()) return;
        const auto& cells = it->second.first;
        json::object map;
        bool only_first = true;
        for (std::size_t c = 0; c < columns.size(); ++c) {
            if (cells[c].empty()) continue;
            map[columns[c]] = cells[c];
            if (columns[c] != languages[0]) only_first = false;
        }
        if (text.is_string() && only_first && map.contains(languages[0])) {
            text = map.at(languages[0]);
        } else {
            text = std::move(map);
        }
        rows.erase(it);
    });
    for (const auto& [key, value] : rows) {
        std::string where = fmt::format("line {}", value.second);
        if (compiled.scenario->find_node(key.first) == kNoNode) {
            fail("unknown_node", key.first, where, "no node has id '" + key.first + "'");
        } else {
            fail("unknown_field", key.first, where, "node '" + key.first + "' has no text field '" + key.second + "'");
        }
    }
    if (!out.errors.empty()) return out;

    if (auto* root = out.document.if_object(); root && root->contains("languages")) {
        json::array langs;
        for (const auto& l : languages) langs.emplace_back(l);
        (*root)["languages"] = std::move(langs);
    }
    CompileResult check = compile_scenario_value(out.document);
    if (!check.ok()) out.errors = std::move(check.errors);
    return out;
}

}  // namespace parley::scenario

/// Translations: every text of a scenario as CSV for translators (node id, field, one column per language),
/// and the way back into a new document.
#pragma once

#include <boost/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "scenario/document.h"

namespace parley::scenario {

/// CSV (RFC 4180, UTF-8, CRLF line ends) with header `node_id,field,<lang1>,<lang2>,...`. One row per text:
/// fields `text` and `buttons.<button id>.text` of message nodes, `prompt` and `retry_text` of input nodes.
/// A plain-string text is exported in the first language's column.
std::string export_translations_csv(const Scenario& scenario);

/// The outcome of an import: the new document (the original with the texts replaced) or errors whose `path`
/// names the CSV line (`line 3`) and whose `node` names the node.
struct TranslationImport {
    boost::json::value document;
    std::vector<SchemaError> errors;
    bool ok() const { return errors.empty(); }
};

/// Applies a CSV made by export_translations_csv (possibly with language columns added) to `document`.
/// Each row replaces its text: a map of the non-empty cells, or a plain string when only the first language
/// is filled and the text was plain before. Language columns not yet in `languages` are appended to it.
/// Errors: malformed CSV, unknown columns or languages, unknown node ids or fields, and any schema error of
/// the resulting document.
TranslationImport import_translations_csv(const boost::json::value& document, std::string_view csv);

/// RFC 4180 parsing used by the import (exposed for tests): rows of cells, or an error naming the line.
struct CsvTable {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::size_t> lines;  ///< the 1-based line each row starts on
    std::string error;
};
CsvTable parse_csv(std::string_view text);

}  // namespace parley::scenario

// Fuzz target: template compilation and rendering against a fixed scope.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/template.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parley::core;
    static const boost::json::object root =
        boost::json::parse(R"({"a":{"b":[1,{"c":"Ґанок"}],"n":null},"s":"Привіт","x":1.5,"t":true})").as_object();
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto compiled = Template::compile(text);
    if (auto* error = std::get_if<TemplateError>(&compiled)) {
        if (error->offset > size) __builtin_trap();
        return 0;
    }
    const Template& t = std::get<Template>(compiled);
    JsonScope scope(root);
    std::string out = t.render(scope);
    (void)t.render_value(scope);
    (void)utf8_upper(text);
    (void)utf8_lower(out);
    if (t.is_literal() && out != text) __builtin_trap();
    return 0;
}

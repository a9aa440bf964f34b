#include "widget/frame.h"

#include <fmt/format.h>

#include <cctype>

#include "core/error.h"
#include "core/json.h"

namespace parley::widget {

namespace {

namespace json = boost::json;

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

std::string frame_id(const json::object& o, bool required) {
    auto id = core::optional_string(o, "id");
    if (!id) {
        if (required) throw core::BadRequest("this frame needs an 'id' (the client message id)", "missing_field", field("id"));
        return {};
    }
    if (id->empty() || id->size() > kMaxFrameIdBytes) {
        throw core::BadRequest(fmt::format("'id' must be 1 to {} bytes", kMaxFrameIdBytes), "invalid_id", field("id"));
    }
    for (char c : *id) {
        auto u = static_cast<unsigned char>(c);
        if (!(std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == ':')) {
            throw core::BadRequest("'id' may hold letters, digits and - _ . :", "invalid_id", field("id"));
        }
    }
    return *id;
}

}  // namespace

ClientFrame parse_client_frame(std::string_view text) {
    if (text.size() > kMaxFrameBytes) {
        throw core::TooLarge(fmt::format("a frame is at most {} bytes", kMaxFrameBytes), "frame_too_large");
    }
    core::JsonLimits limits;
    limits.max_bytes = kMaxFrameBytes;
    limits.max_depth = 8;
    json::object o = core::parse_json_object(text, limits);
    std::string type(core::required_string(o, "type"));
    ClientFrame f;
    if (type == "message") {
        core::reject_unknown_fields(o, {"type", "id", "text"});
        f.kind = ClientFrame::Kind::kMessage;
        f.id = frame_id(o, true);
        f.text = std::string(core::required_string(o, "text"));
        if (f.text.size() > kMaxTextBytes) {
            throw core::TooLarge(fmt::format("'text' is longer than {} bytes", kMaxTextBytes), "too_large", field("text"));
        }
        if (f.text.find_first_not_of(" \t\r\n") == std::string::npos) {
            throw core::BadRequest("'text' is empty", "invalid_frame", field("text"));
        }
    } else if (type == "button") {
        core::reject_unknown_fields(o, {"type", "id", "button"});
        f.kind = ClientFrame::Kind::kButton;
        f.id = frame_id(o, true);
        f.button = std::string(core::required_string(o, "button"));
        if (f.button.empty() || f.button.size() > kMaxButtonIdBytes) {
            throw core::BadRequest("'button' must be a button id", "invalid_frame", field("button"));
        }
    } else if (type == "identify") {
        core::reject_unknown_fields(o, {"type", "id", "name", "email", "phone", "external_id", "language"});
        f.kind = ClientFrame::Kind::kIdentify;
        f.id = frame_id(o, false);
        for (std::string_view key : {"name", "email", "phone", "external_id", "language"}) {
            if (auto v = core::optional_string(o, key)) {
                if (v->size() > 200) {
                    throw core::TooLarge(fmt::format("'{}' is longer than 200 bytes", key), "too_large", field(key));
                }
                f.identity[key] = *v;
            }
        }
        if (f.identity.empty()) throw core::BadRequest("identify needs at least one field", "invalid_frame");
    } else if (type == "params") {
        core::reject_unknown_fields(o, {"type", "id", "params", "alias"});
        f.kind = ClientFrame::Kind::kParams;
        f.id = frame_id(o, false);
        f.params = core::required_object(o, "params");
        if (json::serialize(f.params).size() > kMaxParamsBytes) {
            throw core::TooLarge(fmt::format("'params' is larger than {} bytes", kMaxParamsBytes), "too_large",
                                 field("params"));
        }
        for (const auto& kv : f.params) {
            if (kv.key().empty() || kv.key().size() > 64) {
                throw core::BadRequest("parameter names are 1 to 64 bytes", "invalid_frame", field("params"));
            }
        }
        if (auto alias = core::optional_string(o, "alias")) {
            if (alias->empty() || alias->size() > kMaxAliasBytes) {
                throw core::BadRequest("'alias' must be an entry alias", "invalid_frame", field("alias"));
            }
            f.alias = *alias;
        }
    } else if (type == "typing") {
        core::reject_unknown_fields(o, {"type"});
        f.kind = ClientFrame::Kind::kTyping;
    } else if (type == "start") {
        core::reject_unknown_fields(o, {"type", "id"});
        f.kind = ClientFrame::Kind::kStart;
        f.id = frame_id(o, false);
    } else if (type == "seen") {
        core::reject_unknown_fields(o, {"type", "n"});
        f.kind = ClientFrame::Kind::kSeen;
        f.seen = core::required_int(o, "n");
        if (f.seen < 0) throw core::BadRequest("'n' is a message number", "invalid_frame", field("n"));
    } else if (type == "ping") {
        core::reject_unknown_fields(o, {"type"});
        f.kind = ClientFrame::Kind::kPing;
    } else {
        throw core::BadRequest(fmt::format("unknown frame type '{}'", type.substr(0, 32)), "unknown_type", field("type"));
    }
    return f;
}

}  // namespace parley::widget

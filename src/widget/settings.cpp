// Widget settings: validation, JSON forms, the allowed-domains check, and the module's migrations.
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "core/json.h"
#include "widget/widget.h"

namespace parley::widget {

namespace {

json::array field(std::string_view name) { return json::array{json::object{{"field", name}}}; }

bool is_hex_color(std::string_view c) {
    if (c.size() != 4 && c.size() != 7) return false;
    if (c[0] != '#') return false;
    return std::all_of(c.begin() + 1, c.end(), [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)); });
}

}  // namespace

bool valid_language(std::string_view l) {
    auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
    auto upper = [](char c) { return c >= 'A' && c <= 'Z'; };
    std::size_t n = 0;
    while (n < l.size() && lower(l[n])) ++n;
    if (n < 2 || n > 3) return false;
    if (n == l.size()) return true;
    return l.size() == n + 3 && l[n] == '-' && upper(l[n + 1]) && upper(l[n + 2]);
}

namespace {

/// A domain entry: a host name or IPv4 address (lower-cased), optionally "*." + host name.
std::optional<std::string> normalize_domain(std::string_view in) {
    std::string d;
    for (char c : in) d += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view host = d;
    if (host.rfind("*.", 0) == 0) host.remove_prefix(2);
    if (host.empty() || d.size() > kMaxDomainBytes || host.front() == '.' || host.back() == '.' ||
        host.front() == '-') {
        return std::nullopt;
    }
    for (char c : host) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return std::nullopt;
    }
    if (host.find("..") != std::string_view::npos) return std::nullopt;
    return d;
}

std::string bounded_text(const json::object& body, std::string_view key, std::size_t max, std::string fallback) {
    auto v = core::optional_string(body, key);
    if (!v) return fallback;
    if (v->size() > max) {
        throw core::BadRequest(fmt::format("'{}' is longer than {} bytes", key, max), "invalid_settings", field(key));
    }
    return *v;
}

}  // namespace

std::map<std::string, std::string> WidgetSettings::default_colors() {
    return {{"primary", "#2563eb"},     {"primary_text", "#ffffff"}, {"background", "#ffffff"},
            {"text", "#111827"},        {"bot_bubble", "#f3f4f6"},   {"bot_text", "#111827"},
            {"client_bubble", "#2563eb"}, {"client_text", "#ffffff"}};
}

const std::vector<std::string>& WidgetSettings::color_keys() {
    static const std::vector<std::string> keys = [] {
        std::vector<std::string> out;
        for (const auto& kv : default_colors()) out.push_back(kv.first);
        return out;
    }();
    return keys;
}

WidgetSettings WidgetSettings::from_json(const json::object& body) {
    core::reject_unknown_fields(body, {"title", "greeting", "placeholder", "avatar_url", "colors", "position",
                                       "language", "allowed_domains", "open_on_load"});
    WidgetSettings s;
    s.title = bounded_text(body, "title", kMaxTitleBytes, s.title);
    s.greeting = bounded_text(body, "greeting", kMaxGreetingBytes, s.greeting);
    s.placeholder = bounded_text(body, "placeholder", kMaxPlaceholderBytes, s.placeholder);
    s.avatar_url = bounded_text(body, "avatar_url", kMaxUrlBytes, "");
    if (!s.avatar_url.empty()) {
        auto url = boost::urls::parse_absolute_uri(s.avatar_url);
        if (!url || (url->scheme() != "https" && url->scheme() != "http") || url->encoded_host().empty()) {
            throw core::BadRequest("'avatar_url' must be an http(s) URL", "invalid_settings", field("avatar_url"));
        }
    }
    if (const json::value* colors = body.if_contains("colors"); colors && !colors->is_null()) {
        if (!colors->is_object()) throw core::BadRequest("'colors' must be an object", "wrong_type", field("colors"));
        for (const auto& kv : colors->get_object()) {
            std::string key(kv.key());
            std::string path = "colors." + key;
            if (!s.colors.contains(key)) {
                throw core::BadRequest(fmt::format("unknown colour '{}'", key), "unknown_field", field(path));
            }
            if (!kv.value().is_string() || !is_hex_color(kv.value().get_string())) {
                throw core::BadRequest(fmt::format("'{}' must be a colour like #1a2b3c or #abc", path),
                                       "invalid_settings", field(path));
            }
            s.colors[key] = std::string(kv.value().get_string());
        }
    }
    if (const json::value* pos = body.if_contains("position"); pos && !pos->is_null()) {
        if (!pos->is_object()) throw core::BadRequest("'position' must be an object", "wrong_type", field("position"));
        const json::object& p = pos->get_object();
        core::reject_unknown_fields(p, {"side", "offset_x", "offset_y"});
        s.side = core::optional_string(p, "side").value_or(s.side);
        if (s.side != "left" && s.side != "right") {
            throw core::BadRequest("'position.side' is left or right", "invalid_settings", field("position.side"));
        }
        for (auto [key, target] : {std::pair{"offset_x", &s.offset_x}, std::pair{"offset_y", &s.offset_y}}) {
            if (auto v = core::optional_int(p, key)) {
                if (*v < 0 || *v > kMaxOffsetPx) {
                    throw core::BadRequest(fmt::format("'position.{}' is 0 to {} pixels", key, kMaxOffsetPx),
                                           "invalid_settings", field(std::string("position.") + key));
                }
                *target = *v;
            }
        }
    }
    s.language = core::optional_string(body, "language").value_or("");
    if (!s.language.empty() && !valid_language(s.language)) {
        throw core::BadRequest("'language' is a code like en, uk or pt-BR", "invalid_settings", field("language"));
    }
    if (const json::array* domains = core::optional_array(body, "allowed_domains")) {
        if (domains->size() > kMaxAllowedDomains) {
            throw core::BadRequest(fmt::format("at most {} allowed domains", kMaxAllowedDomains), "invalid_settings",
                                   field("allowed_domains"));
        }
        for (std::size_t i = 0; i < domains->size(); ++i) {
            std::string path = fmt::format("allowed_domains.{}", i);
            const json::value& d = (*domains)[i];
            auto normal = d.is_string() ? normalize_domain(d.get_string()) : std::nullopt;
            if (!normal) {
                throw core::BadRequest(fmt::format("'{}' must be a host name like example.com or *.example.com", path),
                                       "invalid_settings", field(path));
            }
            if (std::find(s.allowed_domains.begin(), s.allowed_domains.end(), *normal) == s.allowed_domains.end()) {
                s.allowed_domains.push_back(*normal);
            }
        }
    }
    s.open_on_load = core::optional_bool(body, "open_on_load").value_or(false);
    return s;
}

json::object WidgetSettings::public_json() const {
    json::object colors_json;
    for (const auto& kv : colors) colors_json[kv.first] = kv.second;
    return json::object{{"title", title},
                        {"greeting", greeting},
                        {"placeholder", placeholder},
                        {"avatar_url", avatar_url},
                        {"colors", std::move(colors_json)},
                        {"position", json::object{{"side", side}, {"offset_x", offset_x}, {"offset_y", offset_y}}},
                        {"language", language},
                        {"open_on_load", open_on_load}};
}

json::object WidgetSettings::to_json() const {
    json::object out = public_json();
    json::array domains;
    for (const auto& d : allowed_domains) domains.push_back(json::value(d));
    out["allowed_domains"] = std::move(domains);
    return out;
}

std::string host_of(std::string_view origin) {
    auto scheme = origin.find("://");
    if (scheme == std::string_view::npos) return {};
    std::string_view rest = origin.substr(scheme + 3);
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (auto at = rest.rfind('@'); at != std::string_view::npos) rest.remove_prefix(at + 1);
    if (!rest.empty() && rest.front() == '[') {  // IPv6 literal
        auto close = rest.find(']');
        if (close == std::string_view::npos) return {};
        rest = rest.substr(0, close + 1);
    } else {
        rest = rest.substr(0, rest.find(':'));
    }
    std::string host;
    for (char c : rest) host += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!host.empty() && host.back() == '.') host.pop_back();
    return host;
}

bool origin_allowed(const std::vector<std::string>& allowed, std::string_view origin) {
    if (allowed.empty()) return true;
    std::string host = host_of(origin);
    if (host.empty()) return false;
    for (const auto& d : allowed) {
        if (d.rfind("*.", 0) == 0) {
            std::string_view suffix = std::string_view(d).substr(1);  // ".example.com"
            if (host.size() > suffix.size() && host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0) {
                return true;
            }
        } else if (host == d) {
            return true;
        }
    }
    return false;
}

std::vector<store::Migration> migrations() {
    return {store::Migration{"widget", 1, "widget settings, visitors, files", R"SQL(
CREATE TABLE widget_settings (
  channel_id TEXT PRIMARY KEY,
  settings TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE widget_visitors (
  id TEXT PRIMARY KEY,
  channel_id TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  dialog_id TEXT NOT NULL DEFAULT '',
  client_id TEXT NOT NULL DEFAULT '',
  ip TEXT NOT NULL DEFAULT '',
  params TEXT NOT NULL DEFAULT '{}',
  language TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL
);
CREATE INDEX widget_visitors_channel ON widget_visitors(channel_id);
CREATE TABLE widget_files (
  id TEXT PRIMARY KEY,
  channel_id TEXT NOT NULL,
  visitor_id TEXT NOT NULL,
  dialog_id TEXT NOT NULL,
  name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  data BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX widget_files_dialog ON widget_files(dialog_id);
)SQL"}};
}

}  // namespace parley::widget

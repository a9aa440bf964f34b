// The pure parts of webhooks: which EventHub events become which webhook events, the signature, Retry-After.
#include <sodium.h>

#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cstring>

#include "webhooks/webhooks.h"

namespace parley::webhooks {

namespace json = boost::json;

const std::vector<std::string_view>& event_types() {
    static const std::vector<std::string_view> types{"dialog.created",     "dialog.queued", "dialog.assigned",
                                                     "dialog.transferred", "dialog.closed", "dialog.message"};
    return types;
}

bool is_source_type(std::string_view hub_type) {
    return hub_type == "operator.dialog" || hub_type == "operator.transferred" || hub_type == "operator.message" ||
           hub_type == "dialog.messages";
}

std::vector<MappedEvent> map_event(std::string_view hub_type, std::string_view text) {
    std::vector<MappedEvent> out;
    if (!is_source_type(hub_type) || text.size() > kMaxPayloadBytes * 4) return out;
    json::object body;
    try {
        json::parse_options options;
        options.max_depth = 64;
        boost::system::error_code ec;
        json::value value = json::parse(text, ec, {}, options);
        if (ec || !value.is_object()) return out;
        body = std::move(value.as_object());
    } catch (...) {
        return out;
    }
    body.erase("id");
    body.erase("type");
    const json::value* dialog = body.if_contains("dialog_id");
    if (!dialog || !dialog->is_string() || dialog->as_string().empty()) return out;
    std::string entity(dialog->as_string());
    std::string key = std::string(hub_type) + " " + json::serialize(body);
    auto add = [&](std::string_view type, json::object data) {
        out.push_back(MappedEvent{std::string(type), std::move(data), entity, key});
    };
    auto text_of = [&](std::string_view name) -> std::string_view {
        const json::value* v = body.if_contains(name);
        return v && v->is_string() ? std::string_view(v->as_string()) : std::string_view();
    };

    if (hub_type == "operator.dialog") {
        std::string_view status = text_of("status");
        // The bot's hand-over carries group_id (possibly null); an operator's outgoing dialog carries outgoing:true.
        // Re-queues (an operator went offline, a supervisor's reassign) carry neither, or from_operator_id.
        const json::value* outgoing = body.if_contains("outgoing");
        bool created = (body.contains("group_id") && !body.contains("from_operator_id")) ||
                       (outgoing && outgoing->is_bool() && outgoing->as_bool());
        if (status == "queue") {
            if (created) add("dialog.created", body);
            add("dialog.queued", body);
        } else if (status == "assigned") {
            if (created) add("dialog.created", body);
            add("dialog.assigned", body);
        } else if (status == "closed") {
            add("dialog.closed", body);
        }
    } else if (hub_type == "operator.transferred") {
        add("dialog.transferred", body);
    } else if (hub_type == "operator.message") {
        add("dialog.message", body);
    } else if (hub_type == "dialog.messages") {
        // The bot module's notice that a dialog got new messages; with status "operator" they are the client's
        // messages to an operator. It carries the last message number, not the text.
        if (text_of("status") != "operator") return out;
        if (const json::value* h = body.if_contains("handover"); h && h->is_bool() && h->as_bool()) return out;
        json::object data{{"dialog_id", entity}, {"from", "client"}};
        if (const json::value* n = body.if_contains("last_n"); n && n->is_int64()) data["last_n"] = *n;
        add("dialog.message", std::move(data));
    }
    return out;
}

std::string signature(std::string_view secret, std::string_view timestamp, std::string_view body) {
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(timestamp.data()), timestamp.size());
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>("."), 1);
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(body.data()), body.size());
    std::array<unsigned char, crypto_auth_hmacsha256_BYTES> mac{};
    crypto_auth_hmacsha256_final(&state, mac.data());
    std::array<char, crypto_auth_hmacsha256_BYTES * 2 + 1> hex{};
    sodium_bin2hex(hex.data(), hex.size(), mac.data(), mac.size());
    return "sha256=" + std::string(hex.data());
}

namespace {

bool parse_uint(std::string_view text, int& out) {
    if (text.empty() || text.size() > 4) return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

/// Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

std::optional<std::int64_t> parse_retry_after(std::string_view value, std::int64_t now_ms) {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    if (value.find_first_not_of("0123456789") == std::string_view::npos) {
        if (value.size() > 9) return kMaxRetryAfterMs;  // absurdly long: the cap applies anyway
        std::int64_t seconds = 0;
        std::from_chars(value.data(), value.data() + value.size(), seconds);
        return seconds * 1000;
    }
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (exactly 29 characters).
    if (value.size() != 29 || value.substr(3, 2) != ", " || value.substr(25) != " GMT" || value[7] != ' ' ||
        value[11] != ' ' || value[16] != ' ' || value[19] != ':' || value[22] != ':') {
        return std::nullopt;
    }
    static constexpr std::array<std::string_view, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    unsigned month = 0;
    for (unsigned i = 0; i < kMonths.size(); ++i) {
        if (value.substr(8, 3) == kMonths[i]) month = i + 1;
    }
    int day = 0, year = 0, hour = 0, minute = 0, second = 0;
    if (month == 0 || !parse_uint(value.substr(5, 2), day) || !parse_uint(value.substr(12, 4), year) ||
        !parse_uint(value.substr(17, 2), hour) || !parse_uint(value.substr(20, 2), minute) ||
        !parse_uint(value.substr(23, 2), second) || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
        return std::nullopt;
    }
    std::int64_t at = (days_from_civil(year, month, static_cast<unsigned>(day)) * 86'400 + hour * 3'600 +
                       minute * 60 + second) *
                      1000;
    return std::max<std::int64_t>(0, at - now_ms);
}

}  // namespace parley::webhooks

// Infobip SMS API: POST {base}/sms/2/text/advanced with `Authorization: App <API key>`; one message per request,
// its delivery report pushed to the message's notifyUrl as {"results": [...]} with status groups (PENDING,
// UNDELIVERABLE, DELIVERED, EXPIRED, REJECTED). Inbound SMS forwarded by Infobip (the number's "forward to HTTP"
// action, JSON) arrive at the same URL as {"results": [{"messageId", "from", "to", "text", ...}]}.
#include <fmt/format.h>

#include <cctype>

#include "channels/sms.h"
#include "channels/sms_provider.h"

namespace parley::channels::internal::sms_provider {

namespace {

constexpr std::size_t kMaxErrorBytes = 500;
constexpr std::size_t kMaxCallbackDataBytes = 4000;

std::string upper(std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}
std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

/// Infobip's status group: by name, else by its id (0 ACCEPTED, 1 PENDING, 2 UNDELIVERABLE, 3 DELIVERED,
/// 4 EXPIRED, 5 REJECTED); "" when neither is given.
std::string group_of(const JsonReader& r, const json::object& status) {
    std::string name = upper(r.string(status, "groupName", 64));
    if (!name.empty()) return name;
    if (auto id = r.integer(status, "groupId")) {
        switch (*id) {
            case 0: return "ACCEPTED";
            case 1: return "PENDING";
            case 2: return "UNDELIVERABLE";
            case 3: return "DELIVERED";
            case 4: return "EXPIRED";
            case 5: return "REJECTED";
            default: return fmt::format("GROUP_{}", *id);
        }
    }
    return {};
}

bool failed_group(const std::string& g) { return g == "UNDELIVERABLE" || g == "EXPIRED" || g == "REJECTED"; }

/// "REJECTED_DESTINATION (Message rejected)" from a status or error object.
std::string describe(const JsonReader& r, const json::object& o) {
    std::string name = r.string(o, "name", 128);
    std::string text = r.string(o, "description", kMaxErrorBytes);
    if (name.empty()) return text;
    if (text.empty()) return name;
    return fmt::format("{} ({})", name, text);
}

InboundEvent read_result(const JsonReader& r, const json::value& item) {
    const json::object& o = r.item(item, "results");
    InboundEvent e;
    std::string id = r.required_id(o, "messageId");
    if (const json::object* status = r.object(o, "status")) {
        std::string group = group_of(r, *status);
        if (group.empty()) r.fail("'status.groupName' is missing");
        e.message_ids.push_back(id);
        e.chat_id = sms::phone_digits(r.string(o, "to"));
        e.timestamp_ms = parse_timestamp(r.string(o, "doneAt", 64));
        e.key = fmt::format("dlr:{}:{}", id, lower(cut_bytes(group, 64)));
        if (group == "DELIVERED") {
            e.type = InboundEvent::Type::kReceipt;
            e.receipt = "delivered";
        } else if (failed_group(group)) {
            e.type = InboundEvent::Type::kReceipt;
            e.receipt = "failed";
            e.error = fmt::format("Infobip {}: {}", group, describe(r, *status));
            if (const json::object* error = r.object(o, "error")) {
                std::string why = describe(r, *error);
                if (!why.empty() && r.string(*error, "name", 128) != "NO_ERROR") e.error += "; " + why;
            }
            e.error = cut_bytes(std::move(e.error), 1000);
        } else {
            e.type = InboundEvent::Type::kIgnored;  // PENDING, ACCEPTED: the final report follows
        }
        return e;
    }
    // A forwarded inbound SMS (MO).
    std::string from = r.string(o, "from", 64);
    if (from.empty()) r.fail("a result is neither a delivery report (status) nor a message (from)");
    e.type = InboundEvent::Type::kMessage;
    e.key = "mo:" + id;
    std::string digits = sms::phone_digits(from);
    e.user_id = digits.empty() ? from : digits;
    e.chat_id = e.user_id;
    e.timestamp_ms = parse_timestamp(r.string(o, "receivedAt", 64));
    e.message = scenario::ClientMessage::from_text(r.string(o, "text", kMaxInboundTextBytes));
    return e;
}

/// requestError.serviceException.{messageId,text} of an error answer.
std::string request_error(const json::value& v) {
    if (!v.is_object()) return {};
    const auto* re = v.get_object().if_contains("requestError");
    if (!re || !re->is_object()) return {};
    const auto* se = re->get_object().if_contains("serviceException");
    if (!se || !se->is_object()) return {};
    std::string out;
    for (const char* key : {"messageId", "text"}) {
        const auto* x = se->get_object().if_contains(key);
        if (x && x->is_string()) {
            if (!out.empty()) out += ": ";
            out += std::string(x->get_string());
        }
    }
    return cut_bytes(std::move(out), kMaxErrorBytes);
}

}  // namespace

outbound::Request infobip_request(const Outgoing& sms) {
    json::object message{{"destinations", json::array{json::object{{"to", sms.phone}}}},
                         {"text", sms.text},
                         {"notifyUrl", sms.report_url},
                         {"notifyContentType", "application/json"},
                         {"callbackData", cut_bytes(sms.reference, kMaxCallbackDataBytes)}};
    if (!sms.sender.empty()) message["from"] = sms.sender;
    if (sms.validity_minutes > 0) message["validityPeriod"] = sms.validity_minutes;
    outbound::Request req = json_post(sms.base_url + std::string(kInfobipPath),
                                      json::object{{"messages", json::array{std::move(message)}}});
    req.headers.emplace_back("Authorization", "App " + sms.api_key);
    req.headers.emplace_back("Accept", "application/json");
    return req;
}

SendResult infobip_classify(const outbound::Response& r) {
    SendResult out;
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (r.status < 200 || r.status >= 300) {
        // 400 (a bad destination or sender), 404...: the same request fails again.
        out.outcome = SendResult::Outcome::kPermanent;
        std::string why = ec ? std::string() : request_error(v);
        out.error = why.empty() ? fmt::format("HTTP {}", r.status) : fmt::format("HTTP {}: {}", r.status, why);
        return out;
    }
    const json::object* first = nullptr;
    if (!ec && v.is_object()) {
        if (const auto* messages = v.get_object().if_contains("messages");
            messages && messages->is_array() && !messages->get_array().empty() &&
            messages->get_array()[0].is_object()) {
            first = &messages->get_array()[0].get_object();
        }
    }
    if (!first) {
        out.outcome = SendResult::Outcome::kTransient;
        out.error = fmt::format("HTTP {}: not an Infobip answer", r.status);
        return out;
    }
    JsonReader reader("Infobip answer");
    try {
        std::string group;
        std::string detail;
        if (const json::object* status = reader.object(*first, "status")) {
            group = group_of(reader, *status);
            detail = describe(reader, *status);
        }
        if (failed_group(group)) {
            out.outcome = SendResult::Outcome::kPermanent;
            out.error = fmt::format("Infobip {}: {}", group, detail);
            return out;
        }
        out.outcome = SendResult::Outcome::kOk;
        out.message_id = reader.id(*first, "messageId");
    } catch (const core::Error&) {
        out.outcome = SendResult::Outcome::kTransient;
        out.error = "not an Infobip answer";
    }
    return out;
}

std::vector<InboundEvent> infobip_parse(const JsonReader& r, const json::object& root) {
    const json::array* results = r.array(root, "results");
    if (!results) r.fail("'results' is not an array");
    std::vector<InboundEvent> out;
    for (const auto& item : *results) out.push_back(read_result(r, item));
    return out;
}

std::int64_t parse_timestamp(std::string_view s) {
    // yyyy-MM-ddTHH:mm:ss[.SSS](Z|+hhmm|+hh:mm)
    auto digits = [&](std::size_t at, std::size_t n, int& out) {
        if (at + n > s.size()) return false;
        out = 0;
        for (std::size_t i = at; i < at + n; ++i) {
            if (s[i] < '0' || s[i] > '9') return false;
            out = out * 10 + (s[i] - '0');
        }
        return true;
    };
    int y, mo, d, h, mi, sec;
    if (s.size() < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':' || !digits(0, 4, y) || !digits(5, 2, mo) || !digits(8, 2, d) || !digits(11, 2, h) ||
        !digits(14, 2, mi) || !digits(17, 2, sec) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60) {
        return 0;
    }
    std::size_t at = 19;
    int ms = 0;
    if (at < s.size() && s[at] == '.') {
        ++at;
        int scale = 100;
        while (at < s.size() && s[at] >= '0' && s[at] <= '9') {
            ms += (s[at] - '0') * scale;
            scale /= 10;
            ++at;
        }
    }
    int offset_min = 0;
    if (at < s.size() && (s[at] == '+' || s[at] == '-')) {
        int sign = s[at] == '-' ? -1 : 1;
        int oh = 0, om = 0;
        if (!digits(at + 1, 2, oh)) return 0;
        std::size_t m = at + 3 < s.size() && s[at + 3] == ':' ? at + 4 : at + 3;
        if (!digits(m, 2, om)) return 0;
        offset_min = sign * (oh * 60 + om);
    } else if (at < s.size() && s[at] != 'Z') {
        return 0;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    int yy = mo <= 2 ? y - 1 : y;
    int era = (yy >= 0 ? yy : yy - 399) / 400;
    int yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    std::int64_t days = static_cast<std::int64_t>(era) * 146097 + doe - 719468;
    std::int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - static_cast<std::int64_t>(offset_min) * 60;
    return secs * 1000 + ms;
}

}  // namespace parley::channels::internal::sms_provider

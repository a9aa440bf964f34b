// Alpha SMS (alphasms.net / alphasms.ua) JSON API: POST {base}/api/json.php with {"auth": API key, "data":
// [{"type": "sms", ...}]}; the answer lists one result per message with its msg_id. Delivery statuses come to the
// per-message `hook` URL. The hook's body is not publicly documented: README.md "SMS channel" states what is
// assumed and accepted.
#include <fmt/format.h>

#include <cctype>

#include "channels/sms.h"
#include "channels/sms_provider.h"

namespace parley::channels::internal::sms_provider {

namespace {

constexpr std::size_t kMaxErrorBytes = 500;

/// Alpha SMS's per-message `id` is an integer chosen by the sender: a stable 53-bit hash of the reference, so
/// that a retried message keeps its id.
std::int64_t message_number(std::string_view reference) {
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : reference) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    auto n = static_cast<std::int64_t>(h & ((1ULL << 53) - 1));
    return n == 0 ? 1 : n;
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

/// delivered | failed | "" (an intermediate or unknown status: stored, not acted upon).
std::string receipt_of(const std::string& status) {
    std::string s = lower(status);
    for (const char* d : {"delivered", "delivrd", "deliver"}) {
        if (s == d) return "delivered";
    }
    for (const char* f : {"undelivered", "undeliv", "undeliverable", "not_delivered", "not_deliver", "rejected",
                          "rejectd", "expired", "failed", "error", "deleted"}) {
        if (s == f) return "failed";
    }
    return {};
}

std::string text_or_number(const JsonReader& r, const json::object& o, std::string_view key) {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) return {};
    if (it->value().is_string()) return cut_bytes(std::string(it->value().get_string()), kMaxShortBytes);
    if (it->value().is_int64()) return std::to_string(it->value().get_int64());
    if (it->value().is_uint64()) return std::to_string(it->value().get_uint64());
    r.fail(fmt::format("'{}' is not a string or an integer", key));
}

InboundEvent read_report(const JsonReader& r, const json::value& item) {
    const json::object& o = r.item(item, "data");
    InboundEvent e;
    std::string id = r.id(o, "msg_id");
    if (id.empty()) id = r.id(o, "message_id");
    if (id.empty()) r.fail("'msg_id' is missing");
    std::string status = text_or_number(r, o, "status");
    if (status.empty()) r.fail("'status' is missing");
    e.receipt = receipt_of(status);
    e.type = e.receipt.empty() ? InboundEvent::Type::kIgnored : InboundEvent::Type::kReceipt;
    e.key = fmt::format("dlr:{}:{}", id, cut_bytes(lower(status), 64));
    e.message_ids.push_back(id);
    e.chat_id = sms::phone_digits(text_or_number(r, o, "phone"));
    if (e.receipt == "failed") {
        std::string why = r.string(o, "error", kMaxErrorBytes);
        e.error = why.empty() ? "Alpha SMS status " + status : fmt::format("Alpha SMS status {}: {}", status, why);
    }
    return e;
}

}  // namespace

outbound::Request alpha_request(const Outgoing& sms) {
    json::object message{{"type", "sms"},
                         {"id", message_number(sms.reference)},
                         {"phone", std::stoll(sms.phone)},  // digits only, at most 15: fits
                         {"sms_signature", sms.sender},
                         {"sms_message", sms.text},
                         {"hook", sms.report_url}};
    if (sms.validity_minutes > 0) message["sms_lifetime"] = static_cast<std::int64_t>(sms.validity_minutes) * 60;
    json::object body{{"auth", sms.api_key}, {"data", json::array{std::move(message)}}};
    outbound::Request req = json_post(sms.base_url + std::string(kAlphaSmsPath), body);
    req.headers.emplace_back("Accept", "application/json");
    return req;
}

SendResult alpha_classify(const outbound::Response& r) {
    SendResult out;
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    bool ok_status = r.status >= 200 && r.status < 300;
    if (ec || !v.is_object()) {
        out.outcome = ok_status ? SendResult::Outcome::kTransient : SendResult::Outcome::kPermanent;
        out.error = fmt::format("HTTP {}: not an Alpha SMS answer", r.status);
        return out;
    }
    const json::object& o = v.get_object();
    auto error_of = [](const json::object& x) {
        auto it = x.find("error");
        return it != x.end() && it->value().is_string() ? cut_bytes(std::string(it->value().get_string()), kMaxErrorBytes)
                                                         : std::string("unknown error");
    };
    auto success = [](const json::object& x) {
        auto it = x.find("success");
        return it != x.end() && ((it->value().is_bool() && it->value().get_bool()) ||
                                 (it->value().is_int64() && it->value().get_int64() == 1));
    };
    if (!ok_status || !success(o)) {
        // "Access denied" (a wrong key), a blocked account, no funds...: Alpha SMS answers 200 with success false;
        // none of these heals by retrying the same request.
        out.outcome = SendResult::Outcome::kPermanent;
        out.error = fmt::format("Alpha SMS: {}", error_of(o));
        return out;
    }
    const json::object* first = nullptr;
    if (auto it = o.find("data"); it != o.end() && it->value().is_array() && !it->value().get_array().empty() &&
                                  it->value().get_array()[0].is_object()) {
        first = &it->value().get_array()[0].get_object();
    }
    if (!first) {
        out.outcome = SendResult::Outcome::kTransient;
        out.error = "Alpha SMS: the answer lists no message";
        return out;
    }
    if (!success(*first)) {
        out.outcome = SendResult::Outcome::kPermanent;  // "Error in Alpha-name", a bad phone number...
        out.error = fmt::format("Alpha SMS: {}", error_of(*first));
        return out;
    }
    out.outcome = SendResult::Outcome::kOk;
    if (auto it = first->find("data"); it != first->end() && it->value().is_object()) {
        const json::object& d = it->value().get_object();
        if (auto m = d.find("msg_id"); m != d.end()) {
            if (m->value().is_int64()) out.message_id = std::to_string(m->value().get_int64());
            if (m->value().is_uint64()) out.message_id = std::to_string(m->value().get_uint64());
            if (m->value().is_string()) out.message_id = cut_bytes(std::string(m->value().get_string()), kMaxShortBytes);
        }
    }
    return out;
}

std::vector<InboundEvent> alpha_parse(const JsonReader& r, const json::value& v) {
    std::vector<InboundEvent> out;
    if (v.is_array()) {
        if (v.get_array().size() > kMaxEventsPerWebhook) r.fail(fmt::format("more than {} reports", kMaxEventsPerWebhook));
        for (const auto& item : v.get_array()) out.push_back(read_report(r, item));
        return out;
    }
    const json::object& root = r.root(v);
    if (const json::array* data = r.array(root, "data")) {
        for (const auto& item : *data) out.push_back(read_report(r, item));
        return out;
    }
    out.push_back(read_report(r, v));
    return out;
}

}  // namespace parley::channels::internal::sms_provider

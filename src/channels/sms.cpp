// The SMS channel (kind `sms`): outbound SMS through Alpha SMS or Infobip (credentials.provider), delivery reports
// on the channel's webhook verified by a secret token in the report URL, and Infobip's forwarded inbound SMS as
// client messages. This file holds the GSM-7 / UCS-2 arithmetic and the adapter; sms_alpha.cpp and
// sms_infobip.cpp the providers' request and answer shapes.
#include "channels/sms.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "channels/adapter.h"
#include "channels/internal/adapters.h"
#include "channels/internal/parse_util.h"
#include "channels/sms_provider.h"
#include "core/error.h"
#include "core/json.h"

namespace parley::channels {

namespace sms {

namespace {

/// One decoded character: its code point (U+FFFD for an invalid byte) and its bytes in the input.
struct Char {
    char32_t cp;
    std::size_t begin;
    std::size_t size;
};

std::vector<Char> decode(std::string_view s) {
    std::vector<Char> out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        char32_t cp = 0xFFFD;
        bool ok = len > 0 && i + len <= s.size();
        for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
        if (ok) {
            cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
            for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        } else {
            len = 1;  // an invalid byte counts as one (non-GSM) character, as split_text() does
        }
        out.push_back(Char{cp, i, len});
        i += len;
    }
    return out;
}

// GSM 03.38 default alphabet beyond printable ASCII, and the ASCII characters it lacks.
constexpr char32_t kGsmExtra[] = {U'£', U'¥', U'è', U'é', U'ù', U'ì', U'ò', U'Ç', U'Ø', U'ø', U'Å', U'å', U'Δ',
                                  U'Φ', U'Γ', U'Λ', U'Ω', U'Π', U'Ψ', U'Σ', U'Θ', U'Ξ', U'Æ', U'æ', U'ß', U'É',
                                  U'¤', U'¡', U'Ä', U'Ö', U'Ñ', U'Ü', U'§', U'¿', U'ä', U'ö', U'ñ', U'ü', U'à'};
constexpr std::u32string_view kGsmExtension = U"^{}\\[~]|€\f";

std::size_t units_of(char32_t c, Encoding e) {
    if (e == Encoding::kGsm7) return gsm_septets(c);
    return c > 0xFFFF ? 2 : 1;
}

Encoding encoding_of(const std::vector<Char>& chars) {
    for (const auto& c : chars) {
        if (!is_gsm(c.cp)) return Encoding::kUcs2;
    }
    return Encoding::kGsm7;
}

/// Segments of a concatenated message, packing characters without splitting one across segments.
class Packer {
public:
    explicit Packer(Encoding e) : e_(e), per_segment_(e == Encoding::kGsm7 ? kGsmMulti : kUcs2Multi) {}
    void add(char32_t c) {
        std::size_t u = units_of(c, e_);
        total_ += u;
        if (segments_ == 0 || used_ + u > per_segment_) {
            ++segments_;
            used_ = 0;
        }
        used_ += u;
    }
    std::size_t total() const { return total_; }
    std::size_t segments() const {
        if (total_ == 0) return 0;
        return total_ <= (e_ == Encoding::kGsm7 ? kGsmSingle : kUcs2Single) ? 1 : segments_;
    }

private:
    Encoding e_;
    std::size_t per_segment_;
    std::size_t total_ = 0;
    std::size_t used_ = 0;
    std::size_t segments_ = 0;
};

}  // namespace

bool is_gsm(char32_t c) {
    if (c == '\n' || c == '\r') return true;
    if (c >= 0x20 && c < 0x7F) return c != '`';  // every printable ASCII character except the backtick
    for (char32_t x : kGsmExtra) {
        if (x == c) return true;
    }
    return kGsmExtension.find(c) != std::u32string_view::npos;
}

std::size_t gsm_septets(char32_t c) { return kGsmExtension.find(c) != std::u32string_view::npos ? 2 : 1; }

Count count(std::string_view utf8) {
    auto chars = decode(utf8);
    Count out;
    out.encoding = encoding_of(chars);
    Packer p(out.encoding);
    for (const auto& c : chars) p.add(c.cp);
    out.units = p.total();
    out.segments = p.segments();
    return out;
}

std::vector<std::string> split(std::string_view utf8, int max_segments) {
    std::vector<std::string> parts;
    if (utf8.empty()) return parts;
    std::size_t limit = static_cast<std::size_t>(std::clamp(max_segments, 1, kMaxSegmentsLimit));
    auto chars = decode(utf8);
    Encoding e = encoding_of(chars);
    std::size_t pos = 0;  // index into chars
    while (pos < chars.size()) {
        // The longest prefix from pos that fits (validity is monotone: once over, adding never fits again).
        Packer p(e);
        std::size_t end = pos;
        while (end < chars.size()) {
            Packer next = p;
            next.add(chars[end].cp);
            if (next.segments() > limit) break;
            p = next;
            ++end;
        }
        if (end == pos) ++end;  // cannot happen (one character always fits); guards the loop
        std::size_t next_pos = end;
        std::size_t cut = end;
        if (end < chars.size() && (chars[end].cp == '\n' || chars[end].cp == ' ')) {
            next_pos = end + 1;  // the message ends right before a separator: drop it
        } else if (end < chars.size()) {
            std::size_t quarter = pos + (end - pos) - (end - pos) / 4;
            for (std::size_t k = end; k-- > quarter && k > pos;) {
                if (chars[k].cp == '\n') {
                    cut = k;
                    break;
                }
            }
            if (cut == end) {
                for (std::size_t k = end; k-- > quarter && k > pos;) {
                    if (chars[k].cp == ' ') {
                        cut = k;
                        break;
                    }
                }
            }
            if (cut != end) next_pos = cut + 1;  // the separator is dropped
        }
        std::size_t from = chars[pos].begin;
        std::size_t to = cut < chars.size() ? chars[cut].begin : utf8.size();
        parts.emplace_back(utf8.substr(from, to - from));
        pos = next_pos;
    }
    return parts;
}

std::string with_numbered_buttons(std::string text, const std::vector<scenario::ReplyButton>& buttons) {
    for (std::size_t i = 0; i < buttons.size(); ++i) {
        if (!text.empty()) text += "\n";
        text += fmt::format("{}. {}", i + 1, buttons[i].text.empty() ? buttons[i].id : buttons[i].text);
    }
    return text;
}

std::string phone_digits(std::string_view text) {
    std::string digits;
    std::size_t i = 0;
    while (i < text.size() && text[i] == ' ') ++i;
    if (i < text.size() && text[i] == '+') ++i;
    for (; i < text.size(); ++i) {
        char c = text[i];
        if (c >= '0' && c <= '9') {
            digits += c;
        } else if (c != ' ' && c != '-' && c != '(' && c != ')' && c != '.') {
            return {};
        }
    }
    if (digits.size() < 7 || digits.size() > 15) return {};
    return digits;
}

}  // namespace sms

namespace {

namespace provider = internal::sms_provider;

constexpr std::size_t kMaxApiKeyBytes = 512;
constexpr std::size_t kMaxAlphaSenderChars = 11;  ///< alphanumeric sender ids (GSM: 11 characters)
constexpr std::size_t kMaxNumericSenderDigits = 15;
constexpr std::size_t kMinWebhookTokenBytes = 16;
constexpr std::size_t kMaxWebhookTokenBytes = 256;
constexpr std::int64_t kMaxValidityMinutes = 48 * 60;  ///< Infobip caps validity at 48 h; Alpha SMS alike

/// A small integer given as a JSON integer or a decimal string; nullopt when absent.
std::optional<std::int64_t> small_integer(const json::object& in, std::string_view key, std::int64_t lo,
                                          std::int64_t hi) {
    auto it = in.find(key);
    if (it == in.end() || it->value().is_null()) return std::nullopt;
    std::int64_t v = 0;
    bool ok = false;
    if (it->value().is_int64()) {
        v = it->value().get_int64();
        ok = true;
    } else if (it->value().is_string()) {
        std::string_view s = it->value().get_string();
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        ok = ec == std::errc() && end == s.data() + s.size() && !s.empty();
    }
    if (!ok || v < lo || v > hi) internal::bad_credential(key, fmt::format("must be an integer from {} to {}", lo, hi));
    return v;
}

std::string checked_sender(const json::object& in) {
    std::string sender = internal::optional_credential(in, "sender", 64, true);
    if (sender.empty()) return sender;
    std::string digits = sender[0] == '+' ? sender.substr(1) : sender;
    bool numeric = !digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) {
        if (digits.size() > kMaxNumericSenderDigits) {
            internal::bad_credential("sender", fmt::format("a numeric sender has at most {} digits", kMaxNumericSenderDigits));
        }
        return digits;
    }
    for (unsigned char c : sender) {
        if (c >= 0x80) internal::bad_credential("sender", "an alphanumeric sender (alpha name) is Latin letters, digits and spaces");
    }
    if (sender.size() > kMaxAlphaSenderChars) {
        internal::bad_credential("sender", fmt::format("an alphanumeric sender (alpha name) has at most {} characters",
                                                       kMaxAlphaSenderChars));
    }
    return sender;
}

int max_segments_of(const ChannelRef& c) {
    auto it = c.credentials.find("max_segments");
    if (it != c.credentials.end() && it->value().is_int64()) {
        return static_cast<int>(std::clamp<std::int64_t>(it->value().get_int64(), 1, sms::kMaxSegmentsLimit));
    }
    return sms::kDefaultMaxSegments;
}

int validity_of(const ChannelRef& c) {
    auto it = c.credentials.find("validity_minutes");
    if (it != c.credentials.end() && it->value().is_int64()) {
        return static_cast<int>(std::clamp<std::int64_t>(it->value().get_int64(), 0, kMaxValidityMinutes));
    }
    return 0;
}

/// The token delivery-report URLs carry: credentials.webhook_token when set (so that it can be typed into
/// Infobip's inbound forwarding), else the channel's random webhook secret.
std::string report_token(const ChannelRef& c) {
    std::string token = c.credential("webhook_token");
    return token.empty() ? c.webhook_secret : token;
}

std::int64_t retry_after_ms(const outbound::Response& r) {
    std::int64_t s = 0;
    std::string_view h = r.header("retry-after");
    while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
    std::from_chars(h.data(), h.data() + h.size(), s);
    return std::clamp<std::int64_t>(s, 1, 3600) * 1000;
}

class SmsAdapter final : public Adapter {
public:
    std::string_view kind() const override { return "sms"; }
    // The interface has one default per kind: Alpha SMS's. An Infobip channel saved without api_base_url sends to
    // kInfobipBaseUrl instead (see render()).
    std::string default_api_base_url() const override { return std::string(provider::kAlphaSmsBaseUrl); }

    json::object validate_credentials(const json::object& in) const override {
        core::reject_unknown_fields(in, {"provider", "api_key", "sender", "max_segments", "validity_minutes",
                                         "webhook_token"});
        std::string which = internal::required_credential(in, "provider", 32);
        if (which != provider::kAlphaSms && which != provider::kInfobip) {
            internal::bad_credential("provider", "must be alphasms or infobip");
        }
        json::object out{{"provider", which}, {"api_key", internal::required_credential(in, "api_key", kMaxApiKeyBytes)}};
        std::string sender = checked_sender(in);
        if (sender.empty() && which == provider::kAlphaSms) {
            internal::bad_credential("sender", "is required (the alpha name registered with Alpha SMS)");
        }
        if (!sender.empty()) out["sender"] = sender;
        out["max_segments"] = small_integer(in, "max_segments", 1, sms::kMaxSegmentsLimit).value_or(sms::kDefaultMaxSegments);
        if (auto v = small_integer(in, "validity_minutes", 1, kMaxValidityMinutes)) out["validity_minutes"] = *v;
        std::string token = internal::optional_credential(in, "webhook_token", kMaxWebhookTokenBytes);
        if (!token.empty()) {
            if (token.size() < kMinWebhookTokenBytes) {
                internal::bad_credential("webhook_token", fmt::format("must be at least {} bytes", kMinWebhookTokenBytes));
            }
            if (token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") !=
                std::string::npos) {
                internal::bad_credential("webhook_token", "may contain only letters, digits and - . _ ~");
            }
            out["webhook_token"] = token;
        }
        return out;
    }

    AdapterLimits limits() const override {
        AdapterLimits l;
        l.channel_per_second = 10;  // SMS costs money: a conservative default (ChannelOptions overrides)
        l.chat_per_second = 0;
        l.max_payload_bytes = 200;  // buttons are numbered text: no payload is sent
        return l;
    }

    void verify(const ChannelRef& c, const WebhookRequest& r) const override {
        std::string_view given;
        if (auto q = r.query_param("token")) {
            given = *q;
        } else {
            given = r.header("x-parley-token");
        }
        std::string configured = c.credential("webhook_token");
        bool ok = equal_secret(given, c.webhook_secret) || (!configured.empty() && equal_secret(given, configured));
        if (!ok) throw core::Unauthorized("the report URL's token is missing or wrong", "invalid_signature");
    }

    std::vector<InboundEvent> parse(std::string_view body) const override {
        internal::JsonReader r("SMS provider");
        json::value v = r.parse(body);
        if (v.is_object() && v.get_object().contains("results")) return provider::infobip_parse(r, v.get_object());
        return provider::alpha_parse(r, v);
    }

    Rendered render(const ChannelRef& c, const OutboundContext& to, std::string_view text,
                    const std::vector<scenario::ReplyButton>& buttons, const PayloadOf&) const override {
        Rendered out;
        std::string which = c.credential("provider");
        if (which != provider::kAlphaSms && which != provider::kInfobip) {
            out.refused = "the SMS channel has no provider (credentials.provider: alphasms or infobip)";
            return out;
        }
        std::string body = sms::with_numbered_buttons(std::string(text), buttons);
        if (body.empty()) return out;
        provider::Outgoing sms;
        sms.phone = sms::phone_digits(to.chat_id);
        if (sms.phone.empty()) {
            out.refused = fmt::format("'{}' is not a phone number", cut_chars(to.chat_id, 64));
            return out;
        }
        sms.base_url = c.api_base_url;
        if (which == provider::kInfobip && sms.base_url == provider::kAlphaSmsBaseUrl) {
            sms.base_url = provider::kInfobipBaseUrl;
        }
        sms.api_key = c.credential("api_key");
        sms.sender = c.credential("sender");
        sms.validity_minutes = validity_of(c);
        sms.report_url = fmt::format("{}?token={}", c.webhook_url, report_token(c));
        std::vector<std::string> parts = sms::split(body, max_segments_of(c));
        if (parts.size() > sms::kMaxMessagesPerReply) parts.resize(sms::kMaxMessagesPerReply);
        for (std::size_t i = 0; i < parts.size(); ++i) {
            sms.text = parts[i];
            sms.reference = fmt::format("{}:{}:{}", to.dialog_id, to.n, i);
            out.requests.push_back(which == provider::kInfobip ? provider::infobip_request(sms)
                                                               : provider::alpha_request(sms));
        }
        return out;
    }

    SendResult classify(const outbound::Response& r) const override {
        SendResult out;
        if (r.error) {
            out.outcome = SendResult::Outcome::kTransient;
            out.error = fmt::format("{}: {}", outbound::error_code_name(r.error->code), r.error->message);
            return out;
        }
        if (r.status == 429) {
            out.outcome = SendResult::Outcome::kRetryAfter;
            out.retry_after_ms = retry_after_ms(r);
            out.error = "HTTP 429";
            return out;
        }
        if (r.status >= 500 || r.status == 408) {
            out.outcome = SendResult::Outcome::kTransient;
            out.error = fmt::format("HTTP {}", r.status);
            return out;
        }
        if (r.status == 401 || r.status == 403) {
            out.outcome = SendResult::Outcome::kPermanent;
            out.error = fmt::format("HTTP {}: the provider refused the API key", r.status);
            return out;
        }
        // The request's path tells the providers apart (the answer does not carry the channel).
        bool infobip = r.url.find(provider::kInfobipPath) != std::string::npos;
        bool alpha = r.url.find(provider::kAlphaSmsPath) != std::string::npos;
        if (!infobip && !alpha) infobip = r.body.find("\"messages\"") != std::string::npos || r.body.find("requestError") != std::string::npos;
        return infobip ? provider::infobip_classify(r) : provider::alpha_classify(r);
    }
};

}  // namespace

namespace internal {
std::unique_ptr<Adapter> make_sms_adapter() { return std::make_unique<SmsAdapter>(); }
}  // namespace internal

}  // namespace parley::channels

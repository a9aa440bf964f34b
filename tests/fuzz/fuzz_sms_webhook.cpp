// Fuzzes the SMS channel's webhook parser (Infobip delivery reports and forwarded inbound SMS, Alpha SMS status
// hooks) and its reply rendering; the shared invariants are in webhook_fuzz.h. Also: rendering with each provider
// builds parsable requests, and splitting a text keeps every message within the segment limit without losing a
// byte other than the line breaks and spaces it cut at.
#include "channels/sms.h"
#include "webhook_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    webhook_fuzz::fuzz_webhook({"sms"}, data, size);
    using namespace parley::channels;
    std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string text = webhook_fuzz::reply_text(input);
    int max_segments = 1 + static_cast<int>(size % 10);
    std::size_t kept = 0;
    for (const auto& part : sms::split(text, max_segments)) {
        if (part.empty() && !text.empty()) __builtin_trap();
        if (sms::count(part).segments > static_cast<std::size_t>(max_segments)) __builtin_trap();
        kept += part.size();
    }
    if (kept > text.size()) __builtin_trap();
    const Adapter* adapter = find_adapter("sms");
    for (const char* provider : {"alphasms", "infobip"}) {
        ChannelRef channel;
        channel.id = "c";
        channel.kind = "sms";
        channel.api_base_url = "http://127.0.0.1:1";
        channel.webhook_url = "https://parley.example/hooks/c";
        channel.webhook_secret = "0123456789abcdef";
        channel.credentials = adapter->validate_credentials(boost::json::object{
            {"provider", provider}, {"api_key", "k"}, {"sender", "Shop"}, {"max_segments", max_segments}});
        OutboundContext to{"+380 50 123 45 67", "u", "d", 1, 0, 0};
        std::vector<parley::scenario::ReplyButton> buttons;
        if (size % 3 == 0) buttons.push_back({"b", webhook_fuzz::ascii_copy(input.substr(0, 20))});
        Rendered r = adapter->render(channel, to, text, buttons, [](const std::string& id) { return id; });
        if (!r.refused.empty() || r.requests.size() > sms::kMaxMessagesPerReply) __builtin_trap();
        for (const auto& request : r.requests) {
            boost::system::error_code ec;
            boost::json::parse(request.body, ec);
            if (ec) __builtin_trap();
        }
    }
    return 0;
}

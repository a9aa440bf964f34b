/// The email channel (kind `email`): IMAP polling and SMTP sending through libcurl, MIME through GMime 3.
/// This header holds the pure parts (tested and fuzzed on their own): the MIME → message parser, HTML → text,
/// quoted-reply stripping, the composer of replies, and the channel's settings read from its credentials.
/// The blocking IMAP/SMTP transfers are in email_transport.cpp; the adapter (email.cpp) plugs both into the
/// channel runtime through Adapter::transport().
#pragma once

#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "channels/adapter.h"

namespace parley::channels::email {

namespace json = boost::json;

// --- limits (README "Email channel") ------------------------------------------------------------------------------
inline constexpr std::size_t kMaxMessageBytes = 10 * 1024 * 1024;  ///< a larger mail: only its header is imported
inline constexpr std::size_t kMaxMessagesPerPoll = 50;              ///< the rest comes with the next poll
inline constexpr std::size_t kMaxTextBytes = 16 * 1024;             ///< inbound text kept (cut at a character)
inline constexpr std::size_t kMaxAttachments = 20;                  ///< per inbound mail; the rest are listed only
inline constexpr std::size_t kMaxHtmlBytes = 2 * 1024 * 1024;       ///< HTML bodies longer are cut before parsing
inline constexpr std::size_t kMaxMimeDepth = 16;                    ///< nested multiparts deeper are not walked
inline constexpr std::size_t kMaxKeyBytes = 200;                    ///< longer Message-IDs are hashed (the key)
inline constexpr std::size_t kMaxReferences = 50;                   ///< References kept for threading
inline constexpr std::size_t kMaxSubjectBytes = 998;
inline constexpr std::int64_t kDefaultPollIntervalS = 60;
inline constexpr std::int64_t kMinPollIntervalS = 1;
inline constexpr std::int64_t kMaxPollIntervalS = 3600;
inline constexpr std::int64_t kTransferTimeoutMs = 60'000;  ///< one IMAP/SMTP transfer (login included)

/// One attachment of an inbound mail (decoded bytes).
struct Attachment {
    std::string filename;      ///< "" when the part has none
    std::string content_type;  ///< lower case, e.g. application/pdf
    std::string data;
};

/// An inbound mail reduced to what the channel needs.
struct Mail {
    std::string message_id;               ///< without angle brackets; "" when absent
    std::string in_reply_to;              ///< the first id of In-Reply-To
    std::vector<std::string> references;  ///< References in order (at most kMaxReferences: the first and last)
    std::string subject;                  ///< decoded to UTF-8
    std::string from_address;             ///< lower case; "" when there is no usable From
    std::string from_name;
    std::string reply_to;                 ///< the Reply-To address when it differs from From ("" otherwise)
    std::int64_t date_ms = 0;
    std::string text;  ///< body as UTF-8 text: text/plain preferred, else HTML reduced; quoted reply stripped
    std::vector<Attachment> attachments;  ///< at most kMaxAttachments
    std::size_t attachments_dropped = 0;  ///< over kMaxAttachments
    bool malformed = false;               ///< GMime could not parse it: `text` is the raw bytes made readable
    bool automatic = false;  ///< Auto-Submitted (not "no"), Precedence bulk/junk/list, X-Autoreply: never answered

    /// The thread a mail belongs to: the first References id, else In-Reply-To, else its own Message-ID.
    std::string thread_key() const;
    /// The idempotency key: the Message-ID (hashed beyond kMaxKeyBytes), else a hash of the raw header block.
    std::string key(std::string_view raw) const;
};

/// Parses a raw RFC 5322 message. Never throws on malformed input: an unparseable message comes back with
/// `malformed` set and its bytes as readable text.
Mail parse_mail(std::string_view raw);

/// HTML → text: paragraphs and block elements become line breaks, `<br>` a line break, `<li>` a "• " line, links
/// `text (url)` when the URL differs from the text; script, style, head and comments are dropped.
std::string html_to_text(std::string_view html);

/// Strips a quoted reply (best effort): from the first "On ... wrote:" line (also split over two lines) or an
/// Outlook "-----Original Message-----" / "From: ..." block, and every line starting with '>'. Returns the text
/// unchanged when stripping would leave nothing.
std::string strip_quoted(std::string_view text);

/// Any bytes → valid UTF-8 (invalid sequences become U+FFFD), NUL and control characters except \n and \t dropped,
/// \r\n → \n.
std::string readable_text(std::string_view bytes);

/// An outbound mail.
struct Outgoing {
    std::string from_address;
    std::string from_name;
    std::string to_address;
    std::string subject;
    std::string message_id;               ///< without brackets
    std::string in_reply_to;              ///< without brackets; "" for a new thread
    std::vector<std::string> references;  ///< without brackets
    std::string text;
    bool html = false;  ///< also a text/html alternative (paragraphs, links)
    std::int64_t date_ms = 0;
};

/// The RFC 5322 message (CRLF line ends) of `mail`.
std::string compose(const Outgoing& mail);

/// "Re: subject" unless the subject already starts with a reply prefix (Re:, RE:, Fwd:, Aw:, Відп:...).
std::string reply_subject(std::string_view subject);

/// The channel's settings, from its credentials (README "Email channel").
struct Settings {
    std::string provider;  ///< gmail | outlook | custom
    std::string imap_host;
    int imap_port = 993;
    std::string imap_security = "tls";  ///< tls (implicit, imaps) | starttls | none
    std::string smtp_host;
    int smtp_port = 465;
    std::string smtp_security = "tls";
    std::string username;
    std::string password;
    std::string address;  ///< the From address (default: username)
    std::string from_name;
    std::string folder = "INBOX";
    std::int64_t poll_interval_s = kDefaultPollIntervalS;
    bool send_html = false;
    bool mark_seen = true;

    /// Validates and normalises credentials (core::BadRequest `invalid_credentials` naming `credentials.KEY`).
    static json::object validate(const json::object& credentials);
    /// Reads validated credentials.
    static Settings from(const json::object& credentials);
};

/// The adapter's factory (find_adapter("email")).
std::unique_ptr<Adapter> make_adapter();

}  // namespace parley::channels::email

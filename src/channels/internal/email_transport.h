/// The blocking IMAP and SMTP transfers of the email channel (libcurl easy handles). Called only on the channel
/// runtime's transport threads, never on an I/O thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "channels/adapter.h"
#include "channels/email.h"

namespace parley::channels::email {

/// One message fetched from the folder.
struct Fetched {
    std::int64_t uid = 0;
    std::string raw;         ///< the whole message, or only its header when `too_large`
    std::int64_t size = 0;   ///< RFC822.SIZE as the server reported it
    bool too_large = false;  ///< over kMaxMessageBytes: only the header was fetched
};

struct ImapPoll {
    std::vector<Fetched> mails;  ///< in UID order
    std::string uidvalidity;
    std::int64_t last_uid = 0;  ///< the highest UID fetched (or the cursor's when nothing new)
    std::string error;          ///< "" on success; the poll stopped there (mails fetched before it are kept)
};

/// Polls `settings.folder`: STATUS (UIDVALIDITY), UID SEARCH for UIDs above `last_uid` (or UNSEEN when the
/// cursor's UIDVALIDITY is "" or differs: first poll and resync), UID FETCH (RFC822.SIZE), UID FETCH BODY[] (the
/// header only over kMaxMessageBytes), at most kMaxMessagesPerPoll, then UID STORE +FLAGS (\Seen).
ImapPoll imap_poll(const Settings& settings, const std::string& uidvalidity, std::int64_t last_uid,
                   const TransportContext& context);

struct SmtpResult {
    bool ok = false;
    long code = 0;          ///< the server's last reply code (0: no reply: network, TLS, guard)
    bool transient = true;  ///< worth retrying
    std::string error;
};

/// Sends `data` (an RFC 5322 message) from settings.address to `to`.
SmtpResult smtp_send(const Settings& settings, const std::string& to, const std::string& data,
                     const TransportContext& context);

}  // namespace parley::channels::email

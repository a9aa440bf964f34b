// Fuzzes the parser of Messenger and Instagram webhooks (messaging events)
// and the reply rendering; the invariants are in webhook_fuzz.h.
#include "webhook_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return webhook_fuzz::fuzz_webhook({"messenger", "instagram"}, data, size);
}

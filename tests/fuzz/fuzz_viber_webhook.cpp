// Fuzzes the parser of Viber callbacks (message, delivered/seen/failed, conversation_started)
// and the reply rendering; the invariants are in webhook_fuzz.h.
#include "webhook_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return webhook_fuzz::fuzz_webhook({"viber"}, data, size);
}

// Fuzzes the Telegram Update parser and the reply renderer: any input either parses or throws core::Error;
// rendering never splits a UTF-8 sequence or exceeds the part limit.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "channels/telegram.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    using namespace parley::channels::telegram;
    try {
        Update u = parse_update(input);
        if (u.kind == Update::Kind::kCallback && u.message.button.size() > kMaxCallbackDataBytes) __builtin_trap();
    } catch (const parley::core::Error&) {
    }
    for (const auto& part : split_text(input, 64)) {
        std::size_t chars = 0;
        for (unsigned char c : part) chars += (c & 0xC0) != 0x80;
        if (chars > 64) __builtin_trap();
    }
    return 0;
}

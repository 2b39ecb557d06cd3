// UTF-8 helpers for streaming token text: a token's bytes may end in the middle of a multi-byte
// character, and no API may ever emit half a character. Used by the engine's detokenizer.
#pragma once

#include <cstddef>
#include <string_view>

namespace kvault {

// Length of the longest prefix of `s` that does not end inside an incomplete multi-byte
// sequence. Bytes that can never start a valid sequence are counted as complete (they are
// replaced later when the text is serialised), so the result only holds back at most 3 bytes.
size_t Utf8CompletePrefix(std::string_view s);

}  // namespace kvault

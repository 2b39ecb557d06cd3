// Fuzz target: the KV block file reader. A damaged, truncated or hostile file must be rejected
// with a Status (a cache miss), never crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvstore/block_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  (void)kvault::DecodeBlockFile(bytes, "");
  // Also with the fingerprint the file claims, so mutations reach the layout and checksum checks.
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string_view tag = "\"fingerprint\":\"";
  const size_t at = text.find(tag);
  if (at != std::string_view::npos) {
    const size_t end = text.find('"', at + tag.size());
    if (end != std::string_view::npos) {
      auto r = kvault::DecodeBlockFile(bytes, std::string(text.substr(at + tag.size(), end - at - tag.size())));
      if (r.ok() && r->tokens.size() * 4 > size) __builtin_trap();
    }
  }
  return 0;
}

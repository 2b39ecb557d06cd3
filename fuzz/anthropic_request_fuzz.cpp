// Fuzz target: Anthropic Messages request parsing (messages and count_tokens) and the
// billing-line filter. Any input must give a value or an InvalidArgument, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/anthropic_messages.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (bool count_only : {false, true}) {
    auto r = kvault::ParseMessagesRequest(body, count_only);
    if (!r.ok() && r.status().code() != kvault::Status::Code::kInvalidArgument) __builtin_trap();
  }
  const std::string stripped = kvault::StripBillingHeader(std::string(body));
  if (stripped.size() > size) __builtin_trap();
  return 0;
}

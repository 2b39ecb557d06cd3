// Fuzz target: OpenAI request parsing (chat completions and text completions). Any input must
// give a value or an InvalidArgument, never a crash, hang or sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "api/openai_chat.h"
#include "api/openai_completions.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto chat = kvault::ParseChatCompletionRequest(body);
  if (chat.ok() != chat.status().ok()) __builtin_trap();
  auto completion = kvault::ParseCompletionRequest(body);
  if (!completion.ok() && completion.status().code() != kvault::Status::Code::kInvalidArgument) __builtin_trap();
  return 0;
}

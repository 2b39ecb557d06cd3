// Fuzz target: OpenAI Responses request parsing and the items → chat conversion, and the
// Anthropic thinking signature decoder. Any input must give a value or an InvalidArgument (or a
// NotFound-free result), never a crash or another kind of error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/anthropic_request.h"
#include "api/openai_responses.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto r = kvault::ParseResponsesRequest(body);
  if (!r.ok() && r.status().code() != kvault::Status::Code::kInvalidArgument) __builtin_trap();
  if (r.ok()) {
    // The same items as history and as this turn's input.
    std::vector<common_chat_msg> messages;
    kvault::Status st = kvault::BuildResponsesMessages(r->instructions, r->input, r->input, messages);
    if (!st.ok() && st.code() != kvault::Status::Code::kInvalidArgument) __builtin_trap();
  }
  (void)kvault::ReasoningFromSignature(std::string(body));
  return 0;
}

// Anthropic Messages requests: JSON body → GenerateRequest. Pure translation; no I/O, no llama
// objects. Called by the HTTP server on its threads.
//
// Every top-level field of the Messages reference is honoured, accepted with a documented
// meaning, or refused with a 400 that names it (docs/api.md); a field the reference does not
// have is refused as Anthropic refuses it ("…: Extra inputs are not permitted").
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"
#include "engine/request.h"

namespace kvault {

// How thinking blocks are returned (`thinking.display`).
enum class ThinkingDisplay { kSummarized, kOmitted };

struct MessagesRequest {
  std::string model;
  GenerateRequest generate;
  // Names the agent when no X-Agent-Id is sent: the `session_id` inside a JSON `metadata.user_id`
  // (what Claude Code sends), else `metadata.user_id` itself.
  std::string user_id;
  bool thinking = false;  // thinking blocks may be returned
  ThinkingDisplay display = ThinkingDisplay::kSummarized;
};

// `count_only`: the count_tokens endpoint (max_tokens not required). InvalidArgument with a
// message naming the offending field.
StatusOr<MessagesRequest> ParseMessagesRequest(std::string_view body, bool count_only = false);

// Claude Code puts a per-request line "x-anthropic-billing-header: …; cch=…;" into the system
// prompt. It changes every request, so it would defeat prefix caching; it is removed (it means
// nothing to a local model). Returns the text without such lines.
std::string StripBillingHeader(const std::string& system_text);

// A thinking block's `signature`: kvault's is its reasoning text, encoded, so that a client that
// receives thinking with `display: "omitted"` (no text) and sends the block back gives the chat
// template the same reasoning, and the history renders to the same tokens. Decode returns "" for
// a signature kvault did not write (another server's: its reasoning cannot be read).
std::string ThinkingSignature(const std::string& reasoning);
std::string ReasoningFromSignature(const std::string& signature);


}  // namespace kvault

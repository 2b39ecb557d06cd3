// Anthropic Messages adapter: engine output → the Messages response and its server-sent events
// (the request side is api/anthropic_request.h). Pure translation; no I/O, no llama objects. Called by
// the HTTP server on its threads (an AnthropicStream renders one streamed request).
//
// See docs/api.md for what is supported (text, thinking, tool_use/tool_result, tool_choice,
// streaming, count_tokens) and what is refused with a 400 (images, documents, server tools).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "api/anthropic_request.h"
#include "api/chat_output.h"
#include "core/status.h"
#include "engine/request.h"

namespace kvault {

// Prompt token accounting in Anthropic's terms; the three add up to the prompt's tokens.
struct MessagesUsage {
  int32_t input_tokens = 0;                 // computed, not kept for reuse (the partial last block)
  int32_t cache_creation_input_tokens = 0;  // computed and kept (full blocks)
  int32_t cache_read_input_tokens = 0;      // restored from the pool, RAM or disk
  int32_t output_tokens = 0;
};
// `kept_tokens`: the prompt tokens the server keeps for later turns (GenerationEvent::
// kept_prompt_tokens); those not cached are the cache creation.
MessagesUsage ComputeUsage(int32_t prompt_tokens, int32_t cached_tokens, int32_t kept_tokens, int32_t output_tokens);

struct MessagesResult {
  std::string id;  // "msg_…"
  std::string model;
  std::string text;
  std::string reasoning;  // thinking (ChatSyntax::parse_reasoning)
  bool thinking = false;  // thinking was asked for: a thinking block is returned when there is reasoning
  ThinkingDisplay display = ThinkingDisplay::kSummarized;
  std::vector<ToolCall> tool_calls;
  FinishReason finish = FinishReason::kStop;
  std::string stop_sequence;
  MessagesUsage usage;
};

// "end_turn", "max_tokens", "stop_sequence", "tool_use" or "model_context_window_exceeded" (the
// context ended before max_tokens).
const char* AnthropicStopReason(const MessagesResult& result);
std::string RenderMessage(const MessagesResult& result);
std::string RenderCountTokens(int32_t input_tokens);

// Builds the event stream of one response: message_start, content blocks (thinking with
// thinking_delta — none with display "omitted" — and signature_delta, text, tool_use with
// input_json_delta), message_delta, message_stop, and pings. Each call returns complete SSE
// events ("event: …\ndata: …\n\n").
class AnthropicStream {
 public:
  explicit AnthropicStream(MessagesResult* result) : r_(result) {}
  std::string Start();  // message_start (uses result->usage as known so far) and a ping
  std::string Delta(const OutputDelta& delta);
  std::string Finish();  // closes the open block; message_delta and message_stop
  static std::string Ping();
  static std::string Error(const std::string& error_body);

 private:
  std::string CloseBlock();
  MessagesResult* r_;
  enum class Block { kNone, kThinking, kText, kTool };
  std::string Open(Block kind, const nlohmann::json& content_block);
  int next_index_ = 0;
  int open_index_ = -1;
  Block open_ = Block::kNone;
  std::string reasoning_;  // of the open thinking block
};

}  // namespace kvault

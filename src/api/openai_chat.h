// OpenAI Chat Completions adapter: JSON request → GenerateRequest, engine output → JSON response.
// Pure translation; no I/O, no llama objects. Called by the HTTP server on its threads.
//
// Text content, tools and tool calls, response_format, sampling and penalties, logprobs,
// streaming and not; every other field of OpenAI's reference is refused by name (docs/api.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat_output.h"
#include "api/ids.h"
#include "core/status.h"
#include "engine/request.h"

namespace kvault {

struct ChatCompletionRequest {
  std::string model;           // as sent; may be empty
  GenerateRequest generate;    // generate.stream: answer with server-sent events
  bool include_usage = false;  // stream_options.include_usage
  std::string user;            // "user": names the agent when no X-Agent-Id is sent
};

// InvalidArgument with an OpenAI-style message naming the offending field.
StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body);

struct ChatCompletionResult {
  std::string id;  // "chatcmpl-…"
  std::string model;
  int64_t created = 0;                       // unix seconds
  std::string system_fingerprint;            // OpenAiSystemFingerprint
  std::string text;                          // content
  bool logprobs = false;                     // the request asked for them
  std::vector<TokenLogprob> token_logprobs;  // non-streamed: every generated token's
  std::vector<ToolCall> tool_calls;
  FinishReason finish = FinishReason::kStop;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
  int32_t cached_resident = 0;
  int32_t cached_ram = 0;
  int32_t cached_disk = 0;
  int32_t cached_remote = 0;
  double queue_ms = 0;
  double ttft_ms = 0;
  double total_ms = 0;
};

std::string RenderChatCompletion(const ChatCompletionResult& result);

// One server-sent event of a streamed completion ("data: {chat.completion.chunk}\n\n"), as
// OpenAI sends them, by `kind`: kRole (the first) carries delta.role; kText delta.content, `text`;
// kFinish an empty delta and finish_reason (OpenAiFinishReason: the result's finish and tool
// calls); kUsage (the last, with include_usage only) no choices and the result's token counts.
// Every chunk carries the result's id, created, model and system_fingerprint; with
// `include_usage` all but kUsage have "usage": null.
enum class ChunkKind { kRole, kText, kFinish, kUsage };
// `logprobs` (null or empty: "logprobs": null; the server passes them with kText and kFinish when
// the request asked for them): the tokens this chunk carries, as choices[0].logprobs.content.
std::string RenderChatCompletionChunk(const ChatCompletionResult& result, ChunkKind kind, const std::string& text,
                                      bool include_usage, const std::vector<TokenLogprob>* logprobs = nullptr);
// A chunk with a tool call's start (id, name) or a piece of its arguments.
std::string RenderToolCallChunk(const ChatCompletionResult& result, const OutputDelta& delta, bool include_usage,
                                const std::vector<TokenLogprob>* logprobs = nullptr);

// "finish_reason" of a result: "length" when the answer was cut (max_tokens or the end of the
// context, even in a tool call), else "tool_calls" when it has any, else "stop" (the model's end
// of turn or a matched stop sequence).
const char* OpenAiFinishReason(const ChatCompletionResult& result);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

inline std::string NewChatCompletionId() {
  return NewRandomId("chatcmpl-");
}

}  // namespace kvault

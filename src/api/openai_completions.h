// OpenAI text completions (POST /v1/completions): a raw prompt, no chat template. Pure
// translation, any thread. Streamed or not; one prompt per request; legacy logprobs; every other
// field of OpenAI's reference is refused by name (echo, suffix, best_of > 1, n > 1).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/request.h"

namespace kvault {

struct CompletionRequest {
  std::string model;
  GenerateRequest generate;  // generate.raw_prompt is set; generate.stream: server-sent events
  bool include_usage = false;  // stream_options.include_usage
  std::string user;
};

StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body);

struct CompletionResult {
  std::string id;  // "cmpl-…"
  std::string model;
  int64_t created = 0;
  std::string system_fingerprint;  // OpenAiSystemFingerprint
  std::string text;
  bool logprobs = false;                     // the request asked for them ("logprobs": N)
  std::vector<TokenLogprob> token_logprobs;  // non-streamed: every generated token's
  FinishReason finish = FinishReason::kStop;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
};

std::string RenderCompletion(const CompletionResult& result);

// One server-sent event of a streamed completion ("data: {text_completion}\n\n"), as OpenAI
// sends them: text pieces with finish_reason null, then an empty text with the finish_reason;
// with include_usage every chunk has "usage": null and a last chunk with no choices carries it.
enum class CompletionChunkKind { kText, kFinish, kUsage };
// `logprobs` (kText, kFinish; when asked for): the tokens this chunk carries, in the legacy shape,
// their text_offset counted from `*text_offset`, which is advanced past them.
std::string RenderCompletionChunk(const CompletionResult& result, CompletionChunkKind kind, const std::string& text,
                                  bool include_usage, const std::vector<TokenLogprob>* logprobs = nullptr,
                                  size_t* text_offset = nullptr);

}  // namespace kvault

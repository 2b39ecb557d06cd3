// OpenAI text completions (POST /v1/completions): a raw prompt, no chat template. Pure
// translation, any thread. Non-streaming only (a stream request gets a clear 400).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"
#include "engine/request.h"

namespace kvault {

struct CompletionRequest {
  std::string model;
  GenerateRequest generate;  // generate.raw_prompt is set
  std::string user;
};

StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body);

struct CompletionResult {
  std::string id;  // "cmpl-…"
  std::string model;
  int64_t created = 0;
  std::string text;
  FinishReason finish = FinishReason::kStop;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
};

std::string RenderCompletion(const CompletionResult& result);

}  // namespace kvault

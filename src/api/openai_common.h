// Request and response fields shared by OpenAI's chat and text completions: max_tokens /
// max_completion_tokens, temperature, top_p, min_p, top_k, seed, stop, n; stream and
// stream_options; usage. Used by the OpenAI adapters only.
#pragma once

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "engine/request.h"

namespace kvault {

Status ParseOpenAiSamplingFields(const nlohmann::json& body, GenerateRequest& g);

// "stream" (into g.stream) and "stream_options.include_usage" (only allowed with stream: true).
Status ParseOpenAiStreamFields(const nlohmann::json& body, GenerateRequest& g, bool& include_usage);

// The "usage" object of a response or of a stream's last chunk.
nlohmann::json OpenAiUsageJson(int32_t prompt_tokens, int32_t completion_tokens, int32_t cached_tokens);

}  // namespace kvault

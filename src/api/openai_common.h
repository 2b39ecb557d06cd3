// Request fields shared by OpenAI's chat and text completions: max_tokens /
// max_completion_tokens, temperature, top_p, min_p, top_k, seed, stop, n. Used by the OpenAI
// adapters only.
#pragma once

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "engine/request.h"

namespace kvault {

Status ParseOpenAiSamplingFields(const nlohmann::json& body, GenerateRequest& g);

}  // namespace kvault

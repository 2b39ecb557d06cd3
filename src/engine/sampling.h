// Per-request sampling: the parameters the APIs accept, and the llama.cpp sampler chain built
// from them. Temperature 0 (the default) is greedy. Called on the engine thread only (the chain
// is a llama object).
#pragma once

#include <cstdint>
#include <optional>

#include "core/status.h"

struct llama_sampler;

namespace kvault {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  std::optional<uint32_t> seed;  // unset = random; set = reproducible

  // InvalidArgument naming the field when a value is out of range.
  Status Validate() const;
};

// A new sampler chain (free with llama_sampler_free).
llama_sampler* MakeSampler(const SamplingParams& p);

}  // namespace kvault

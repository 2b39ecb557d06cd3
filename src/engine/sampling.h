// Per-request sampling: the parameters the APIs accept, and the llama.cpp sampler chain built
// from them. Temperature 0 (the default) is greedy. Called on the engine thread only (the chain
// is a llama object).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

struct llama_sampler;
struct llama_vocab;

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

// A GBNF grammar the output must follow (tool calls, JSON schemas), as llama.cpp's chat layer
// produces it. Lazy grammars only start constraining once a trigger pattern or token appears.
struct GrammarSpec {
  std::string grammar;  // GBNF, start symbol "root"; empty = none
  bool lazy = false;
  std::vector<std::string> trigger_patterns;  // regular expressions (lazy only)
  std::vector<int32_t> trigger_tokens;        // lazy only
  std::vector<int32_t> prefill;  // tokens already in the prompt that the grammar's root starts with
};

// A new sampler chain (free with llama_sampler_free): the grammar first (when given), then
// greedy or top-k/top-p/min-p/temperature/seeded sampling. InvalidArgument for a grammar that
// llama.cpp cannot parse or whose prefill it rejects.
StatusOr<llama_sampler*> MakeSampler(const SamplingParams& p, const llama_vocab* vocab = nullptr,
                                     const GrammarSpec* grammar = nullptr);

}  // namespace kvault

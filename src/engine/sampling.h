// Per-request sampling: the parameters the APIs accept, and the llama.cpp sampler chain built
// from them. Temperature 0 is greedy; a request without one gets the server's default
// (EngineOptions::default_temperature, 1 as in the OpenAI and Anthropic APIs). Called on the
// engine thread only (the chain is a llama object).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

struct llama_sampler;
struct llama_vocab;

namespace kvault {

struct SamplingParams {
  std::optional<float> temperature;  // 0 = greedy; unset = the server's default (Engine::Submit)
  int32_t top_k = 0;                 // 0 = off
  float top_p = 1.0f;                // 1 = off
  float min_p = 0.0f;                // 0 = off
  std::optional<uint32_t> seed;      // unset = random; set = reproducible
  // OpenAI's penalties (-2..2) over the tokens generated so far (the last kPenaltyWindow):
  // logit -= frequency_penalty × count + presence_penalty × (count > 0), llama.cpp's penalties
  // sampler. 0 = off.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Added to these token ids' logits before sampling (-100..100; ±100 in practice bans or forces
  // the token), llama.cpp's logit-bias sampler. The ids must be in the model's vocabulary.
  std::vector<std::pair<int32_t, float>> logit_bias;

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

// A limit on the tokens of a reasoning block (<think>…</think>), llama.cpp's reasoning-budget
// sampler: when `budget` tokens were spent inside it, the end tag is forced.
struct ReasoningBudget {
  int32_t budget = -1;                     // -1 = none
  std::vector<std::vector<int32_t>> start;  // token sequences that open the block
  std::vector<std::vector<int32_t>> end;    // token sequences that close it
  std::vector<int32_t> forced;             // forced when the budget is spent
  bool starts_open = false;                // the prompt already opened the block
};

// Generated tokens the penalties look back over.
inline constexpr int32_t kPenaltyWindow = 65536;

// A new sampler chain (free with llama_sampler_free): the grammar first (when given), then the
// logit bias and the penalties, then greedy or top-k/top-p/min-p/temperature/seeded sampling
// (an unset temperature is 1). InvalidArgument for a grammar that llama.cpp cannot parse or whose
// prefill it rejects, and for a logit_bias token outside the vocabulary.
// `reasoning` (when set and budget >= 0) adds the reasoning budget after the grammar.
StatusOr<llama_sampler*> MakeSampler(const SamplingParams& p, const llama_vocab* vocab = nullptr,
                                     const GrammarSpec* grammar = nullptr, const ReasoningBudget* reasoning = nullptr);

// Owns a sampler chain (llama_sampler_free), so that code holding one needs no llama.h.
struct SamplerDeleter {
  void operator()(llama_sampler* s) const;
};
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

}  // namespace kvault

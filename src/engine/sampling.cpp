#include "engine/sampling.h"

#include <cmath>
#include <random>
#include <string>

#include "llama.h"
#include "reasoning-budget.h"

namespace kvault {

Status SamplingParams::Validate() const {
  if (temperature && (!std::isfinite(*temperature) || *temperature < 0.0f || *temperature > 2.0f)) {
    return Status::InvalidArgument("'temperature' must be between 0 and 2");
  }
  if (top_k < 0) return Status::InvalidArgument("'top_k' must be 0 or more");
  if (!std::isfinite(top_p) || top_p <= 0.0f || top_p > 1.0f) {
    return Status::InvalidArgument("'top_p' must be in (0, 1]");
  }
  if (!std::isfinite(min_p) || min_p < 0.0f || min_p > 1.0f) {
    return Status::InvalidArgument("'min_p' must be between 0 and 1");
  }
  for (const auto& [name, v] :
       {std::pair{"presence_penalty", presence_penalty}, std::pair{"frequency_penalty", frequency_penalty}}) {
    if (!std::isfinite(v) || v < -2.0f || v > 2.0f) {
      return Status::InvalidArgument(std::string("'") + name + "' must be between -2 and 2");
    }
  }
  for (const auto& [token, bias] : logit_bias) {
    if (token < 0) return Status::InvalidArgument("'logit_bias' keys must be token ids (integers >= 0)");
    if (!std::isfinite(bias) || bias < -100.0f || bias > 100.0f) {
      return Status::InvalidArgument("'logit_bias' values must be between -100 and 100");
    }
  }
  return Status::Ok();
}

StatusOr<llama_sampler*> MakeSampler(const SamplingParams& p, const llama_vocab* vocab, const GrammarSpec* grammar,
                                     const ReasoningBudget* reasoning) {
  llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
  if (grammar && !grammar->grammar.empty() && vocab) {
    llama_sampler* g = nullptr;
    if (grammar->lazy) {
      std::vector<const char*> patterns;
      for (const auto& t : grammar->trigger_patterns) patterns.push_back(t.c_str());
      g = llama_sampler_init_grammar_lazy_patterns(vocab, grammar->grammar.c_str(), "root", patterns.data(),
                                                   patterns.size(), grammar->trigger_tokens.data(),
                                                   grammar->trigger_tokens.size());
    } else {
      g = llama_sampler_init_grammar(vocab, grammar->grammar.c_str(), "root");
    }
    if (!g) {
      llama_sampler_free(chain);
      return Status::InvalidArgument("the output grammar (from the tools or response_format) could not be parsed");
    }
    try {
      for (int32_t tok : grammar->prefill) llama_sampler_accept(g, tok);
    } catch (const std::exception& e) {
      llama_sampler_free(g);
      llama_sampler_free(chain);
      return Status::InvalidArgument(std::string("the output grammar rejects the chat template's generation prompt: ") +
                                     e.what());
    }
    // First in the chain: it masks the tokens the grammar forbids, and the chain's accept()
    // advances it with every sampled token.
    llama_sampler_chain_add(chain, g);
  }
  if (reasoning && reasoning->budget >= 0 && vocab) {
    std::vector<llama_tokens> start(reasoning->start.begin(), reasoning->start.end());
    std::vector<llama_tokens> end(reasoning->end.begin(), reasoning->end.end());
    llama_tokens forced(reasoning->forced.begin(), reasoning->forced.end());
    llama_sampler_chain_add(chain, common_reasoning_budget_init(
                                       vocab, start, end, forced, reasoning->budget,
                                       reasoning->starts_open ? REASONING_BUDGET_COUNTING : REASONING_BUDGET_IDLE));
  }
  if (!p.logit_bias.empty()) {
    const int32_t n_vocab = vocab ? llama_vocab_n_tokens(vocab) : 0;
    std::vector<llama_logit_bias> biases;
    for (const auto& [token, bias] : p.logit_bias) {
      if (vocab && token >= n_vocab) {
        llama_sampler_free(chain);
        return Status::InvalidArgument("'logit_bias' names token " + std::to_string(token) +
                                       "; this model's vocabulary has " + std::to_string(n_vocab) + " tokens");
      }
      biases.push_back({token, bias});
    }
    if (vocab) llama_sampler_chain_add(chain, llama_sampler_init_logit_bias(n_vocab, biases.size(), biases.data()));
  }
  if ((p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) && vocab) {
    llama_sampler_chain_add(
        chain, llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), kPenaltyWindow,
                                            /*penalty_repeat=*/1.0f, p.frequency_penalty, p.presence_penalty));
  }
  const float temperature = p.temperature.value_or(1.0f);
  if (temperature <= 0.0f) {
    llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    return chain;
  }
  if (p.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p.top_k));
  if (p.top_p < 1.0f) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p.top_p, 1));
  if (p.min_p > 0.0f) llama_sampler_chain_add(chain, llama_sampler_init_min_p(p.min_p, 1));
  llama_sampler_chain_add(chain, llama_sampler_init_temp(temperature));
  uint32_t seed = 0;
  if (p.seed) {
    seed = *p.seed;
  } else {
    seed = std::random_device{}();
  }
  if (seed == LLAMA_DEFAULT_SEED) seed = 0x9E3779B9u;  // LLAMA_DEFAULT_SEED would mean "random"
  llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
  return chain;
}

void SamplerDeleter::operator()(llama_sampler* s) const { llama_sampler_free(s); }

}  // namespace kvault

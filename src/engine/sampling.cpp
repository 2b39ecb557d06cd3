#include "engine/sampling.h"

#include <cmath>
#include <random>
#include <string>

#include "llama.h"

namespace kvault {

Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f || temperature > 2.0f) {
    return Status::InvalidArgument("'temperature' must be between 0 and 2");
  }
  if (top_k < 0) return Status::InvalidArgument("'top_k' must be 0 or more");
  if (!std::isfinite(top_p) || top_p <= 0.0f || top_p > 1.0f) {
    return Status::InvalidArgument("'top_p' must be in (0, 1]");
  }
  if (!std::isfinite(min_p) || min_p < 0.0f || min_p > 1.0f) {
    return Status::InvalidArgument("'min_p' must be between 0 and 1");
  }
  return Status::Ok();
}

StatusOr<llama_sampler*> MakeSampler(const SamplingParams& p, const llama_vocab* vocab, const GrammarSpec* grammar) {
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
  if (p.temperature <= 0.0f) {
    llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    return chain;
  }
  if (p.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p.top_k));
  if (p.top_p < 1.0f) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p.top_p, 1));
  if (p.min_p > 0.0f) llama_sampler_chain_add(chain, llama_sampler_init_min_p(p.min_p, 1));
  llama_sampler_chain_add(chain, llama_sampler_init_temp(p.temperature));
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

}  // namespace kvault

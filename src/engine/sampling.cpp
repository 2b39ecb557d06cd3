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

llama_sampler* MakeSampler(const SamplingParams& p) {
  llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
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

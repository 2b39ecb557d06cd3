// PlanStep: what one engine step puts into its llama_batch (continuous batching).
//
// Every generating sequence gets its one decode token; the rest of the step's token budget goes
// to prompt chunks of sequences still prefilling, round-robin (the starting sequence rotates
// every step), so a long prompt is split into chunks and never stalls the others' decoding for
// more than one chunk. Pure function; the engine thread calls it once per step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvault {

// One token of a step as the runner decodes it: its position in a llama sequence, and whether its
// logits are wanted.
struct BatchToken {
  int32_t token = 0;
  int32_t pos = 0;
  int seq = 0;
  bool logits = false;
};

struct RunningSeq {
  int id = 0;
  int32_t prefill_left = 0;  // prompt tokens still to compute; 0 = generating
};

struct StepEntry {
  int id = 0;
  int32_t n_tokens = 0;
  bool decode = false;
};

// `budget`: tokens per step (decode tokens count too; every decode token is always included).
// `cursor`: round-robin state kept by the caller between steps.
std::vector<StepEntry> PlanStep(const std::vector<RunningSeq>& seqs, int32_t budget, size_t* cursor);

}  // namespace kvault

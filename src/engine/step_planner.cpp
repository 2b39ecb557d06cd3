#include "engine/step_planner.h"

#include <algorithm>

namespace kvault {

std::vector<StepEntry> PlanStep(const std::vector<RunningSeq>& seqs, int32_t budget, size_t* cursor) {
  std::vector<StepEntry> plan;
  std::vector<const RunningSeq*> prefilling;
  for (const auto& s : seqs) {
    if (s.prefill_left > 0) {
      prefilling.push_back(&s);
    } else {
      plan.push_back({s.id, 1, true});
    }
  }
  int32_t left = budget - static_cast<int32_t>(plan.size());
  if (prefilling.empty() || left <= 0) return plan;
  const size_t n = prefilling.size();
  const size_t start = *cursor % n;
  for (size_t k = 0; k < n && left > 0; ++k) {
    const RunningSeq& s = *prefilling[(start + k) % n];
    const int32_t chunk = std::min(left, s.prefill_left);
    plan.push_back({s.id, chunk, false});
    left -= chunk;
  }
  *cursor = start + 1;
  return plan;
}

}  // namespace kvault

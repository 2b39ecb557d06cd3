#include "engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvault {

TokenDistribution LogSoftmaxAt(const float* logits, int32_t n_vocab, int32_t token, int32_t n_top) {
  TokenDistribution out;
  if (n_vocab <= 0) return out;
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int32_t i = 0; i < n_vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0.0;
  for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  const double log_z = static_cast<double>(max_logit) + std::log(sum);
  auto logprob = [&](int32_t id) { return static_cast<float>(static_cast<double>(logits[id]) - log_z); };
  if (token >= 0 && token < n_vocab) out.logprob = logprob(token);

  // The n_top best ids: a small sorted window, replaced from the back (n_top <= 20).
  const auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  const auto k = static_cast<size_t>(std::clamp<int32_t>(n_top, 0, n_vocab));
  std::vector<int32_t> best;
  best.reserve(k + 1);
  for (int32_t i = 0; i < n_vocab && k > 0; ++i) {
    if (best.size() == k && !better(i, best.back())) continue;
    best.insert(std::upper_bound(best.begin(), best.end(), i, better), i);
    if (best.size() > k) best.pop_back();
  }
  for (int32_t id : best) out.top.emplace_back(id, logprob(id));
  return out;
}

void LogprobQueue::Add(TokenLogprob entry, size_t piece_bytes) {
  pending_.push_back({std::move(entry), pushed_, pushed_ + piece_bytes});
  pushed_ += piece_bytes;
}

std::vector<TokenLogprob> LogprobQueue::Sent(size_t bytes) {
  sent_ += bytes;
  std::vector<TokenLogprob> out;
  while (!pending_.empty() && pending_.front().end <= sent_) {
    out.push_back(std::move(pending_.front().entry));
    pending_.pop_front();
  }
  return out;
}

std::vector<TokenLogprob> LogprobQueue::Rest(bool cut) {
  std::vector<TokenLogprob> out;
  for (auto& p : pending_) {
    if (cut && p.begin >= sent_) break;
    out.push_back(std::move(p.entry));
  }
  pending_.clear();
  return out;
}

}  // namespace kvault

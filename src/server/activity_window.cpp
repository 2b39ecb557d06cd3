#include "server/activity_window.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kvault {

namespace {

using Seconds = std::chrono::duration<double>;

// Nearest-rank percentile of sorted values (p in (0, 1]).
double Percentile(const std::vector<double>& sorted, double p) {
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

ActivityWindow::ActivityWindow(std::chrono::seconds keep, size_t max_generations)
    : keep_(keep), max_generations_(std::max<size_t>(1, max_generations)) {}

void ActivityWindow::DropOld(Clock::time_point now) {
  while (!entries_.empty() && now - entries_.front().at > keep_) entries_.pop_front();
  while (entries_.size() > max_generations_) entries_.pop_front();
  while (!samples_.empty() && now - samples_.front().at > kRateWindow) samples_.pop_front();
}

void ActivityWindow::Observe(Clock::time_point now, const Generation& g) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!seen_) {
    first_seen_ = now;
    seen_ = true;
  }
  entries_.push_back({now, g});
  DropOld(now);
}

void ActivityWindow::SampleTokens(Clock::time_point now, uint64_t generated_total) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!seen_) {
    first_seen_ = now;
    seen_ = true;
  }
  if (!samples_.empty() && generated_total < samples_.back().total) samples_.clear();
  if (samples_.empty() || now - samples_.back().at >= std::chrono::milliseconds(200)) {
    samples_.push_back({now, generated_total});
  }
  DropOld(now);
}

ActivityWindow::Summary ActivityWindow::Summarize(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  Summary s;
  if (!seen_) return s;
  std::vector<double> ttfts;
  const auto start = now - keep_;
  size_t recent = 0;
  for (const Entry& e : entries_) {
    if (e.at < start || e.at > now) continue;
    ++s.requests;
    s.prompt_tokens += e.g.prompt_tokens;
    s.cached_pool += e.g.cached_pool;
    s.cached_ram += e.g.cached_ram;
    s.cached_disk += e.g.cached_disk;
    s.cached_remote += e.g.cached_remote;
    s.generated_tokens += e.g.generated_tokens;
    if (e.g.ttft_ms >= 0) ttfts.push_back(e.g.ttft_ms);
    if (now - e.at <= kRateWindow) ++recent;
  }
  // The window reaches back to the oldest generation still kept, or to the first thing seen.
  auto oldest = std::max(start, first_seen_);
  if (entries_.size() == max_generations_ && !entries_.empty()) oldest = std::max(oldest, entries_.front().at);
  s.window_seconds = std::max(0.0, Seconds(now - oldest).count());
  if (!ttfts.empty()) {
    std::sort(ttfts.begin(), ttfts.end());
    s.ttft_p50_ms = Percentile(ttfts, 0.50);
    s.ttft_p95_ms = Percentile(ttfts, 0.95);
  }
  const double rate_span = std::clamp(Seconds(now - first_seen_).count(), 1.0, Seconds(kRateWindow).count());
  s.requests_per_second = static_cast<double>(recent) / rate_span;
  // Tokens/s: between the oldest sample within the rate window and the newest.
  const TokenSample* first = nullptr;
  for (const TokenSample& t : samples_) {
    if (now - t.at <= kRateWindow && t.at <= now) {
      first = &t;
      break;
    }
  }
  if (first && !samples_.empty()) {
    const TokenSample& last = samples_.back();
    const double span = Seconds(last.at - first->at).count();
    if (span >= 0.5) s.tokens_per_second = static_cast<double>(last.total - first->total) / span;
  }
  return s;
}

}  // namespace kvault

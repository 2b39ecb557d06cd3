// ActivityWindow: what the server did over the last few minutes, for the dashboard's overview
// (GET /admin/overview and /admin/events, server/overview): each finished generation (time to
// first token, prompt tokens by where their KV came from, tokens generated) and samples of the
// engines' generated-token counter, so that requests/s, tokens/s, TTFT percentiles and cache
// reuse are given over a recent window. /metrics gives the same quantities as counters and
// histograms since start, from which Prometheus computes its own windows; this is the server's
// answer for a page that has no Prometheus behind it.
//
// Bounded: generations older than `keep` are dropped, and at most `max_generations` are kept (the
// oldest go first; the summary's `window_seconds` then covers less than `keep`). Counter samples
// are kept for kRateWindow, at most one per 200 ms.
//
// Recorded by the generation routes (server/generation_route) when a generation ends, sampled and
// read by the admin routes (server/dashboard_routes); thread-safe (one mutex), no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>

namespace kvault {

class ActivityWindow {
 public:
  using Clock = std::chrono::steady_clock;
  // Rates (requests/s, tokens/s) are over this much of the recent past.
  static constexpr std::chrono::seconds kRateWindow{10};

  struct Generation {
    double ttft_ms = 0;  // < 0: no token was sampled
    int64_t prompt_tokens = 0;
    int64_t cached_pool = 0, cached_ram = 0, cached_disk = 0;  // prompt tokens reused, by tier
    int64_t generated_tokens = 0;
    int64_t cached_remote = 0;  // … and from the remote tier
  };

  struct Summary {
    double window_seconds = 0;  // what the totals and percentiles below cover
    uint64_t requests = 0;      // generations finished in that window
    int64_t prompt_tokens = 0;
    int64_t cached_pool = 0, cached_ram = 0, cached_disk = 0, cached_remote = 0;
    int64_t generated_tokens = 0;
    std::optional<double> ttft_p50_ms, ttft_p95_ms;  // none without a generation in the window
    double requests_per_second = 0;                  // finished over the last kRateWindow
    // Generated tokens per second over the last kRateWindow, from the counter samples (tokens of
    // answers still streaming count as they are made); none until two samples span 0.5 s.
    std::optional<double> tokens_per_second;
  };

  explicit ActivityWindow(std::chrono::seconds keep = std::chrono::minutes(5), size_t max_generations = 20000);

  void Observe(Clock::time_point now, const Generation& g);
  // The engines' generated-token counter, summed (EngineStats::tokens_generated). A value below
  // the last one (a model unloaded) starts the samples again.
  void SampleTokens(Clock::time_point now, uint64_t generated_total);
  Summary Summarize(Clock::time_point now) const;

  std::chrono::seconds keep() const { return keep_; }

 private:
  struct Entry {
    Clock::time_point at;
    Generation g;
  };
  struct TokenSample {
    Clock::time_point at;
    uint64_t total;
  };
  void DropOld(Clock::time_point now);  // mu_ held

  const std::chrono::seconds keep_;
  const size_t max_generations_;
  mutable std::mutex mu_;
  std::deque<Entry> entries_;  // oldest first
  std::deque<TokenSample> samples_;
  Clock::time_point first_seen_{};  // first Observe or sample: the window is no older than this
  bool seen_ = false;
};

}  // namespace kvault

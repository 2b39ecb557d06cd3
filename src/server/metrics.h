// Metrics: the server's counters and histograms, rendered in the Prometheus text format
// (version 0.0.4) for GET /metrics. Debian has no maintained C++ Prometheus client, and the text
// format is small, so it is written here. Thread-safe; HTTP threads record, any thread renders.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "engine/engine.h"
#include "engine/model_manager.h"
#include "engine/request.h"

namespace kvault {

class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                     1,     2.5,  5,     10,   30,  60,   300};
  void Observe(double seconds);
  // "name_bucket{labels,le=…} n" lines, then _sum and _count.
  void Render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<uint64_t, kBounds.size() + 1> counts_{};  // last: +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// The counters /metrics renders that the dashboard's overview shows too (since start).
struct MetricsTotals {
  uint64_t generations = 0;
  uint64_t prompt_tokens = 0;
  uint64_t cached_pool = 0, cached_ram = 0, cached_disk = 0, cached_remote = 0;  // prompt tokens reused, by tier
  uint64_t generated_tokens = 0;
  uint64_t rate_limited = 0;  // answers with status 429
};

class Metrics {
 public:
  // Every HTTP response: `endpoint` is the route (unknown paths count as "other").
  void ObserveHttp(const std::string& endpoint, int status);
  // A connection closed because its request had not arrived in full by --request-read-timeout.
  void ObserveSlowRequest();
  // A generation that finished (kDone): tokens by tier, time to first token, latency.
  void ObserveGeneration(const std::string& api, const GenerationEvent& done);

  // The text exposition, with the primary engine's and its store's current values (models may
  // be null while the first model loads).
  std::string Render(const ModelManager* models, bool draining) const;
  MetricsTotals Totals() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> http_;  // (endpoint, status) → count
  std::map<std::string, Histogram> ttft_;                 // api → histogram
  std::map<std::string, Histogram> latency_;
  std::map<std::string, uint64_t> requests_by_api_;
  uint64_t prompt_tokens_ = 0;
  uint64_t cached_pool_ = 0, cached_ram_ = 0, cached_disk_ = 0, cached_remote_ = 0;
  uint64_t hits_pool_ = 0, hits_ram_ = 0, hits_disk_ = 0, hits_remote_ = 0;
  uint64_t generated_tokens_ = 0;
  uint64_t slow_requests_ = 0;
};

// The route label for a request path: the known API routes as they are, anything else "other"
// (scanners must not blow up the label set).
std::string EndpointLabel(const std::string& path);

}  // namespace kvault

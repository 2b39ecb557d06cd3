#include "server/metrics.h"

#include <fmt/format.h>

namespace kvault {

namespace {

void Head(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void Sample(std::string& out, const char* name, const std::string& labels, double v) {
  if (labels.empty()) {
    out += fmt::format("{} {}\n", name, v);
  } else {
    out += fmt::format("{}{{{}}} {}\n", name, labels, v);
  }
}

void One(std::string& out, const char* name, const char* type, const char* help, double v) {
  Head(out, name, type, help);
  Sample(out, name, "", v);
}

}  // namespace

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  ++counts_[i];
  sum_ += seconds;
  ++count_;
}

void Histogram::Render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, kBounds[i], cumulative);
  }
  cumulative += counts_[kBounds.size()];
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, cumulative);
  out += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, sum_, name, labels, count_);
}

std::string EndpointLabel(const std::string& path) {
  static const char* kKnown[] = {"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens",
                                 "/v1/models",           "/health",         "/health/live", "/metrics"};
  for (const char* k : kKnown) {
    if (path == k) return k;
  }
  if (path.rfind("/admin/", 0) == 0) return "/admin";
  if (path == "/ui" || path.rfind("/ui/", 0) == 0) return "/ui";
  if (path == "/v1/responses" || path.rfind("/v1/responses/", 0) == 0) return "/v1/responses";
  return "other";
}

void Metrics::ObserveHttp(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++http_[{endpoint, status}];
}

void Metrics::ObserveSlowRequest() {
  std::lock_guard<std::mutex> lock(mu_);
  ++slow_requests_;
}

void Metrics::ObserveGeneration(const std::string& api, const GenerationEvent& done) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_by_api_[api];
  if (done.ttft_ms >= 0) ttft_[api].Observe(done.ttft_ms / 1000.0);
  latency_[api].Observe(done.total_ms / 1000.0);
  prompt_tokens_ += static_cast<uint64_t>(done.prompt_tokens);
  cached_pool_ += static_cast<uint64_t>(done.cached_resident);
  cached_ram_ += static_cast<uint64_t>(done.cached_ram);
  cached_disk_ += static_cast<uint64_t>(done.cached_disk);
  cached_remote_ += static_cast<uint64_t>(done.cached_remote);
  hits_pool_ += done.cached_resident > 0;
  hits_ram_ += done.cached_ram > 0;
  hits_disk_ += done.cached_disk > 0;
  hits_remote_ += done.cached_remote > 0;
  generated_tokens_ += static_cast<uint64_t>(done.completion_tokens);
}

MetricsTotals Metrics::Totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  MetricsTotals t;
  for (const auto& [api, n] : requests_by_api_) t.generations += n;
  t.prompt_tokens = prompt_tokens_;
  t.cached_pool = cached_pool_;
  t.cached_ram = cached_ram_;
  t.cached_disk = cached_disk_;
  t.cached_remote = cached_remote_;
  t.generated_tokens = generated_tokens_;
  for (const auto& [k, n] : http_) t.rate_limited += k.second == 429 ? n : 0;
  return t;
}

std::string Metrics::Render(const ModelManager* models, bool draining) const {
  std::shared_ptr<Engine> primary = models ? models->Primary() : nullptr;
  const Engine* engine = primary.get();
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Head(out, "kvault_http_requests_total", "counter", "HTTP responses by route and status.");
    for (const auto& [k, n] : http_) {
      Sample(out, "kvault_http_requests_total", fmt::format("endpoint=\"{}\",status=\"{}\"", k.first, k.second),
             static_cast<double>(n));
    }
    Head(out, "kvault_rate_limited_total", "counter", "Requests answered 429 (queue full or waited too long).");
    uint64_t limited = 0;
    for (const auto& [k, n] : http_) limited += k.second == 429 ? n : 0;
    Sample(out, "kvault_rate_limited_total", "", static_cast<double>(limited));
    One(out, "kvault_http_slow_requests_total", "counter",
        "Connections closed because a request did not arrive in full within --request-read-timeout.",
        static_cast<double>(slow_requests_));
    Head(out, "kvault_generations_total", "counter", "Finished generations by API.");
    for (const auto& [api, n] : requests_by_api_) {
      Sample(out, "kvault_generations_total", fmt::format("api=\"{}\"", api), static_cast<double>(n));
    }
    Head(out, "kvault_time_to_first_token_seconds", "histogram", "Submit to first sampled token.");
    for (const auto& [api, h] : ttft_)
      h.Render(out, "kvault_time_to_first_token_seconds", fmt::format("api=\"{}\"", api));
    Head(out, "kvault_request_duration_seconds", "histogram", "Submit to the last token.");
    for (const auto& [api, h] : latency_)
      h.Render(out, "kvault_request_duration_seconds", fmt::format("api=\"{}\"", api));
    One(out, "kvault_prompt_tokens_total", "counter", "Prompt tokens of finished generations.",
        static_cast<double>(prompt_tokens_));
    Head(out, "kvault_prompt_tokens_cached_total", "counter", "Prompt tokens reused instead of computed, by tier.");
    Sample(out, "kvault_prompt_tokens_cached_total", "tier=\"pool\"", static_cast<double>(cached_pool_));
    Sample(out, "kvault_prompt_tokens_cached_total", "tier=\"ram\"", static_cast<double>(cached_ram_));
    Sample(out, "kvault_prompt_tokens_cached_total", "tier=\"disk\"", static_cast<double>(cached_disk_));
    Sample(out, "kvault_prompt_tokens_cached_total", "tier=\"remote\"", static_cast<double>(cached_remote_));
    Head(out, "kvault_cache_hits_total", "counter", "Generations that reused prompt KV from a tier.");
    Sample(out, "kvault_cache_hits_total", "tier=\"pool\"", static_cast<double>(hits_pool_));
    Sample(out, "kvault_cache_hits_total", "tier=\"ram\"", static_cast<double>(hits_ram_));
    Sample(out, "kvault_cache_hits_total", "tier=\"disk\"", static_cast<double>(hits_disk_));
    Sample(out, "kvault_cache_hits_total", "tier=\"remote\"", static_cast<double>(hits_remote_));
    One(out, "kvault_generated_tokens_total", "counter", "Tokens generated.", static_cast<double>(generated_tokens_));
  }
  One(out, "kvault_draining", "gauge", "1 while shutting down.", draining ? 1 : 0);
  One(out, "kvault_model_loaded", "gauge", "1 once a model serves.", engine ? 1 : 0);
  if (models) {
    One(out, "kvault_models_loaded", "gauge", "Models loaded now.", static_cast<double>(models->Loaded().size()));
    One(out, "kvault_model_loads_total", "counter", "Model loads (start-up, on demand, swaps).",
        static_cast<double>(models->loads()));
    One(out, "kvault_model_unloads_total", "counter", "Model unloads (swaps, least recently used).",
        static_cast<double>(models->unloads()));
  }
  if (!engine) return out;
  const EngineStats st = engine->stats();
  One(out, "kvault_pool_utilization", "gauge", "KV pool blocks used or reserved / total.", st.pool_utilization);
  Head(out, "kvault_pool_blocks", "gauge", "KV pool blocks by state.");
  Sample(out, "kvault_pool_blocks", "state=\"total\"", st.pool_blocks_total);
  Sample(out, "kvault_pool_blocks", "state=\"used\"", st.pool_blocks_used);
  Sample(out, "kvault_pool_blocks", "state=\"reserved\"", st.pool_blocks_reserved);
  Sample(out, "kvault_pool_blocks", "state=\"idle\"", st.idle_blocks);
  Sample(out, "kvault_pool_blocks", "state=\"active\"", st.pool_blocks_active);
  One(out, "kvault_queue_depth", "gauge", "Requests waiting for capacity.", st.waiting);
  One(out, "kvault_running_requests", "gauge", "Requests being decoded.", st.running);
  One(out, "kvault_idle_sequences", "gauge", "Finished conversations still resident in the pool.", st.idle_resident);
  One(out, "kvault_pool_evictions_total", "counter", "Idle sequences evicted from the pool.",
      static_cast<double>(st.evictions));
  One(out, "kvault_pool_idle_trims_total", "counter",
      "Idle sequences evicted because idle ones held more than --idle-tokens.", static_cast<double>(st.idle_trims));
  One(out, "kvault_engine_steps_total", "counter", "Engine steps (llama_decode calls).", static_cast<double>(st.steps));
  One(out, "kvault_engine_busy_seconds_total", "counter", "Time in llama_decode.", st.busy_seconds);
  One(out, "kvault_prompt_tokens_computed_total", "counter", "Prompt tokens prefilled.",
      static_cast<double>(st.prompt_tokens_computed));
  One(out, "kvault_kv_blocks_saved_total", "counter", "KV blocks handed to the store.",
      static_cast<double>(st.blocks_saved));
  const KvStoreStats ks = engine->store_stats();
  One(out, "kvault_kv_store_persistent", "gauge", "1 when blocks are written to disk.", ks.persistent ? 1 : 0);
  Head(out, "kvault_kv_store_blocks", "gauge", "Blocks held by tier.");
  Sample(out, "kvault_kv_store_blocks", "tier=\"ram\"", static_cast<double>(ks.ram_blocks));
  Sample(out, "kvault_kv_store_blocks", "tier=\"disk\"", static_cast<double>(ks.disk.blocks));
  Head(out, "kvault_kv_store_bytes", "gauge", "Bytes held by tier.");
  Sample(out, "kvault_kv_store_bytes", "tier=\"ram\"", static_cast<double>(ks.ram_bytes));
  Sample(out, "kvault_kv_store_bytes", "tier=\"disk\"", static_cast<double>(ks.disk.bytes));
  const ModelInfo& info = engine->info();
  Head(out, "kvault_kv_store_limit_bytes", "gauge", "Size limit by tier (--ram-cache, --disk-cache).");
  Sample(out, "kvault_kv_store_limit_bytes", "tier=\"ram\"", static_cast<double>(info.ram_limit_bytes));
  if (ks.persistent) {
    Sample(out, "kvault_kv_store_limit_bytes", "tier=\"disk\"", static_cast<double>(info.disk_limit_bytes));
  }
  One(out, "kvault_kv_store_written_bytes_total", "counter", "Bytes written to disk.",
      static_cast<double>(ks.disk.write_bytes));
  One(out, "kvault_kv_store_read_bytes_total", "counter", "Bytes read from disk.",
      static_cast<double>(ks.disk.read_bytes));
  One(out, "kvault_kv_store_pending_writes", "gauge", "Blocks waiting for the I/O thread.",
      static_cast<double>(ks.pending_writes));
  One(out, "kvault_kv_store_write_errors_total", "counter", "Failed block writes.",
      static_cast<double>(ks.disk.write_errors));
  One(out, "kvault_kv_persistence_ok", "gauge", "0 while block writes fail (disk full, read-only, I/O errors).",
      ks.persistent && ks.persistence.failing ? 0 : 1);
  One(out, "kvault_kv_persistence_failures_total", "counter", "Failed writes of blocks, agent records and probes.",
      static_cast<double>(ks.persistence.failures));
  One(out, "kvault_kv_persistence_recoveries_total", "counter", "Times writes worked again after failing.",
      static_cast<double>(ks.persistence.recoveries));
  One(out, "kvault_kv_unpersisted_blocks", "gauge", "Blocks only in RAM because their write failed.",
      static_cast<double>(ks.persistence.unpersisted_blocks));
  One(out, "kvault_kv_store_vanished_total", "counter", "Indexed block files found deleted behind kvault's back.",
      static_cast<double>(ks.disk.vanished + ks.disk.dir_lost));
  One(out, "kvault_kv_store_quarantined_total", "counter", "Bad block files moved aside.",
      static_cast<double>(ks.disk.quarantined));
  One(out, "kvault_kv_store_gc_deleted_total", "counter", "Block files removed by the size limit.",
      static_cast<double>(ks.disk.gc_deleted));
  One(out, "kvault_kv_store_misses_total", "counter", "Blocks looked up and not found.",
      static_cast<double>(ks.misses));
  // Per tier below the pool: the same families for each, the remote one with --remote-cache.
  const RemoteTierStats& rt = ks.remote_tier;
  Head(out, "kvault_kv_tier_hits_total", "counter", "Blocks used from a tier (verified).");
  Sample(out, "kvault_kv_tier_hits_total", "tier=\"ram\"", static_cast<double>(ks.ram_hits));
  Sample(out, "kvault_kv_tier_hits_total", "tier=\"disk\"", static_cast<double>(ks.disk_hits));
  if (ks.remote) Sample(out, "kvault_kv_tier_hits_total", "tier=\"remote\"", static_cast<double>(rt.hits));
  Head(out, "kvault_kv_tier_read_bytes_total", "counter", "Bytes read from a tier below RAM.");
  Sample(out, "kvault_kv_tier_read_bytes_total", "tier=\"disk\"", static_cast<double>(ks.disk.read_bytes));
  if (ks.remote) Sample(out, "kvault_kv_tier_read_bytes_total", "tier=\"remote\"", static_cast<double>(rt.read_bytes));
  Head(out, "kvault_kv_tier_fetch_seconds_total", "counter",
       "Time the read path spent reading blocks from a tier below RAM (read, verify, copy).");
  Sample(out, "kvault_kv_tier_fetch_seconds_total", "tier=\"disk\"", ks.disk_fetch_seconds);
  if (ks.remote) Sample(out, "kvault_kv_tier_fetch_seconds_total", "tier=\"remote\"", rt.fetch_seconds);
  Head(out, "kvault_kv_tier_written_bytes_total", "counter", "Bytes written to a tier below RAM.");
  Sample(out, "kvault_kv_tier_written_bytes_total", "tier=\"disk\"", static_cast<double>(ks.disk.write_bytes));
  if (ks.remote) {
    Sample(out, "kvault_kv_tier_written_bytes_total", "tier=\"remote\"", static_cast<double>(rt.write_bytes));
  }
  Head(out, "kvault_kv_tier_errors_total", "counter", "Failed writes (disk) or failed connects and commands (remote).");
  Sample(out, "kvault_kv_tier_errors_total", "tier=\"disk\"", static_cast<double>(ks.disk.write_errors));
  if (ks.remote) Sample(out, "kvault_kv_tier_errors_total", "tier=\"remote\"", static_cast<double>(rt.errors));
  Head(out, "kvault_kv_tier_rejected_total", "counter", "Blocks read from a tier that failed verification.");
  Sample(out, "kvault_kv_tier_rejected_total", "tier=\"disk\"", static_cast<double>(ks.disk.quarantined));
  if (ks.remote) Sample(out, "kvault_kv_tier_rejected_total", "tier=\"remote\"", static_cast<double>(rt.rejected));
  if (ks.remote) {
    One(out, "kvault_kv_remote_up", "gauge", "1 while the remote cache (Redis) is connected.", rt.up ? 1 : 0);
    One(out, "kvault_kv_remote_dropped_writes_total", "counter",
        "Remote writes dropped, oldest first, from a full queue (Redis slow or down).",
        static_cast<double>(rt.dropped_writes));
    One(out, "kvault_kv_remote_queued_writes", "gauge", "Remote writes waiting.",
        static_cast<double>(rt.queued_writes));
    One(out, "kvault_kv_remote_misses_total", "counter", "Keys asked of Redis and not there.",
        static_cast<double>(rt.misses));
    Head(out, "kvault_kv_remote_agent_writes_total", "counter",
         "Shared agent records sent to Redis: stored, or refused as stale (Redis had as many turns or more).");
    Sample(out, "kvault_kv_remote_agent_writes_total", "result=\"stored\"", static_cast<double>(rt.agent_writes));
    Sample(out, "kvault_kv_remote_agent_writes_total", "result=\"stale\"", static_cast<double>(rt.agent_stale));
    Head(out, "kvault_kv_remote_agent_reads_total", "counter",
         "Lookups of an agent's shared record: found, none (or a forgotten agent's), rejected (not a valid record).");
    Sample(out, "kvault_kv_remote_agent_reads_total", "result=\"found\"", static_cast<double>(rt.agent_found));
    Sample(out, "kvault_kv_remote_agent_reads_total", "result=\"none\"",
           static_cast<double>(rt.agent_reads - rt.agent_found - rt.agent_rejected));
    Sample(out, "kvault_kv_remote_agent_reads_total", "result=\"rejected\"", static_cast<double>(rt.agent_rejected));
  }
  return out;
}

}  // namespace kvault

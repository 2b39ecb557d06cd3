#include "server/health.h"

#include <algorithm>
#include <string>

#include "server/routes.h"

namespace kvault {

using json = nlohmann::json;

json HealthModelsJson(const std::vector<ModelStatus>& models) {
  json list = json::array();
  for (const auto& m : models) {
    json one = {{"name", m.name},
                {"state", m.state},
                {"in_flight", m.in_flight},
                {"loads", m.loads},
                {"last_load_seconds", m.last_load_seconds}};
    if (!m.last_error.empty()) one["last_error"] = WithoutPath(m.last_error, m.path);
    list.push_back(std::move(one));
  }
  return list;
}

json HealthDevicesJson(const std::vector<DeviceInfo>& devices) {
  json list = json::array();
  for (const auto& d : devices) {
    list.push_back({{"name", d.name},
                    {"description", d.description},
                    {"type", d.type},
                    {"backend", d.backend},
                    {"memory_total_bytes", d.memory_total_bytes},
                    {"memory_free_bytes_at_load", d.memory_free_bytes}});
  }
  return list;
}

HealthReport HealthWithoutEngine(bool draining, const std::vector<ModelStatus>* models) {
  HealthReport r;
  r.http_status = 503;
  if (draining || !models) {
    r.body = {{"status", draining ? "draining" : "loading"}};
    return r;
  }
  // No engine: "loading" while a load or unload is under way, else "unavailable" (every model
  // unloaded: by an operator, or a failed load whose reload failed too), with each model's last
  // load error.
  const bool moving = std::any_of(models->begin(), models->end(),
                                  [](const ModelStatus& m) { return m.state == "loading" || m.state == "unloading"; });
  r.body = {{"status", moving ? "loading" : "unavailable"}, {"models", HealthModelsJson(*models)}};
  if (!moving) r.body["reason"] = "no model is loaded; the next request for one loads it";
  return r;
}

HealthReport HealthOfEngine(const ModelInfo& info, const EngineStats& st, const KvStoreStats& ks,
                            const std::vector<ModelStatus>& models, bool draining, double degraded_utilization) {
  HealthReport r;
  // 503 when new work cannot be taken well (draining, pool full of running requests); a disk
  // that stopped taking writes is reported as degraded too, but answers 200: serving goes on.
  std::string status = "ok";
  json reasons = json::array();
  const bool pool_full = st.pool_active_utilization > degraded_utilization;
  if (pool_full) reasons.push_back("pool");
  const std::string& unusable = info.persistence_error;
  if (ks.persistence.failing || !unusable.empty()) reasons.push_back("persistence");
  if (ks.remote && !ks.remote_tier.up) reasons.push_back("remote_cache");  // 200: local tiers serve
  if (draining) {
    status = "draining";
    r.http_status = 503;
  } else if (!reasons.empty()) {
    status = "degraded";
    if (pool_full) r.http_status = 503;
  }
  json& body = r.body;
  body = {{"status", status},
          {"degraded", reasons},
          {"model", info.id},
          {"queue_depth", st.waiting},
          {"running", st.running},
          {"pool",
           {{"utilization", st.pool_utilization},
            {"active_utilization", st.pool_active_utilization},
            {"degraded_above", degraded_utilization},
            {"blocks_total", st.pool_blocks_total},
            {"blocks_used", st.pool_blocks_used},
            {"blocks_reserved", st.pool_blocks_reserved},
            {"block_tokens", info.block_tokens},
            {"idle_sequences", st.idle_resident},
            {"idle_blocks", st.idle_blocks},
            {"evictions", st.evictions},
            {"idle_trims", st.idle_trims}}},
          {"engine",
           {{"deterministic", info.deterministic},
            {"step_tokens", info.step_tokens},
            {"steps", st.steps},
            {"decode_only_steps", st.decode_only_steps},
            {"decode_only_tokens", st.decode_only_tokens},
            {"decode_only_seconds", st.decode_only_seconds},
            {"prompt_tokens_computed", st.prompt_tokens_computed},
            {"prompt_tokens_cached", st.prompt_tokens_cached},
            {"tokens_generated", st.tokens_generated},
            {"busy_seconds", st.busy_seconds},
            {"restored_tokens_ram", st.restored_tokens_ram},
            {"restored_tokens_disk", st.restored_tokens_disk},
            {"restored_tokens_remote", st.restored_tokens_remote},
            {"blocks_saved", st.blocks_saved},
            {"save_seconds", st.save_seconds},
            {"restore_seconds", st.restore_seconds}}}};
  body["kv_store"] = {{"persistent", ks.persistent},
                      {"fingerprint", info.fingerprint},
                      {"ram_blocks", ks.ram_blocks},
                      {"ram_bytes", ks.ram_bytes},
                      {"spare_buffer_bytes", ks.spare_buffer_bytes},
                      {"disk_blocks", ks.disk.blocks},
                      {"disk_bytes", ks.disk.bytes},
                      {"pending_writes", ks.pending_writes},
                      {"disk_hits", ks.disk_hits},
                      {"misses", ks.misses},
                      {"bytes_written", ks.disk.write_bytes},
                      {"bytes_read", ks.disk.read_bytes},
                      {"fetch_seconds", ks.fetch_seconds},
                      {"disk_fetch_seconds", ks.disk_fetch_seconds},
                      {"write_errors", ks.disk.write_errors},
                      {"quarantined", ks.disk.quarantined},
                      {"gc_deleted", ks.disk.gc_deleted},
                      {"vanished", ks.disk.vanished},
                      {"directory_lost", ks.disk.dir_lost}};
  if (!info.persistence_off.empty()) {
    body["kv_store"]["persistence"] = {{"state", "off"}, {"reason", info.persistence_off}};
  } else if (!unusable.empty()) {
    body["kv_store"]["persistence"] = {{"state", "unavailable"}, {"last_error", unusable}};
  } else if (ks.persistent) {
    body["kv_store"]["persistence"] = {{"state", ks.persistence.failing ? "failing" : "ok"},
                                       {"last_error", ks.persistence.last_error},
                                       {"failing_seconds", ks.persistence.failing_seconds},
                                       {"unpersisted_blocks", ks.persistence.unpersisted_blocks},
                                       {"failures", ks.persistence.failures},
                                       {"recoveries", ks.persistence.recoveries}};
  }
  body["offload"] = {{"gpu_layers", info.gpu_layers},
                     {"main_gpu", info.main_gpu},
                     {"kv_backend", info.kv_backend.empty() ? "CPU" : info.kv_backend}};
  body["devices"] = HealthDevicesJson(info.devices);
  if (ks.remote) {
    const RemoteTierStats& rt = ks.remote_tier;
    body["kv_store"]["remote"] = {{"state", rt.up ? "up" : "down"},
                                  {"url", rt.url},
                                  {"last_error", rt.last_error},
                                  {"down_seconds", rt.down_seconds},
                                  {"hits", rt.hits},
                                  {"fetch_seconds", rt.fetch_seconds},
                                  {"reads", rt.reads},
                                  {"misses", rt.misses},
                                  {"skipped_reads", rt.skipped_reads},
                                  {"bytes_read", rt.read_bytes},
                                  {"writes", rt.writes},
                                  {"bytes_written", rt.write_bytes},
                                  {"queued_writes", rt.queued_writes},
                                  {"dropped_writes", rt.dropped_writes},
                                  {"rejected", rt.rejected},
                                  {"errors", rt.errors},
                                  {"connects", rt.connects},
                                  {"agents",
                                   {{"writes", rt.agent_writes},
                                    {"stale", rt.agent_stale},
                                    {"reads", rt.agent_reads},
                                    {"found", rt.agent_found},
                                    {"rejected", rt.agent_rejected}}}};
  }
  body["models"] = HealthModelsJson(models);
  return r;
}

}  // namespace kvault

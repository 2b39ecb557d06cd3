// GET /health's body and status (server/health.h), from plain snapshots: no engine needed.
#include "server/health.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace kvault {
namespace {

using json = nlohmann::json;

std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  for (const auto& [k, v] : object.items()) keys.insert(k);
  return keys;
}

ModelInfo Info() {
  ModelInfo info;
  info.id = "tiny";
  info.block_tokens = 64;
  info.step_tokens = 256;
  info.fingerprint = "abc123";
  DeviceInfo cpu;
  cpu.name = "CPU";
  cpu.description = "Some CPU";
  cpu.type = "cpu";
  cpu.backend = "CPU";
  cpu.memory_total_bytes = 64ull << 30;
  cpu.memory_free_bytes = 32ull << 30;
  info.devices = {cpu};
  return info;
}

std::vector<ModelStatus> OneModel(const std::string& state = "loaded") {
  ModelStatus m;
  m.name = "tiny";
  m.path = "/models/dir/tiny.gguf";
  m.state = state;
  m.loads = 1;
  return {m};
}

TEST(HealthTest, AHealthyEngineIsOkWithEverySection) {
  EngineStats st;
  st.pool_blocks_total = 100;
  st.pool_blocks_used = 10;
  st.running = 2;
  st.waiting = 3;
  KvStoreStats ks;
  ks.persistent = true;
  const HealthReport r = HealthOfEngine(Info(), st, ks, OneModel(), /*draining=*/false, 0.9);
  EXPECT_EQ(r.http_status, 200);
  EXPECT_EQ(Keys(r.body), (std::set<std::string>{"status", "degraded", "model", "queue_depth", "running", "pool",
                                                 "engine", "kv_store", "offload", "devices", "models"}));
  EXPECT_EQ(r.body["status"], "ok");
  EXPECT_EQ(r.body["degraded"], json::array());
  EXPECT_EQ(r.body["model"], "tiny");
  EXPECT_EQ(r.body["queue_depth"], 3);
  EXPECT_EQ(r.body["running"], 2);
  EXPECT_EQ(Keys(r.body["pool"]),
            (std::set<std::string>{"utilization", "active_utilization", "degraded_above", "blocks_total", "blocks_used",
                                   "blocks_reserved", "block_tokens", "idle_sequences", "idle_blocks", "evictions",
                                   "idle_trims"}));
  EXPECT_EQ(r.body["pool"]["blocks_total"], 100);
  EXPECT_EQ(r.body["pool"]["block_tokens"], 64);
  EXPECT_DOUBLE_EQ(r.body["pool"]["degraded_above"].get<double>(), 0.9);
  EXPECT_EQ(Keys(r.body["engine"]),
            (std::set<std::string>{"deterministic", "step_tokens", "steps", "decode_only_steps", "decode_only_tokens",
                                   "decode_only_seconds", "prompt_tokens_computed", "prompt_tokens_cached",
                                   "tokens_generated", "busy_seconds", "restored_tokens_ram", "restored_tokens_disk", "restored_tokens_remote",
                                   "blocks_saved", "save_seconds", "restore_seconds"}));
  EXPECT_EQ(r.body["engine"]["step_tokens"], 256);
  EXPECT_EQ(Keys(r.body["kv_store"]),
            (std::set<std::string>{"persistent", "fingerprint", "ram_blocks", "ram_bytes", "spare_buffer_bytes",
                                   "disk_blocks", "disk_bytes", "pending_writes", "disk_hits", "misses",
                                   "bytes_written", "bytes_read", "fetch_seconds", "disk_fetch_seconds", "write_errors", "quarantined",
                                   "gc_deleted", "vanished", "directory_lost", "persistence"}));
  EXPECT_EQ(r.body["kv_store"]["fingerprint"], "abc123");
  EXPECT_EQ(r.body["kv_store"]["persistence"]["state"], "ok");
  ASSERT_EQ(r.body["models"].size(), 1u);
  EXPECT_EQ(Keys(r.body["models"][0]),
            (std::set<std::string>{"name", "state", "in_flight", "loads", "last_load_seconds"}));
}

// Offload and devices: a CPU build reports its CPU device and "CPU" as the KV backend; a GPU
// build's backend tag and its GPU device appear as they are.
TEST(HealthTest, OffloadAndDevicesShowTheBackendAndMemory) {
  HealthReport r = HealthOfEngine(Info(), EngineStats{}, KvStoreStats{}, OneModel(), false, 0.9);
  EXPECT_EQ(r.body["offload"], json({{"gpu_layers", -1}, {"main_gpu", -1}, {"kv_backend", "CPU"}}));
  ASSERT_EQ(r.body["devices"].size(), 1u);
  EXPECT_EQ(Keys(r.body["devices"][0]), (std::set<std::string>{"name", "description", "type", "backend",
                                                               "memory_total_bytes", "memory_free_bytes_at_load"}));
  EXPECT_EQ(r.body["devices"][0]["type"], "cpu");
  EXPECT_EQ(r.body["devices"][0]["memory_total_bytes"], 64ull << 30);
  EXPECT_EQ(r.body["devices"][0]["memory_free_bytes_at_load"], 32ull << 30);

  ModelInfo gpu = Info();
  gpu.kv_backend = "CUDA";
  gpu.gpu_layers = 20;
  gpu.main_gpu = 0;
  DeviceInfo h200;
  h200.name = "CUDA0";
  h200.description = "NVIDIA H200";
  h200.type = "gpu";
  h200.backend = "CUDA";
  h200.memory_total_bytes = 140ull << 30;
  gpu.devices.push_back(h200);
  r = HealthOfEngine(gpu, EngineStats{}, KvStoreStats{}, OneModel(), false, 0.9);
  EXPECT_EQ(r.body["offload"], json({{"gpu_layers", 20}, {"main_gpu", 0}, {"kv_backend", "CUDA"}}));
  ASSERT_EQ(r.body["devices"].size(), 2u);
  EXPECT_EQ(r.body["devices"][1]["name"], "CUDA0");
  EXPECT_EQ(r.body["devices"][1]["description"], "NVIDIA H200");
}

TEST(HealthTest, APoolHeldByRunningRequestsIsDegradedAnd503) {
  EngineStats st;
  st.pool_active_utilization = 0.95;
  const HealthReport r = HealthOfEngine(Info(), st, KvStoreStats{}, OneModel(), false, 0.9);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_EQ(r.body["status"], "degraded");
  EXPECT_EQ(r.body["degraded"], json::array({"pool"}));
  // Without a disk tier there is no persistence section.
  EXPECT_FALSE(r.body["kv_store"].contains("persistence"));
}

TEST(HealthTest, FailingPersistenceIsDegradedButServes) {
  KvStoreStats ks;
  ks.persistent = true;
  ks.persistence.failing = true;
  ks.persistence.last_error = "No space left on device";
  ks.persistence.unpersisted_blocks = 7;
  const HealthReport r = HealthOfEngine(Info(), EngineStats{}, ks, OneModel(), false, 0.9);
  EXPECT_EQ(r.http_status, 200);
  EXPECT_EQ(r.body["status"], "degraded");
  EXPECT_EQ(r.body["degraded"], json::array({"persistence"}));
  const json& p = r.body["kv_store"]["persistence"];
  EXPECT_EQ(Keys(p), (std::set<std::string>{"state", "last_error", "failing_seconds", "unpersisted_blocks", "failures",
                                            "recoveries"}));
  EXPECT_EQ(p["state"], "failing");
  EXPECT_EQ(p["last_error"], "No space left on device");
  EXPECT_EQ(p["unpersisted_blocks"], 7);
}

TEST(HealthTest, AnUnusableCacheDirectoryIsUnavailablePersistence) {
  ModelInfo info = Info();
  info.persistence_error = "cannot create /cache: Permission denied";
  const HealthReport r = HealthOfEngine(info, EngineStats{}, KvStoreStats{}, OneModel(), false, 0.9);
  EXPECT_EQ(r.http_status, 200);
  EXPECT_EQ(r.body["degraded"], json::array({"persistence"}));
  EXPECT_EQ(r.body["kv_store"]["persistence"],
            (json{{"state", "unavailable"}, {"last_error", "cannot create /cache: Permission denied"}}));
}

TEST(HealthTest, AModelWithoutAStoreSaysWhyPersistenceIsOff) {
  ModelInfo info = Info();
  info.persistence_off = "recurrent model";
  KvStoreStats ks;
  ks.persistent = true;
  const HealthReport r = HealthOfEngine(info, EngineStats{}, ks, OneModel(), false, 0.9);
  EXPECT_EQ(r.body["status"], "ok");
  EXPECT_EQ(r.body["kv_store"]["persistence"], (json{{"state", "off"}, {"reason", "recurrent model"}}));
}

TEST(HealthTest, DrainingWinsOverDegradedAndIs503) {
  EngineStats st;
  st.pool_active_utilization = 1.0;
  const HealthReport r = HealthOfEngine(Info(), st, KvStoreStats{}, OneModel(), /*draining=*/true, 0.9);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_EQ(r.body["status"], "draining");
  EXPECT_EQ(r.body["degraded"], json::array({"pool"}));
}

TEST(HealthTest, WithoutModelsItIsLoadingOrDraining) {
  HealthReport r = HealthWithoutEngine(false, nullptr);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_EQ(r.body.dump(), R"({"status":"loading"})");
  r = HealthWithoutEngine(true, nullptr);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_EQ(r.body.dump(), R"({"status":"draining"})");
}

TEST(HealthTest, NoLoadedModelIsLoadingWhileOneMovesElseUnavailable) {
  auto models = OneModel("loading");
  HealthReport r = HealthWithoutEngine(false, &models);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_EQ(r.body["status"], "loading");
  EXPECT_FALSE(r.body.contains("reason"));
  EXPECT_EQ(r.body["models"][0]["state"], "loading");

  models = OneModel("unloaded");
  models[0].last_error = "cannot load /models/dir/tiny.gguf: out of memory";
  r = HealthWithoutEngine(false, &models);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_EQ(r.body["status"], "unavailable");
  EXPECT_EQ(r.body["reason"], "no model is loaded; the next request for one loads it");
  // /health may be public: the model's file is named, not where it is.
  EXPECT_EQ(r.body["models"][0]["last_error"], "cannot load tiny.gguf: out of memory");
}

}  // namespace
}  // namespace kvault

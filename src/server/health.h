// Health: what GET /health answers — its HTTP status and JSON body — from snapshots of the
// server's state (draining, the models) and of the primary engine's (ModelInfo, EngineStats,
// KvStoreStats). Pure functions: no I/O, no locks; health_routes.cpp takes the snapshots on an
// HTTP worker thread and calls these, and the unit tests pin the body's shape.
//
// The states: "loading" (no models attached yet, or a model loading/unloading), "draining"
// (shutting down), "unavailable" (no model loaded), "degraded" (pool held by running requests
// above --degraded-utilization: 503; persistence failing or unusable, or the remote cache down:
// 200, serving goes on),
// "ok". Every state but "ok" and a "degraded" for persistence or the remote cache alone answers 503.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "engine/engine.h"
#include "engine/model_manager.h"
#include "kvstore/kv_store.h"

namespace kvault {

struct HealthReport {
  int http_status = 200;
  nlohmann::json body;
};

// No engine to report on: `models` null (not attached yet: "loading"), the server draining
// ("draining"), or no model loaded — "loading" while one loads or unloads, else "unavailable"
// with a reason; both with each model's state and last load error.
HealthReport HealthWithoutEngine(bool draining, const std::vector<ModelStatus>* models);

// The primary engine's report: status and reasons, queue, pool, engine counters, KV store and
// persistence, offload (layers, GPU, the KV backend in the fingerprint), the backend devices with
// their memory (read at load), and every configured model.
HealthReport HealthOfEngine(const ModelInfo& info, const EngineStats& stats, const KvStoreStats& store,
                            const std::vector<ModelStatus>& models, bool draining, double degraded_utilization);

// /health's "models" list: state, load counts and the last load error (with the file's name for
// its path: /health may be public).
nlohmann::json HealthModelsJson(const std::vector<ModelStatus>& models);

// /health's "devices" list: each ggml backend device (the CPU always; GPUs in a GPU build) with
// its type, backend and memory total and free as read when the model loaded.
nlohmann::json HealthDevicesJson(const std::vector<DeviceInfo>& devices);

}  // namespace kvault

// Overview: what the dashboard shows (GET /admin/overview, each event of GET /admin/events), as
// JSON, from snapshots the route takes: the models, one engine's ModelInfo, EngineStats, pool
// residents and KvStoreStats, /health's status (server/health), /metrics' totals
// (server/metrics), the recent window (server/activity_window), the agents the caller may see with
// their last turns (server/agent_turns). Also the agent JSON the agents API answers with.
// Pure functions: no I/O, no locks; dashboard_routes.cpp and admin_routes.cpp call them on HTTP
// worker threads, and tests/unit/server/overview_test.cpp pins the shapes and the arithmetic.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model_manager.h"
#include "server/activity_window.h"
#include "server/agent_turns.h"
#include "server/metrics.h"

namespace kvault {

// An agent's blocks by where their hottest copy is: resident in the pool, else in the RAM tier,
// else on disk, else in no local tier (dropped by a size limit; Redis may still hold them).
// Assumes, as holds after a turn, that a block resident in the pool is also in RAM or on disk.
struct Placement {
  uint64_t pool = 0, ram = 0, disk = 0, remote = 0, none = 0;
};
Placement PlaceBlocks(uint64_t blocks, uint64_t pool_blocks, uint64_t ram_blocks, uint64_t disk_blocks,
                      uint64_t remote_blocks = 0);

// One agent as GET /admin/agents answers it: {id, tenant, tokens, turns, blocks, block_tokens,
// last_use_ms, ram{blocks, bytes}, disk{blocks, bytes}}.
nlohmann::json AgentJson(const AgentRecord& r, const AgentTiers& t, uint32_t block_tokens);

// One turn of AgentTurns: {unix_ms, api, prompt_tokens, cached_tokens, cached{pool, ram, disk},
// computed_tokens, completion_tokens, ttft_ms, total_ms}.
nlohmann::json TurnJson(const AgentTurn& t);

// One agent in the overview: AgentJson plus where its KV is and its last turn.
struct AgentRow {
  Engine::AgentView view;
  uint32_t pool_tokens = 0;  // resident in the pool (Engine::pool_residents)
  bool running = false;      // a request of this agent is being computed
  std::optional<AgentTurn> last_turn;
};
// AgentJson + running, pool{blocks, tokens}, placement{pool, ram, disk, remote, none} (PlaceBlocks),
// last_turn (TurnJson or null) and last_turn_cached_share (cached / prompt tokens, or null).
nlohmann::json AgentRowJson(const AgentRow& row, uint32_t block_tokens);

// The rows for `agents`: each matched with its pool residency and last turn (of `model`).
std::vector<AgentRow> AgentRows(std::vector<Engine::AgentView> agents, const std::vector<PoolResident>& residents,
                                const AgentTurns* turns, const std::string& model);

// The engine part of the overview; absent while no model is loaded.
struct EngineSnapshot {
  ModelInfo info;
  EngineStats stats;
  KvStoreStats store;
};

struct OverviewInput {
  int64_t unix_ms = 0;
  std::string role;  // the caller: "admin", "tenant" or "open" (server/admin_auth)
  std::string tenant;
  bool can_manage = false;
  std::string status;       // /health's status ("ok", "degraded", …)
  nlohmann::json degraded;  // /health's reasons
  nlohmann::json models;    // /health's model list (HealthModelsJson)
  std::optional<EngineSnapshot> engine;
  MetricsTotals totals;
  ActivityWindow::Summary recent;
  std::vector<AgentRow> agents;  // the caller's, most recently used first, at most the limit
  size_t agents_total = 0;       // before the limit
};

// {unix_ms, viewer{role, tenant, can_manage}, status, degraded, models, model, queue{waiting,
// running}, pool{…}, tiers{ram, disk, remote}, rates{…}, recent{…}, totals{…}, agents[…],
// agents_total} — docs/api.md, "Dashboard".
nlohmann::json OverviewJson(const OverviewInput& in);

}  // namespace kvault

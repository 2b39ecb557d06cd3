#include "server/overview.h"

#include <algorithm>
#include <map>
#include <utility>

namespace kvault {

using json = nlohmann::json;

namespace {

json OptionalNumber(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

// Cached tokens by tier and what was computed, from totals of prompt and cached tokens.
json Reuse(int64_t prompt, int64_t pool, int64_t ram, int64_t disk, int64_t remote) {
  const int64_t cached = pool + ram + disk + remote;
  return {
      {"prompt_tokens", prompt},
      {"cached", {{"pool", pool}, {"ram", ram}, {"disk", disk}, {"remote", remote}}},
      {"computed_tokens", std::max<int64_t>(0, prompt - cached)},
      {"cached_share", prompt > 0 ? json(static_cast<double>(cached) / static_cast<double>(prompt)) : json(nullptr)}};
}

json PoolJson(const ModelInfo& info, const EngineStats& st) {
  const uint32_t in_use = st.pool_blocks_used + st.pool_blocks_reserved;
  return {{"block_tokens", info.block_tokens},
          {"tokens_total", info.pool_tokens},
          {"blocks_total", st.pool_blocks_total},
          {"blocks_running", st.pool_blocks_active},
          {"blocks_idle", st.idle_blocks},
          {"blocks_free", st.pool_blocks_total > in_use ? st.pool_blocks_total - in_use : 0},
          {"utilization", st.pool_utilization},
          {"active_utilization", st.pool_active_utilization},
          {"idle_sequences", st.idle_resident},
          {"evictions", st.evictions}};
}

json TiersJson(const ModelInfo& info, const KvStoreStats& ks) {
  json tiers = json::object();
  tiers["ram"] = {{"blocks", ks.ram_blocks}, {"bytes", ks.ram_bytes}, {"limit_bytes", info.ram_limit_bytes}};
  if (info.persistent) {
    tiers["disk"] = {{"blocks", ks.disk.blocks},
                     {"bytes", ks.disk.bytes},
                     {"limit_bytes", info.disk_limit_bytes},
                     {"state", ks.persistence.failing ? "failing" : "ok"},
                     {"pending_writes", ks.pending_writes},
                     {"write_errors", ks.disk.write_errors}};
  } else {
    const std::string why = !info.persistence_off.empty() ? info.persistence_off : info.persistence_error;
    tiers["disk"] = {{"state", info.persistence_off.empty() && !why.empty() ? "unavailable" : "off"},
                     {"reason", why.empty() ? "no disk tier (--no-persist)" : why}};
  }
  if (ks.remote) {
    const RemoteTierStats& rt = ks.remote_tier;
    tiers["remote"] = {{"state", rt.up ? "up" : "down"},
                       {"hits", rt.hits},
                       {"misses", rt.misses},
                       {"bytes_written", rt.write_bytes},
                       {"queued_writes", rt.queued_writes},
                       {"dropped_writes", rt.dropped_writes},
                       {"errors", rt.errors}};
  } else {
    tiers["remote"] = nullptr;
  }
  return tiers;
}

}  // namespace

Placement PlaceBlocks(uint64_t blocks, uint64_t pool_blocks, uint64_t ram_blocks, uint64_t disk_blocks,
                      uint64_t remote_blocks) {
  Placement p;
  p.pool = std::min(pool_blocks, blocks);
  p.ram = std::min(ram_blocks, blocks - p.pool);
  p.disk = std::min(disk_blocks, blocks - p.pool - p.ram);
  p.remote = std::min(remote_blocks, blocks - p.pool - p.ram - p.disk);
  p.none = blocks - p.pool - p.ram - p.disk - p.remote;
  return p;
}

json AgentJson(const AgentRecord& r, const AgentTiers& t, uint32_t block_tokens) {
  json j = {{"id", r.id},
            {"tenant", r.tenant},
            {"tokens", r.tokens},
            {"turns", r.turns},
            {"blocks", r.chain.size()},
            {"block_tokens", block_tokens},
            {"last_use_ms", r.last_use_ms},
            {"ram", {{"blocks", t.ram_blocks}, {"bytes", t.ram_bytes}}},
            {"disk", {{"blocks", t.disk_blocks}, {"bytes", t.disk_bytes}}}};
  // With --remote-cache: the chain's blocks Redis holds (null while it is down).
  if (t.remote) j["remote"] = t.remote_blocks ? json{{"blocks", *t.remote_blocks}} : json(nullptr);
  return j;
}

json TurnJson(const AgentTurn& t) {
  return {{"unix_ms", t.unix_ms},
          {"api", t.api},
          {"prompt_tokens", t.prompt_tokens},
          {"cached_tokens", t.cached_tokens},
          {"cached",
           {{"pool", t.cached_pool}, {"ram", t.cached_ram}, {"disk", t.cached_disk}, {"remote", t.cached_remote}}},
          {"computed_tokens", t.computed_tokens()},
          {"completion_tokens", t.completion_tokens},
          {"ttft_ms", t.ttft_ms},
          {"total_ms", t.total_ms}};
}

json AgentRowJson(const AgentRow& row, uint32_t block_tokens) {
  json j = AgentJson(row.view.record, row.view.tiers, block_tokens);
  const uint64_t blocks = row.view.record.chain.size();
  const uint64_t pool_blocks = block_tokens ? (row.pool_tokens + block_tokens - 1) / block_tokens : 0;
  const Placement p = PlaceBlocks(blocks, pool_blocks, row.view.tiers.ram_blocks, row.view.tiers.disk_blocks,
                                  row.view.tiers.remote_only.value_or(0));
  j["running"] = row.running;
  j["pool"] = {{"blocks", pool_blocks}, {"tokens", row.pool_tokens}};
  j["placement"] = {{"pool", p.pool}, {"ram", p.ram}, {"disk", p.disk}, {"remote", p.remote}, {"none", p.none}};
  if (row.last_turn) {
    j["last_turn"] = TurnJson(*row.last_turn);
    const AgentTurn& t = *row.last_turn;
    j["last_turn_cached_share"] =
        t.prompt_tokens > 0 ? json(static_cast<double>(t.cached_tokens) / static_cast<double>(t.prompt_tokens))
                            : json(nullptr);
  } else {
    j["last_turn"] = nullptr;
    j["last_turn_cached_share"] = nullptr;
  }
  return j;
}

std::vector<AgentRow> AgentRows(std::vector<Engine::AgentView> agents, const std::vector<PoolResident>& residents,
                                const AgentTurns* turns, const std::string& model) {
  // (tenant, id) → tokens resident and whether running; an agent may hold several slots.
  std::map<std::pair<std::string, std::string>, std::pair<uint32_t, bool>> resident;
  for (const PoolResident& r : residents) {
    auto& [tokens, running] = resident[{r.tenant, r.agent_id}];
    tokens = std::max(tokens, r.tokens);  // the longest copy: slots of one agent share its prefix
    running = running || r.running;
  }
  std::vector<AgentRow> rows;
  rows.reserve(agents.size());
  for (auto& view : agents) {
    AgentRow row;
    auto it = resident.find({view.record.tenant, view.record.id});
    if (it != resident.end()) std::tie(row.pool_tokens, row.running) = it->second;
    if (turns) row.last_turn = turns->Last(model, view.record.tenant, view.record.id);
    row.view = std::move(view);
    rows.push_back(std::move(row));
  }
  return rows;
}

json OverviewJson(const OverviewInput& in) {
  json j = {{"unix_ms", in.unix_ms},
            {"viewer",
             {{"role", in.role},
              {"tenant", in.role == "admin" ? json(nullptr) : json(in.tenant)},
              {"can_manage", in.can_manage}}},
            {"status", in.status},
            {"degraded", in.degraded.is_null() ? json::array() : in.degraded},
            {"models", in.models.is_null() ? json::array() : in.models}};
  if (in.engine) {
    const EngineSnapshot& e = *in.engine;
    j["model"] = e.info.id;
    j["queue"] = {{"waiting", e.stats.waiting}, {"running", e.stats.running}};
    j["pool"] = PoolJson(e.info, e.stats);
    j["tiers"] = TiersJson(e.info, e.store);
  } else {
    j["model"] = nullptr;
    j["queue"] = nullptr;
    j["pool"] = nullptr;
    j["tiers"] = nullptr;
  }
  const ActivityWindow::Summary& r = in.recent;
  j["rates"] = {{"window_seconds", std::chrono::seconds(ActivityWindow::kRateWindow).count()},
                {"requests_per_second", r.requests_per_second},
                {"tokens_per_second", OptionalNumber(r.tokens_per_second)}};
  json recent = Reuse(r.prompt_tokens, r.cached_pool, r.cached_ram, r.cached_disk, r.cached_remote);
  recent["window_seconds"] = r.window_seconds;
  recent["requests"] = r.requests;
  recent["generated_tokens"] = r.generated_tokens;
  recent["ttft_p50_ms"] = OptionalNumber(r.ttft_p50_ms);
  recent["ttft_p95_ms"] = OptionalNumber(r.ttft_p95_ms);
  j["recent"] = std::move(recent);
  const MetricsTotals& t = in.totals;
  json totals = Reuse(static_cast<int64_t>(t.prompt_tokens), static_cast<int64_t>(t.cached_pool),
                      static_cast<int64_t>(t.cached_ram), static_cast<int64_t>(t.cached_disk),
                      static_cast<int64_t>(t.cached_remote));
  totals["generations"] = t.generations;
  totals["generated_tokens"] = t.generated_tokens;
  totals["rate_limited"] = t.rate_limited;
  j["totals"] = std::move(totals);
  json agents = json::array();
  const uint32_t block_tokens = in.engine ? in.engine->info.block_tokens : 0;
  for (const AgentRow& row : in.agents) agents.push_back(AgentRowJson(row, block_tokens));
  j["agents"] = std::move(agents);
  j["agents_total"] = in.agents_total;
  return j;
}

}  // namespace kvault

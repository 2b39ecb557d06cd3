// The dashboard's overview JSON and agent rows (server/overview.h), from plain snapshots.
#include "server/overview.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

using json = nlohmann::json;

Engine::AgentView View(const std::string& tenant, const std::string& id, size_t blocks, uint64_t ram, uint64_t disk) {
  Engine::AgentView v;
  v.record.tenant = tenant;
  v.record.id = id;
  v.record.chain.resize(blocks);
  v.record.tokens = static_cast<uint32_t>(blocks * 64 - 10);
  v.record.turns = 2;
  v.record.last_use_ms = 1000;
  v.tiers.ram_blocks = ram;
  v.tiers.disk_blocks = disk;
  return v;
}

TEST(OverviewTest, PlaceBlocksCountsEachBlockOnceAtItsHottestTier) {
  const Placement resident = PlaceBlocks(10, 10, 10, 10);
  EXPECT_EQ(resident.pool, 10u);
  EXPECT_EQ(resident.ram + resident.disk + resident.none, 0u);
  const Placement ram = PlaceBlocks(10, 0, 10, 10);
  EXPECT_EQ(ram.ram, 10u);
  EXPECT_EQ(ram.disk, 0u);
  const Placement evicted = PlaceBlocks(10, 0, 0, 10);
  EXPECT_EQ(evicted.disk, 10u);
  const Placement mixed = PlaceBlocks(10, 0, 3, 10);
  EXPECT_EQ(mixed.ram, 3u);
  EXPECT_EQ(mixed.disk, 7u);
  const Placement lost = PlaceBlocks(10, 0, 2, 5);
  EXPECT_EQ(lost.none, 3u);
  const Placement running = PlaceBlocks(4, 9, 4, 4);  // a running turn holds more than the chain
  EXPECT_EQ(running.pool, 4u);
  EXPECT_EQ(running.none, 0u);
}

TEST(OverviewTest, AgentRowsMatchPoolResidentsAndLastTurnsByTenantAndId) {
  AgentTurns turns;
  AgentTurn t;
  t.prompt_tokens = 200;
  t.cached_tokens = 150;
  turns.Record("m", "t1", "a", t);
  turns.Record("other-model", "t1", "b", t);
  std::vector<PoolResident> residents = {{"t1", "a", 130, false}, {"t1", "a", 600, true}, {"t2", "b", 64, false}};
  auto rows = AgentRows({View("t1", "a", 10, 10, 10), View("t1", "b", 2, 2, 0)}, residents, &turns, "m");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].pool_tokens, 600u);  // its longest resident copy
  EXPECT_TRUE(rows[0].running);
  ASSERT_TRUE(rows[0].last_turn);
  EXPECT_EQ(rows[1].pool_tokens, 0u);  // t2's b is not t1's b
  EXPECT_FALSE(rows[1].last_turn);     // b's turn was on another model

  const json a = AgentRowJson(rows[0], 64);
  EXPECT_EQ(a["id"], "a");
  EXPECT_EQ(a["pool"]["blocks"], 10);  // 600 tokens: ceil(600 / 64) = 10
  EXPECT_EQ(a["placement"]["pool"], 10);
  EXPECT_DOUBLE_EQ(a["last_turn_cached_share"].get<double>(), 0.75);
  EXPECT_EQ(a["last_turn"]["computed_tokens"], 50);
  EXPECT_EQ(a["running"], true);
  const json b = AgentRowJson(rows[1], 64);
  EXPECT_TRUE(b["last_turn"].is_null());
  EXPECT_TRUE(b["last_turn_cached_share"].is_null());
  EXPECT_EQ(b["placement"]["ram"], 2);
  // The agents API's fields are all there too.
  for (const char* k : {"tenant", "tokens", "turns", "blocks", "block_tokens", "last_use_ms", "ram", "disk"}) {
    EXPECT_TRUE(b.contains(k)) << k;
  }
}

// With a remote tier: blocks no local tier holds but Redis does are placed there, and the agent's
// row says how many of its blocks Redis holds (null while it is down); turns count Redis apart.
TEST(OverviewTest, BlocksOnlyInRedisArePlacedThere) {
  const Placement p = PlaceBlocks(10, 2, 3, 1, 10);
  EXPECT_EQ(p.remote, 4u);
  EXPECT_EQ(p.none, 0u);
  EXPECT_EQ(PlaceBlocks(10, 0, 0, 0, 6).none, 4u);
  AgentRow row;
  row.view = View("t1", "a", 10, 1, 0);
  row.view.tiers.remote = true;
  row.view.tiers.remote_blocks = 10;
  row.view.tiers.remote_only = 9;  // all but the one in RAM
  AgentTurn t;
  t.prompt_tokens = 100;
  t.cached_remote = 90;
  t.cached_tokens = 90;
  row.last_turn = t;
  json a = AgentRowJson(row, 64);
  EXPECT_EQ(a["remote"]["blocks"], 10) << a.dump();
  EXPECT_EQ(a["placement"]["remote"], 9) << a.dump();
  EXPECT_EQ(a["last_turn"]["cached"]["remote"], 90) << a.dump();
  row.view.tiers.remote_blocks.reset();  // Redis down
  row.view.tiers.remote_only.reset();
  a = AgentRowJson(row, 64);
  EXPECT_TRUE(a["remote"].is_null()) << a.dump();
  EXPECT_EQ(a["placement"]["none"], 9) << a.dump();
  row.view.tiers.remote = false;  // no remote tier: no field
  EXPECT_FALSE(AgentRowJson(row, 64).contains("remote"));
}

TEST(OverviewTest, OverviewShape) {
  OverviewInput in;
  in.unix_ms = 42;
  in.role = "tenant";
  in.tenant = "team";
  in.status = "ok";
  in.degraded = json::array();
  EngineSnapshot e;
  e.info.id = "m";
  e.info.block_tokens = 64;
  e.info.pool_tokens = 6400;
  e.info.ram_limit_bytes = 1 << 20;
  e.info.persistent = true;
  e.info.disk_limit_bytes = 1 << 30;
  e.stats.pool_blocks_total = 100;
  e.stats.pool_blocks_used = 30;
  e.stats.pool_blocks_reserved = 10;
  e.stats.pool_blocks_active = 25;
  e.stats.idle_blocks = 15;
  e.stats.waiting = 3;
  e.stats.running = 2;
  e.store.ram_bytes = 4096;
  e.store.disk.bytes = 8192;
  in.engine = e;
  in.totals.prompt_tokens = 1000;
  in.totals.cached_pool = 500;
  in.totals.cached_ram = 200;
  in.totals.cached_disk = 100;
  in.totals.rate_limited = 4;
  in.recent.ttft_p50_ms = 12.5;
  in.agents_total = 0;
  const json o = OverviewJson(in);
  EXPECT_EQ(o["viewer"]["role"], "tenant");
  EXPECT_EQ(o["viewer"]["tenant"], "team");
  EXPECT_EQ(o["viewer"]["can_manage"], false);
  EXPECT_EQ(o["model"], "m");
  EXPECT_EQ(o["queue"]["waiting"], 3);
  EXPECT_EQ(o["pool"]["blocks_running"], 25);
  EXPECT_EQ(o["pool"]["blocks_idle"], 15);
  EXPECT_EQ(o["pool"]["blocks_free"], 60);  // 100 - (30 used + 10 reserved)
  EXPECT_EQ(o["tiers"]["ram"]["bytes"], 4096);
  EXPECT_EQ(o["tiers"]["ram"]["limit_bytes"], 1 << 20);
  EXPECT_EQ(o["tiers"]["disk"]["limit_bytes"], 1 << 30);
  EXPECT_TRUE(o["tiers"]["remote"].is_null());
  EXPECT_EQ(o["totals"]["computed_tokens"], 200);
  EXPECT_DOUBLE_EQ(o["totals"]["cached_share"].get<double>(), 0.8);
  EXPECT_EQ(o["totals"]["rate_limited"], 4);
  EXPECT_DOUBLE_EQ(o["recent"]["ttft_p50_ms"].get<double>(), 12.5);
  EXPECT_TRUE(o["recent"]["ttft_p95_ms"].is_null());
  EXPECT_TRUE(o["recent"]["cached_share"].is_null());  // no prompt tokens in the window
  EXPECT_TRUE(o["rates"]["tokens_per_second"].is_null());
  EXPECT_EQ(o["agents"], json::array());

  in.role = "admin";
  in.engine->info.persistent = false;
  in.engine->info.persistence_error = "";
  const json admin = OverviewJson(in);
  EXPECT_TRUE(admin["viewer"]["tenant"].is_null());
  EXPECT_EQ(admin["tiers"]["disk"]["state"], "off");

  in.engine.reset();
  const json none = OverviewJson(in);
  EXPECT_TRUE(none["pool"].is_null());
  EXPECT_TRUE(none["model"].is_null());
}

}  // namespace
}  // namespace kvault

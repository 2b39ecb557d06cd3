#include "kvstore/kv_store.h"

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "test_env.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

std::vector<int32_t> Tokens(int n, int from) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(from + i);
  return v;
}

// Blocks of 4 tokens for a 12-token sequence.
struct Chain {
  std::vector<int32_t> tokens = Tokens(12, 100);
  BlockKey salt = CacheSalt("fp", "");
  std::vector<BlockKey> keys = ComputeBlockKeys(salt, tokens, 4);
  std::shared_ptr<const BlockRecord> Record(size_t i) const {
    auto r = std::make_shared<BlockRecord>();
    r->key = keys[i];
    r->parent = i == 0 ? salt : keys[i - 1];
    r->fingerprint = "fp";
    r->kv_type = "f16";
    r->first_pos = static_cast<uint32_t>(i * 4);
    r->tokens.assign(tokens.begin() + static_cast<long>(i * 4), tokens.begin() + static_cast<long>(i * 4 + 4));
    r->kv.assign(64, static_cast<uint8_t>(i));
    return r;
  }
  std::function<std::vector<int32_t>(size_t)> TokensOf() const {
    return [t = tokens](size_t i) { return std::vector<int32_t>(t.begin() + static_cast<long>(i * 4), t.begin() + static_cast<long>(i * 4 + 4)); };
  }
};

std::shared_ptr<Prefetch> Wait(std::shared_ptr<Prefetch> p) {
  while (!p->done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return p;
}

std::unique_ptr<KvStore> OpenStore(const fs::path& dir, uint64_t ram = 1 << 20) {
  KvStoreOptions o;
  o.dir = dir;
  o.ram_bytes = ram;
  o.fingerprint = "fp";
  auto s = KvStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s.value());
}

TEST(KvStoreTest, BlocksSurviveARestart) {
  const auto dir = testing::ScratchDir("kv-store-restart");
  Chain c;
  {
    auto store = OpenStore(dir);
    for (size_t i = 0; i < 3; ++i) store->Put(c.Record(i));
    EXPECT_TRUE(store->Has(c.keys[2]));
    store->Flush();
    EXPECT_EQ(store->stats().disk.blocks, 3u);
  }
  auto store = OpenStore(dir);
  EXPECT_EQ(store->GetRam(c.keys[0]), nullptr);  // RAM is empty after a restart
  EXPECT_TRUE(store->Has(c.keys[0]));
  auto p = Wait(store->StartPrefetch(c.keys, 0, c.TokensOf()));
  ASSERT_EQ(p->records.size(), 3u);
  EXPECT_EQ(p->from_disk, std::vector<bool>(3, true));
  EXPECT_EQ(p->records[1]->kv, c.Record(1)->kv);
  EXPECT_NE(store->GetRam(c.keys[1]), nullptr);  // now cached in RAM
}

TEST(KvStoreTest, PrefetchStopsAtTheFirstMissingBlock) {
  const auto dir = testing::ScratchDir("kv-store-gap");
  Chain c;
  auto store = OpenStore(dir);
  store->Put(c.Record(0));
  store->Put(c.Record(2));
  auto p = Wait(store->StartPrefetch(c.keys, 0, c.TokensOf()));
  EXPECT_EQ(p->records.size(), 1u);
}

TEST(KvStoreTest, CorruptFileIsAMissAndQuarantined) {
  const auto dir = testing::ScratchDir("kv-store-corrupt");
  Chain c;
  fs::path file;
  {
    auto store = OpenStore(dir);
    store->Put(c.Record(0));
    store->Put(c.Record(1));
    store->Flush();
  }
  // Flip a byte in block 1's KV data.
  DiskTier probe(dir / "fp", 1 << 20);
  file = probe.PathFor(c.keys[1]);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  auto store = OpenStore(dir);
  auto p = Wait(store->StartPrefetch(c.keys, 0, c.TokensOf()));
  EXPECT_EQ(p->records.size(), 1u);  // block 0 fine, block 1 rejected
  EXPECT_EQ(store->stats().disk.quarantined, 1u);
  EXPECT_FALSE(store->Has(c.keys[1]));
}

TEST(KvStoreTest, RamIsBoundedButDiskKeepsEverything) {
  const auto dir = testing::ScratchDir("kv-store-ram-bound");
  Chain c;
  auto store = OpenStore(dir, /*ram=*/700);  // room for about two records
  for (size_t i = 0; i < 3; ++i) store->Put(c.Record(i));
  store->Flush();
  EXPECT_LE(store->stats().ram_bytes, 700u);
  EXPECT_EQ(store->GetRam(c.keys[0]), nullptr);  // least recently used left RAM
  EXPECT_TRUE(store->Has(c.keys[0]));              // but is on disk
  auto p = Wait(store->StartPrefetch(c.keys, 0, c.TokensOf()));
  EXPECT_EQ(p->records.size(), 3u);
}

TEST(KvStoreTest, OtherModelsFilesAreNotLoaded) {
  const auto dir = testing::ScratchDir("kv-store-foreign");
  Chain c;
  {
    auto store = OpenStore(dir);
    store->Put(c.Record(0));
    store->Flush();
  }
  // Same key, but the directory of another fingerprint: invisible; and a file copied into ours
  // whose metadata names another model is rejected.
  KvStoreOptions o;
  o.dir = dir;
  o.fingerprint = "other";
  auto other = KvStore::Open(o);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE((*other)->Has(c.keys[0]));
  DiskTier mine(dir / "fp", 1 << 20), theirs(dir / "other", 1 << 20);
  fs::create_directories(theirs.PathFor(c.keys[0]).parent_path());
  fs::copy_file(mine.PathFor(c.keys[0]), theirs.PathFor(c.keys[0]));
  auto reopened = KvStore::Open(o);
  ASSERT_TRUE(reopened.ok());
  auto p = Wait((*reopened)->StartPrefetch(c.keys, 0, c.TokensOf()));
  EXPECT_TRUE(p->records.empty());
  EXPECT_EQ((*reopened)->stats().disk.quarantined, 1u);
}

}  // namespace
}  // namespace kvault

namespace kvault {
namespace {

TEST(KvStoreAgentsTest, AnAgentsLatestChainLeavesRamLast) {
  const auto dir = testing::ScratchDir("kv-store-agent-ram");
  Chain c;
  auto store = OpenStore(dir, /*ram=*/700);  // room for about two records
  store->Put(c.Record(0));
  AgentRecord r;
  r.id = "planner";
  r.chain = {c.keys[0]};
  store->RecordAgent(r);  // block 0 is the planner's latest chain
  store->Put(c.Record(1));
  store->Put(c.Record(2));  // over budget: block 1 goes, not the older block 0
  store->Flush();
  EXPECT_NE(store->GetRam(c.keys[0]), nullptr);
  EXPECT_EQ(store->GetRam(c.keys[1]), nullptr);
}

TEST(KvStoreAgentsTest, ForgetRemovesOnlyBlocksNoOtherAgentHolds) {
  const auto dir = testing::ScratchDir("kv-store-agent-forget");
  Chain c;
  auto store = OpenStore(dir);
  for (size_t i = 0; i < 3; ++i) store->Put(c.Record(i));
  AgentRecord a;
  a.id = "a";
  a.chain = {c.keys[0], c.keys[1], c.keys[2]};
  AgentRecord b;
  b.id = "b";
  b.chain = {c.keys[0]};  // shares the first block
  store->RecordAgent(a);
  store->RecordAgent(b);
  store->Flush();
  EXPECT_EQ(store->TiersOf(a.chain).disk_blocks, 3u);
  EXPECT_EQ(store->ForgetAgent("", "a"), 2u);
  EXPECT_TRUE(store->Has(c.keys[0]));
  EXPECT_FALSE(store->Has(c.keys[1]));
  EXPECT_FALSE(store->Has(c.keys[2]));
  EXPECT_TRUE(store->agents().Find("a", std::nullopt).empty());
  EXPECT_EQ(store->agents().Find("b", std::nullopt).size(), 1u);
}

TEST(KvStoreAgentsTest, RecordsSurviveARestartAndBadFilesAreSkipped) {
  const auto dir = testing::ScratchDir("kv-store-agent-restart");
  Chain c;
  {
    auto store = OpenStore(dir);
    AgentRecord a;
    a.tenant = "key-1";
    a.id = "planner";
    a.chain = c.keys;
    a.tokens = 12;
    a.turns = 1;
    store->RecordAgent(a);
    a.turns = 1;
    store->RecordAgent(a);  // a second turn
  }
  std::ofstream(dir / "fp" / "agents" / "0123456789abcdef0123456789abcdef.json") << "{not json";
  auto store = OpenStore(dir);
  auto found = store->agents().Find("planner", std::string("key-1"));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].chain, c.keys);
  EXPECT_EQ(found[0].turns, 2u);
  EXPECT_EQ(found[0].tokens, 12u);
  EXPECT_EQ(store->agents().bad_files(), 1u);
  EXPECT_TRUE(store->agents().Find("planner", std::string("key-2")).empty());
}

TEST(AgentRegistryTest, ValidIds) {
  for (const char* ok : {"planner", "a", "user@example.com", "agent-7:sub_2", "x.y"}) {
    EXPECT_TRUE(AgentRegistry::ValidId(ok)) << ok;
  }
  for (const std::string& bad : std::vector<std::string>{"", ".", "..", "../x", "a/b", "a b", "a\nb",
                                                          std::string("a\0b", 3), std::string(257, 'x')}) {
    EXPECT_FALSE(AgentRegistry::ValidId(bad)) << bad;
  }
}

}  // namespace
}  // namespace kvault

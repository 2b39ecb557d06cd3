#include "kvstore/block_lookup.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "unit/kvstore/kv_store_test_util.h"
#include "unit/kvstore/memory_tier.h"

namespace kvault {
namespace {

using testing::Chain;
using testing::MemoryTier;
using testing::Wait;

// A lookup over a RAM tier and `below`, with its own I/O thread.
struct Rig {
  explicit Rig(std::vector<BlockTier*> below) : lookup(ram, std::move(below), io, "fp", buffers) { io.Start(); }
  ~Rig() { io.Stop(); }

  RamTier ram{1 << 20};
  IoThread io;
  std::shared_ptr<BufferRecycler> buffers = std::make_shared<BufferRecycler>(1 << 20);
  BlockLookup lookup;
};

void Store(MemoryTier& tier, const std::shared_ptr<const BlockRecord>& r) {
  tier.Set(r->key, EncodeBlockFile(*r));
}

using Reads = std::vector<std::vector<BlockKey>>;

TEST(BlockLookupTest, TheKeysRamLacksAreReadFromTheirTierInOneCallThenServedFromRam) {
  Chain c;
  MemoryTier disk;
  for (size_t i = 0; i < 3; ++i) Store(disk, c.Record(i));
  Rig rig({&disk});
  auto p = Wait(rig.lookup.Start(c.Request()));
  ASSERT_EQ(p->records.size(), 3u);
  EXPECT_EQ(p->from_disk, std::vector<bool>(3, true));
  EXPECT_EQ(p->records[2]->kv, c.Record(2)->kv);
  EXPECT_EQ(disk.reads(), (Reads{{c.keys[0], c.keys[1], c.keys[2]}}));
  EXPECT_TRUE(rig.ram.Contains(c.keys[1]));  // kept in RAM
  p = Wait(rig.lookup.Start(c.Request()));
  ASSERT_EQ(p->records.size(), 3u);
  EXPECT_EQ(p->from_disk, std::vector<bool>(3, false));
  EXPECT_EQ(disk.reads().size(), 1u);
  EXPECT_EQ(disk.touched().size(), 3u) << "a RAM hit is a use in the tier below too";
  const LookupStats st = rig.lookup.stats();
  EXPECT_EQ(st.ram_hits, 3u);
  EXPECT_EQ(st.below_hits, std::vector<uint64_t>{3});
  EXPECT_EQ(st.misses, 0u);
  EXPECT_GT(st.fetch_seconds, 0);
}

TEST(BlockLookupTest, ABlockInRamSplitsTheRunAndAGapEndsTheFetch) {
  Chain c;
  MemoryTier disk;
  Store(disk, c.Record(0));
  Store(disk, c.Record(2));
  Rig rig({&disk});
  rig.ram.Insert(c.Record(1));
  auto p = Wait(rig.lookup.Start(c.Request()));
  ASSERT_EQ(p->records.size(), 3u);
  EXPECT_EQ(p->from_disk, (std::vector<bool>{true, false, true}));
  EXPECT_EQ(disk.reads(), (Reads{{c.keys[0]}, {c.keys[2]}}));
  rig.ram.Erase(c.keys[1]);
  p = Wait(rig.lookup.Start(c.Request()));
  EXPECT_EQ(p->records.size(), 1u);  // block 0 (now in RAM), then a miss
  EXPECT_EQ(rig.lookup.stats().misses, 1u);
}

TEST(BlockLookupTest, ATierThatMustBeAskedServesWhatTheTiersAboveLack) {
  Chain c;
  MemoryTier disk, remote;
  remote.set_may_contain_all(true);  // no local index: a remote cache
  Store(disk, c.Record(0));
  Store(remote, c.Record(1));
  Store(remote, c.Record(2));
  Rig rig({&disk, &remote});
  auto p = Wait(rig.lookup.Start(c.Request()));
  ASSERT_EQ(p->records.size(), 3u);
  EXPECT_EQ(disk.reads(), (Reads{{c.keys[0]}}));
  EXPECT_EQ(remote.reads(), (Reads{{c.keys[1], c.keys[2]}}));  // one pipelined request
  EXPECT_EQ(rig.lookup.stats().below_hits, (std::vector<uint64_t>{1, 2}));
}

TEST(BlockLookupTest, AMissInATierThatMustBeAskedIsAMiss) {
  Chain c;
  MemoryTier remote;
  remote.set_may_contain_all(true);
  Rig rig({&remote});
  auto p = Wait(rig.lookup.Start(c.Request()));
  EXPECT_TRUE(p->records.empty());
  EXPECT_EQ(p->partial.record, nullptr);
  EXPECT_EQ(rig.lookup.stats().misses, 1u);
  EXPECT_TRUE(remote.rejected().empty());
}

TEST(BlockLookupTest, BytesThatAreNotTheBlockAskedForAreAMissAndRejected) {
  Chain c;
  MemoryTier disk;
  Store(disk, c.Record(0));
  auto bad = EncodeBlockFile(*c.Record(1));
  bad[bad.size() - 3] ^= 0x7f;  // the checksum no longer matches
  disk.Set(c.keys[1], bad);
  disk.Set(c.keys[2], EncodeBlockFile(*c.Record(0)));  // another block's bytes under this key
  Rig rig({&disk});
  auto p = Wait(rig.lookup.Start(c.Request()));
  EXPECT_EQ(p->records.size(), 1u);
  ASSERT_EQ(disk.rejected().size(), 1u);
  EXPECT_FALSE(disk.Contains(c.keys[1]));
  EXPECT_FALSE(rig.ram.Contains(c.keys[1]));
  rig.ram.Insert(c.Record(1));
  p = Wait(rig.lookup.Start(c.Request()));
  EXPECT_EQ(p->records.size(), 2u);
  ASSERT_EQ(disk.rejected().size(), 2u);
  EXPECT_EQ(disk.rejected()[1], "file name and key differ");
}

TEST(BlockLookupTest, APartialBlockOnlyATierBelowHasIsFetchedOnTheIoThread) {
  Chain c;
  const std::vector<int32_t> toks(c.tokens.begin(), c.tokens.begin() + 11);  // 2 full blocks + 3
  const std::vector<int32_t> rest(toks.begin() + 8, toks.end());
  MemoryTier disk;
  Store(disk, c.Tail(1, rest, 3));
  Rig rig({&disk});
  rig.ram.Insert(c.Record(0));
  rig.ram.Insert(c.Record(1));
  const auto req = c.Request(2, toks, /*resident=*/8);
  // The engine thread sees RAM only.
  EXPECT_EQ(rig.lookup.FindPartialInRam(*req, 2, 1).record, nullptr);
  EXPECT_TRUE(disk.reads().empty());
  // Every full block is resident, but the tier below may have a tail: the I/O thread looks.
  auto p = Wait(rig.lookup.Start(req));
  EXPECT_TRUE(p->records.empty());
  ASSERT_NE(p->partial.record, nullptr);
  EXPECT_EQ(p->partial.tokens, 3u);
  EXPECT_TRUE(p->partial.from_disk);
  EXPECT_EQ(disk.reads(), (Reads{{c.Tail(1, rest, 3)->key}}));
  EXPECT_EQ(rig.lookup.FindPartialInRam(*req, 2, 1).tokens, 3u);  // kept in RAM
  // Now RAM has it: found at once, without the I/O thread.
  p = rig.lookup.Start(req);
  EXPECT_TRUE(p->done.load());
  ASSERT_NE(p->partial.record, nullptr);
  EXPECT_EQ(p->partial.tokens, 3u);
  EXPECT_FALSE(p->partial.from_disk);
  EXPECT_EQ(disk.reads().size(), 1u);
}

TEST(BlockLookupTest, AnAgentsBlockThatDoesNotFitIsSkippedNotRejected) {
  Chain c;
  MemoryTier disk;
  Store(disk, c.Record(1));
  Rig rig({&disk});
  auto req = c.Request(0, {100, 101, 102});  // no full block; 3 tokens after the salt
  req->hint = {c.keys[1]};                   // the agent's block: another position, another parent
  auto p = Wait(rig.lookup.Start(req));
  EXPECT_EQ(p->partial.record, nullptr);
  EXPECT_EQ(disk.reads().size(), 1u);
  EXPECT_TRUE(disk.rejected().empty());
  EXPECT_TRUE(disk.Contains(c.keys[1]));
}

}  // namespace
}  // namespace kvault

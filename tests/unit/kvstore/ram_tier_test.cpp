#include "kvstore/ram_tier.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

namespace kvault {
namespace {

BlockKey Key(int i) {
  return CacheSalt("ram", std::to_string(i));
}

// A block of `kv_bytes` KV bytes and one token.
std::shared_ptr<const BlockRecord> Block(int i, size_t kv_bytes = 100) {
  auto r = std::make_shared<BlockRecord>();
  r->key = Key(i);
  r->tokens = {i};
  r->kv.assign(kv_bytes, static_cast<uint8_t>(i));
  return r;
}

// ByteSize of Block(i, kv_bytes): its capacity, token and overhead.
uint64_t Size(size_t kv_bytes = 100) {
  return Block(0, kv_bytes)->ByteSize();
}

TEST(RamTierTest, HoldsBlocksWithinItsBudgetEvictingTheLeastRecentlyUsedFirst) {
  RamTier ram(3 * Size());
  for (int i = 0; i < 3; ++i) ram.Insert(Block(i));
  EXPECT_EQ(ram.blocks(), 3u);
  EXPECT_EQ(ram.bytes(), 3 * Size());
  std::shared_ptr<const BlockRecord> r;
  ASSERT_EQ(ram.Use(Key(0), nullptr, &r), RamTier::Found::kHit);  // 0 is now the most recent
  EXPECT_EQ(r->key, Key(0));
  ram.Insert(Block(3));  // over budget: 1, the least recently used, goes
  EXPECT_EQ(ram.blocks(), 3u);
  EXPECT_LE(ram.bytes(), 3 * Size());
  EXPECT_TRUE(ram.Contains(Key(0)));
  EXPECT_FALSE(ram.Contains(Key(1)));
  EXPECT_TRUE(ram.Contains(Key(2)));
  EXPECT_TRUE(ram.Contains(Key(3)));
  // Peek is not a use: 2 stays the least recently used and goes next.
  EXPECT_NE(ram.Peek(Key(2)), nullptr);
  ram.Insert(Block(4));
  EXPECT_FALSE(ram.Contains(Key(2)));
  EXPECT_TRUE(ram.Contains(Key(0)));
}

TEST(RamTierTest, ABlockLargerThanTheBudgetDoesNotStay) {
  RamTier ram(Size());
  ram.Insert(Block(0));
  ram.Insert(Block(1, 1000));
  EXPECT_EQ(ram.blocks(), 0u);
  EXPECT_EQ(ram.bytes(), 0u);
}

TEST(RamTierTest, InsertingAHeldKeyAgainChangesNothing) {
  RamTier ram(10 * Size());
  ram.Insert(Block(0));
  ram.Insert(Block(0, 500));
  EXPECT_EQ(ram.blocks(), 1u);
  EXPECT_EQ(ram.bytes(), Size());
  EXPECT_EQ(ram.SizeOf(Key(0)), Size());
  EXPECT_EQ(ram.SizeOf(Key(1)), 0u);
}

TEST(RamTierTest, BlocksToEvictLastGoOnlyWhenNothingElseIsLeft) {
  std::set<BlockKey> pinned = {Key(0), Key(1)};
  RamTier ram(2 * Size(), [&](const BlockKey& k) { return pinned.count(k) > 0; });
  ram.Insert(Block(0));
  ram.Insert(Block(1));
  ram.Insert(Block(2));  // over budget: the new block is the only one not pinned
  EXPECT_TRUE(ram.Contains(Key(0)));
  EXPECT_TRUE(ram.Contains(Key(1)));
  EXPECT_FALSE(ram.Contains(Key(2)));
  pinned = {Key(0), Key(1), Key(3)};
  ram.Insert(Block(3));  // every block pinned: the least recently used goes
  EXPECT_FALSE(ram.Contains(Key(0)));
  EXPECT_TRUE(ram.Contains(Key(1)));
  EXPECT_TRUE(ram.Contains(Key(3)));
}

TEST(RamTierTest, AMisfitIsNotAHitNorAUse) {
  RamTier ram(2 * Size());
  ram.Insert(Block(0));
  ram.Insert(Block(1));
  std::shared_ptr<const BlockRecord> r;
  EXPECT_EQ(ram.Use(
                Key(0), [](const BlockRecord& b) { return b.tokens.size() == 2; }, &r),
            RamTier::Found::kMisfit);
  EXPECT_EQ(r, nullptr);
  EXPECT_EQ(ram.Use(Key(5), nullptr, &r), RamTier::Found::kAbsent);
  ram.Insert(Block(2));  // 0 was not used: still the least recently used
  EXPECT_FALSE(ram.Contains(Key(0)));
  EXPECT_TRUE(ram.Contains(Key(1)));
}

TEST(RamTierTest, UnpersistedMarksAreTakenOnceAndLeaveWithTheirBlocks) {
  RamTier ram(3 * Size());
  for (int i = 0; i < 3; ++i) ram.Insert(Block(i));
  EXPECT_FALSE(ram.MarkUnpersisted(Key(7)));  // not held: nothing to mark
  EXPECT_TRUE(ram.MarkUnpersisted(Key(0)));
  EXPECT_TRUE(ram.MarkUnpersisted(Key(1)));
  EXPECT_EQ(ram.unpersisted(), 2u);
  EXPECT_TRUE(ram.IsUnpersisted(Key(0)));
  // The only copy of block 0 leaves RAM (evicted): lost, its mark too.
  ram.Insert(Block(3));
  EXPECT_FALSE(ram.Contains(Key(0)));
  EXPECT_FALSE(ram.IsUnpersisted(Key(0)));
  EXPECT_EQ(ram.unpersisted(), 1u);
  auto taken = ram.TakeUnpersisted();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0]->key, Key(1));
  EXPECT_EQ(ram.unpersisted(), 0u);
  EXPECT_TRUE(ram.Contains(Key(1)));  // taking a mark keeps the block
  EXPECT_TRUE(ram.TakeUnpersisted().empty());
  ram.MarkUnpersistedIf([](const BlockKey& k) { return k != Key(2); });
  EXPECT_EQ(ram.unpersisted(), 2u);
  EXPECT_EQ(ram.TakeUnpersisted(1).size(), 1u);
  EXPECT_EQ(ram.unpersisted(), 1u);
}

TEST(RamTierTest, EraseIfHeldBelowKeepsOnlyCopies) {
  RamTier ram(10 * Size());
  for (int i = 0; i < 3; ++i) ram.Insert(Block(i));
  ram.MarkUnpersisted(Key(0));
  const auto below = [](const BlockKey& k) { return k != Key(1); };  // block 1 is not held below
  EXPECT_FALSE(ram.EraseIfHeldBelow(Key(0), below));                 // marked: RAM's only copy
  EXPECT_FALSE(ram.EraseIfHeldBelow(Key(1), below));                 // not below
  EXPECT_TRUE(ram.EraseIfHeldBelow(Key(2), below));
  EXPECT_FALSE(ram.EraseIfHeldBelow(Key(2), below));  // gone already
  EXPECT_EQ(ram.blocks(), 2u);
  EXPECT_EQ(ram.bytes(), 2 * Size());
  EXPECT_TRUE(ram.Erase(Key(0)));
  EXPECT_FALSE(ram.Erase(Key(0)));
  EXPECT_EQ(ram.unpersisted(), 0u);
}

}  // namespace
}  // namespace kvault

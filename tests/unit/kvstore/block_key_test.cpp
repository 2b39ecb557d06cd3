#include "kvstore/block_key.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

std::vector<int32_t> Range(int n, int from = 0) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(from + i);
  return v;
}

TEST(BlockKeyTest, OnlyFullBlocksHaveKeys) {
  const BlockKey salt = CacheSalt("fp", "");
  EXPECT_EQ(ComputeBlockKeys(salt, Range(63), 16).size(), 3u);
  EXPECT_EQ(ComputeBlockKeys(salt, Range(64), 16).size(), 4u);
}

TEST(BlockKeyTest, KeysNameTheWholePrefix) {
  const BlockKey salt = CacheSalt("fp", "");
  auto a = ComputeBlockKeys(salt, Range(64), 16);
  auto b = Range(64);
  b[3] = 999;  // differs in block 0 only
  auto kb = ComputeBlockKeys(salt, b, 16);
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(a[i], kb[i]) << i;  // every later block differs too
  auto c = Range(64);
  c[40] = 999;  // differs in block 2
  auto kc = ComputeBlockKeys(salt, c, 16);
  EXPECT_EQ(a[0], kc[0]);
  EXPECT_EQ(a[1], kc[1]);
  EXPECT_NE(a[2], kc[2]);
}

TEST(BlockKeyTest, ModelAndTenantSaltTheChain) {
  auto base = ComputeBlockKeys(CacheSalt("fp", "tenant-a"), Range(32), 16);
  EXPECT_EQ(base, ComputeBlockKeys(CacheSalt("fp", "tenant-a"), Range(32), 16));
  EXPECT_NE(base[0], ComputeBlockKeys(CacheSalt("fp", "tenant-b"), Range(32), 16)[0]);
  EXPECT_NE(base[0], ComputeBlockKeys(CacheSalt("fp2", "tenant-a"), Range(32), 16)[0]);
}

TEST(BlockKeyTest, ExtendContinuesTheChain) {
  const BlockKey salt = CacheSalt("fp", "");
  auto all = ComputeBlockKeys(salt, Range(80), 16);
  std::vector<BlockKey> part = ComputeBlockKeys(salt, Range(32), 16);
  ExtendBlockKeys(salt, Range(80), 16, &part);
  EXPECT_EQ(part, all);
}

TEST(BlockKeyTest, TailKeysNameEachPrefixOfTheTailAndDifferFromFullBlockKeys) {
  const BlockKey salt = CacheSalt("fp", "");
  const auto toks = Range(20);
  const auto full = ComputeBlockKeys(salt, toks, 16);
  const auto tails = TailBlockKeys(full[0], toks.data() + 16, 4);
  ASSERT_EQ(tails.size(), 4u);
  // Digesting the stream after each token equals hashing that prefix alone.
  for (size_t k = 1; k <= 4; ++k) EXPECT_EQ(TailBlockKeys(full[0], toks.data() + 16, k).back(), tails[k - 1]) << k;
  EXPECT_NE(tails[0], tails[1]);
  // A tail of 15 tokens and a full block of 16 hash the same number of bytes; they never collide.
  const auto tail15 = TailBlockKeys(salt, toks.data(), 15).back();
  EXPECT_NE(tail15, full[0]);
  // The parent is part of the key: the same tail after another prefix is another block.
  EXPECT_NE(TailBlockKeys(salt, toks.data() + 16, 4).back(), tails[3]);
  auto other = toks;
  other[17] = 999;
  EXPECT_EQ(TailBlockKeys(full[0], other.data() + 16, 1)[0], tails[0]);
  EXPECT_NE(TailBlockKeys(full[0], other.data() + 16, 2)[1], tails[1]);
}

TEST(BlockKeyTest, HexRoundTrip) {
  const BlockKey k = CacheSalt("x", "y");
  BlockKey back;
  ASSERT_TRUE(BlockKey::FromHex(k.Hex(), &back));
  EXPECT_EQ(back, k);
  EXPECT_EQ(k.Hex().size(), 32u);
  EXPECT_FALSE(BlockKey::FromHex("xyz", &back));
  EXPECT_FALSE(BlockKey::FromHex(std::string(32, 'G'), &back));
}

}  // namespace
}  // namespace kvault

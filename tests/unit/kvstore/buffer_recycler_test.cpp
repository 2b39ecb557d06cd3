#include "kvstore/buffer_recycler.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(BufferRecyclerTest, GivenBuffersAreReusedSmallestFirst) {
  BufferRecycler pool(1 << 20);
  auto a = pool.Take(1000);
  EXPECT_EQ(a.size(), 1000u);
  EXPECT_EQ(pool.reused(), 0u);
  auto big = pool.Take(4000);
  const uint8_t* small_memory = a.data();
  const uint8_t* big_memory = big.data();
  pool.Give(std::move(big));
  pool.Give(std::move(a));
  EXPECT_GE(pool.spare_bytes(), 5000u);
  auto b = pool.Take(900);  // both would do: the smaller one
  EXPECT_EQ(b.data(), small_memory);
  EXPECT_EQ(b.size(), 900u);
  auto c = pool.Take(3000);
  EXPECT_EQ(c.data(), big_memory);
  EXPECT_EQ(pool.reused(), 2u);
  EXPECT_EQ(pool.spare_bytes(), 0u);
  auto d = pool.Take(10);  // nothing spare: a new one
  EXPECT_EQ(pool.reused(), 2u);
}

TEST(BufferRecyclerTest, ASmallRequestDoesNotPinABigBuffer) {
  BufferRecycler pool(1 << 20);
  pool.Give(std::vector<uint8_t>(10000));
  auto small = pool.Take(3000);  // would waste more than half of it: new memory
  EXPECT_EQ(pool.reused(), 0u);
  EXPECT_EQ(pool.spare_bytes(), 10000u);
  auto half = pool.Take(5000);
  EXPECT_EQ(pool.reused(), 1u);
  EXPECT_EQ(half.capacity(), 10000u);
}

TEST(BufferRecyclerTest, SpareMemoryStaysWithinTheLimit) {
  BufferRecycler pool(3000);
  pool.Give(std::vector<uint8_t>(2000));
  pool.Give(std::vector<uint8_t>(2000));  // over the limit: freed
  EXPECT_EQ(pool.spare_bytes(), 2000u);
  EXPECT_EQ(pool.Prefault(500, 1 << 20), 2u);  // up to the limit, not to the asked bytes
  EXPECT_EQ(pool.spare_bytes(), 3000u);
}

TEST(BufferRecyclerTest, PrefaultFillsUpToTheAskedBytesAndStopsWhenTold) {
  BufferRecycler pool(1 << 20);
  EXPECT_EQ(pool.Prefault(1000, 4500), 4u);
  EXPECT_EQ(pool.spare_bytes(), 4000u);
  std::atomic<bool> stop{true};
  EXPECT_EQ(pool.Prefault(1000, 1 << 20, &stop), 0u);
  auto b = pool.Take(1000);
  EXPECT_EQ(pool.reused(), 1u);
}

}  // namespace
}  // namespace kvault

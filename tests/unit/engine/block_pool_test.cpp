#include "engine/block_pool.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace kvault {
namespace {

TEST(BlockPoolTest, AllocateUntilEmptyThenFreeByRefcount) {
  BlockPool pool(3, 16);
  EXPECT_EQ(pool.total_blocks(), 3u);
  auto a = pool.Allocate(), b = pool.Allocate(), c = pool.Allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_FALSE(pool.Allocate().has_value());
  EXPECT_EQ(pool.free_blocks(), 0u);
  pool.Ref(*a);
  pool.Unref(*a);
  EXPECT_EQ(pool.free_blocks(), 0u);  // still referenced once
  pool.Unref(*a);
  EXPECT_EQ(pool.free_blocks(), 1u);
  EXPECT_EQ(pool.Allocate(), a);
}

TEST(BlockPoolTest, MisuseThrows) {
  BlockPool pool(1, 16);
  EXPECT_THROW(pool.Unref(0), std::logic_error);
  EXPECT_THROW(pool.Ref(0), std::logic_error);
}

}  // namespace
}  // namespace kvault

#include "core/status.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, CarriesCodeAndMessage) {
  Status s = Status::TooLarge("prompt too long");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kTooLarge);
  EXPECT_EQ(s.message(), "prompt too long");
  EXPECT_EQ(s.ToString(), "TooLarge: prompt too long");
}

TEST(StatusOrTest, HoldsValueOrError) {
  StatusOr<int> v = 7;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 7);
  StatusOr<int> e = Status::NotFound("x");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace kvault

#include "server/api_keys.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(ApiKeysTest, WithoutKeysEveryoneIsTheAnonymousTenant) {
  ApiKeys keys;
  EXPECT_FALSE(keys.enabled());
  auto t = keys.Authenticate("", "");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t.value(), "");
}

TEST(ApiKeysTest, EitherHeaderWorksAndEachKeyIsItsOwnStableTenant) {
  ApiKeys keys({"alpha-key", "beta-key"});
  auto a1 = keys.Authenticate("alpha-key", "");
  auto a2 = keys.Authenticate("", "Bearer alpha-key");
  auto b = keys.Authenticate("beta-key", "");
  ASSERT_TRUE(a1.ok() && a2.ok() && b.ok());
  EXPECT_EQ(a1.value(), a2.value());
  EXPECT_NE(a1.value(), b.value());
  EXPECT_FALSE(a1.value().empty());
  // Key order does not matter: the tenant comes from the key itself.
  EXPECT_EQ(ApiKeys({"beta-key", "alpha-key"}).Authenticate("alpha-key", "").value(), a1.value());
  // The tenant does not reveal the key.
  EXPECT_EQ(a1.value().find("alpha"), std::string::npos);
}

TEST(ApiKeysTest, MissingOrWrongKeysAreUnauthenticatedWithoutEchoingThem) {
  ApiKeys keys({"alpha-key"});
  for (auto [x, auth] : {std::pair<std::string, std::string>{"", ""},
                         {"alpha-ke", ""},
                         {"alpha-key2", ""},
                         {"", "Bearer wrong-secret"},
                         {"", "Basic alpha-key"}}) {
    auto t = keys.Authenticate(x, auth);
    ASSERT_FALSE(t.ok()) << x << " / " << auth;
    EXPECT_EQ(t.status().code(), Status::Code::kUnauthenticated);
    EXPECT_EQ(t.status().message().find("wrong-secret"), std::string::npos);
    EXPECT_EQ(t.status().message().find("alpha-ke"), std::string::npos);
  }
}

}  // namespace
}  // namespace kvault

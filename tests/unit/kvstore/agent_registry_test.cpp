#include "kvstore/agent_registry.h"

#include "kvstore/block_key.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvault {
namespace {

TEST(AgentRegistryTest, ValidIds) {
  for (const char* ok : {"planner", "a", "user@example.com", "agent-7:sub_2", "x.y"}) {
    EXPECT_TRUE(AgentRegistry::ValidId(ok)) << ok;
  }
  for (const std::string& bad : std::vector<std::string>{"", ".", "..", "../x", "a/b", "a b", "a\nb",
                                                         std::string("a\0b", 3), std::string(257, 'x')}) {
    EXPECT_FALSE(AgentRegistry::ValidId(bad)) << bad;
  }
}

// A record from another instance (the remote tier) is adopted only when it has more turns, the
// agent has not changed here since the caller looked, and it was not forgotten here at as many turns.
TEST(AgentRegistryTest, AdoptTakesOnlyANewerRecordOfAnUnchangedAgentThatWasNotForgotten) {
  AgentRegistry reg;
  const BlockKey k1 = CacheSalt("fp", "one"), k2 = CacheSalt("fp", "two");
  EXPECT_TRUE(reg.Adopt({"t", "a", {k1}, 16, 3, 1}, 0)) << "unknown here";
  auto now = reg.Snapshot("t", "a");
  ASSERT_TRUE(now);
  EXPECT_EQ(now->record.turns, 3u);
  EXPECT_TRUE(reg.InLatestChain(k1));
  EXPECT_FALSE(reg.Adopt({"t", "a", {k2}, 16, 3, 1}, now->generation)) << "not more turns";
  EXPECT_FALSE(reg.Adopt({"t", "a", {k2}, 16, 5, 1}, now->generation - 1)) << "changed since the caller looked";
  EXPECT_FALSE(reg.Adopt({"t", "a", {k2}, 16, 5, 1}, 0)) << "the caller saw no agent; there is one now";
  EXPECT_TRUE(reg.Adopt({"t", "a", {k2}, 16, 5, 1}, now->generation));
  EXPECT_FALSE(reg.InLatestChain(k1));
  EXPECT_TRUE(reg.InLatestChain(k2));
  reg.Update({"t", "a", {k1}, 16, 1, 2});  // a turn here: 5 + 1
  EXPECT_EQ(reg.Snapshot("t", "a")->record.turns, 6u);
  uint64_t removed = 0;
  reg.Remove("t", "a", &removed);
  EXPECT_EQ(removed, 6u);
  EXPECT_FALSE(reg.Adopt({"t", "a", {k2}, 16, 6, 1}, 0)) << "forgotten here at turn 6";
  EXPECT_TRUE(reg.Adopt({"t", "a", {k2}, 16, 7, 1}, 0)) << "it went on elsewhere";
  // The id used again here after a forget counts on from the forgotten turns.
  reg.Remove("t", "a");
  reg.Update({"t", "a", {k1}, 16, 1, 3});
  EXPECT_EQ(reg.Snapshot("t", "a")->record.turns, 8u);
  EXPECT_FALSE(reg.Adopt({"t", "other", {k2}, 16, 1, 1}, 7)) << "generation of an unknown agent is 0";
}

}  // namespace
}  // namespace kvault

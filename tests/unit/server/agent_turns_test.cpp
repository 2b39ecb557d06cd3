// AgentTurns (server/agent_turns.h): each agent's recent turns, bounded per agent and in agents.
#include "server/agent_turns.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace kvault {
namespace {

// "a" and the number (appended, not `"a" + std::to_string(n)`: g++ 12 warns falsely on that, -Wrestrict).
std::string Name(int n) {
  std::string s = "a";
  s += std::to_string(n);
  return s;
}

AgentTurn Turn(int64_t prompt, int64_t cached) {
  AgentTurn t;
  t.prompt_tokens = prompt;
  t.cached_tokens = cached;
  t.cached_ram = cached;
  return t;
}

TEST(AgentTurnsHistoryTest, KeepsTurnsInOrderPerModelTenantAndAgent) {
  AgentTurns turns;
  turns.Record("m", "t1", "a", Turn(100, 0));
  turns.Record("m", "t1", "a", Turn(150, 90));
  turns.Record("m", "t2", "a", Turn(7, 0));   // another tenant's agent of the same name
  turns.Record("m2", "t1", "a", Turn(9, 0));  // another model's store
  const auto a = turns.Turns("m", "t1", "a");
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].prompt_tokens, 100);
  EXPECT_EQ(a[1].prompt_tokens, 150);
  EXPECT_EQ(a[1].computed_tokens(), 60);
  EXPECT_EQ(turns.Last("m", "t1", "a")->cached_tokens, 90);
  EXPECT_EQ(turns.Turns("m", "t2", "a").size(), 1u);
  EXPECT_EQ(turns.Turns("m2", "t1", "a").size(), 1u);
  EXPECT_TRUE(turns.Turns("m", "t1", "b").empty());
  EXPECT_FALSE(turns.Last("m", "t1", "b"));
  EXPECT_EQ(turns.agents(), 3u);
}

TEST(AgentTurnsHistoryTest, KeepsTheLastTurnsOfEachAgent) {
  AgentTurns turns(3);
  for (int i = 1; i <= 5; ++i) turns.Record("m", "", "a", Turn(i, 0));
  const auto a = turns.Turns("m", "", "a");
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a.front().prompt_tokens, 3);
  EXPECT_EQ(a.back().prompt_tokens, 5);
}

TEST(AgentTurnsHistoryTest, DropsTheAgentWhoseLastTurnIsOldest) {
  AgentTurns turns(4, 2);
  turns.Record("m", "", "a", Turn(1, 0));
  turns.Record("m", "", "b", Turn(1, 0));
  turns.Record("m", "", "a", Turn(2, 0));  // a is now more recent than b
  turns.Record("m", "", "c", Turn(1, 0));  // a third agent: b goes
  EXPECT_EQ(turns.agents(), 2u);
  EXPECT_TRUE(turns.Turns("m", "", "b").empty());
  EXPECT_EQ(turns.Turns("m", "", "a").size(), 2u);
  EXPECT_EQ(turns.Turns("m", "", "c").size(), 1u);
}

TEST(AgentTurnsHistoryTest, ForgetDropsAnAgentsHistory) {
  AgentTurns turns(4, 2);
  turns.Record("m", "", "a", Turn(1, 0));
  turns.Record("m", "", "b", Turn(1, 0));
  turns.Forget("m", "", "a");
  turns.Forget("m", "", "nobody");
  EXPECT_TRUE(turns.Turns("m", "", "a").empty());
  EXPECT_EQ(turns.agents(), 1u);
  // Its place is free: two more agents fit without dropping b before them.
  turns.Record("m", "", "c", Turn(1, 0));
  EXPECT_EQ(turns.Turns("m", "", "b").size(), 1u);
}

TEST(AgentTurnsHistoryTest, ConcurrentRecordsAndReads) {
  AgentTurns turns(16, 8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        const std::string agent = Name((t * 7 + i) % 12);
        turns.Record("m", "", agent, Turn(i, i / 2));
        turns.Turns("m", "", agent);
        turns.Last("m", "", "a0");
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(turns.agents(), 8u);
  for (int i = 0; i < 12; ++i) EXPECT_LE(turns.Turns("m", "", Name(i)).size(), 16u);
}

}  // namespace
}  // namespace kvault

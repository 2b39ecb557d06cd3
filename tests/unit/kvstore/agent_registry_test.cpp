#include "kvstore/agent_registry.h"

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

}  // namespace
}  // namespace kvault

#include "engine/step_planner.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

int32_t Total(const std::vector<StepEntry>& plan) {
  int32_t n = 0;
  for (const auto& e : plan) n += e.n_tokens;
  return n;
}

TEST(PlanStepTest, EveryDecodingSequenceGetsOneToken) {
  size_t cursor = 0;
  auto plan = PlanStep({{0, 0}, {1, 0}, {2, 0}}, 256, &cursor);
  ASSERT_EQ(plan.size(), 3u);
  for (const auto& e : plan) {
    EXPECT_TRUE(e.decode);
    EXPECT_EQ(e.n_tokens, 1);
  }
}

TEST(PlanStepTest, LongPrefillIsChunkedAndDecodersKeepGoing) {
  size_t cursor = 0;
  // Sequence 0 has 4000 prompt tokens left; 1 and 2 are generating.
  auto plan = PlanStep({{0, 4000}, {1, 0}, {2, 0}}, 64, &cursor);
  EXPECT_EQ(Total(plan), 64);
  int decodes = 0;
  for (const auto& e : plan) {
    if (e.decode) ++decodes;
    if (!e.decode) {
      EXPECT_EQ(e.id, 0);
      EXPECT_EQ(e.n_tokens, 62);
    }
  }
  EXPECT_EQ(decodes, 2);
}

TEST(PlanStepTest, PrefillChunksRotateRoundRobin) {
  size_t cursor = 0;
  const std::vector<RunningSeq> seqs = {{0, 1000}, {1, 1000}, {2, 1000}};
  std::vector<int> first;
  for (int step = 0; step < 3; ++step) {
    auto plan = PlanStep(seqs, 100, &cursor);
    ASSERT_EQ(plan.size(), 1u);  // the whole budget goes to one chunk
    EXPECT_EQ(plan[0].n_tokens, 100);
    first.push_back(plan[0].id);
  }
  EXPECT_EQ(first, (std::vector<int>{0, 1, 2}));
}

TEST(PlanStepTest, ShortPromptsShareTheBudget) {
  size_t cursor = 0;
  auto plan = PlanStep({{0, 10}, {1, 20}, {2, 500}}, 100, &cursor);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].n_tokens, 10);
  EXPECT_EQ(plan[1].n_tokens, 20);
  EXPECT_EQ(plan[2].n_tokens, 70);
}

TEST(PlanStepTest, DecodeTokensAreNeverDroppedEvenOverBudget) {
  size_t cursor = 0;
  auto plan = PlanStep({{0, 0}, {1, 0}, {2, 50}}, 2, &cursor);
  EXPECT_EQ(plan.size(), 2u);
  EXPECT_EQ(Total(plan), 2);
}

}  // namespace
}  // namespace kvault

#include "engine/logprobs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace kvault {
namespace {

TEST(LogSoftmaxTest, LogprobsAndTheMostLikelyTokens) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  double z = 0;
  for (float l : logits) z += std::exp(l);
  const TokenDistribution d = LogSoftmaxAt(logits.data(), 5, 2, 3);
  EXPECT_NEAR(d.logprob, 2.0 - std::log(z), 1e-6);
  ASSERT_EQ(d.top.size(), 3u);
  EXPECT_EQ(d.top[0].first, 1);  // ties: the lower id first
  EXPECT_EQ(d.top[1].first, 3);
  EXPECT_EQ(d.top[2].first, 2);
  EXPECT_NEAR(d.top[0].second, 3.0 - std::log(z), 1e-6);
  EXPECT_FLOAT_EQ(d.top[2].second, d.logprob);
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) total += std::exp(LogSoftmaxAt(logits.data(), 5, i, 0).logprob);
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_TRUE(LogSoftmaxAt(logits.data(), 5, 0, 0).top.empty());
  EXPECT_EQ(LogSoftmaxAt(logits.data(), 5, 0, 20).top.size(), 5u);  // no more than the vocabulary
}

TEST(LogSoftmaxTest, LargeLogitsDoNotOverflow) {
  const std::vector<float> logits = {1000.0f, 999.0f};
  const TokenDistribution d = LogSoftmaxAt(logits.data(), 2, 0, 1);
  EXPECT_TRUE(std::isfinite(d.logprob));
  EXPECT_NEAR(d.logprob, -std::log(1 + std::exp(-1.0)), 1e-5);
}

TokenLogprob Entry(const std::string& token) {
  TokenLogprob e;
  e.token = token;
  return e;
}

std::string Joined(const std::vector<TokenLogprob>& v) {
  std::string s;
  for (const auto& e : v) s += e.token;
  return s;
}

TEST(LogprobQueueTest, EntriesGoOutWithTheTextThatCompletesThem) {
  LogprobQueue q;
  q.Add(Entry("He"), 2);
  q.Add(Entry("llo"), 3);
  EXPECT_EQ(Joined(q.Sent(4)), "He");  // "Hell" sent: "llo" is not complete yet
  q.Add(Entry(" w"), 2);
  EXPECT_EQ(Joined(q.Sent(3)), "llo w");
  EXPECT_TRUE(q.Sent(0).empty());
  q.Add(Entry("\xC3"), 1);  // half a character: held back with its text
  EXPECT_TRUE(q.Rest(false).size() == 1u);
}

TEST(LogprobQueueTest, AStopSequenceDropsTheTokensAfterTheCut) {
  LogprobQueue q;
  q.Add(Entry("ab"), 2);
  q.Add(Entry("cS"), 2);  // the stop sequence "STOP" starts inside this token
  q.Add(Entry("TOP"), 3);
  q.Add(Entry("x"), 1);
  EXPECT_EQ(Joined(q.Sent(3)), "ab");  // the text is cut at "abc"
  EXPECT_EQ(Joined(q.Rest(true)), "cS");
  EXPECT_TRUE(q.Rest(true).empty());
}

}  // namespace
}  // namespace kvault

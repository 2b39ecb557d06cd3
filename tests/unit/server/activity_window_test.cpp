// ActivityWindow (server/activity_window.h): the dashboard's recent figures, with injected times.
#include "server/activity_window.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

using Clock = ActivityWindow::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

ActivityWindow::Generation Gen(double ttft_ms, int64_t prompt = 100, int64_t pool = 0, int64_t ram = 0,
                               int64_t disk = 0, int64_t generated = 10) {
  return {ttft_ms, prompt, pool, ram, disk, generated};
}

TEST(ActivityWindowTest, EmptyHasNoPercentilesAndNoRates) {
  ActivityWindow w;
  const auto s = w.Summarize(Clock::now());
  EXPECT_EQ(s.requests, 0u);
  EXPECT_FALSE(s.ttft_p50_ms);
  EXPECT_FALSE(s.ttft_p95_ms);
  EXPECT_FALSE(s.tokens_per_second);
  EXPECT_EQ(s.requests_per_second, 0);
}

TEST(ActivityWindowTest, PercentilesAreNearestRankOverTheWindow) {
  ActivityWindow w(seconds(300));
  const auto t0 = Clock::now();
  for (int i = 1; i <= 100; ++i) w.Observe(t0, Gen(i));  // 1..100 ms
  const auto s = w.Summarize(t0);
  EXPECT_EQ(s.requests, 100u);
  EXPECT_DOUBLE_EQ(*s.ttft_p50_ms, 50);
  EXPECT_DOUBLE_EQ(*s.ttft_p95_ms, 95);
}

TEST(ActivityWindowTest, GenerationsWithoutAFirstTokenAreCountedButNotInThePercentiles) {
  ActivityWindow w;
  const auto t0 = Clock::now();
  w.Observe(t0, Gen(-1));
  w.Observe(t0, Gen(40));
  const auto s = w.Summarize(t0);
  EXPECT_EQ(s.requests, 2u);
  EXPECT_DOUBLE_EQ(*s.ttft_p50_ms, 40);
}

TEST(ActivityWindowTest, OldGenerationsLeaveTheWindow) {
  ActivityWindow w(seconds(60));
  const auto t0 = Clock::now();
  w.Observe(t0, Gen(1000, 100, 90));
  w.Observe(t0 + seconds(50), Gen(10, 200, 0, 150, 20));
  auto s = w.Summarize(t0 + seconds(55));
  EXPECT_EQ(s.requests, 2u);
  EXPECT_EQ(s.prompt_tokens, 300);
  EXPECT_EQ(s.cached_pool, 90);
  EXPECT_EQ(s.cached_ram, 150);
  EXPECT_EQ(s.cached_disk, 20);
  EXPECT_NEAR(s.window_seconds, 55, 1e-6);
  s = w.Summarize(t0 + seconds(70));  // the first is 70 s old now
  EXPECT_EQ(s.requests, 1u);
  EXPECT_EQ(s.prompt_tokens, 200);
  EXPECT_DOUBLE_EQ(*s.ttft_p95_ms, 10);
  EXPECT_NEAR(s.window_seconds, 60, 1e-6);
}

TEST(ActivityWindowTest, AtMostMaxGenerationsAreKeptAndTheWindowSaysSo) {
  ActivityWindow w(seconds(300), 3);
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) w.Observe(t0 + seconds(i), Gen(i));
  const auto s = w.Summarize(t0 + seconds(4));
  EXPECT_EQ(s.requests, 3u);
  EXPECT_NEAR(s.window_seconds, 2, 1e-6);  // the oldest kept is from t0 + 2 s
}

TEST(ActivityWindowTest, RequestsPerSecondOverTheLastTenSeconds) {
  ActivityWindow w;
  const auto t0 = Clock::now();
  w.Observe(t0, Gen(1));  // 30 s before the summary: out of the rate window
  for (int i = 0; i < 20; ++i) w.Observe(t0 + seconds(21) + milliseconds(400 * i), Gen(1));
  const auto s = w.Summarize(t0 + seconds(30));
  EXPECT_EQ(s.requests, 21u);
  EXPECT_DOUBLE_EQ(s.requests_per_second, 2.0);
}

TEST(ActivityWindowTest, TokensPerSecondFromCounterSamples) {
  ActivityWindow w;
  const auto t0 = Clock::now();
  w.SampleTokens(t0, 1000);
  EXPECT_FALSE(w.Summarize(t0).tokens_per_second);  // one sample: no rate yet
  w.SampleTokens(t0 + milliseconds(100), 1010);     // too soon after the last: not kept
  w.SampleTokens(t0 + seconds(2), 1100);
  auto s = w.Summarize(t0 + seconds(2));
  ASSERT_TRUE(s.tokens_per_second);
  EXPECT_DOUBLE_EQ(*s.tokens_per_second, 50);
  // Only the last ten seconds count.
  w.SampleTokens(t0 + seconds(11), 1200);
  w.SampleTokens(t0 + seconds(13), 1220);
  s = w.Summarize(t0 + seconds(13));
  EXPECT_DOUBLE_EQ(*s.tokens_per_second, 10);  // (1220 - 1200) / 2 s: the samples at 0 and 2 s are too old
}

TEST(ActivityWindowTest, ACounterThatGoesBackStartsTheSamplesAgain) {
  ActivityWindow w;
  const auto t0 = Clock::now();
  w.SampleTokens(t0, 5000);
  w.SampleTokens(t0 + seconds(1), 5100);
  w.SampleTokens(t0 + seconds(2), 30);  // a model was unloaded: its counter went with it
  EXPECT_FALSE(w.Summarize(t0 + seconds(2)).tokens_per_second);
  w.SampleTokens(t0 + seconds(3), 130);
  EXPECT_DOUBLE_EQ(*w.Summarize(t0 + seconds(3)).tokens_per_second, 100);
}

}  // namespace
}  // namespace kvault

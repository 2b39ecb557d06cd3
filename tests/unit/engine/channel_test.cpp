#include "engine/channel.h"

#include <gtest/gtest.h>

#include <thread>

namespace kvault {
namespace {

TEST(ChannelTest, FifoOrder) {
  Channel<int> ch;
  ch.Push(1);
  ch.Push(2);
  EXPECT_EQ(ch.Pop().value(), 1);
  EXPECT_EQ(ch.Pop().value(), 2);
}

TEST(ChannelTest, CloseDrainsThenEnds) {
  Channel<int> ch;
  ch.Push(1);
  ch.Close();
  EXPECT_FALSE(ch.Push(2));
  EXPECT_EQ(ch.Pop().value(), 1);
  EXPECT_FALSE(ch.Pop().has_value());
}

TEST(ChannelTest, DrainedOnlyWhenClosedAndEmpty) {
  Channel<int> ch;
  EXPECT_FALSE(ch.drained());
  ch.Push(1);
  ch.Close();
  EXPECT_TRUE(ch.closed());
  EXPECT_FALSE(ch.drained());  // closed, but an item pushed before Close still waits
  EXPECT_EQ(ch.TryPop().value(), 1);
  EXPECT_TRUE(ch.drained());
}

// A consumer that polls with PopFor and stops on drained() never loses an item pushed just
// before Close, however the two threads interleave.
TEST(ChannelTest, PollingConsumerStoppingOnDrainedGetsEveryItem) {
  for (int round = 0; round < 200; ++round) {
    Channel<int> ch;
    std::thread producer([&] {
      for (int i = 0; i < 5; ++i) ch.Push(i);
      ch.Close();
    });
    int got = 0;
    while (true) {
      if (auto v = ch.PopFor(std::chrono::microseconds(1))) {
        EXPECT_EQ(*v, got++);
        continue;
      }
      if (ch.drained()) break;
    }
    producer.join();
    EXPECT_EQ(got, 5);
  }
}

TEST(ChannelTest, PopForTimesOut) {
  Channel<int> ch;
  EXPECT_FALSE(ch.PopFor(std::chrono::milliseconds(10)).has_value());
}

TEST(ChannelTest, CrossThread) {
  Channel<int> ch;
  std::thread producer([&] {
    for (int i = 0; i < 1000; ++i) ch.Push(i);
    ch.Close();
  });
  int expected = 0;
  while (auto v = ch.Pop()) EXPECT_EQ(*v, expected++);
  producer.join();
  EXPECT_EQ(expected, 1000);
}

TEST(ChannelTest, CloseWakesBlockedConsumer) {
  Channel<int> ch;
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ch.Close();
  });
  EXPECT_FALSE(ch.Pop().has_value());
  closer.join();
}

}  // namespace
}  // namespace kvault

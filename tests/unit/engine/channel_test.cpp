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

#include "kvstore/io_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kvault {
namespace {

using namespace std::chrono_literals;

// Holds the thread in a job until released, so that jobs queue behind it.
struct Gate {
  std::promise<void> entered, open;
  void Hold(IoThread& io) {
    io.PostWrite([this, f = open.get_future().share()] {
      entered.set_value();
      f.wait();
    });
    entered.get_future().wait();
  }
};

TEST(IoThreadTest, ReadsRunBeforeQueuedWritesAndWritesInOrder) {
  IoThread io;
  io.Start();
  Gate gate;
  gate.Hold(io);
  std::mutex mu;
  std::vector<std::string> ran;
  auto job = [&](std::string name) {
    return [&, name] {
      std::lock_guard<std::mutex> lock(mu);
      ran.push_back(name);
    };
  };
  io.PostWrite(job("w1"));
  io.PostWrite(job("w2"));
  io.PostRead(job("r1"));
  io.PostWrite(job("w3"));
  io.PostRead(job("r2"));
  EXPECT_EQ(io.queued_writes(), 3u);
  gate.open.set_value();
  io.Stop();  // runs every queued job first
  EXPECT_EQ(ran, (std::vector<std::string>{"r1", "r2", "w1", "w2", "w3"}));
}

TEST(IoThreadTest, IdleWorkRunsOnlyWhileDueAndTheQueuesAreEmpty) {
  IoThread io;
  std::atomic<bool> due{false};
  std::atomic<int> runs{0};
  IoThread::IdleWork idle;
  idle.every = 5ms;
  idle.due = [&] { return due.load(); };
  idle.run = [&] { ++runs; };
  io.Start(std::move(idle));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runs.load(), 0) << "idle work ran while not due";
  due = true;
  io.PostWrite([] {});  // wakes the thread, which then sees the work due
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (runs.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_GE(runs.load(), 3);
  due = false;
  io.PostWrite([] {});
  std::promise<void> done;
  io.PostWrite([&] { done.set_value(); });
  done.get_future().wait();
  const int after = runs.load();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runs.load(), after) << "idle work ran after it stopped being due";
}

TEST(IoThreadTest, StopWithoutStartAndTwiceIsHarmless) {
  IoThread never;
  never.Stop();
  IoThread io;
  io.Start();
  std::atomic<bool> ran{false};
  io.PostRead([&] { ran = true; });
  io.Stop();
  io.Stop();
  EXPECT_TRUE(ran.load());
}

}  // namespace
}  // namespace kvault

#include "kvstore/write_behind.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "unit/kvstore/memory_tier.h"

namespace kvault {
namespace {

using namespace std::chrono_literals;

BlockKey Key(int i) {
  return CacheSalt("write-behind", std::to_string(i));
}

std::shared_ptr<const BlockRecord> Block(int i) {
  auto r = std::make_shared<BlockRecord>();
  r->key = Key(i);
  r->parent = Key(i - 1);
  r->fingerprint = "fp";
  r->kv_type = "f16";
  r->tokens = {i, i + 1};
  r->kv.assign(64, static_cast<uint8_t>(i));
  return r;
}

// No probe from the idle I/O thread while a test runs: the test probes itself (Rig::Probe).
constexpr uint32_t kNoIdleProbe = 3'600'000;

// A write-behind from a RAM tier into a MemoryTier, with the store's wiring of the I/O thread:
// while writes fail it probes every `probe_ms`.
struct Rig {
  explicit Rig(uint64_t ram_bytes = 1 << 20, uint32_t probe_ms = kNoIdleProbe)
      : ram(ram_bytes), writer(ram, tier, agents, io, probe_ms) {
    IoThread::IdleWork idle;
    idle.every = std::chrono::milliseconds(probe_ms);
    idle.due = [this] { return writer.failing(); };
    idle.run = [this] { writer.ProbeWhileFailing(); };
    io.Start(std::move(idle));
  }
  ~Rig() { io.Stop(); }
  // One probe, on the I/O thread (where probes run), as the idle thread does while writes fail.
  void Probe() {
    std::promise<void> done;
    io.PostWrite([&] {
      writer.ProbeWhileFailing();
      done.set_value();
    });
    done.get_future().wait();
  }
  // Returns once the writes queued so far, and those they queued (a backfill), are done. (Flush
  // alone may return between a recovering write and the backfill it then queues.)
  void Settle() {
    std::promise<void> done;
    io.PostWrite([&] { done.set_value(); });
    done.get_future().wait();
    writer.Flush();
  }
  // Into RAM and behind it into the tier, as the store's Put.
  void Put(std::shared_ptr<const BlockRecord> r) {
    ram.Insert(r);
    writer.Write(std::move(r));
  }

  RamTier ram;
  testing::MemoryTier tier;
  AgentRegistry agents;  // in memory: no record files
  IoThread io;
  WriteBehind writer;
};

// Waits up to 60 s for `cond`; returns it.
bool Eventually(const std::function<bool()>& cond) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!cond() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  return cond();
}

TEST(WriteBehindTest, WritesEachBlockOnceBehindTheCallerAndFlushWaitsForThem) {
  Rig rig;
  for (int i = 0; i < 3; ++i) rig.Put(Block(i));
  rig.writer.Flush();
  EXPECT_EQ(rig.writer.pending(), 0u);
  EXPECT_EQ(rig.tier.size(), 3u);
  EXPECT_EQ(rig.tier.write_calls(), 3u);
  rig.Put(Block(1));  // stored below already: not written again
  rig.writer.Flush();
  EXPECT_EQ(rig.tier.write_calls(), 3u);
  EXPECT_FALSE(rig.writer.failing());
  EXPECT_EQ(rig.writer.health().failures, 0u);
}

TEST(WriteBehindTest, BlocksWhoseWriteFailedStayInRamAndAreWrittenWhenTheTierIsBack) {
  Rig rig(1 << 20, kNoIdleProbe);
  rig.tier.FailWrites(true);
  rig.Put(Block(0));
  rig.Put(Block(1));
  rig.writer.Flush();
  EXPECT_TRUE(rig.writer.failing());
  PersistenceHealth h = rig.writer.health();
  EXPECT_EQ(h.failures, 2u);
  EXPECT_EQ(h.unpersisted_blocks, 2u);
  EXPECT_EQ(h.last_error, "memory tier: writes fail");
  EXPECT_TRUE(rig.ram.IsUnpersisted(Key(0)));
  EXPECT_EQ(rig.tier.size(), 0u);
  // The next good write ends the failing period and queues the blocks RAM kept.
  rig.tier.FailWrites(false);
  rig.Put(Block(2));
  rig.Settle();
  EXPECT_EQ(rig.tier.size(), 3u);
  h = rig.writer.health();
  EXPECT_FALSE(h.failing);
  EXPECT_EQ(h.recoveries, 1u);
  EXPECT_EQ(h.unpersisted_blocks, 0u);
}

TEST(WriteBehindTest, AProbeTriesAnUnwrittenBlockFirstElseTheTiersProbe) {
  Rig rig(/*ram_bytes=*/Block(0)->ByteSize(), kNoIdleProbe);  // room for one block
  rig.tier.FailWrites(true);
  rig.Put(Block(0));
  rig.writer.Flush();
  ASSERT_EQ(rig.writer.health().unpersisted_blocks, 1u);
  const size_t calls = rig.tier.write_calls();
  rig.Probe();
  EXPECT_EQ(rig.tier.write_calls(), calls + 1) << "the probe did not try the block";
  EXPECT_EQ(rig.tier.probes(), 0u);
  EXPECT_EQ(rig.writer.health().unpersisted_blocks, 1u);  // failed again: still waiting in RAM
  rig.ram.Insert(Block(1));                               // evicts block 0, RAM's only copy: lost
  EXPECT_EQ(rig.writer.health().unpersisted_blocks, 0u);
  rig.Probe();
  EXPECT_EQ(rig.tier.probes(), 1u);
  EXPECT_TRUE(rig.writer.failing());
  rig.tier.FailWrites(false);
  rig.Probe();
  EXPECT_FALSE(rig.writer.failing());
  EXPECT_EQ(rig.tier.size(), 0u);
  EXPECT_EQ(rig.writer.health().recoveries, 1u);
  rig.Probe();  // not failing: nothing to do
  EXPECT_EQ(rig.tier.probes(), 2u);
}

TEST(WriteBehindTest, WhileWritesFailTheIdleIoThreadProbesUntilTheTierIsBack) {
  Rig rig(1 << 20, /*probe_ms=*/5);
  rig.tier.FailWrites(true);
  rig.Put(Block(0));
  ASSERT_TRUE(Eventually([&] { return rig.writer.failing(); }));
  rig.tier.FailWrites(false);
  ASSERT_TRUE(Eventually([&] { return !rig.writer.failing() && rig.tier.Contains(Key(0)); }))
      << "the block RAM kept was never written";
  rig.writer.Flush();
  EXPECT_EQ(rig.writer.health().unpersisted_blocks, 0u);
}

TEST(WriteBehindTest, ATierEmptiedBehindItsBackIsFilledAgainFromRam) {
  Rig rig;
  rig.Put(Block(0));
  rig.Put(Block(1));
  rig.writer.Flush();
  rig.tier.Wipe();
  rig.Put(Block(2));  // its write notices the wipe and queues what RAM holds
  rig.Settle();
  EXPECT_EQ(rig.tier.size(), 3u);
  EXPECT_TRUE(rig.tier.Contains(Key(0)));
  EXPECT_EQ(rig.writer.health().unpersisted_blocks, 0u);
}

TEST(WriteBehindTest, ABlockWaitingForTheTierIsNotQueuedTwice) {
  Rig rig;
  rig.tier.FailWrites(true);
  rig.Put(Block(0));
  rig.writer.Flush();
  const size_t calls = rig.tier.write_calls();
  rig.Put(Block(0));  // the same block again (a next turn): it waits in RAM
  rig.writer.Flush();
  EXPECT_EQ(rig.tier.write_calls(), calls);
  EXPECT_FALSE(rig.writer.Pending(Key(0)));
}

}  // namespace
}  // namespace kvault

// The KV store's agents: their chains in the RAM tier, their record files (written behind their
// blocks, in any order of turns, removals and failed writes), and forgetting them.
#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <thread>

#include "kvstore/kv_store.h"
#include "test_env.h"
#include "unit/kvstore/kv_store_test_util.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;
using testing::Chain;
using testing::OpenStore;

TEST(KvStoreAgentsTest, AnAgentsLatestChainLeavesRamLast) {
  const auto dir = testing::ScratchDir("kv-store-agent-ram");
  Chain c;
  auto store = OpenStore(dir, /*ram=*/700);  // room for about two records
  store->Put(c.Record(0));
  AgentRecord r;
  r.id = "planner";
  r.chain = {c.keys[0]};
  store->RecordAgent(r);  // block 0 is the planner's latest chain
  store->Put(c.Record(1));
  store->Put(c.Record(2));  // over budget: block 1 goes, not the older block 0
  store->Flush();
  EXPECT_NE(store->FindInRam(c.keys[0]), nullptr);
  EXPECT_EQ(store->FindInRam(c.keys[1]), nullptr);
}

TEST(KvStoreAgentsTest, ForgetRemovesOnlyBlocksNoOtherAgentHolds) {
  const auto dir = testing::ScratchDir("kv-store-agent-forget");
  Chain c;
  auto store = OpenStore(dir);
  for (size_t i = 0; i < 3; ++i) store->Put(c.Record(i));
  AgentRecord a;
  a.id = "a";
  a.chain = {c.keys[0], c.keys[1], c.keys[2]};
  AgentRecord b;
  b.id = "b";
  b.chain = {c.keys[0]};  // shares the first block
  store->RecordAgent(a);
  store->RecordAgent(b);
  store->Flush();
  EXPECT_EQ(store->TiersOf(a.chain).disk_blocks, 3u);
  EXPECT_EQ(store->ForgetAgent("", "a"), 2u);
  EXPECT_TRUE(store->Has(c.keys[0]));
  EXPECT_FALSE(store->Has(c.keys[1]));
  EXPECT_FALSE(store->Has(c.keys[2]));
  EXPECT_TRUE(store->agents().Find("a", std::nullopt).empty());
  EXPECT_EQ(store->agents().Find("b", std::nullopt).size(), 1u);
}

TEST(KvStoreAgentsTest, RecordsSurviveARestartAndBadFilesAreSkipped) {
  const auto dir = testing::ScratchDir("kv-store-agent-restart");
  Chain c;
  {
    auto store = OpenStore(dir);
    AgentRecord a;
    a.tenant = "key-1";
    a.id = "planner";
    a.chain = c.keys;
    a.tokens = 12;
    a.turns = 1;
    store->RecordAgent(a);
    a.turns = 1;
    store->RecordAgent(a);  // a second turn
  }
  std::ofstream(dir / "fp" / "agents" / "0123456789abcdef0123456789abcdef.json") << "{not json";
  auto store = OpenStore(dir);
  auto found = store->agents().Find("planner", std::string("key-1"));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].chain, c.keys);
  EXPECT_EQ(found[0].turns, 2u);
  EXPECT_EQ(found[0].tokens, 12u);
  EXPECT_EQ(store->agents().bad_files(), 1u);
  EXPECT_TRUE(store->agents().Find("planner", std::string("key-2")).empty());
}

// One turn of agent `id` whose conversation is `chain` (4 tokens a block).
AgentRecord Turn(const std::string& id, std::vector<BlockKey> chain) {
  AgentRecord r;
  r.id = id;
  r.tokens = static_cast<uint32_t>(chain.size() * 4);
  r.chain = std::move(chain);
  r.turns = 1;
  return r;
}

// Returns once the store's I/O thread has run every job queued so far.
void Drain(KvStore& store) {
  auto done = std::make_shared<std::promise<void>>();
  auto drained = done->get_future();
  store.AfterWrites([done] { done->set_value(); });
  drained.wait();
}

// Holds the store's I/O thread until released (or destroyed): jobs queued meanwhile run after.
class IoGate {
 public:
  explicit IoGate(KvStore& store) {
    store.AfterWrites([f = open_.get_future().share(), entered = entered_] {
      entered->set_value();
      f.wait();
    });
  }
  ~IoGate() { Release(); }
  void Release() {
    if (!released_) open_.set_value();
    released_ = true;
  }
  // Returns once the I/O thread reached the gate: every job queued before it has run.
  void WaitReached() { reached_.wait(); }

 private:
  std::promise<void> open_;
  std::shared_ptr<std::promise<void>> entered_ = std::make_shared<std::promise<void>>();
  std::future<void> reached_ = entered_->get_future();
  bool released_ = false;
};

// For a ForgetAgent running on another thread while an IoGate holds the I/O thread: returns once
// the agent left the registry and its removal job is queued (one more queued write job than the
// `jobs_before` counted before that thread started), or fails the test after 60 s.
void WaitUntilForgetIsQueued(const KvStore& store, const std::string& id, size_t jobs_before) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto queued = [&] { return store.agents().Find(id, std::nullopt).empty() && store.QueuedWriteJobs() > jobs_before; };
  while (!queued() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(queued()) << "the removal job of agent " << id << " was never queued";
}

TEST(KvStoreAgentsTest, AQueuedRecordWriteLeavesANewerTurnToItsOwnJob) {
  // A turn's record job is queued behind that turn's block writes. When an older turn's job runs
  // after a newer turn was recorded, it must not write the newer chain: its blocks may not be on
  // disk yet (a crash then would leave a record naming missing blocks).
  const auto dir = testing::ScratchDir("kv-store-agent-generation");
  Chain c;
  auto store = OpenStore(dir);
  const fs::path file = store->agents().FileFor("", "x");
  AgentRecord x = Turn("x", {c.keys[0]});
  IoGate first(*store);
  store->RecordAgent(x);  // turn 1's job
  IoGate second(*store);  // (turn 2's blocks would be queued here)
  x.chain = {c.keys[0], c.keys[1]};
  x.tokens = 8;
  store->RecordAgent(x);  // turn 2's job
  first.Release();
  second.WaitReached();  // turn 1's job has run
  EXPECT_FALSE(fs::exists(file)) << "turn 1's job wrote turn 2's record";
  second.Release();
  Drain(*store);
  EXPECT_TRUE(fs::exists(file));
}

TEST(KvStoreAgentsTest, ForgetKeepsBlocksAndRecordOfATurnThatCameAfterIt) {
  // DELETE, then the agent's next turn before the removal job ran: the job keeps what the new
  // turn's chain holds, and the agent's new record.
  const auto dir = testing::ScratchDir("kv-store-agent-forget-then-turn");
  Chain c;
  {
    auto store = OpenStore(dir);
    for (size_t i = 0; i < 2; ++i) store->Put(c.Record(i));
    AgentRecord x = Turn("x", {c.keys[0], c.keys[1]});
    store->RecordAgent(x);
    store->Flush();
    IoGate gate(*store);
    gate.WaitReached();  // the gate holds the I/O thread: later jobs stay queued
    const size_t jobs = store->QueuedWriteJobs();
    std::thread forget([&] { EXPECT_EQ(store->ForgetAgent("", "x"), 1u); });  // block 0 only
    WaitUntilForgetIsQueued(*store, "x", jobs);
    x.chain = {c.keys[1]};  // the next turn holds block 1 (after the removal job)
    x.turns = 1;
    store->RecordAgent(x);
    gate.Release();
    forget.join();
    EXPECT_FALSE(store->Has(c.keys[0]));
    EXPECT_TRUE(store->Has(c.keys[1]));
  }
  auto store = OpenStore(dir);
  auto x = store->agents().Find("x", std::nullopt);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].chain, std::vector<BlockKey>{c.keys[1]});
  EXPECT_TRUE(store->Has(c.keys[1]));
}

// A store whose first write of agent "x" (chain: block 0) failed: its agents directory was a file
// then. The directory is back; no probe runs for an hour, so the next good write ends the failing
// period (and queues again what failed).
std::unique_ptr<KvStore> StoreThatFailedToWriteX(const fs::path& dir, const Chain& c) {
  auto store = OpenStore(dir, 1 << 20, 10ull << 30, /*probe_interval_ms=*/3'600'000);
  const fs::path agents = dir / "fp" / "agents";
  fs::remove_all(agents);
  std::ofstream(agents) << "not a directory";
  AgentRecord x = Turn("x", {c.keys[0]});
  store->RecordAgent(x);
  Drain(*store);
  EXPECT_TRUE(store->stats().persistence.failing);
  fs::remove(agents);
  fs::create_directories(agents);
  return store;
}

TEST(KvStoreAgentsTest, AfterAFailedWriteTheLatestRecordIsKeptNotTheOneThatFailed) {
  const auto dir = testing::ScratchDir("kv-store-agent-backfill");
  Chain c;
  {
    auto store = StoreThatFailedToWriteX(dir, c);
    IoGate gate(*store);                         // queued in this order: y's record (the write that ends the failing
    store->RecordAgent(Turn("y", {c.keys[0]}));  // period and queues x's failed record again), x's second turn
    AgentRecord x = Turn("x", {c.keys[0], c.keys[1]});
    store->RecordAgent(x);
  }
  auto store = OpenStore(dir);
  auto x = store->agents().Find("x", std::nullopt);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].tokens, 8u);
  EXPECT_EQ(x[0].turns, 2u);
  EXPECT_EQ(x[0].chain, (std::vector<BlockKey>{c.keys[0], c.keys[1]}));
  EXPECT_EQ(store->agents().Find("y", std::nullopt).size(), 1u);
}

TEST(KvStoreAgentsTest, AnAgentForgottenWhileItsRecordWaitsToBeWrittenStaysForgotten) {
  const auto dir = testing::ScratchDir("kv-store-agent-forget-unwritten");
  Chain c;
  {
    auto store = StoreThatFailedToWriteX(dir, c);
    IoGate gate(*store);
    gate.WaitReached();                          // the gate holds the I/O thread: later jobs stay queued
    store->RecordAgent(Turn("y", {c.keys[0]}));  // ends the failing period when it runs: x's record is queued again
    const size_t jobs = store->QueuedWriteJobs();
    std::thread forget([&] { EXPECT_EQ(store->ForgetAgent("", "x"), 0u); });  // block 0 is y's too
    WaitUntilForgetIsQueued(*store, "x", jobs);                               // (behind y's write)
    gate.Release();
    forget.join();
  }
  auto store = OpenStore(dir);
  EXPECT_TRUE(store->agents().Find("x", std::nullopt).empty());
  EXPECT_EQ(store->agents().Find("y", std::nullopt).size(), 1u);
  EXPECT_EQ(store->agents().bad_files(), 0u);
}

TEST(KvStoreAgentsTest, AFailedRecordRemovalIsRetriedOnceWritesWorkAgain) {
  const auto dir = testing::ScratchDir("kv-store-agent-forget-fails");
  Chain c;
  const fs::path agents = dir / "fp" / "agents";
  {
    auto store = OpenStore(dir, 1 << 20, 10ull << 30, /*probe_interval_ms=*/3'600'000);
    AgentRecord x = Turn("x", {c.keys[0]});
    store->RecordAgent(x);
    Drain(*store);
    // The removal fails (the directory is a file now) while the record file stays where it was.
    fs::rename(agents, dir / "agents-away");
    std::ofstream(agents) << "not a directory";
    EXPECT_EQ(store->ForgetAgent("", "x"), 0u);  // (block 0 was never stored)
    EXPECT_TRUE(store->stats().persistence.failing);
    fs::remove(agents);
    fs::rename(dir / "agents-away", agents);
    ASSERT_TRUE(fs::exists(store->agents().FileFor("", "x")));
    store->RecordAgent(Turn("y", {c.keys[0]}));  // a good write: the failed removal is queued again
  }
  auto store = OpenStore(dir);
  EXPECT_TRUE(store->agents().Find("x", std::nullopt).empty()) << "a forgotten agent came back";
  EXPECT_EQ(store->agents().Find("y", std::nullopt).size(), 1u);
}

}  // namespace
}  // namespace kvault

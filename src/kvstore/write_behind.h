// WriteBehind: makes durable, behind the engine, what the KV store takes in — each new block,
// written from the RAM tier to the tier below it (the disk), and each agent's record file
// (agent_registry.h) — on the store's I/O thread (io_thread.h). A block is on disk, fsynced,
// within the time it takes to drain the write queue; Flush waits for that.
//
// It survives a tier that stops taking writes (disk full, read-only, I/O errors): a block whose
// write failed stays in RAM, marked as RAM's only copy (ram_tier.h); an agent whose record write
// failed is remembered. While writes fail, the I/O thread tries again every probe interval, when
// idle (one of those blocks, else the tier's probe). The first write that succeeds ends the failing
// period and queues again every marked block RAM still holds and every failed agent record
// (backfill) — the record as the registry holds it then. A tier found emptied behind the store's
// back (BlockTier::wipes: the cache directory deleted) is filled again in the same way.
//
// Owned by the store (kv_store.h): Write, Pending, WriteAgentRecord, Flush from the engine thread
// (and any other); SyncAgentRecord and ProbeWhileFailing on the I/O thread only. Thread-safe: one
// mutex, taken before the RAM tier's and the tier's own.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/status.h"
#include "kvstore/agent_registry.h"
#include "kvstore/block_file.h"
#include "kvstore/io_thread.h"
#include "kvstore/ram_tier.h"
#include "kvstore/tier.h"

namespace kvault {

// Whether blocks reach the disk. When a write fails (disk full, read-only, I/O error) the store
// keeps serving from the pool and RAM, keeps the unwritten blocks in RAM, and tries again every
// probe interval; once a write succeeds it writes what RAM still holds.
struct PersistenceHealth {
  bool failing = false;
  std::string last_error;           // of the last failed write (kept after recovery)
  double failing_seconds = 0;       // how long it has been failing
  uint64_t unpersisted_blocks = 0;  // in RAM, waiting for the disk to come back
  uint64_t failures = 0;            // failed writes (blocks, agent records, probes)
  uint64_t recoveries = 0;
};

class WriteBehind {
 public:
  WriteBehind(RamTier& ram, BlockTier& below, AgentRegistry& agents, IoThread& io, uint32_t probe_interval_ms);
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;

  // Queues the block's write, unless it is queued already, stored below, or waiting (in RAM) for
  // the tier to take writes again. The job holds the record until it is written.
  void Write(std::shared_ptr<const BlockRecord> record);
  // Whether the block's write is queued or running.
  bool Pending(const BlockKey& key) const;
  // Waits until no block write is queued or running (or failed ones are in RAM, marked).
  void Flush();
  // Queues SyncAgentRecord behind the writes queued so far (a turn's blocks).
  void WriteAgentRecord(const std::string& tenant, const std::string& id, uint64_t generation);

  // I/O thread: makes the agent's record file what the registry holds now (no file once the agent
  // is forgotten), unless the record is newer than `generation` — that turn's own job, queued
  // behind its blocks, writes it. So the file ends as the registry is, in whatever order turns,
  // removals and retries run.
  void SyncAgentRecord(const std::string& tenant, const std::string& id, uint64_t generation);
  // I/O thread, idle, while failing: tries one marked block (a nearly full disk may take a small
  // probe file but not a block), else the tier's probe.
  void ProbeWhileFailing();

  bool failing() const { return failing_.load(std::memory_order_relaxed); }
  size_t pending() const;  // blocks queued or being written
  PersistenceHealth health() const;
  // At shutdown: logs the blocks that were never written, if writes are failing.
  void LogUnwrittenAtShutdown() const;

 private:
  // I/O thread: writes one block; notes the result (failure, or recovery and backfill).
  void WriteBlock(std::shared_ptr<const BlockRecord> record);
  void QueueLocked(std::shared_ptr<const BlockRecord> record);
  // Notes a write's outcome; true when it ends a failing period (the caller then calls Backfill).
  bool NoteWriteLocked(const Status& s);
  // Queues writes for what RAM holds that the tier lacks, and the failed agent records.
  void Backfill();

  RamTier& ram_;
  BlockTier& below_;
  AgentRegistry& agents_;
  IoThread& io_;
  const uint32_t probe_interval_ms_;
  std::vector<uint8_t> write_buf_;  // I/O thread: reused (fresh memory costs page faults: buffer_recycler.h)

  mutable std::mutex mu_;
  std::condition_variable flushed_;
  std::unordered_map<BlockKey, int, BlockKeyHash> pending_;          // queued or being written
  std::set<std::pair<std::string, std::string>> unwritten_records_;  // agents (tenant, id) whose last write failed
  std::atomic<bool> failing_{false};  // written under mu_; read without it (the I/O thread's idle check)
  std::string last_error_;
  std::chrono::steady_clock::time_point failing_since_;
  uint64_t failures_ = 0, recoveries_ = 0;
  uint64_t wipes_seen_ = 0;
};

}  // namespace kvault

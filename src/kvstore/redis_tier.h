// RedisTier: a KV tier shared by many kvault instances — one Redis server (--remote-cache
// redis://[user:password@]host:port[/db]) below each instance's RAM and disk tiers, so that an
// agent's blocks written by one instance are found by the next one it lands on.
//
// Values are the disk tier's block file bytes (block_file.h: checksummed, with the model's
// fingerprint, key and tokens) under `kvault:<fingerprint>:<block key hex>`. Keys are salted by
// tenant (block_key.h), so one tenant never finds another's. Redis is run as a cache (maxmemory,
// allkeys-lru): a missing value is a miss. The tier trusts nothing it reads; the store's read path
// verifies every block, and one that fails (garbage, truncated) is a miss, counted here (Reject)
// and deleted from Redis. Agents' records are shared too (PublishAgent, FetchAgent), so that the
// instance an agent lands on knows its latest chain — the partial last block included — and its turns.
//
// Who calls it, on which thread:
//   - ReadBlocks: the store's I/O thread (block_lookup.h), for the runs of keys that RAM and the
//     disk lack: GETs pipelined 16 at a time through the tier's read router (redis_router.h: one
//     server, or a Redis Cluster's masters by hash slot). While Redis is down it
//     answers every key Unavailable at once, without I/O.
//   - FetchAgent, CountPresent: the I/O thread too, through the read router.
//   - Enqueue (KvStore::Put, engine thread), Write, Remove, Reject, PublishAgent, ForgetAgent:
//     queue a job and return.
//   - Everything else: any thread, no I/O.
// Writes and reconnection run on a thread of the tier's own, with a second router, not on the
// store's I/O thread: that thread serves every request's prefetch and the disk's writes, and a
// Redis that hangs would hold it for a command timeout per write (a turn writes tens of blocks)
// while reads wait behind. Reads stay on the I/O thread because the read path runs there and a
// request waits for them anyway; they are bounded by the command timeout and skipped while down.
// The writer encodes blocks itself, so the engine thread only queues a reference. The queue is
// bounded (max_queued_writes jobs, max_queued_bytes of the blocks they hold, which RAM may have
// let go of): when full — Redis slow or down — the oldest job is dropped (counted). A failed command marks the tier
// down (health: last error); the writer reconnects with exponential backoff (100 ms doubling to 5 s) and writes what is
// queued once up again. While idle and connected it PINGs every second, so that a Redis gone away shows as down.
//
// Thread-safe: `mu_` guards the queue, the state and the counters; `read_mu_` the read router,
// held across a ReadBlocks (and its sink's Reject calls). Lock order: read_mu_, then mu_.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "kvstore/agent_registry.h"
#include "kvstore/block_file.h"
#include "kvstore/redis_connection.h"
#include "kvstore/redis_router.h"
#include "kvstore/redis_url.h"
#include "kvstore/tier.h"

struct redisContext;

namespace kvault {

struct RedisTierOptions {
  RedisUrl url;
  std::string fingerprint;  // the model's: part of every key
  size_t max_queued_writes = 1024;
  uint64_t max_queued_bytes = 256ull << 20;
  uint32_t timeout_ms = 1000;      // the writer's connect, and each of its commands
  uint32_t read_timeout_ms = 500;  // the reads' (a request waits for them): connect, and each reply
  uint32_t min_backoff_ms = 100;
  uint32_t max_backoff_ms = 5000;
};

// The remote tier as /health and /metrics show it.
struct RemoteTierStats {
  std::string url;  // password hidden
  bool up = false;
  std::string last_error;  // of the last failed connect or command (kept after recovery)
  double down_seconds = 0;
  uint64_t hits = 0;         // verified blocks used from Redis (filled in by the store's read path)
  double fetch_seconds = 0;  // the read path's time reading from Redis (read, verify, copy; filled in too)
  uint64_t reads = 0, misses = 0, read_bytes = 0;
  uint64_t skipped_reads = 0;  // keys answered Unavailable while down, without asking Redis
  uint64_t writes = 0, write_bytes = 0;
  uint64_t errors = 0;          // failed connects and commands
  uint64_t dropped_writes = 0;  // jobs dropped oldest-first from a full queue
  uint64_t rejected = 0;        // values that failed verification (garbage, truncated)
  uint64_t queued_writes = 0;   // jobs waiting (and being written)
  uint64_t connects = 0;        // successful (re)connections
  // Shared agent records.
  uint64_t agent_writes = 0;    // records stored
  uint64_t agent_stale = 0;     // records not stored: Redis had one with as many turns or more
  uint64_t agent_reads = 0;     // lookups of an agent's record
  uint64_t agent_found = 0;     // lookups that found a valid record
  uint64_t agent_rejected = 0;  // stored values that were not a valid record of that agent
};

class RedisTier final : public BlockTier {
 public:
  // Starts the writer thread, which connects (an unreachable Redis is a tier down, not an error).
  explicit RedisTier(RedisTierOptions options);
  // Writes what is queued if Redis is up (each command bounded by the timeout), then stops.
  ~RedisTier() override;
  RedisTier(const RedisTier&) = delete;
  RedisTier& operator=(const RedisTier&) = delete;

  // BlockTier (tier.h). No local index: Contains is false, MayContain true.
  const char* name() const override { return "remote"; }
  bool remote() const override { return true; }
  bool Contains(const BlockKey&) const override { return false; }
  bool MayContain(const BlockKey&) const override { return true; }
  uint64_t SizeOf(const BlockKey&) const override { return 0; }
  void Touch(const BlockKey&) override {}
  void ReadBlocks(std::span<const BlockKey> keys, const ReadSink& sink) override;
  // Queues a copy of the bytes; Ok (the write happens behind).
  Status Write(const BlockKey& key, std::span<const uint8_t> bytes) override;
  // Queues a DEL.
  Status Remove(const BlockKey& key) override;
  // Counts the value and queues its DEL.
  void Reject(const BlockKey& key, const std::string& why) override;
  // Ok while connected; Unavailable with the last error while down.
  Status Probe() override;

  // Queues a new block; the writer thread encodes it (block_file.h) and SETs it.
  void Enqueue(std::shared_ptr<const BlockRecord> record);
  // Tests and shutdown: waits until no job is queued or being written, Redis being up (false
  // after `timeout`, e.g. while down).
  bool WaitWritten(std::chrono::milliseconds timeout);

  // Agent records shared by the fleet (agent_registry.h), under `kvault:<fingerprint>:agent:<hash
  // of tenant and id>` as a hash {turns, record}. PublishAgent queues the record; Redis stores it
  // only if the record there has fewer turns (a Lua script: compare-and-set on the turn count), so
  // an instance that served an older turn never overwrites a newer one. ForgetAgent queues a DEL.
  // ForgetAgent leaves a tombstone (the agent's turns, at least `turns`, and no record) that
  // refuses records of no more turns; it is queued ahead of the blocks and never dropped for them.
  void PublishAgent(AgentRecord record);
  void ForgetAgent(const std::string& tenant, const std::string& id, uint64_t turns);
  // The I/O thread (like ReadBlocks): the agent's shared record; nullopt when there is none, it is
  // not valid, or Redis is down (then without I/O).
  std::optional<AgentRecord> FetchAgent(const std::string& tenant, const std::string& id);
  // The I/O thread: which of `keys` Redis holds (EXISTS each, pipelined); nullopt while down or on
  // an error. CountPresent: how many.
  std::optional<std::vector<bool>> Present(std::span<const BlockKey> keys);
  std::optional<uint64_t> CountPresent(std::span<const BlockKey> keys);

  RemoteTierStats stats() const;
  std::string KeyFor(const BlockKey& key) const;
  std::string AgentKeyFor(const std::string& tenant, const std::string& id) const;

 private:
  struct Job {
    enum class Kind { kBlock, kDelete, kAgent, kForgetAgent };
    Kind kind = Kind::kBlock;
    BlockKey key;
    std::shared_ptr<const BlockRecord> record;  // kBlock: a new block (encoded by the writer), or
    std::vector<uint8_t> bytes;                 // kBlock: the bytes to store
    std::shared_ptr<const AgentRecord> agent;   // kAgent (encoded by the writer)
    std::string agent_key;                      // kAgent, kForgetAgent
    uint64_t turns = 0;                         // kAgent, kForgetAgent
    uint64_t size = 0;                          // memory held (the queue's byte bound)
  };

  void Push(Job job);
  // Drops the oldest jobs while the queue is over either bound (mu_ held).
  void TrimLocked();
  bool IdleLocked() const { return queue_.empty() && urgent_.empty(); }
  void WriterLoop();
  // Marks the tier down after a failed command or connect (mu_ held).
  void DownLocked(const std::string& error);
  // Whether the read router may be used now (read_mu_ held).
  bool ReadableLocked();
  // Writer thread: sends a batch through `writer`; false (and the unsent jobs back at the front) on error.
  bool WriteBatch(RedisRouter& writer, std::vector<Job>& batch, std::string* error);

  const RedisTierOptions options_;
  const std::string prefix_;  // "kvault:<fingerprint>:"

  mutable std::mutex mu_;
  std::condition_variable cv_;       // the writer waits on it
  std::condition_variable written_;  // WaitWritten waits on it
  std::deque<Job> queue_;
  std::deque<Job> urgent_;  // forgotten agents' tombstones: written first, never trimmed
  uint64_t queued_bytes_ = 0;
  size_t in_flight_ = 0;
  bool up_ = false;
  bool stop_ = false;
  std::chrono::steady_clock::time_point down_since_, next_connect_, up_since_;
  uint32_t backoff_ms_;
  RemoteTierStats stats_;

  std::mutex read_mu_;
  std::unique_ptr<RedisRouter> reader_;  // the I/O thread's reads
  std::thread writer_;
};

}  // namespace kvault

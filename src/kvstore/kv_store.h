// KvStore: the tiers below the KV pool — host RAM (LRU) and disk — for content-addressed blocks.
//
// The engine thread calls Has/GetRam/Put/Prefetch; none of them touches the disk. A single
// background I/O thread writes new blocks to disk (async durability: a block is on disk, fsynced,
// within the time it takes to drain the write queue; Flush() waits for that) and reads blocks
// that Prefetch asks for, verifying each (checksum, model fingerprint, key, tokens) before it is
// handed out. A bad file is a miss: logged, counted, quarantined. A disk that stops taking writes
// is survived (see PersistenceHealth): nothing is lost that RAM still holds when it comes back.
//
// RAM holds decoded records (shared, immutable), bounded by `ram_bytes`, least recently used
// evicted first; a block evicted from RAM stays on disk.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/status.h"
#include "kvstore/agent_registry.h"
#include "kvstore/block_file.h"
#include "kvstore/buffer_pool.h"
#include "kvstore/disk_tier.h"

namespace kvault {

struct KvStoreOptions {
  std::filesystem::path dir;  // empty: RAM tier only, nothing persists
  uint64_t ram_bytes = 1ull << 30;
  uint64_t disk_bytes = 10ull << 30;
  std::string fingerprint;            // the model and KV configuration (see kvstore/fingerprint.h)
  // Fault injection (tests): each block write pauses this long halfway through its temp file.
  uint32_t slow_write_ms = 0;
  uint32_t probe_interval_ms = 2000;  // while writes fail: how often the I/O thread tries again
  // Where block buffers come from and go back to (see buffer_pool.h); null: a pool of its own
  // that keeps up to 64 MiB of spare buffers.
  std::shared_ptr<BufferPool> buffers;
};

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

// Where an agent's latest chain lives.
struct AgentTiers {
  uint64_t ram_blocks = 0, ram_bytes = 0;
  uint64_t disk_blocks = 0, disk_bytes = 0;
};

struct KvStoreStats {
  uint64_t ram_blocks = 0;
  uint64_t ram_bytes = 0;
  uint64_t ram_hits = 0;
  uint64_t disk_hits = 0;
  uint64_t misses = 0;
  uint64_t pending_writes = 0;
  uint64_t spare_buffer_bytes = 0;  // block buffers ready for reuse (buffer_pool.h)
  double fetch_seconds = 0;         // I/O thread time fetching blocks for requests (read, check, copy)
  DiskTierStats disk;
  bool persistent = false;
  PersistenceHealth persistence;
};

// What one request asks the store for: the full blocks keys[first], keys[first+1], … of `tokens`
// up to the first miss, then the partial block that continues the last block found (FindPartial).
struct PrefetchRequest {
  BlockKey salt;
  std::vector<BlockKey> keys;                          // the full blocks of `tokens`
  std::shared_ptr<const std::vector<int32_t>> tokens;  // what may be restored
  uint32_t block_tokens = 0;
  size_t first = 0;            // blocks before it are resident in the pool
  size_t resident = 0;         // leading tokens resident in the pool
  std::vector<BlockKey> hint;  // the named agent's latest chain (AgentRecord::chain), if any
};

// A stored block of which the leading `tokens` continue a request's restored blocks.
struct PartialBlock {
  std::shared_ptr<const BlockRecord> record;
  size_t tokens = 0;
  bool from_disk = false;
};

// Blocks fetched for one request, filled by the I/O thread; `done` is set last.
struct Prefetch {
  std::atomic<bool> done{false};
  std::vector<std::shared_ptr<const BlockRecord>> records;  // consecutive blocks from `first`
  std::vector<bool> from_disk;                              // per record: read from disk (else RAM)
  size_t first = 0;
  PartialBlock partial;  // after the last record (or at block `first`); its record may be null
};

class KvStore {
 public:
  static StatusOr<std::unique_ptr<KvStore>> Open(const KvStoreOptions& options);
  ~KvStore();  // flushes pending writes

  // In RAM or on disk (or being written).
  bool Has(const BlockKey& key) const;
  // Has(), for a block that was just used again (the engine saving a finished turn): counts as a
  // use in the disk tier's LRU, and a block whose file the disk tier collected while RAM kept it
  // is written again. False: the caller must Put it.
  bool Keep(const BlockKey& key);
  // From RAM only; nullptr when not there.
  std::shared_ptr<const BlockRecord> GetRam(const BlockKey& key);
  // A record whose `kv` has `kv_bytes` bytes of recycled memory; the buffer goes back to the
  // store's pool when the record's last reference is dropped. For blocks to Put.
  std::shared_ptr<BlockRecord> NewRecord(size_t kv_bytes);
  // Adds a new block: into RAM now, onto disk in the background.
  void Put(std::shared_ptr<const BlockRecord> record);
  // Fetches what `request` names from RAM or disk on the I/O thread (a stored block whose tokens
  // differ from the request's is a miss). Done at once when there is nothing to fetch.
  std::shared_ptr<Prefetch> StartPrefetch(std::shared_ptr<const PrefetchRequest> request);
  // The stored block that carries the request past its first `blocks` full blocks, by at least
  // `min_len` tokens but by less than a full block: a tail block (TailBlockKeys) whose tokens the
  // request continues, the longest first; else the named agent's own block at that position
  // (request.hint), of which the leading tokens the request shares are used — a conversation
  // whose last turn re-renders a little differently still gets back all it shares. RAM only;
  // the I/O thread's prefetch also looks on disk.
  PartialBlock FindPartialInRam(const PrefetchRequest& request, size_t blocks, size_t min_len);
  // Waits until every block Put so far is durable on disk.
  void Flush();
  // Runs `fn` on the I/O thread once every block Put so far has been written (or its write
  // failed), without blocking the caller; at once when there is no disk tier. Sync durability.
  void AfterWrites(std::function<void()> fn);
  // Write jobs (blocks, agent records, removals) queued for the I/O thread and not yet started:
  // lets a test that holds the I/O thread know when another thread's job has been queued.
  size_t QueuedWriteJobs() const;

  KvStoreStats stats() const;
  const std::string& fingerprint() const { return options_.fingerprint; }

  // Agents (see agent_registry.h). RecordAgent is called by the engine thread after a turn; the
  // record's file is written by the I/O thread.
  void RecordAgent(AgentRecord record);
  const AgentRegistry& agents() const { return *agents_; }
  AgentTiers TiersOf(const std::vector<BlockKey>& chain) const;
  // Drops the chain's blocks from RAM once they are on disk (waits for queued writes; a block RAM
  // alone holds stays); without a disk tier they are dropped. Returns the blocks dropped.
  size_t EvictFromRam(const std::vector<BlockKey>& chain);
  // Forgets an agent: its record, and the blocks of its chain no other agent's chain holds, from
  // RAM and disk (on the I/O thread, after queued writes). Returns the blocks removed.
  size_t ForgetAgent(const std::string& tenant, const std::string& id);
  bool persistent() const { return disk_ != nullptr; }

 private:
  explicit KvStore(const KvStoreOptions& options);
  void RamInsertLocked(const std::shared_ptr<const BlockRecord>& r);
  // I/O thread only (it reuses read_buf_).
  std::shared_ptr<const BlockRecord> LoadFromDisk(const BlockKey& key);
  // FindPartialInRam, and with `disk` also from disk (I/O thread only); counts the hit. With
  // `on_disk_only`, fetches nothing and answers in `from_disk` whether the disk has a candidate.
  PartialBlock FindPartial(const PrefetchRequest& request, size_t blocks, size_t min_len, bool disk,
                           bool on_disk_only = false);
  // From RAM, else (with `disk`, I/O thread only) from disk into RAM, if `fits` accepts it;
  // nullptr otherwise. A disk file it rejects is quarantined when `misfit_is_corrupt` (the key
  // was derived from the tokens `fits` checks, so a mismatch means a bad file), else only skipped
  // (a key taken from an agent's record, checked against what this request can use).
  using Fits = std::function<bool(const BlockRecord&)>;
  std::shared_ptr<const BlockRecord> Fetch(const BlockKey& key, bool disk, const Fits& fits, bool* from_disk,
                                           bool misfit_is_corrupt = true);
  // A RAM hit is a use in both tiers: it moves the block up the RAM LRU and touches its file in
  // the disk tier's. kMisfit: RAM holds the key but `fits` (when given) rejects the block.
  enum class RamLookup { kAbsent, kMisfit, kHit };
  RamLookup RamHit(const BlockKey& key, const Fits& fits, bool count_hit, std::shared_ptr<const BlockRecord>* out);
  std::vector<uint8_t> read_buf_;   // the I/O thread's file buffers, reused across reads
  std::vector<uint8_t> write_buf_;  // and writes (fresh memory costs page faults: buffer_pool.h)
  void IoLoop();
  // I/O thread: writes one block; notes the result (failure, or recovery and backfill).
  void WriteBlock(std::shared_ptr<const BlockRecord> record);
  // I/O thread: makes the agent's record file what the registry holds now (no file once the agent
  // is forgotten), unless the record is newer than `generation` (its own job, queued behind its
  // blocks, writes it). Queued per turn, by ForgetAgent, and by Backfill after a failing period.
  void SyncAgentRecord(const std::string& tenant, const std::string& id, uint64_t generation);
  // Notes a write's outcome; true when it ends a failing period (the caller then calls Backfill).
  bool NoteWriteLocked(const Status& s);
  // Queues writes for what RAM holds that the disk lacks (after a failing period).
  void Backfill();
  // I/O thread, while failing and idle: tries one unwritten block (or a probe file).
  void ProbeDisk();

  KvStoreOptions options_;
  std::shared_ptr<BufferPool> buffers_;  // shared with the records' deleters, which may outlive the store
  std::unique_ptr<DiskTier> disk_;
  std::unique_ptr<AgentRegistry> agents_;

  mutable std::mutex mu_;
  struct RamEntry {
    std::shared_ptr<const BlockRecord> record;
    std::list<BlockKey>::iterator lru;
  };
  std::unordered_map<BlockKey, RamEntry, BlockKeyHash> ram_;
  void RamEraseLocked(std::unordered_map<BlockKey, RamEntry, BlockKeyHash>::iterator it);
  std::list<BlockKey> ram_lru_;  // front = least recently used
  uint64_t ram_bytes_ = 0;
  std::unordered_map<BlockKey, int, BlockKeyHash> pending_;  // queued for disk
  // Persistence faults: blocks and agent records whose write failed, kept for the disk's return.
  std::unordered_set<BlockKey, BlockKeyHash> unpersisted_;
  std::set<std::pair<std::string, std::string>> unwritten_records_;  // agents (tenant, id) whose last write failed
  // Written under mu_; atomic so the I/O loop can read it without mu_.
  std::atomic<bool> failing_{false};
  std::string disk_error_;
  std::chrono::steady_clock::time_point failing_since_;
  uint64_t persist_failures_ = 0, recoveries_ = 0;
  uint64_t dir_lost_seen_ = 0;
  uint64_t ram_hits_ = 0, disk_hits_ = 0, misses_ = 0;
  double fetch_seconds_ = 0;
  std::condition_variable flushed_;

  // The I/O thread's work: reads (a waiting request's blocks) always before writes, so a request
  // never waits behind the previous request's blocks being written.
  void Enqueue(std::function<void()> job, bool read);
  mutable std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<std::function<void()>> reads_, writes_;
  bool closing_ = false;
  std::thread io_;
};

}  // namespace kvault

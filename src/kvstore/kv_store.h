// KvStore: the tiers below the KV pool, as the engine sees them — content-addressed blocks in host
// RAM and on disk, and named agents' latest chains. A facade: it owns the parts and wires them;
// each part is its own unit with its own tests.
//
//   ram_tier      decoded blocks in RAM, least recently used evicted first within `ram_bytes`
//   tier          what a tier below RAM offers (BlockTier): disk_tier, then redis_tier (optional)
//   io_thread     the background thread where all of that tier's I/O happens
//   write_behind  writes new blocks and agent records behind the engine; survives a failing disk
//   block_lookup  the read path: a request's stored blocks (prefetch), partial blocks
//   agent_registry  per-agent latest chains
//
// A new block goes into RAM at once and onto disk in the background (async durability: Flush()
// waits for it; AfterWrites() runs a callback after it), and with --remote-cache into a shared
// Redis behind that (redis_tier.h: a cache, never waited for; asked for what RAM and disk lack).
// A block is read back from RAM, or from disk by a prefetch on the I/O thread, verified
// (checksum, model fingerprint, key, tokens) before it is handed out; a bad file is a miss:
// logged, counted, quarantined. A disk that stops taking writes is survived (PersistenceHealth):
// nothing is lost that RAM still holds when it comes back. A block evicted from RAM stays on disk.
//
// The engine thread calls Has, KeepIfStored, FindInRam, NewRecord, Put, StartPrefetch,
// FindPartialInRam, RecordAgent and AfterWrites; none of them waits for the disk. HTTP threads call
// stats, agents, TiersOf, EvictFromRam and ForgetAgent (the last two wait for the I/O thread).
// Thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/status.h"
#include "kvstore/agent_registry.h"
#include "kvstore/block_file.h"
#include "kvstore/block_lookup.h"
#include "kvstore/buffer_recycler.h"
#include "kvstore/disk_tier.h"
#include "kvstore/io_thread.h"
#include "kvstore/ram_tier.h"
#include "kvstore/redis_tier.h"
#include "kvstore/write_behind.h"

namespace kvault {

struct KvStoreOptions {
  std::filesystem::path dir;  // empty: RAM tier only, nothing persists
  uint64_t ram_bytes = 1ull << 30;
  uint64_t disk_bytes = 10ull << 30;
  std::string fingerprint;  // the model and KV configuration (see kvstore/fingerprint.h)
  // Fault injection (tests): each block write pauses this long halfway through its temp file.
  uint32_t slow_write_ms = 0;
  uint32_t probe_interval_ms = 2000;  // while writes fail: how often the I/O thread tries again
  // --remote-cache: a Redis shared by instances (redis_tier.h), below the disk; empty: none. New
  // blocks are queued for it as they are Put; at most `remote_max_queued_writes` wait.
  std::string remote_cache;
  size_t remote_max_queued_writes = 1024;
  // Where block buffers come from and go back to (see buffer_recycler.h); null: a pool of its own
  // that keeps up to 64 MiB of spare buffers.
  std::shared_ptr<BufferRecycler> buffers;
};

// Where an agent's latest chain lives.
struct AgentTiers {
  uint64_t ram_blocks = 0, ram_bytes = 0;
  uint64_t disk_blocks = 0, disk_bytes = 0;
  bool remote = false;                    // a remote tier is configured
  std::optional<uint64_t> remote_blocks;  // blocks of the chain Redis holds, when it answered (RemoteBlocksOf)
  std::optional<uint64_t> remote_only;    // … of which no local tier holds
};

// RemoteBlocksOf's answer for one chain.
struct RemoteBlocks {
  uint64_t held = 0;        // blocks the remote tier holds
  uint64_t only_there = 0;  // … that neither RAM nor the disk holds
};

struct KvStoreStats {
  uint64_t ram_blocks = 0;
  uint64_t ram_bytes = 0;
  uint64_t ram_hits = 0;
  uint64_t disk_hits = 0;
  uint64_t misses = 0;
  uint64_t pending_writes = 0;
  uint64_t spare_buffer_bytes = 0;  // block buffers ready for reuse (buffer_recycler.h)
  double fetch_seconds = 0;         // I/O thread time fetching blocks for requests (read, check, copy)
  double disk_fetch_seconds = 0;    // … of which reading from the disk tier
  DiskTierStats disk;
  bool persistent = false;
  bool remote = false;  // --remote-cache in use; then `remote_tier` counts it
  RemoteTierStats remote_tier;
  PersistenceHealth persistence;
};

class KvStore {
 public:
  static StatusOr<std::unique_ptr<KvStore>> Open(const KvStoreOptions& options);
  ~KvStore();  // flushes pending writes

  // In RAM or on disk (or being written).
  bool Has(const BlockKey& key) const;
  // For a block of a turn that just finished: true when the store has it, and then the turn is a
  // use of it (in the disk tier's LRU; a block whose file the disk tier collected while RAM kept it
  // is written again). False: the caller serialises the block and Puts it.
  bool KeepIfStored(const BlockKey& key);
  // From RAM only, as a use; nullptr when not there.
  std::shared_ptr<const BlockRecord> FindInRam(const BlockKey& key);
  // A record whose `kv` has `kv_bytes` bytes of recycled memory; the buffer goes back to the
  // store's pool when the record's last reference is dropped. For blocks to Put.
  std::shared_ptr<BlockRecord> NewRecord(size_t kv_bytes);
  // Adds a new block: into RAM now, onto disk in the background.
  void Put(std::shared_ptr<const BlockRecord> record);
  // Fetches what `request` names from RAM or disk on the I/O thread (a stored block whose tokens
  // differ from the request's is a miss). Done at once when there is nothing to fetch.
  std::shared_ptr<Prefetch> StartPrefetch(std::shared_ptr<const PrefetchRequest> request);
  // The stored partial block that carries the request past its first `blocks` full blocks by at
  // least `min_len` tokens (BlockLookup::FindPartialInRam). RAM only; the prefetch looks on disk too.
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
  // record's file is written by the I/O thread, behind the turn's blocks, and with a remote tier
  // the record is published there too (compare-and-set on its turns). A prefetch for a named agent
  // adopts the remote tier's record of it when that one has more turns than the local one.
  void RecordAgent(AgentRecord record);
  const AgentRegistry& agents() const { return *agents_; }
  AgentTiers TiersOf(const std::vector<BlockKey>& chain) const;
  // How many of each chain's blocks the remote tier holds (and how many only it), asked on the I/O
  // thread in one pipelined round (waits for it, at most 2 s), remembered for 5 s, one round at a
  // time; nullopt without a remote tier, while it is down, or not yet known. HTTP threads.
  std::vector<std::optional<RemoteBlocks>> RemoteBlocksOf(const std::vector<std::vector<BlockKey>>& chains);
  // Drops the chain's blocks from RAM once they are on disk (waits for queued writes; a block RAM
  // alone holds stays); without a disk tier they are dropped. Returns the blocks dropped.
  size_t EvictFromRam(const std::vector<BlockKey>& chain);
  // Forgets an agent: its record (here and in the remote tier), and the blocks of its chain no other
  // agent's chain holds, from RAM and disk (on the I/O thread, after queued writes). Returns the
  // blocks removed.
  size_t ForgetAgent(const std::string& tenant, const std::string& id);
  bool persistent() const { return disk_ != nullptr; }
  // The remote tier; null without --remote-cache (tests wait for its writes).
  RedisTier* remote() const { return remote_.get(); }

 private:
  explicit KvStore(const KvStoreOptions& options);

  // Declared in the order they are built; ~KvStore stops the I/O thread before any goes.
  KvStoreOptions options_;
  std::shared_ptr<BufferRecycler> buffers_;  // shared with the records' deleters, which may outlive the store
  std::unique_ptr<DiskTier> disk_;           // null: RAM only
  std::unique_ptr<RedisTier> remote_;        // null: no --remote-cache
  std::unique_ptr<AgentRegistry> agents_;
  std::unique_ptr<RamTier> ram_;
  IoThread io_;
  std::unique_ptr<WriteBehind> writer_;  // null without a disk tier
  std::unique_ptr<BlockLookup> lookup_;

  std::mutex remote_counts_mu_;  // guards the two below
  std::unordered_map<BlockKey, std::pair<std::chrono::steady_clock::time_point, RemoteBlocks>, BlockKeyHash>
      remote_counts_;  // RemoteBlocksOf's answers by the chain's last key
  bool remote_counting_ = false;
};

}  // namespace kvault

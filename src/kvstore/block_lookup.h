// BlockLookup: the KV store's read path — which stored blocks carry a request (PrefetchRequest)
// past what the KV pool holds, and fetching them: its full blocks from where the resident prefix
// ends up to the first miss, then the partial block that continues them (FindPartialInRam).
//
// Blocks come from the RAM tier (ram_tier.h), else from the tiers below it (tier.h), fastest first,
// on the store's I/O thread (io_thread.h): keys that RAM lacks and one tier may hold are handed to
// that tier together (BlockTier::ReadBlocks), so a tier that can pipeline reads does. Every block
// read below RAM is verified before it is handed out — checksum, model fingerprint, key, and the
// tokens and position the request expects (a stored block whose tokens differ is a miss) — and
// kept in RAM. A block that fails is a miss, and its tier rejects it (the disk quarantines the
// file); one named by an agent's record that only does not fit this request is skipped. A RAM hit
// is a use in every tier (BlockTier::Touch).
//
// Engine thread: Start, GetRam, FindPartialInRam — RAM only, never I/O. The I/O thread runs what
// Start posts. Thread-safe (the tiers are; the counters are under a mutex).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kvstore/block_file.h"
#include "kvstore/block_key.h"
#include "kvstore/buffer_recycler.h"
#include "kvstore/io_thread.h"
#include "kvstore/ram_tier.h"
#include "kvstore/tier.h"

namespace kvault {

// What one request asks the store for: the full blocks keys[first], keys[first+1], … of `tokens`
// up to the first miss, then the partial block that continues the last block found.
struct PrefetchRequest {
  BlockKey salt;
  std::vector<BlockKey> keys;                          // the full blocks of `tokens`
  std::shared_ptr<const std::vector<int32_t>> tokens;  // what may be restored
  uint32_t block_tokens = 0;
  size_t first = 0;            // blocks before it are resident in the pool
  size_t resident = 0;         // leading tokens resident in the pool
  std::vector<BlockKey> hint;  // the named agent's latest chain (AgentRecord::chain), if any
  // The named agent (empty: none) and the turns of its record here at intake (0: none): with a
  // remote tier the store looks for a newer record of it first (kv_store.h).
  std::string agent_tenant, agent_id;
  uint64_t agent_turns = 0;
  uint64_t agent_generation = 0;  // its record's generation here at intake (AgentRegistry::Adopt)
};

// A stored block of which the leading `tokens` continue a request's restored blocks.
struct PartialBlock {
  std::shared_ptr<const BlockRecord> record;
  size_t tokens = 0;
  bool from_disk = false;    // read from a tier below RAM (else found in RAM)
  bool from_remote = false;  // … that tier being the remote one
};

// Blocks fetched for one request, filled by the I/O thread; `done` is set last.
struct Prefetch {
  std::atomic<bool> done{false};
  std::vector<std::shared_ptr<const BlockRecord>> records;  // consecutive blocks from `first`
  std::vector<bool> from_disk;                              // per record: read from a tier below RAM (else RAM)
  std::vector<bool> from_remote;                            // per record: … the remote tier
  size_t first = 0;
  PartialBlock partial;  // after the last record (or at block `first`); its record may be null
};

// How many tokens a partial block starting at position `pos` must hold to be worth restoring: it
// must reach past the `resident` tokens already in the pool (and hold at least one). The one
// statement of the rule, for the prefetch and for the engine's restore.
inline size_t MinPartialTokens(size_t resident, size_t pos) {
  return resident > pos ? resident - pos + 1 : 1;
}

// Hits and misses of the read path.
struct LookupStats {
  uint64_t ram_hits = 0;
  std::vector<uint64_t> below_hits;   // per tier below RAM, in the store's order
  std::vector<double> below_seconds;  // per tier below RAM: time in its ReadBlocks (read, verify, copy)
  uint64_t misses = 0;                // prefetches that stopped at a block no tier had
  double fetch_seconds = 0;           // I/O thread time fetching blocks (read, verify, copy)
};

class BlockLookup {
 public:
  // `below`: the tiers below RAM, fastest first (they outlive the lookup). `fingerprint`: the
  // model's; blocks of another are corrupt. `buffers`: where the KV buffers of blocks read come from.
  BlockLookup(RamTier& ram, std::vector<BlockTier*> below, IoThread& io, std::string fingerprint,
              std::shared_ptr<BufferRecycler> buffers);

  // Fetches what `request` names on the I/O thread. Done at once, without the I/O thread, when
  // every full block is resident and RAM has the partial block or (without a `refine` step) no
  // tier below may have one. A `refine` step runs on the I/O thread first, and the fetch is for the
  // request it returns (the store's: a newer agent record from the remote tier as the hint).
  using Refine = std::function<std::shared_ptr<const PrefetchRequest>(std::shared_ptr<const PrefetchRequest>)>;
  std::shared_ptr<Prefetch> Start(std::shared_ptr<const PrefetchRequest> request, Refine refine = {});
  // From RAM only, as a use (a RAM hit); nullptr when absent.
  std::shared_ptr<const BlockRecord> GetRam(const BlockKey& key);
  // The stored block that carries the request past its first `blocks` full blocks, by at least
  // `min_len` tokens but by less than a full block: a tail block (TailBlockKeys) whose tokens the
  // request continues, the longest first; else the named agent's own block at that position
  // (request.hint), of which the leading tokens the request shares are used — a conversation whose
  // last turn re-renders a little differently still gets back all it shares. RAM only; the
  // prefetch looks below RAM too.
  PartialBlock FindPartialInRam(const PrefetchRequest& request, size_t blocks, size_t min_len);

  LookupStats stats() const;

 private:
  // Where lookups may look: RAM only (any thread), or RAM and then the tiers below (I/O thread).
  enum class Reach { kRamOnly, kAllTiers };
  // Where a key came from: derived from the request's tokens (a stored block that does not fit
  // them is corrupt), or taken from an agent's record (it may only not fit this request).
  enum class KeyOrigin { kTokens, kAgentRecord };
  struct Wanted {
    BlockKey key;
    BlockFits fits;
    KeyOrigin origin = KeyOrigin::kTokens;
  };
  // Calls `visit(i, record, tier)` for wanted[0], wanted[1], … in order until it returns false:
  // the record from RAM (tier null) or read from `tier`, or null (a miss).
  using Visit = std::function<bool(size_t i, std::shared_ptr<const BlockRecord> record, const BlockTier* tier)>;
  void Walk(const std::vector<Wanted>& wanted, Reach reach, const Visit& visit);
  // A RAM lookup as a use: a hit touches the block in every tier below too.
  RamTier::Found UseRam(const BlockKey& key, const BlockFits& fits, std::shared_ptr<const BlockRecord>* out);
  // The first tier below RAM that may hold `key`; null when none.
  BlockTier* TierFor(const BlockKey& key) const;
  // Decodes and verifies bytes read from `tier` for `want`; null (and rejected where corrupt) when
  // they are not that block.
  std::shared_ptr<const BlockRecord> Verify(BlockTier& tier, const Wanted& want, std::span<const uint8_t> bytes);

  PartialBlock FindPartial(const PrefetchRequest& request, size_t blocks, size_t min_len, Reach reach);
  // Whether a tier below RAM may hold a partial block FindPartial could use.
  bool BelowMayHavePartial(const PrefetchRequest& request, size_t blocks, size_t min_len) const;
  // I/O thread: the prefetch job.
  void Fetch(const PrefetchRequest& request, Prefetch* out);
  void CountHit(const BlockTier* tier);

  RamTier& ram_;
  const std::vector<BlockTier*> below_;
  IoThread& io_;
  const std::string fingerprint_;
  const std::shared_ptr<BufferRecycler> buffers_;

  mutable std::mutex mu_;
  LookupStats stats_;
};

}  // namespace kvault

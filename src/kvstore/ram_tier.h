// RamTier: the KV store's fastest tier — decoded blocks (shared, immutable records) in host RAM.
//
// Bounded by a byte budget (`--ram-cache`, counted with BlockRecord::ByteSize). Over it, the least
// recently used block leaves first, except that blocks for which `evict_last` holds (the store
// passes "in some agent's latest chain") leave only when no other block is left. A block that
// leaves RAM stays in the tiers below that hold it (tier.h).
//
// RAM also knows which of its blocks are their only copy because writing them below failed
// (MarkUnpersisted): the write-behind (write_behind.h) takes them back (TakeUnpersisted) once the
// disk takes writes again. A marked block that leaves RAM is lost, like any block without a disk
// tier; its mark goes with it.
//
// Used by the store's parts: the facade (kv_store.h: Put, evictions), the read path
// (block_lookup.h: engine and I/O threads) and the write-behind (I/O thread). Thread-safe: one
// mutex, held while `evict_last` and the predicates passed in run, which must therefore not call
// back into the tier.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kvstore/block_file.h"
#include "kvstore/block_key.h"

namespace kvault {

// Whether a stored record is the block a lookup wants (its tokens and position), beyond its key.
using BlockFits = std::function<bool(const BlockRecord&)>;
using KeyPredicate = std::function<bool(const BlockKey&)>;

class RamTier {
 public:
  explicit RamTier(uint64_t budget_bytes, KeyPredicate evict_last = nullptr);
  RamTier(const RamTier&) = delete;
  RamTier& operator=(const RamTier&) = delete;

  // Adds a block as the most recently used one (nothing when RAM holds its key already), then
  // evicts over the budget — the new block too, when nothing else is left to evict.
  void Insert(std::shared_ptr<const BlockRecord> record);
  bool Contains(const BlockKey& key) const;
  // The block, without counting a use; nullptr when absent.
  std::shared_ptr<const BlockRecord> Peek(const BlockKey& key) const;

  // A lookup that is a use: a hit moves the block to the most recently used end. kMisfit: RAM holds
  // the key but `fits` (when given) rejects the block (a hash collision); not a use.
  enum class Found { kAbsent, kMisfit, kHit };
  Found Use(const BlockKey& key, const BlockFits& fits, std::shared_ptr<const BlockRecord>* out);

  // Drops a block; false when absent.
  bool Erase(const BlockKey& key);
  // Drops a block unless RAM holds its only copy (marked unpersisted, or `held_below` false for
  // it); true when dropped.
  bool EraseIfHeldBelow(const BlockKey& key, const KeyPredicate& held_below);

  // Memory held for the block (ByteSize); 0 when absent.
  uint64_t SizeOf(const BlockKey& key) const;
  size_t blocks() const;
  uint64_t bytes() const;

  // Only copies (see above). Mark: false, nothing marked, when RAM does not hold the block.
  bool MarkUnpersisted(const BlockKey& key);
  // Marks every held block for which `pred` holds.
  void MarkUnpersistedIf(const KeyPredicate& pred);
  bool IsUnpersisted(const BlockKey& key) const;
  // Up to `max` marked blocks, their marks cleared: the caller writes them.
  std::vector<std::shared_ptr<const BlockRecord>> TakeUnpersisted(size_t max = SIZE_MAX);
  size_t unpersisted() const;

 private:
  struct Entry {
    std::shared_ptr<const BlockRecord> record;
    std::list<BlockKey>::iterator lru;
  };
  using Map = std::unordered_map<BlockKey, Entry, BlockKeyHash>;
  void EraseLocked(Map::iterator it);

  const uint64_t budget_;
  const KeyPredicate evict_last_;
  mutable std::mutex mu_;
  Map blocks_;
  std::list<BlockKey> lru_;  // front = least recently used
  uint64_t bytes_ = 0;
  std::unordered_set<BlockKey, BlockKeyHash> unpersisted_;  // a subset of blocks_' keys
};

}  // namespace kvault

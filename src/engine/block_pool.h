// BlockPool: the KV pool's cells, accounted in fixed-size blocks of `block_tokens` cells.
//
// A block is either free or held by one or more resident sequences (refcounted: a prefix shared
// between sequences with llama_memory_seq_cp occupies its cells once). Only KvPool calls this;
// it is plain bookkeeping with no llama calls, so it is exact and cheap to test.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace kvault {

using BlockId = uint32_t;

class BlockPool {
 public:
  BlockPool(uint32_t n_blocks, uint32_t block_tokens);

  // A free block with refcount 1, or nullopt when none is free.
  std::optional<BlockId> Allocate();
  void Ref(BlockId id);
  // Drops one reference; the block is free again at zero.
  void Unref(BlockId id);
  uint32_t refcount(BlockId id) const { return refs_[id]; }

  uint32_t block_tokens() const { return block_tokens_; }
  uint32_t total_blocks() const { return static_cast<uint32_t>(refs_.size()); }
  uint32_t free_blocks() const { return static_cast<uint32_t>(free_.size()); }
  uint32_t used_blocks() const { return total_blocks() - free_blocks(); }

 private:
  uint32_t block_tokens_;
  std::vector<uint32_t> refs_;
  std::vector<BlockId> free_;  // LIFO: recently freed blocks are reused first
};

}  // namespace kvault

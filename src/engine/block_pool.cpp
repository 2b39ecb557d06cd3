#include "engine/block_pool.h"

#include <cassert>
#include <stdexcept>

namespace kvault {

BlockPool::BlockPool(uint32_t n_blocks, uint32_t block_tokens) : block_tokens_(block_tokens), refs_(n_blocks, 0) {
  free_.reserve(n_blocks);
  for (uint32_t i = n_blocks; i > 0; --i) free_.push_back(i - 1);
}

std::optional<BlockId> BlockPool::Allocate() {
  if (free_.empty()) return std::nullopt;
  BlockId id = free_.back();
  free_.pop_back();
  refs_[id] = 1;
  return id;
}

void BlockPool::Ref(BlockId id) {
  if (refs_[id] == 0) throw std::logic_error("BlockPool::Ref on a free block");
  ++refs_[id];
}

void BlockPool::Unref(BlockId id) {
  if (refs_[id] == 0) throw std::logic_error("BlockPool::Unref on a free block");
  if (--refs_[id] == 0) free_.push_back(id);
}

}  // namespace kvault

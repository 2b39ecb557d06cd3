// KvPool: which token sequences are resident in the shared KV pool, in which llama sequence
// ("slot"), and how many blocks each holds.
//
// The engine thread asks it for a slot for each admitted request (Acquire), tells it which tokens
// got KV cells (Append), and gives the slot back when the request ends (Release keeps the cells
// resident as an idle sequence for the next turn; Free drops them). Acquire reuses the longest
// resident prefix: it takes over an idle sequence whose last prompt the new prompt contains (the
// same conversation), or shares another sequence's prefix (KvOps::Copy = llama_memory_seq_cp;
// whole blocks are shared in the accounting, a partial last one counts as the new sequence's own
// block; the same holds when a taken-over sequence is cut inside a block it shares) and leaves
// that sequence intact. It evicts least recently used
// idle sequences only when their slots or blocks are needed, and reserves every block the request
// can need (prompt + max tokens) up front, so a running request never runs out of cells.
//
// The llama calls go through KvOps, so this class is testable without a model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/block_pool.h"

namespace kvault {

using Token = int32_t;

// What KvPool needs from the KV cache. Positions are [p0, p1); p1 < 0 means "to the end".
class KvOps {
 public:
  virtual ~KvOps() = default;
  virtual void Copy(int src_seq, int dst_seq, int32_t p0, int32_t p1) = 0;
  virtual void Remove(int seq, int32_t p0, int32_t p1) = 0;
};

struct KvPoolStats {
  uint32_t total_blocks = 0;
  uint32_t used_blocks = 0;      // holding KV of resident tokens
  uint32_t reserved_blocks = 0;  // held for running requests' future tokens
  uint32_t active_blocks = 0;    // held by running requests (KV and reserved): not evictable
  uint32_t active_slots = 0;
  uint32_t idle_slots = 0;
  uint32_t free_slots = 0;
  uint64_t evictions = 0;    // idle sequences evicted, for any reason
  uint64_t idle_trims = 0;   // ... of which because idle sequences held more than the idle limit
  uint32_t idle_blocks = 0;  // blocks held only by idle sequences
  double utilization() const {
    return total_blocks ? static_cast<double>(used_blocks + reserved_blocks) / total_blocks : 0.0;
  }
  // The part that evicting idle sequences cannot free: what /health calls load.
  double active_utilization() const { return total_blocks ? static_cast<double>(active_blocks) / total_blocks : 0.0; }
};

class KvPool {
 public:
  KvPool(KvOps* ops, uint32_t n_slots, uint32_t n_blocks, uint32_t block_tokens);

  struct Lease {
    int slot = -1;
    int32_t reused = 0;  // leading prompt tokens whose KV is already in the slot
  };

  // Off for recurrent/hybrid models, whose per-sequence state cannot be cut back to a prefix:
  // every request then starts from an empty sequence.
  void set_prefix_reuse(bool on) { prefix_reuse_ = on; }

  // The most blocks that idle sequences alone may hold once another request is admitted; beyond
  // it, Acquire evicts the least recently used idle sequences (kNoIdleLimit: only when their
  // cells are needed). Why: llama.cpp's unified cache attends over every cell up to the highest
  // one in use, so each idle cell slows every running sequence's decode and prefill, while the
  // KV store can bring an evicted conversation back cheaply. Set it only when the store holds
  // what Release leaves resident; without a store eviction means recomputation.
  static constexpr uint32_t kNoIdleLimit = UINT32_MAX;
  void set_idle_limit(uint32_t blocks) { idle_limit_ = blocks; }

  // Blocks that a request of `max_total` tokens needs; false if more than the whole pool.
  bool CanEverFit(int32_t max_total) const;

  // A slot for `prompt` with room for `max_total` tokens (prompt + completion), reusing the
  // longest resident prefix (never the whole prompt: the last token is always recomputed so
  // that there are logits to sample from). nullopt when no slot or not enough blocks can be
  // freed right now; nothing changes in that case.
  // `tenant`: sequences are only ever shared within one tenant (no cross-tenant cache hits).
  std::optional<Lease> Acquire(const std::vector<Token>& prompt, int32_t max_total, uint64_t tenant = 0);

  // Length of the longest resident prefix of `prompt` for `tenant` (what Acquire would start
  // from, before block alignment); no side effects.
  size_t LongestPrefix(const std::vector<Token>& prompt, uint64_t tenant = 0) const;

  // Reserves more blocks for an active slot, so that it can hold `max_total` tokens; evicts idle
  // sequences (least recently used first) when needed. False when not enough can be freed right
  // now (other running requests hold the rest); nothing changes then.
  bool Grow(int slot, int32_t max_total);

  // Drops the slot's tokens from position `n` on (they will be restored or recomputed). Only for
  // an active slot; its reserved blocks stay reserved.
  void Truncate(int slot, size_t n);

  // The KV of `tokens` was just computed at the end of `slot`'s sequence.
  void Append(int slot, const Token* tokens, size_t n);

  // The request ended normally: the slot's cells stay resident (idle) for reuse.
  void Release(int slot);
  // The request was cancelled or failed: the slot's cells are removed.
  void Free(int slot);

  const std::vector<Token>& tokens(int slot) const { return slots_[slot].tokens; }
  KvPoolStats stats() const;

  // Names the agent whose conversation an idle slot holds (set after Release; cleared when the
  // slot is acquired again or freed).
  void SetOwner(int slot, std::string owner) { slots_[slot].owner = std::move(owner); }
  // Frees the idle slots owned by `owner`; returns the tokens whose cells were freed.
  size_t FreeIdleOwnedBy(const std::string& owner);
  // Every idle slot that has an owner: (owner, resident tokens). For the engine's per-agent
  // residency snapshot (Engine::pool_residents).
  std::vector<std::pair<std::string, size_t>> IdleOwned() const;
  uint32_t block_tokens() const { return blocks_.block_tokens(); }

 private:
  bool prefix_reuse_ = true;
  uint32_t idle_limit_ = kNoIdleLimit;
  enum class State { kFree, kActive, kIdle };
  struct Slot {
    State state = State::kFree;
    std::vector<Token> tokens;     // tokens with KV cells, at positions 0..size-1
    std::vector<BlockId> blocks;   // covers tokens, plus reserved blocks while active
    size_t prompt_len = 0;         // prompt length of the slot's last request
    uint64_t tenant = 0;
    uint64_t last_used = 0;
    std::string owner;
  };

  uint32_t BlocksFor(size_t n_tokens) const;
  // Removes an idle slot's cells and references.
  void Evict(int slot);
  // Free blocks there would be after adding `refs_added`, dropping `refs_dropped`, and evicting
  // idle slots other than `keep`, least recently used first, until `want` are free.
  uint32_t Reclaimable(const std::vector<BlockId>& refs_added, const std::vector<BlockId>& refs_dropped, int keep,
                       uint32_t want) const;
  // Idle slots, least recently used first.
  std::vector<int> IdleByAge() const;
  // Distinct blocks referenced by active slots (prompt, answer and reserved).
  uint32_t ActiveBlocks() const;
  // Gives slot `s` `n` more blocks, evicting idle sequences least recently used first; the caller
  // has checked with Reclaimable that they can be had.
  void AddBlocks(Slot& s, uint32_t n);
  // Evicts idle slots, least recently used first, until idle ones hold at most idle_limit_ blocks.
  void TrimIdle();

  KvOps* ops_;
  std::vector<Slot> slots_;
  BlockPool blocks_;
  uint64_t clock_ = 0;
  uint64_t evictions_ = 0;
  uint64_t idle_trims_ = 0;
};

}  // namespace kvault

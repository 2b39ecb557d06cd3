#include "engine/kv_pool.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

namespace kvault {

namespace {

size_t CommonPrefix(const std::vector<Token>& a, const std::vector<Token>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

KvPool::KvPool(KvOps* ops, uint32_t n_slots, uint32_t n_blocks, uint32_t block_tokens)
    : ops_(ops), slots_(n_slots), blocks_(n_blocks, block_tokens) {}

uint32_t KvPool::BlocksFor(size_t n_tokens) const {
  const size_t bt = blocks_.block_tokens();
  return static_cast<uint32_t>((n_tokens + bt - 1) / bt);
}

bool KvPool::CanEverFit(int32_t max_total) const {
  return max_total > 0 && BlocksFor(static_cast<size_t>(max_total)) <= blocks_.total_blocks();
}

std::vector<int> KvPool::IdleByAge() const {
  std::vector<int> idle;
  for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
    if (slots_[i].state == State::kIdle) idle.push_back(i);
  }
  std::sort(idle.begin(), idle.end(), [&](int a, int b) { return slots_[a].last_used < slots_[b].last_used; });
  return idle;
}

uint32_t KvPool::Reclaimable(const std::vector<BlockId>& refs_added, const std::vector<BlockId>& refs_dropped,
                              int keep, uint32_t want) const {
  // Simulates reference changes without touching the pool.
  std::unordered_map<BlockId, int64_t> delta;
  auto refs = [&](BlockId id) { return static_cast<int64_t>(blocks_.refcount(id)) + delta[id]; };
  for (BlockId id : refs_added) ++delta[id];
  uint32_t freed = blocks_.free_blocks();
  for (BlockId id : refs_dropped) {
    --delta[id];
    if (refs(id) == 0) ++freed;
  }
  for (int s : IdleByAge()) {
    if (freed >= want) break;
    if (s == keep) continue;
    for (BlockId id : slots_[s].blocks) {
      --delta[id];
      if (refs(id) == 0) ++freed;
    }
  }
  return freed;
}

size_t KvPool::LongestPrefix(const std::vector<Token>& prompt, uint64_t tenant) const {
  size_t best = 0;
  if (!prefix_reuse_) return 0;
  for (const Slot& s : slots_) {
    if (s.state != State::kFree && s.tenant == tenant) best = std::max(best, CommonPrefix(s.tokens, prompt));
  }
  return best;
}

void KvPool::Truncate(int slot, size_t n) {
  Slot& s = slots_[slot];
  if (n >= s.tokens.size()) return;
  ops_->Remove(slot, static_cast<int32_t>(n), -1);
  s.tokens.resize(n);
}

std::optional<KvPool::Lease> KvPool::Acquire(const std::vector<Token>& prompt, int32_t max_total, uint64_t tenant) {
  if (prompt.empty() || max_total < static_cast<int32_t>(prompt.size()) || !CanEverFit(max_total)) {
    return std::nullopt;
  }
  const uint32_t bt = blocks_.block_tokens();
  const uint32_t need_total = BlocksFor(static_cast<size_t>(max_total));
  const size_t limit = prompt.size() - 1;  // the last prompt token is always computed

  int best = -1;
  size_t best_lcp = 0;
  for (int i = 0; i < static_cast<int>(slots_.size()) && prefix_reuse_; ++i) {
    if (slots_[i].state == State::kFree || slots_[i].tenant != tenant) continue;
    const size_t lcp = CommonPrefix(slots_[i].tokens, prompt);
    if (lcp > best_lcp) {
      best = i;
      best_lcp = lcp;
    }
  }
  const bool best_idle = best >= 0 && slots_[best].state == State::kIdle;

  // Choose the target slot. Take over the idle source when the prompt contains that sequence's
  // whole last prompt (the same conversation: next turn, or a regenerated answer; only its last
  // answer's tokens can be cut). Otherwise leave the source intact (it is another agent's
  // conversation) and use a free slot, else the least recently used idle slot; if that is the
  // source itself, it is taken over (cut to the shared prefix).
  int target = -1;
  bool take_over = false;
  if (best_idle && best_lcp >= std::min(slots_[best].prompt_len, slots_[best].tokens.size())) {
    target = best;
    take_over = true;
  } else {
    for (int i = 0; i < static_cast<int>(slots_.size()) && target < 0; ++i) {
      if (slots_[i].state == State::kFree) target = i;
    }
    if (target < 0) {
      const std::vector<int> idle = IdleByAge();
      if (!idle.empty()) {
        target = idle.front();
        take_over = target == best;
      }
    }
  }
  if (target < 0) return std::nullopt;  // every slot is running a request

  if (take_over) {
    Slot& s = slots_[target];
    const size_t reuse = std::min(best_lcp, limit);
    // A cut inside a block shared with another sequence keeps the cells before the cut, still
    // shared with it, but the block itself is left to the other sequence: the slot counts a block
    // of its own there (as a copied partial block is counted), which those cells and the ones
    // computed after them fill, whichever sequence is evicted first.
    const bool cut_in_shared = reuse % bt != 0 && blocks_.refcount(s.blocks[reuse / bt]) > 1;
    const uint32_t kept = BlocksFor(reuse) - (cut_in_shared ? 1 : 0);
    const uint32_t needed = need_total - kept;
    // Dropping the slot's tail frees its private blocks; other idle slots may be evicted.
    const std::vector<BlockId> tail(s.blocks.begin() + kept, s.blocks.end());
    if (Reclaimable({}, tail, target, needed) < needed) return std::nullopt;

    ops_->Remove(target, static_cast<int32_t>(reuse), -1);
    s.tokens.resize(reuse);
    for (size_t i = kept; i < s.blocks.size(); ++i) blocks_.Unref(s.blocks[i]);
    s.blocks.resize(kept);
  } else {
    // The whole common prefix is copied (llama_memory_seq_cp shares the cells); its whole blocks
    // are shared in the accounting, and a partial last one is counted as the new sequence's own
    // block: those cells plus the ones it computes after them fill one block, so the accounting
    // holds whichever of the two sequences is evicted first.
    const size_t n_copy = best >= 0 ? std::min(best_lcp, limit) : 0;
    const uint32_t shared = static_cast<uint32_t>(n_copy / bt);
    const uint32_t needed = need_total - shared;
    std::vector<BlockId> shared_ids;
    if (shared > 0) shared_ids.assign(slots_[best].blocks.begin(), slots_[best].blocks.begin() + shared);
    // An idle target is evicted first, dropping its references.
    if (Reclaimable(shared_ids, slots_[target].blocks, target, needed) < needed) return std::nullopt;

    if (slots_[target].state == State::kIdle) Evict(target);
    Slot& s = slots_[target];
    if (n_copy > 0) {
      ops_->Copy(best, target, 0, static_cast<int32_t>(n_copy));
      for (BlockId id : shared_ids) blocks_.Ref(id);
      s.blocks = shared_ids;
      s.tokens.assign(prompt.begin(), prompt.begin() + static_cast<long>(n_copy));
    }
  }

  Slot& s = slots_[target];
  s.state = State::kActive;
  s.owner.clear();
  s.last_used = ++clock_;
  s.prompt_len = prompt.size();
  s.tenant = tenant;
  AddBlocks(s, need_total - static_cast<uint32_t>(s.blocks.size()));
  TrimIdle();
  return Lease{target, static_cast<int32_t>(s.tokens.size())};
}

bool KvPool::Grow(int slot, int32_t max_total) {
  Slot& s = slots_[slot];
  const uint32_t need = BlocksFor(static_cast<size_t>(std::max(0, max_total)));
  if (need <= s.blocks.size()) return true;
  const uint32_t more = need - static_cast<uint32_t>(s.blocks.size());
  if (Reclaimable({}, {}, slot, more) < more) return false;
  AddBlocks(s, more);
  return true;
}

void KvPool::AddBlocks(Slot& s, uint32_t n) {
  for (int victim : IdleByAge()) {
    if (blocks_.free_blocks() >= n) break;
    Evict(victim);
  }
  for (uint32_t i = 0; i < n; ++i) {
    auto id = blocks_.Allocate();
    if (!id) throw std::logic_error("KvPool: block accounting out of step");  // Reclaimable said so
    s.blocks.push_back(*id);
  }
}

void KvPool::Append(int slot, const Token* tokens, size_t n) {
  Slot& s = slots_[slot];
  s.tokens.insert(s.tokens.end(), tokens, tokens + n);
  if (s.tokens.size() > static_cast<size_t>(s.blocks.size()) * blocks_.block_tokens()) {
    throw std::logic_error("KvPool: a sequence outgrew its reserved blocks");
  }
}

void KvPool::Release(int slot) {
  Slot& s = slots_[slot];
  s.state = State::kIdle;
  s.last_used = ++clock_;
  const uint32_t keep = BlocksFor(s.tokens.size());
  for (size_t i = keep; i < s.blocks.size(); ++i) blocks_.Unref(s.blocks[i]);
  s.blocks.resize(keep);
  if (s.tokens.empty()) s.state = State::kFree;
}

void KvPool::Free(int slot) {
  Slot& s = slots_[slot];
  ops_->Remove(slot, -1, -1);
  for (BlockId id : s.blocks) blocks_.Unref(id);
  s.blocks.clear();
  s.tokens.clear();
  s.prompt_len = 0;
  s.owner.clear();
  s.state = State::kFree;
}

size_t KvPool::FreeIdleOwnedBy(const std::string& owner) {
  size_t freed = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].state == State::kIdle && slots_[i].owner == owner) {
      freed += slots_[i].tokens.size();
      Free(static_cast<int>(i));
    }
  }
  return freed;
}

std::vector<std::pair<std::string, size_t>> KvPool::IdleOwned() const {
  std::vector<std::pair<std::string, size_t>> out;
  for (const Slot& s : slots_) {
    if (s.state == State::kIdle && !s.owner.empty()) out.emplace_back(s.owner, s.tokens.size());
  }
  return out;
}

void KvPool::Evict(int slot) {
  Free(slot);
  ++evictions_;
}

uint32_t KvPool::ActiveBlocks() const {
  std::vector<bool> active(blocks_.total_blocks(), false);
  uint32_t n_active = 0;
  for (const Slot& s : slots_) {
    if (s.state != State::kActive) continue;
    for (BlockId b : s.blocks) {
      if (static_cast<size_t>(b) < active.size() && !active[b]) {
        active[b] = true;
        ++n_active;
      }
    }
  }
  return n_active;
}

void KvPool::TrimIdle() {
  if (idle_limit_ == kNoIdleLimit) return;
  // Evicting idle slots never frees an active slot's block, so the active count stays put and
  // the blocks held only by idle slots are the used ones beyond it.
  const uint32_t active = ActiveBlocks();
  for (int victim : IdleByAge()) {
    if (blocks_.used_blocks() - active <= idle_limit_) break;
    Evict(victim);
    ++idle_trims_;
  }
}

KvPoolStats KvPool::stats() const {
  KvPoolStats st;
  st.total_blocks = blocks_.total_blocks();
  uint32_t reserved = 0;
  for (const Slot& s : slots_) {
    switch (s.state) {
      case State::kFree: ++st.free_slots; break;
      case State::kIdle: ++st.idle_slots; break;
      case State::kActive:
        ++st.active_slots;
        reserved += static_cast<uint32_t>(s.blocks.size()) - BlocksFor(s.tokens.size());
        break;
    }
  }
  st.active_blocks = ActiveBlocks();
  st.reserved_blocks = reserved;
  st.used_blocks = blocks_.used_blocks() - reserved;
  st.evictions = evictions_;
  st.idle_trims = idle_trims_;
  st.idle_blocks = blocks_.used_blocks() - st.active_blocks;
  return st;
}

}  // namespace kvault

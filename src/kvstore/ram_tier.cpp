#include "kvstore/ram_tier.h"

#include <utility>

namespace kvault {

RamTier::RamTier(uint64_t budget_bytes, KeyPredicate evict_last)
    : budget_(budget_bytes), evict_last_(std::move(evict_last)) {}

void RamTier::Insert(std::shared_ptr<const BlockRecord> record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (blocks_.count(record->key)) return;
  const BlockKey key = record->key;
  bytes_ += record->ByteSize();
  lru_.push_back(key);
  blocks_[key] = Entry{std::move(record), std::prev(lru_.end())};
  while (bytes_ > budget_ && !lru_.empty()) {
    // The least recently used block that is not to leave last; else the least recently used.
    auto victim = lru_.begin();
    while (victim != lru_.end() && evict_last_ && evict_last_(*victim)) ++victim;
    if (victim == lru_.end()) victim = lru_.begin();
    EraseLocked(blocks_.find(*victim));
  }
}

bool RamTier::Contains(const BlockKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return blocks_.count(key) > 0;
}

std::shared_ptr<const BlockRecord> RamTier::Peek(const BlockKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(key);
  return it == blocks_.end() ? nullptr : it->second.record;
}

RamTier::Found RamTier::Use(const BlockKey& key, const BlockFits& fits, std::shared_ptr<const BlockRecord>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(key);
  if (it == blocks_.end()) return Found::kAbsent;
  if (fits && !fits(*it->second.record)) return Found::kMisfit;
  lru_.splice(lru_.end(), lru_, it->second.lru);
  *out = it->second.record;
  return Found::kHit;
}

void RamTier::EraseLocked(Map::iterator it) {
  bytes_ -= it->second.record->ByteSize();
  lru_.erase(it->second.lru);
  unpersisted_.erase(it->first);  // never written, now gone: lost like any block without a disk
  blocks_.erase(it);
}

bool RamTier::Erase(const BlockKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(key);
  if (it == blocks_.end()) return false;
  EraseLocked(it);
  return true;
}

bool RamTier::EraseIfHeldBelow(const BlockKey& key, const KeyPredicate& held_below) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(key);
  if (it == blocks_.end() || unpersisted_.count(key) || !held_below(key)) return false;
  EraseLocked(it);
  return true;
}

uint64_t RamTier::SizeOf(const BlockKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(key);
  return it == blocks_.end() ? 0 : it->second.record->ByteSize();
}

size_t RamTier::blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return blocks_.size();
}

uint64_t RamTier::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

bool RamTier::MarkUnpersisted(const BlockKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!blocks_.count(key)) return false;
  unpersisted_.insert(key);
  return true;
}

void RamTier::MarkUnpersistedIf(const KeyPredicate& pred) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, entry] : blocks_) {
    if (pred(key)) unpersisted_.insert(key);
  }
}

bool RamTier::IsUnpersisted(const BlockKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return unpersisted_.count(key) > 0;
}

std::vector<std::shared_ptr<const BlockRecord>> RamTier::TakeUnpersisted(size_t max) {
  std::vector<std::shared_ptr<const BlockRecord>> taken;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = unpersisted_.begin(); it != unpersisted_.end() && taken.size() < max;) {
    taken.push_back(blocks_.at(*it).record);
    it = unpersisted_.erase(it);
  }
  return taken;
}

size_t RamTier::unpersisted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unpersisted_.size();
}

}  // namespace kvault

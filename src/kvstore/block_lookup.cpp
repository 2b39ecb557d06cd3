#include "kvstore/block_lookup.h"

#include <algorithm>
#include <chrono>
#include <span>
#include <utility>

namespace kvault {

namespace {

// How many tokens a partial block after `blocks` full blocks must hold to reach beyond the
// resident ones.
size_t MinPartial(const PrefetchRequest& req, size_t blocks) {
  return MinPartialTokens(req.resident, blocks * req.block_tokens);
}

// What a partial block after `blocks` full blocks may be: the tail blocks that continue the last
// full block with the request's next tokens, and the named agent's own block at that position.
struct PartialSearch {
  size_t pos = 0;                 // its first token's position
  std::span<const int32_t> rest;  // the request's tokens from there, at most block_tokens - 1
  BlockKey parent;                // the last full block's key, or the salt
  size_t min_len = 1;
  std::vector<BlockKey> tails;  // tails[k - 1]: the tail block of the first k tokens of `rest`
  bool has_hint = false;        // the agent's chain runs through `parent` and goes on
  bool empty = true;            // no partial block can qualify
};

PartialSearch PlanPartial(const PrefetchRequest& req, size_t blocks, size_t min_len) {
  PartialSearch s;
  const std::vector<int32_t>& toks = *req.tokens;
  s.pos = blocks * req.block_tokens;
  if (req.block_tokens < 2 || s.pos >= toks.size() || blocks > req.keys.size()) return s;
  s.rest = std::span<const int32_t>(toks.data() + s.pos, std::min<size_t>(req.block_tokens - 1, toks.size() - s.pos));
  s.min_len = std::max<size_t>(min_len, 1);
  if (s.min_len > s.rest.size()) return s;
  s.parent = blocks == 0 ? req.salt : req.keys[blocks - 1];
  s.has_hint = req.hint.size() > blocks && (blocks == 0 || req.hint[blocks - 1] == s.parent);
  s.tails = TailBlockKeys(s.parent, s.rest.data(), s.rest.size());
  s.empty = false;
  return s;
}

}  // namespace

BlockLookup::BlockLookup(RamTier& ram, std::vector<BlockTier*> below, IoThread& io, std::string fingerprint,
                         std::shared_ptr<BufferRecycler> buffers)
    : ram_(ram), below_(std::move(below)), io_(io), fingerprint_(std::move(fingerprint)), buffers_(std::move(buffers)) {
  stats_.below_hits.assign(below_.size(), 0);
  stats_.below_seconds.assign(below_.size(), 0);
}

RamTier::Found BlockLookup::UseRam(const BlockKey& key, const BlockFits& fits,
                                   std::shared_ptr<const BlockRecord>* out) {
  const RamTier::Found found = ram_.Use(key, fits, out);
  if (found == RamTier::Found::kHit) {
    for (BlockTier* tier : below_) tier->Touch(key);  // a use of the block, for the tiers' LRU too
  }
  return found;
}

BlockTier* BlockLookup::TierFor(const BlockKey& key) const {
  for (BlockTier* tier : below_) {
    if (tier->MayContain(key)) return tier;
  }
  return nullptr;
}

void BlockLookup::CountHit(const BlockTier* tier) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!tier) {
    ++stats_.ram_hits;
    return;
  }
  for (size_t t = 0; t < below_.size(); ++t) {
    if (below_[t] == tier) ++stats_.below_hits[t];
  }
}

std::shared_ptr<const BlockRecord> BlockLookup::GetRam(const BlockKey& key) {
  std::shared_ptr<const BlockRecord> r;
  if (UseRam(key, nullptr, &r) == RamTier::Found::kHit) CountHit(nullptr);
  return r;
}

std::shared_ptr<const BlockRecord> BlockLookup::Verify(BlockTier& tier, const Wanted& want,
                                                       std::span<const uint8_t> bytes) {
  auto decoded = DecodeBlockFile(bytes, fingerprint_, buffers_.get());
  if (!decoded.ok()) {
    tier.Reject(want.key, decoded.status().message());
    return nullptr;
  }
  if (decoded->key != want.key) {
    tier.Reject(want.key, "file name and key differ");
    return nullptr;
  }
  std::shared_ptr<const BlockRecord> r = ShareRecycled(std::move(decoded.value()), buffers_);
  if (want.fits && !want.fits(*r)) {
    // A hash collision or a mislabelled file: never kept, never used. A key from an agent's record
    // may name a good block that this request cannot use: only skipped.
    if (want.origin == KeyOrigin::kTokens) tier.Reject(want.key, "tokens or position differ from the key's");
    return nullptr;
  }
  return r;
}

void BlockLookup::Walk(const std::vector<Wanted>& wanted, Reach reach, const Visit& visit) {
  size_t i = 0;
  while (i < wanted.size()) {
    std::shared_ptr<const BlockRecord> r;
    const RamTier::Found found = UseRam(wanted[i].key, wanted[i].fits, &r);
    if (found == RamTier::Found::kHit) {
      if (!visit(i, std::move(r), nullptr)) return;
      ++i;
      continue;
    }
    // A misfit in RAM is a hash collision: the tiers below hold the same wrong block, if any.
    BlockTier* tier = found == RamTier::Found::kAbsent && reach == Reach::kAllTiers ? TierFor(wanted[i].key) : nullptr;
    if (!tier) {
      if (!visit(i, nullptr, nullptr)) return;
      ++i;
      continue;
    }
    // The run of keys from here that RAM lacks and this tier may hold: read together.
    std::vector<BlockKey> run = {wanted[i].key};
    while (i + run.size() < wanted.size()) {
      const BlockKey& next = wanted[i + run.size()].key;
      if (ram_.Contains(next) || TierFor(next) != tier) break;
      run.push_back(next);
    }
    size_t answered = 0;
    bool go_on = true;
    const auto t0 = std::chrono::steady_clock::now();
    tier->ReadBlocks(run, [&](size_t j, const StatusOr<std::span<const uint8_t>>& bytes) {
      const Wanted& want = wanted[i + j];
      std::shared_ptr<const BlockRecord> rec = bytes.ok() ? Verify(*tier, want, bytes.value()) : nullptr;
      const BlockTier* from = rec ? tier : nullptr;
      if (rec) ram_.Insert(rec);
      answered = j + 1;
      go_on = visit(i + j, std::move(rec), from);
      return go_on;
    });
    {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t t = 0; t < below_.size(); ++t) {
        if (below_[t] == tier) stats_.below_seconds[t] += seconds;
      }
    }
    if (!go_on) return;
    for (; answered < run.size(); ++answered) {  // keys the tier left unanswered: misses
      if (!visit(i + answered, nullptr, nullptr)) return;
    }
    i += run.size();
  }
}

PartialBlock BlockLookup::FindPartial(const PrefetchRequest& req, size_t blocks, size_t min_len, Reach reach) {
  const PartialSearch s = PlanPartial(req, blocks, min_len);
  if (s.empty) return {};
  // A tail block that the request continues, the longest first; then the agent's own block at this
  // position, as far as the request shares its tokens.
  std::vector<Wanted> wanted;
  for (size_t k = s.rest.size(); k >= s.min_len; --k) {
    wanted.push_back({s.tails[k - 1], [&s, k](const BlockRecord& b) {
                        return b.tokens.size() == k && b.first_pos == s.pos &&
                               std::equal(b.tokens.begin(), b.tokens.end(), s.rest.begin());
                      }});
  }
  const size_t n_tails = wanted.size();
  if (s.has_hint) {
    wanted.push_back({req.hint[blocks],
                      [&s, &req](const BlockRecord& b) {
                        return b.parent == s.parent && b.first_pos == s.pos && !b.tokens.empty() &&
                               b.tokens.size() <= req.block_tokens;
                      },
                      KeyOrigin::kAgentRecord});
  }
  const std::vector<int32_t>& toks = *req.tokens;
  PartialBlock found;
  const BlockTier* found_in = nullptr;
  Walk(wanted, reach, [&](size_t i, std::shared_ptr<const BlockRecord> r, const BlockTier* tier) {
    if (!r) return true;  // the next candidate
    size_t usable = 0;
    if (i < n_tails) {
      usable = s.rest.size() - i;
    } else {
      const size_t n = std::min(r->tokens.size(), toks.size() - s.pos);
      const auto mine = toks.begin() + static_cast<long>(s.pos);
      const auto end = std::mismatch(r->tokens.begin(), r->tokens.begin() + static_cast<long>(n), mine).first;
      usable = static_cast<size_t>(end - r->tokens.begin());
      if (usable < s.min_len) return false;
    }
    found = {std::move(r), usable, tier != nullptr, tier != nullptr && tier->remote()};
    found_in = tier;
    return false;
  });
  if (found.record) CountHit(found_in);
  return found;
}

PartialBlock BlockLookup::FindPartialInRam(const PrefetchRequest& req, size_t blocks, size_t min_len) {
  return FindPartial(req, blocks, min_len, Reach::kRamOnly);
}

bool BlockLookup::BelowMayHavePartial(const PrefetchRequest& req, size_t blocks, size_t min_len) const {
  const PartialSearch s = PlanPartial(req, blocks, min_len);
  if (s.empty) return false;
  for (size_t k = s.rest.size(); k >= s.min_len; --k) {
    if (TierFor(s.tails[k - 1])) return true;
  }
  return s.has_hint && TierFor(req.hint[blocks]);
}

std::shared_ptr<Prefetch> BlockLookup::Start(std::shared_ptr<const PrefetchRequest> req, Refine refine) {
  auto p = std::make_shared<Prefetch>();
  p->first = req->first;
  if (req->first >= req->keys.size()) {
    // Every full block is resident: at most a partial block to fetch. From RAM here, at once; the
    // I/O thread only when a tier below alone may have a candidate (or, with a refine step, when
    // RAM has none: the refined request may name one).
    const size_t n = req->keys.size();
    p->partial = FindPartial(*req, n, MinPartial(*req, n), Reach::kRamOnly);
    if (p->partial.record || (!refine && !BelowMayHavePartial(*req, n, MinPartial(*req, n)))) {
      p->done.store(true, std::memory_order_release);
      return p;
    }
    p->partial = {};
  }
  if (refine) {
    io_.PostRead([this, p, req = std::move(req), refine = std::move(refine)]() mutable {
      req = refine(std::move(req));
      Fetch(*req, p.get());
    });
    return p;
  }
  io_.PostRead([this, p, req = std::move(req)] { Fetch(*req, p.get()); });
  return p;
}

void BlockLookup::Fetch(const PrefetchRequest& req, Prefetch* p) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t bt = req.block_tokens;
  const std::vector<int32_t>& toks = *req.tokens;
  std::vector<Wanted> wanted;
  for (size_t i = p->first; i < req.keys.size(); ++i) {
    const auto begin = toks.begin() + static_cast<long>(i * bt);
    wanted.push_back({req.keys[i], [bt, i, begin](const BlockRecord& b) {
                        return b.tokens.size() == bt && b.first_pos == i * bt &&
                               std::equal(b.tokens.begin(), b.tokens.end(), begin);
                      }});
  }
  Walk(wanted, Reach::kAllTiers, [&](size_t, std::shared_ptr<const BlockRecord> r, const BlockTier* tier) {
    if (!r) {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.misses;
      return false;
    }
    CountHit(tier);
    p->records.push_back(std::move(r));
    p->from_disk.push_back(tier != nullptr);
    p->from_remote.push_back(tier != nullptr && tier->remote());
    return true;
  });
  const size_t end = p->first + p->records.size();
  p->partial = FindPartial(req, end, MinPartial(req, end), Reach::kAllTiers);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.fetch_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  p->done.store(true, std::memory_order_release);
}

LookupStats BlockLookup::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace kvault

#include "engine/kv_pool.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "unit/engine/fake_kv.h"

namespace kvault {
namespace {

std::vector<Token> Range(Token from, int n) {
  std::vector<Token> v;
  for (int i = 0; i < n; ++i) v.push_back(from + i);
  return v;
}
std::vector<Token> Cat(std::vector<Token> a, const std::vector<Token>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Runs a request's prefill: the pool learns that the prompt's KV now exists.
void Prefill(KvPool& pool, FakeKv& kv, const KvPool::Lease& l, const std::vector<Token>& prompt) {
  const size_t from = static_cast<size_t>(l.reused);
  pool.Append(l.slot, prompt.data() + from, prompt.size() - from);
  for (size_t p = from; p < prompt.size(); ++p) kv.Add(l.slot, static_cast<int32_t>(p));
}

// A whole request: admitted, prompt computed, finished (its sequence stays resident, idle).
KvPool::Lease Served(KvPool& pool, FakeKv& kv, const std::vector<Token>& prompt, int32_t max_total) {
  auto l = pool.Acquire(prompt, max_total);
  EXPECT_TRUE(l);
  if (!l) return {};
  Prefill(pool, kv, *l, prompt);
  pool.Release(l->slot);
  return *l;
}

// Generation: tokens appended after the prompt.
void Generate(KvPool& pool, FakeKv& kv, int slot, const std::vector<Token>& toks) {
  const size_t from = pool.tokens(slot).size();
  pool.Append(slot, toks.data(), toks.size());
  for (size_t p = from; p < from + toks.size(); ++p) kv.Add(slot, static_cast<int32_t>(p));
}

TEST(KvPoolTest, ReservesPromptPlusCompletionUpFront) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  auto l = pool.Acquire(Range(0, 10), 20);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->reused, 0);
  EXPECT_EQ(pool.stats().reserved_blocks, 5u);
  Prefill(pool, kv, *l, Range(0, 10));
  EXPECT_EQ(pool.stats().used_blocks, 3u);
  EXPECT_EQ(pool.stats().reserved_blocks, 2u);
  EXPECT_DOUBLE_EQ(pool.stats().utilization(), 5.0 / 16);
  pool.Release(l->slot);
  EXPECT_EQ(pool.stats().used_blocks, 3u);  // stays resident
  EXPECT_EQ(pool.stats().reserved_blocks, 0u);
  EXPECT_EQ(pool.stats().idle_slots, 1u);
}

TEST(KvPoolTest, IdleOwnedListsTheIdleSlotsThatHaveAnOwnerWithTheirTokens) {
  FakeKv kv;
  KvPool pool(&kv, 4, 32, 4);
  const auto a = Served(pool, kv, Range(0, 10), 20);
  pool.SetOwner(a.slot, "t\na");
  Served(pool, kv, Range(100, 6), 20);  // an anonymous conversation: no owner
  auto running = pool.Acquire(Range(200, 5), 20);
  ASSERT_TRUE(running);
  pool.SetOwner(running->slot, "t\nb");  // active: not idle, not listed
  auto owned = pool.IdleOwned();
  ASSERT_EQ(owned.size(), 1u);
  EXPECT_EQ(owned[0].first, "t\na");
  EXPECT_EQ(owned[0].second, 10u);
  EXPECT_EQ(pool.FreeIdleOwnedBy("t\na"), 10u);
  EXPECT_TRUE(pool.IdleOwned().empty());
}

TEST(KvPoolTest, GrowTakesMoreBlocksEvictingIdleOnesButNeverRunningOnes) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  Served(pool, kv, Range(100, 20), 24);  // an idle conversation: 5 blocks
  auto a = pool.Acquire(Range(0, 10), 12);  // 3 blocks
  ASSERT_TRUE(a);
  Prefill(pool, kv, *a, Range(0, 10));
  EXPECT_TRUE(pool.Grow(a->slot, 12));  // already reserved: nothing to do
  EXPECT_EQ(pool.stats().reserved_blocks, 0u);
  EXPECT_TRUE(pool.Grow(a->slot, 40));  // 10 blocks: 7 more, the 8 free ones suffice
  EXPECT_EQ(pool.stats().idle_slots, 1u);
  EXPECT_TRUE(pool.Grow(a->slot, 60));  // 15 blocks: the idle conversation is evicted for them
  EXPECT_EQ(pool.stats().idle_slots, 0u);
  auto b = pool.Acquire(Range(200, 3), 4);  // the last block
  ASSERT_TRUE(b);
  // Running requests hold every block: no growth, and nothing changes.
  const auto before = pool.stats();
  EXPECT_FALSE(pool.Grow(a->slot, 64));
  EXPECT_FALSE(pool.Grow(b->slot, 8));
  EXPECT_EQ(pool.stats().reserved_blocks, before.reserved_blocks);
  EXPECT_EQ(pool.stats().used_blocks, before.used_blocks);
  pool.Free(b->slot);
  EXPECT_TRUE(pool.Grow(a->slot, 64));
}

TEST(KvPoolTest, NextTurnContinuesTheIdleSequence) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  auto p1 = Range(0, 10);
  const KvPool::Lease l1 = Served(pool, kv, p1, 12);
  auto p2 = Cat(p1, Range(100, 5));
  auto l2 = pool.Acquire(p2, 20);
  ASSERT_TRUE(l2);
  EXPECT_EQ(l2->slot, l1.slot);
  EXPECT_EQ(l2->reused, 10);
  EXPECT_EQ(kv.copies, 0);
}

TEST(KvPoolTest, IdenticalPromptRecomputesOnlyTheLastToken) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  auto p = Range(0, 10);
  Served(pool, kv, p, 12);
  auto l2 = pool.Acquire(p, 12);
  ASSERT_TRUE(l2);
  EXPECT_EQ(l2->reused, 9);
  EXPECT_EQ(kv.cells[l2->slot].size(), 9u);
}

TEST(KvPoolTest, WithoutPrefixReuseEveryRequestStartsFromAnEmptySequence) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  pool.set_prefix_reuse(false);  // recurrent models
  auto p = Range(0, 10);
  Served(pool, kv, p, 12);
  EXPECT_EQ(pool.LongestPrefix(p), 0u);
  auto l2 = pool.Acquire(Cat(p, Range(100, 5)), 20);
  ASSERT_TRUE(l2);
  EXPECT_EQ(l2->reused, 0);
  EXPECT_EQ(kv.copies, 0);
  EXPECT_TRUE(kv.cells[l2->slot].empty());
}

TEST(KvPoolTest, SharedPrefixIsCopiedWholeAndItsWholeBlocksCountedOnce) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  auto system = Range(0, 9);
  auto a = Cat(system, Range(100, 3));
  const KvPool::Lease la = Served(pool, kv, a, 12);
  const uint32_t used_before = pool.stats().used_blocks;  // 3 blocks

  auto b = Cat(system, Range(200, 3));  // another agent, same 9-token system prompt
  auto lb = pool.Acquire(b, 12);
  ASSERT_TRUE(lb);
  EXPECT_NE(lb->slot, la.slot);  // the other agent's sequence stays intact
  EXPECT_EQ(lb->reused, 9);      // the whole system prompt: two whole blocks of 4 and one token
  EXPECT_EQ(kv.copies, 1);
  EXPECT_EQ(kv.Positions(lb->slot), (std::set<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(pool.tokens(la.slot), a);
  // b needs 3 blocks in all, 2 of them shared: 1 new block (the shared token's cell and b's 3).
  EXPECT_EQ(pool.stats().used_blocks + pool.stats().reserved_blocks, used_before + 1);
  Prefill(pool, kv, *lb, b);
  EXPECT_EQ(kv.PhysicalCells(), 12u + 3u);
  pool.Release(lb->slot);

  // a leaves; b's share of a's third block (the system prompt's last token) stays in b's block.
  pool.Free(la.slot);
  EXPECT_EQ(pool.stats().used_blocks, 3u);
  EXPECT_EQ(kv.PhysicalCells(), 12u);
}

TEST(KvPoolTest, ActiveSequencesShareTheirPrefixToo) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  auto a = Range(0, 12);
  auto la = pool.Acquire(a, 16);
  Prefill(pool, kv, *la, a);  // still running
  auto lb = pool.Acquire(Cat(Range(0, 8), Range(50, 4)), 16);
  ASSERT_TRUE(lb);
  EXPECT_EQ(lb->reused, 8);
}

TEST(KvPoolTest, LeastRecentlyUsedIdleSequenceIsEvictedForASlot) {
  FakeKv kv;
  KvPool pool(&kv, 2, 16, 4);
  const KvPool::Lease la = Served(pool, kv, Range(0, 4), 4);
  const KvPool::Lease lb = Served(pool, kv, Range(100, 4), 4);
  auto lc = pool.Acquire(Range(200, 4), 4);
  ASSERT_TRUE(lc);
  EXPECT_EQ(lc->slot, la.slot);  // the older idle sequence went
  EXPECT_EQ(pool.tokens(lb.slot), Range(100, 4));
  EXPECT_TRUE(kv.cells[la.slot].empty());
  EXPECT_EQ(pool.stats().evictions, 1u);
}

TEST(KvPoolTest, IdleSequencesAreEvictedForBlocks) {
  FakeKv kv;
  KvPool pool(&kv, 4, 4, 4);  // 16 tokens in all
  const KvPool::Lease la = Served(pool, kv, Range(0, 8), 8);
  auto lb = pool.Acquire(Range(100, 12), 12);  // needs 3 blocks, 2 free
  ASSERT_TRUE(lb);
  EXPECT_EQ(pool.stats().evictions, 1u);
  EXPECT_TRUE(pool.tokens(la.slot).empty());
}

TEST(KvPoolTest, WhenRunningRequestsHoldTheBlocksNothingChanges) {
  FakeKv kv;
  KvPool pool(&kv, 4, 4, 4);
  auto la = pool.Acquire(Range(0, 8), 12);  // running, holds 3 blocks
  ASSERT_TRUE(la);
  auto before = pool.stats();
  EXPECT_FALSE(pool.Acquire(Range(100, 5), 8).has_value());
  auto after = pool.stats();
  EXPECT_EQ(before.reserved_blocks, after.reserved_blocks);
  EXPECT_EQ(before.active_slots, after.active_slots);
  EXPECT_FALSE(pool.CanEverFit(17));
  EXPECT_TRUE(pool.CanEverFit(16));
}

TEST(KvPoolTest, FreeDropsTheCells) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  auto l = pool.Acquire(Range(0, 6), 8);
  Prefill(pool, kv, *l, Range(0, 6));
  pool.Free(l->slot);
  EXPECT_TRUE(kv.cells[l->slot].empty());
  EXPECT_EQ(pool.stats().used_blocks, 0u);
  EXPECT_EQ(pool.stats().free_slots, 4u);
}

TEST(KvPoolTest, AnotherAgentsConversationIsNotTakenOver) {
  FakeKv kv;
  KvPool pool(&kv, 4, 32, 4);
  auto a = Cat(Range(0, 8), Range(100, 6));  // system prompt + agent A's question
  const KvPool::Lease la = Served(pool, kv, a, 16);
  auto b = Cat(Range(0, 8), Range(200, 6));  // same system prompt, agent B
  auto lb = pool.Acquire(b, 16);
  ASSERT_TRUE(lb);
  EXPECT_NE(lb->slot, la.slot);
  EXPECT_EQ(pool.tokens(la.slot), a);
}

TEST(KvPoolTest, RegeneratedAnswerTakesOverTheSameConversation) {
  FakeKv kv;
  KvPool pool(&kv, 4, 32, 4);
  auto p = Range(0, 10);
  auto l1 = pool.Acquire(p, 20);
  Prefill(pool, kv, *l1, p);
  Generate(pool, kv, l1->slot, Range(900, 5));
  pool.Release(l1->slot);
  auto l2 = pool.Acquire(p, 20);  // same prompt again: the old answer is cut
  ASSERT_TRUE(l2);
  EXPECT_EQ(l2->slot, l1->slot);
  EXPECT_EQ(l2->reused, 9);
  EXPECT_EQ(kv.cells[l2->slot].size(), 9u);
  EXPECT_EQ(kv.copies, 0);
}

// Two idle conversations with block_tokens 4: X (a prompt of 8 tokens, then 8 generated), and Y,
// which forked from X while X was running: it shares X's first 3 blocks (12 tokens) and copied 2
// more tokens into a block of its own, then added 2. Y was released first.
struct Forked {
  KvPool::Lease x, y;
  std::vector<Token> x_tokens, y_tokens;
};
Forked ForkAndRelease(KvPool& pool, FakeKv& kv) {
  Forked f;
  auto x_prompt = Range(0, 8);
  auto lx = pool.Acquire(x_prompt, 20);
  EXPECT_TRUE(lx);
  if (!lx) return f;
  Prefill(pool, kv, *lx, x_prompt);
  auto gen = Range(900, 8);
  Generate(pool, kv, lx->slot, gen);
  f.x_tokens = Cat(x_prompt, gen);
  f.y_tokens = Cat(std::vector<Token>(f.x_tokens.begin(), f.x_tokens.begin() + 14), Range(300, 2));
  auto ly = pool.Acquire(f.y_tokens, 20);
  EXPECT_TRUE(ly);
  if (!ly) return f;
  EXPECT_EQ(ly->reused, 14);
  Prefill(pool, kv, *ly, f.y_tokens);
  pool.Release(ly->slot);
  pool.Release(lx->slot);
  f.x = *lx;
  f.y = *ly;
  return f;
}

TEST(KvPoolTest, CutInsideASharedBlockKeepsItsCellsInABlockOfItsOwn) {
  FakeKv kv;
  KvPool pool(&kv, 4, 32, 4);
  const Forked f = ForkAndRelease(pool, kv);
  const KvPool::Lease* lx = &f.x;
  const KvPool::Lease* ly = &f.y;
  const auto& x_tokens = f.x_tokens;
  const auto& y = f.y_tokens;
  EXPECT_EQ(pool.stats().used_blocks, 5u);  // X: 4 blocks; Y: 3 of them + 1 of its own
  // X's conversation continues but diverges at position 10, inside block 2 which Y shares: X
  // keeps its 10 tokens (cells shared with Y) and blocks 0-1; block 2 stays Y's, and X counts a
  // new block of its own for positions 8-11.
  auto r = Cat(std::vector<Token>(x_tokens.begin(), x_tokens.begin() + 10), Range(555, 3));
  auto lr = pool.Acquire(r, 20);
  ASSERT_TRUE(lr);
  EXPECT_EQ(lr->slot, lx->slot);
  EXPECT_EQ(lr->reused, 10);
  EXPECT_EQ(kv.copies, 1);  // nothing copied: the cells were already X's
  EXPECT_EQ(pool.tokens(ly->slot), y);  // Y untouched
  EXPECT_EQ(kv.cells[ly->slot].size(), y.size());
  Prefill(pool, kv, *lr, r);
  // Y's 4 blocks + X's 5 (2 shared with Y, 3 new for positions 8-19).
  EXPECT_EQ(pool.stats().used_blocks + pool.stats().reserved_blocks, 7u);
  EXPECT_EQ(kv.PhysicalCells(), 16u + 3u);
  pool.Release(lr->slot);
  // Y goes: X's cells at positions 8-9, shared until now, fit X's own block 2.
  pool.Free(ly->slot);
  EXPECT_EQ(pool.stats().used_blocks, 4u);  // X's 13 tokens
  EXPECT_EQ(kv.PhysicalCells(), 13u);
}

TEST(KvPoolTest, CutInsideASharedBlockWhoseOtherHolderMustBeEvicted) {
  FakeKv kv;
  KvPool pool(&kv, 4, 8, 4);
  const Forked f = ForkAndRelease(pool, kv);  // Y is the least recently used
  const KvPool::Lease* lx = &f.x;
  const KvPool::Lease* ly = &f.y;
  const auto& x_tokens = f.x_tokens;
  // X's next turn diverges at 10, inside block 2, and needs the whole pool: Y must go.
  auto r = Cat(std::vector<Token>(x_tokens.begin(), x_tokens.begin() + 10), Range(555, 3));
  auto lr = pool.Acquire(r, 32);
  ASSERT_TRUE(lr);
  EXPECT_EQ(lr->slot, lx->slot);
  EXPECT_EQ(lr->reused, 10);
  EXPECT_EQ(pool.stats().evictions, 1u);
  EXPECT_TRUE(pool.tokens(ly->slot).empty());
  EXPECT_TRUE(kv.cells[ly->slot].empty());
  EXPECT_EQ(pool.stats().used_blocks + pool.stats().reserved_blocks, 8u);
  Prefill(pool, kv, *lr, r);
  EXPECT_EQ(kv.PhysicalCells(), 13u);
}

TEST(KvPoolTest, IdleLimitEvictsLeastRecentlyUsedIdleSequencesWhenAnotherIsAdmitted) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  pool.set_idle_limit(2);
  const KvPool::Lease la = Served(pool, kv, Range(0, 8), 8);
  const KvPool::Lease lb = Served(pool, kv, Range(100, 8), 8);
  // Released sequences stay while nothing else runs: they slow nobody down.
  EXPECT_EQ(pool.stats().idle_blocks, 4u);
  EXPECT_EQ(pool.stats().idle_trims, 0u);

  auto lc = pool.Acquire(Range(200, 4), 8);
  ASSERT_TRUE(lc);
  const KvPoolStats st = pool.stats();
  EXPECT_EQ(st.idle_trims, 1u);
  EXPECT_EQ(st.evictions, 1u);
  EXPECT_EQ(st.idle_blocks, 2u);  // b, the more recent, stays
  EXPECT_TRUE(kv.cells[la.slot].empty());
  EXPECT_TRUE(pool.tokens(la.slot).empty());
  EXPECT_EQ(pool.tokens(lb.slot), Range(100, 8));
  EXPECT_EQ(kv.cells[lb.slot].size(), 8u);
}

TEST(KvPoolTest, IdleLimitZeroStillContinuesTheSameConversation) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  pool.set_idle_limit(0);
  auto p1 = Range(0, 10);
  const KvPool::Lease l1 = Served(pool, kv, p1, 12);
  auto l2 = pool.Acquire(Cat(p1, Range(50, 3)), 16);
  ASSERT_TRUE(l2);
  EXPECT_EQ(l2->slot, l1.slot);
  EXPECT_EQ(l2->reused, 10);
  EXPECT_EQ(pool.stats().idle_trims, 0u);
  EXPECT_EQ(pool.stats().idle_blocks, 0u);
}

TEST(KvPoolTest, IdleLimitKeepsBlocksSharedWithTheNewRequest) {
  FakeKv kv;
  KvPool pool(&kv, 4, 16, 4);
  pool.set_idle_limit(0);
  auto system = Range(0, 9);
  auto a = Cat(system, Range(100, 3));
  const KvPool::Lease la = Served(pool, kv, a, 12);
  auto b = Cat(system, Range(200, 3));  // another agent, same system prompt
  auto lb = pool.Acquire(b, 12);
  ASSERT_TRUE(lb);
  EXPECT_EQ(lb->reused, 9);  // copied from a before a was evicted
  EXPECT_EQ(pool.stats().idle_trims, 1u);
  EXPECT_TRUE(kv.cells[la.slot].empty());
  EXPECT_EQ(kv.Positions(lb->slot), (std::set<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(kv.PhysicalCells(), 9u);  // a's cells are gone but those b shares
  EXPECT_EQ(pool.stats().used_blocks + pool.stats().reserved_blocks, 3u);
}

// Random workloads: the fake cache always matches the pool's idea of every slot, and block
// accounting never exceeds the pool.
void RunRandomWorkload(uint32_t idle_limit) {
  FakeKv kv;
  const uint32_t n_slots = 6, n_blocks = 40, bt = 4;
  KvPool pool(&kv, n_slots, n_blocks, bt);
  pool.set_idle_limit(idle_limit);
  std::mt19937 rng(1234);
  std::vector<std::vector<Token>> prefixes = {Range(0, 13), Range(0, 7), Range(1000, 9)};
  std::map<int, std::vector<Token>> running;
  for (int iter = 0; iter < 3000; ++iter) {
    const int op = static_cast<int>(rng() % 3);
    bool admitted = false;
    if (op == 0) {
      auto prompt = prefixes[rng() % prefixes.size()];
      const int extra = 1 + static_cast<int>(rng() % 10);
      for (int i = 0; i < extra; ++i) prompt.push_back(static_cast<Token>(rng() % 5));
      const int32_t total = static_cast<int32_t>(prompt.size()) + static_cast<int32_t>(rng() % 8);
      auto l = pool.Acquire(prompt, total);
      if (l) {
        admitted = true;
        ASSERT_EQ(running.count(l->slot), 0u);
        for (int32_t i = 0; i < l->reused; ++i) ASSERT_EQ(pool.tokens(l->slot)[i], prompt[i]);
        Prefill(pool, kv, *l, prompt);
        const int n_gen =
            static_cast<int>(rng() % static_cast<unsigned>(total - static_cast<int32_t>(prompt.size()) + 1));
        Generate(pool, kv, l->slot, Range(5000 + static_cast<Token>(rng() % 3), n_gen));
        running[l->slot] = prompt;
      }
    } else if (!running.empty()) {
      auto it = std::next(running.begin(), static_cast<long>(rng() % running.size()));
      if (op == 1) {
        pool.Release(it->first);
      } else {
        pool.Free(it->first);
      }
      running.erase(it);
    }
    const KvPoolStats st = pool.stats();
    ASSERT_LE(st.used_blocks + st.reserved_blocks, n_blocks);
    // What llama.cpp must find room for never exceeds what the accounting holds.
    ASSERT_LE(kv.PhysicalCells(), static_cast<size_t>(st.used_blocks + st.reserved_blocks) * bt)
        << "at iteration " << iter;
    for (uint32_t s = 0; s < n_slots; ++s) {
      const auto& toks = pool.tokens(static_cast<int>(s));
      std::set<int32_t> expect;
      for (size_t p = 0; p < toks.size(); ++p) expect.insert(static_cast<int32_t>(p));
      ASSERT_EQ(kv.Positions(static_cast<int>(s)), expect) << "slot " << s << " at iteration " << iter;
    }
    if (idle_limit != KvPool::kNoIdleLimit && admitted) {
      ASSERT_LE(st.idle_blocks, idle_limit);
    }
  }
}

TEST(KvPoolTest, RandomWorkloadKeepsCellsAndBlocksConsistent) {
  RunRandomWorkload(KvPool::kNoIdleLimit);
}
TEST(KvPoolTest, RandomWorkloadWithAnIdleLimitKeepsCellsAndBlocksConsistent) {
  RunRandomWorkload(0);
  RunRandomWorkload(5);
}

}  // namespace
}  // namespace kvault

#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <atomic>

#include "unit/engine/fake_kv.h"

namespace kvault {
namespace {

constexpr uint32_t kBlock = 16;

std::vector<Token> Range(Token from, int n) {
  std::vector<Token> v;
  for (int i = 0; i < n; ++i) v.push_back(from + i);
  return v;
}

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() { Reset(/*slots=*/4, /*blocks=*/32, /*parallel=*/2, /*step=*/64); }

  void Reset(uint32_t slots, uint32_t blocks, uint32_t parallel, uint32_t step, int32_t reserve = 4096) {
    pool_ = std::make_unique<KvPool>(&kv_, slots, blocks, kBlock);
    SchedulerOptions o;
    o.parallel = parallel;
    o.step_tokens = step;
    o.reserve_tokens = reserve;
    o.queue_timeout = std::chrono::milliseconds(1000);
    sched_ = std::make_unique<Scheduler>(pool_.get(), o);
  }

  // Admits what can be; returns the requests admitted, in order.
  std::vector<RequestState*> Admit() {
    std::vector<RequestState*> out;
    const size_t n = sched_->Admit([&](RequestState& r) { out.push_back(&r); });
    EXPECT_EQ(n, out.size());
    return out;
  }

  RequestState* Add(std::vector<Token> prompt, int32_t max_tokens = 8) {
    auto r = std::make_unique<RequestState>();
    r->handle = std::make_shared<RequestHandle>();
    r->submitted = EngineClock::now();
    r->ticket = PendingTicket(&pending_);
    pending_.fetch_add(1);
    r->prompt = std::move(prompt);
    r->max_tokens = max_tokens;
    RequestState* raw = r.get();
    sched_->Enqueue(std::move(r));
    return raw;
  }

  // Runs steps until every running request has computed its prompt; returns the steps taken.
  int PrefillAll() {
    int steps = 0;
    while (true) {
      bool prefilling = false;
      for (const auto& r : sched_->running()) prefilling |= r->prefill_left() > 0;
      if (!prefilling) return steps;
      StepPlan plan = sched_->Schedule();
      EXPECT_FALSE(plan.empty());
      if (plan.empty()) return steps;
      Compute(plan);
      ++steps;
    }
  }

  // What the runner would do: cells for every token of the plan.
  void Compute(const StepPlan& plan) {
    for (const BatchToken& t : plan.tokens) kv_.Add(t.seq, t.pos);
    sched_->Update(plan);
    for (auto& [r, row] : plan.sample) r->next = 7;  // a sampled token
  }

  FakeKv kv_;
  std::atomic<uint32_t> pending_{0};
  std::unique_ptr<KvPool> pool_;
  std::unique_ptr<Scheduler> sched_;
};

TEST_F(SchedulerTest, AdmitsInOrderUpToTheParallelLimit) {
  RequestState* a = Add(Range(100, 20));
  RequestState* b = Add(Range(200, 20));
  RequestState* c = Add(Range(300, 20));
  std::vector<RequestState*> admitted = Admit();
  ASSERT_EQ(admitted.size(), 2u);
  EXPECT_EQ(admitted[0], a);
  EXPECT_EQ(admitted[1], b);
  EXPECT_EQ(sched_->waiting_count(), 1u);
  // Tickets are released by the caller, not by admission.
  EXPECT_EQ(pending_.load(), 3u);
  sched_->End(*a, /*keep=*/true);
  sched_->Sweep();
  admitted = Admit();
  ASSERT_EQ(admitted.size(), 1u);
  EXPECT_EQ(admitted[0], c);
}

TEST_F(SchedulerTest, TheHeadOfTheQueueWaitsForItsStoreFetchAndIsNotOvertaken) {
  RequestState* a = Add(Range(100, 20));
  a->lookup.prefetch = std::make_shared<Prefetch>();  // still being read
  Add(Range(200, 20));
  EXPECT_TRUE(Admit().empty());
  EXPECT_EQ(sched_->waiting_count(), 2u);
  a->lookup.prefetch->done.store(true);
  EXPECT_EQ(Admit().size(), 2u);
}

TEST_F(SchedulerTest, WhatAnAdmittedRequestGetsRestoredIsSharedWithTheNextOneAdmitted) {
  // Two agents with one long common prefix, none of it resident: the first one's restore (here
  // simulated: its prefix's cells appended) happens before the second is admitted, which then
  // shares those cells instead of restoring a second copy.
  std::vector<Token> shared = Range(100, 48);
  std::vector<Token> a = shared, b = shared;
  for (Token t : Range(500, 8)) a.push_back(t);
  for (Token t : Range(600, 8)) b.push_back(t);
  Add(a);
  RequestState* second = Add(b);
  size_t n = 0;
  sched_->Admit([&](RequestState& r) {
    if (n++ == 0) {
      pool_->Append(r.slot, shared.data(), shared.size());
      for (int32_t p = 0; p < 48; ++p) kv_.Add(r.slot, p);
      r.n_past = 48;
    }
  });
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(second->reused_resident, 48);
}

TEST_F(SchedulerTest, StepsPrefillInChunksThenDecodeOneTokenEach) {
  RequestState* a = Add(Range(100, 40));
  RequestState* b = Add(Range(200, 10));
  ASSERT_EQ(Admit().size(), 2u);
  StepPlan first = sched_->Schedule();
  int32_t tokens = 0;
  for (const auto& p : first.parts) tokens += p.n_tokens;
  EXPECT_LE(tokens, 64);
  EXPECT_EQ(first.decode_tokens, 0);
  EXPECT_EQ(first.prompt_tokens, tokens);
  Compute(first);
  PrefillAll();
  EXPECT_EQ(a->n_past, 40);
  EXPECT_EQ(b->n_past, 10);
  EXPECT_EQ(pool_->tokens(a->slot).size(), 40u);
  // Both generate now: one decode token each, sampled from its own row.
  StepPlan step = sched_->Schedule();
  EXPECT_EQ(step.decode_tokens, 2);
  EXPECT_EQ(step.prompt_tokens, 0);
  ASSERT_EQ(step.sample.size(), 2u);
  for (const auto& [r, row] : step.sample) {
    EXPECT_EQ(step.tokens[static_cast<size_t>(row)].seq, r->slot);
    EXPECT_EQ(step.tokens[static_cast<size_t>(row)].pos, r->n_past);
    EXPECT_TRUE(step.tokens[static_cast<size_t>(row)].logits);
  }
  Compute(step);
  EXPECT_EQ(a->n_past, 41);
}

TEST_F(SchedulerTest, TheLastPromptTokenIsTheOnlyPromptRowSampled) {
  RequestState* a = Add(Range(100, 30));
  Admit();
  StepPlan plan = sched_->Schedule();
  ASSERT_EQ(plan.tokens.size(), 30u);
  int rows = 0;
  for (const BatchToken& t : plan.tokens) rows += t.logits ? 1 : 0;
  EXPECT_EQ(rows, 1);
  ASSERT_EQ(plan.sample.size(), 1u);
  EXPECT_EQ(plan.sample[0].first, a);
  EXPECT_EQ(plan.sample[0].second, 29);
}

TEST_F(SchedulerTest, ANextTurnReusesTheResidentConversation) {
  const std::vector<Token> turn1 = Range(100, 40);
  RequestState* a = Add(turn1);
  Admit();
  PrefillAll();
  sched_->End(*a, /*keep=*/true);
  sched_->Sweep();
  std::vector<Token> turn2 = turn1;
  for (Token t : Range(500, 20)) turn2.push_back(t);
  RequestState* b = Add(turn2);
  ASSERT_EQ(Admit().size(), 1u);
  EXPECT_EQ(b->reused_resident, 40);
  EXPECT_EQ(b->n_past, 40);
  EXPECT_EQ(b->prefill_left(), 20);
}

TEST_F(SchedulerTest, AFreedRequestLeavesNothingResident) {
  RequestState* a = Add(Range(100, 40));
  Admit();
  PrefillAll();
  sched_->End(*a, /*keep=*/false);
  sched_->Sweep();
  EXPECT_EQ(sched_->running_count(), 0u);
  EXPECT_EQ(pool_->stats().used_blocks, 0u);
  EXPECT_TRUE(sched_->idle());
}

TEST_F(SchedulerTest, WhenEveryAnswerWaitsForCellsTheMostRecentOneMustEnd) {
  // 8 blocks of 16; answers reserve 16 tokens at a time and may grow to 100.
  Reset(4, 8, 2, 64, /*reserve=*/16);
  RequestState* a = Add(Range(100, 30), 100);
  RequestState* b = Add(Range(200, 30), 100);
  ASSERT_EQ(Admit().size(), 2u);
  PrefillAll();
  RequestState* overflow = nullptr;
  for (int i = 0; i < 200 && !overflow; ++i) {
    StepPlan plan = sched_->Schedule();
    overflow = plan.overflow;
    if (!overflow) Compute(plan);
  }
  ASSERT_NE(overflow, nullptr);
  EXPECT_EQ(overflow, b);  // admitted last
  EXPECT_GT(a->n_past, 30);
  sched_->End(*b, false);
  sched_->Sweep();
  StepPlan plan = sched_->Schedule();
  EXPECT_EQ(plan.overflow, nullptr);
  EXPECT_FALSE(plan.empty());  // a goes on with b's cells
}

TEST_F(SchedulerTest, CancelledAndTimedOutWaitersLeaveTheQueue) {
  Reset(4, 32, /*parallel=*/1, 64);
  Add(Range(100, 20));
  RequestState* cancelled = Add(Range(200, 20));
  RequestState* old = Add(Range(300, 20));
  Admit();
  cancelled->handle->Cancel();
  old->submitted -= std::chrono::seconds(5);
  std::vector<Scheduler::Expired> gone = sched_->TakeExpired(EngineClock::now());
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_FALSE(gone[0].timed_out);
  EXPECT_TRUE(gone[1].timed_out);
  EXPECT_EQ(sched_->waiting_count(), 0u);
  gone.clear();  // their tickets go with them
  EXPECT_EQ(pending_.load(), 1u);
}

TEST_F(SchedulerTest, TakeAllFreesRunningCells) {
  Add(Range(100, 40));
  Add(Range(200, 40));
  Add(Range(300, 40));
  Admit();
  PrefillAll();
  EXPECT_GT(pool_->stats().used_blocks, 0u);
  EXPECT_EQ(sched_->TakeAll().size(), 3u);
  EXPECT_EQ(pool_->stats().used_blocks, 0u);
  EXPECT_EQ(pending_.load(), 0u);
  EXPECT_TRUE(sched_->idle());
}

TEST(PendingTicketTest, CountsOnceWhateverPathTheRequestTakes) {
  std::atomic<uint32_t> n{3};
  {
    PendingTicket a(&n);
    PendingTicket b(&n);
    PendingTicket c(&n);
    a.Release();
    a.Release();  // once only
    EXPECT_EQ(n.load(), 2u);
    PendingTicket moved = std::move(b);
    EXPECT_FALSE(b.held());
    EXPECT_EQ(n.load(), 2u);
    c = std::move(moved);  // c's own unit is released, moved's is now c's
    EXPECT_EQ(n.load(), 1u);
  }
  EXPECT_EQ(n.load(), 0u);
}

}  // namespace
}  // namespace kvault

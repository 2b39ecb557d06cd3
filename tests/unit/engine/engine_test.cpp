#include "engine/engine.h"

#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "test_env.h"
#include "unit/engine/engine_test_util.h"

namespace kvault {
namespace {

using testing::Collect;
using testing::Msg;
using testing::Output;

GenerateRequest Chat(std::vector<common_chat_msg> messages, int32_t max_tokens) {
  GenerateRequest r;
  r.messages = std::move(messages);
  r.max_tokens = max_tokens;
  return r;
}

GenerateRequest UserSays(const std::string& text, int32_t max_tokens) {
  return Chat({Msg("user", text)}, max_tokens);
}

std::string Words(int n, const std::string& word = "word") {
  std::string s;
  for (int i = 0; i < n; ++i) s += word + " ";
  return s;
}

EngineOptions TinyOptions(bool deterministic = false) {
  EngineOptions o;
  o.deterministic = deterministic;
  o.model_path = testing::TinyModel();
  o.default_temperature = 0.0f;  // greedy: these tests compare outputs
  o.ctx_size = 512;
  o.pool_tokens = 4096;
  o.block_tokens = 16;
  o.step_tokens = 48;  // several chunks for longer prompts
  o.parallel = 9;
  o.resident_seqs = 16;
  // One thread: the tiny model gains nothing from two, and ctest runs two tests at once on a
  // 2-core machine, where llama.cpp's spinning worker threads of two processes slow each other
  // down many times over (this suite's longest test went from 22 s to over 120 s).
  o.n_threads = 1;
  return o;
}

std::unique_ptr<Engine> StartEngine(const EngineOptions& o) {
  auto e = Engine::Start(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e.value()) : nullptr;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = StartEngine(TinyOptions());
    ASSERT_NE(engine_, nullptr);
  }
  Output Run(GenerateRequest r) { return Collect(engine_->Submit(std::move(r))); }
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, ReportsModelAndPoolInfo) {
  EXPECT_EQ(engine_->info().id, "tiny");
  EXPECT_EQ(engine_->info().ctx_size, 512u);
  EXPECT_EQ(engine_->info().pool_tokens, 4096u);
  EXPECT_EQ(engine_->info().block_tokens, 16u);
  EXPECT_GT(engine_->info().pool_bytes, 0u);
  EXPECT_EQ(engine_->stats().pool_blocks_total, 254u);  // 2 blocks are kept for scratch sequences
}

TEST_F(EngineTest, GreedyIsDeterministicAndHonoursMaxTokens) {
  Output a = Run(UserSays("Tell me about the sea.", 12));
  ASSERT_TRUE(a.error.ok()) << a.error.ToString();
  EXPECT_GT(a.done.prompt_tokens, 5);
  EXPECT_LE(a.done.completion_tokens, 12);
  if (a.done.finish == FinishReason::kLength) {
    EXPECT_EQ(a.done.completion_tokens, 12);
  }
  EXPECT_FALSE(a.text.empty());
  // Second time: same text, and the prompt now comes from the resident sequence.
  Output b = Run(UserSays("Tell me about the sea.", 12));
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(b.done.cached_tokens, b.done.prompt_tokens - 1);
}

TEST_F(EngineTest, DifferentPromptsGiveDifferentOutputs) {
  // Guards the demo model itself: if its output ignored the prompt, every exactness test that
  // compares outputs would pass vacuously.
  EXPECT_NE(Run(UserSays("hi", 24)).text, Run(UserSays("Tell me a story about dragons", 24)).text);
}

TEST_F(EngineTest, PromptLongerThanContextIsRejectedAtOnce) {
  Output o = Run(UserSays(Words(600), 4));
  EXPECT_EQ(o.error.code(), Status::Code::kContextLength);
  // Anthropic's wording, which clients such as Claude Code parse to compact the conversation.
  // "prompt is too long: N tokens > 511 maximum" (no <regex>: GCC 12 warns inside it under ASan).
  const std::string& m = o.error.message();
  const std::string head = "prompt is too long: ", tail = " tokens > 511 maximum";
  ASSERT_GT(m.size(), head.size() + tail.size()) << m;
  EXPECT_EQ(m.substr(0, head.size()), head) << m;
  EXPECT_EQ(m.substr(m.size() - tail.size()), tail) << m;
  const std::string n = m.substr(head.size(), m.size() - head.size() - tail.size());
  EXPECT_EQ(n.find_first_not_of("0123456789"), std::string::npos) << m;
  EXPECT_GT(std::stoi(n), 511) << m;
  EXPECT_TRUE(Run(UserSays("hi", 2)).error.ok());
}

TEST_F(EngineTest, MaxTokensBeyondTheContextEndsAtTheContext) {
  // Not an error (Claude Code always asks for 128000): the answer runs to the end of the context.
  Output o = Run(UserSays(Words(100), 500));
  ASSERT_TRUE(o.error.ok()) << o.error.ToString();
  EXPECT_EQ(o.done.finish, FinishReason::kContextLength);
  EXPECT_EQ(o.done.prompt_tokens + o.done.completion_tokens, 512);
  // max_tokens that fit: kLength, as before.
  Output fits = Run(UserSays(Words(100), 8));
  EXPECT_EQ(fits.done.finish, FinishReason::kLength);
  EXPECT_EQ(fits.done.completion_tokens, 8);
}

// A pool of one context (768 cells: 46 blocks and 2 scratch ones; a context of 736 tokens fills
// it); answers reserve 64 tokens' cells at a time.
EngineOptions OneContextPool() {
  EngineOptions o = TinyOptions();
  o.pool_tokens = 768;
  o.ctx_size = 736;
  o.reserve_tokens = 64;
  return o;
}

TEST(EngineReservationTest, AnAnswerToTheContextEndDoesNotHoldItFromTheStart) {
  auto e = StartEngine(OneContextPool());
  ASSERT_NE(e, nullptr);
  auto long_h = e->Submit(UserSays("Tell me a long story", 100000));  // to the end of the context
  auto short_h = e->Submit(UserSays("hi", 8));
  const Output shorter = Collect(short_h);
  const Output longer = Collect(long_h);
  ASSERT_TRUE(longer.error.ok()) << longer.error.ToString();
  ASSERT_TRUE(shorter.error.ok()) << shorter.error.ToString();
  EXPECT_EQ(longer.done.finish, FinishReason::kContextLength);
  EXPECT_EQ(longer.done.prompt_tokens + longer.done.completion_tokens, 736);
  EXPECT_EQ(shorter.done.completion_tokens, 8);
  // The short request ran beside the long one: had the long one reserved the rest of the
  // context (the whole pool) up front, the short one would have waited for all of it.
  EXPECT_LT(shorter.done.total_ms, longer.done.total_ms);
}

TEST(EngineReservationTest, WhenEveryAnswerWaitsForCellsTheMostRecentEndsRetryably) {
  auto e = StartEngine(OneContextPool());
  ASSERT_NE(e, nullptr);
  auto first = e->Submit(UserSays("Tell me a long story", 100000));
  auto second = e->Submit(UserSays("Tell me another long story", 100000));
  const Output a = Collect(first);
  const Output b = Collect(second);
  // Both started (each held only 64 tokens' cells); together they outgrew the pool. The second
  // ended with a retryable error, its cells let the first reach the end of the context.
  ASSERT_TRUE(a.error.ok()) << a.error.ToString();
  EXPECT_EQ(a.done.finish, FinishReason::kContextLength);
  EXPECT_EQ(a.done.prompt_tokens + a.done.completion_tokens, 736);
  EXPECT_EQ(b.error.code(), Status::Code::kOverloaded) << b.error.ToString();
  // The engine goes on serving.
  EXPECT_TRUE(Collect(e->Submit(UserSays("hi", 4))).error.ok());
}

TEST_F(EngineTest, DefaultMaxTokensIsCappedByTheContext) {
  Output o = Run(UserSays(Words(300), -1));
  ASSERT_TRUE(o.error.ok()) << o.error.ToString();
  EXPECT_EQ(o.done.finish, FinishReason::kContextLength);
  EXPECT_EQ(o.done.prompt_tokens + o.done.completion_tokens, 512);
}

TEST_F(EngineTest, StopSequenceEndsTheTextAndIsNeverSent) {
  Output full = Run(UserSays("Tell me a story about dragons", 40));
  ASSERT_GT(full.text.size(), 20u);
  // Stop at some text from the middle of what the model writes.
  const std::string stop = full.text.substr(full.text.size() / 2, 3);
  const std::string expected = full.text.substr(0, full.text.find(stop));
  GenerateRequest r = UserSays("Tell me a story about dragons", 40);
  r.stop = {"\x01never", stop};
  r.stream = true;  // piece by piece: no piece may carry any part of the stop sequence
  Output o = Run(std::move(r));
  EXPECT_EQ(o.done.finish, FinishReason::kStopSequence);
  EXPECT_EQ(o.done.stop_sequence, stop);
  EXPECT_EQ(o.text, expected);
  EXPECT_GT(o.pieces.size(), 3u);
  for (const auto& p : o.pieces) EXPECT_EQ(p.find(stop), std::string::npos);
  GenerateRequest whole = UserSays("Tell me a story about dragons", 40);
  whole.stop = {stop};
  Output w = Run(std::move(whole));  // not streamed: one piece, same text
  EXPECT_EQ(w.pieces.size(), 1u);
  EXPECT_EQ(w.text, expected);
}

TEST_F(EngineTest, SeededSamplingIsReproducible) {
  auto sampled = [&](uint32_t seed) {
    GenerateRequest r = UserSays("Pick some words at random", 24);
    r.sampling.temperature = 1.0f;
    r.sampling.top_k = 40;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = seed;
    return Run(std::move(r)).text;
  };
  const std::string a = sampled(7);
  EXPECT_EQ(a, sampled(7));
  EXPECT_NE(a, sampled(8));
}

TEST_F(EngineTest, CancelledRequestStopsAndFreesItsCells) {
  auto h = engine_->Submit(UserSays("count to a thousand", 400));
  h->Cancel();
  Output o = Collect(h);
  EXPECT_TRUE(o.error.ok());
  EXPECT_EQ(o.done.finish, FinishReason::kCancelled);
  EXPECT_LT(o.done.completion_tokens, 400);
  // Wait for the engine's next stats snapshot.
  for (int i = 0; i < 100 && engine_->stats().running > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.running, 0u);
  EXPECT_EQ(st.pool_blocks_used + st.pool_blocks_reserved, 0u);
}

// A streamed request hears first that it was admitted, with its prompt counts, before any token
// (the HTTP layer starts its stream on it); a non-streamed one does not.
TEST_F(EngineTest, AStreamedRequestStartsAtAdmissionWithItsPromptCounts) {
  GenerateRequest r = UserSays("Tell me about the sea.", 4);
  r.stream = true;
  Output o = Run(r);
  ASSERT_TRUE(o.error.ok()) << o.error.ToString();
  ASSERT_TRUE(o.started.has_value());
  EXPECT_EQ(o.started->prompt_tokens, o.done.prompt_tokens);
  EXPECT_EQ(o.started->cached_tokens, o.done.cached_tokens);
  EXPECT_GT(o.done.completion_tokens, 0);
  // The same turn again: its prompt is resident, and the start says so.
  Output again = Run(r);
  ASSERT_TRUE(again.started.has_value());
  EXPECT_GT(again.started->cached_tokens, 0);
  EXPECT_EQ(again.started->cached_tokens, again.done.cached_tokens);
  r.stream = false;
  EXPECT_FALSE(Run(r).started.has_value());
}

// A prefill (a chat that ends with an assistant message, continue_final): the prompt ends with
// the prefill's text, not with an end of turn and a new assistant header.
TEST_F(EngineTest, AFinalAssistantMessageIsContinuedNotClosed) {
  auto count = [&](std::vector<common_chat_msg> msgs, bool continue_final) {
    GenerateRequest r;
    r.messages = std::move(msgs);
    r.continue_final = continue_final;
    r.count_only = true;
    Output o = Run(std::move(r));
    EXPECT_TRUE(o.error.ok()) << o.error.ToString();
    return o.done.prompt_tokens;
  };
  const int32_t asked = count({Msg("user", "Tell me about the sea.")}, false);
  const int32_t continued = count({Msg("user", "Tell me about the sea."), Msg("assistant", "Sure")}, true);
  const int32_t closed = count({Msg("user", "Tell me about the sea."), Msg("assistant", "Sure")}, false);
  EXPECT_EQ(continued - asked, 1) << "only the prefill's own token (\"Sure\") follows the assistant header";
  EXPECT_GT(closed, continued + 2) << "a closed message adds an end of turn and a new header";
  GenerateRequest r;
  r.messages = {Msg("user", "Tell me about the sea."), Msg("assistant", "Sure")};
  r.continue_final = true;
  r.max_tokens = 4;
  Output o = Run(std::move(r));
  ASSERT_TRUE(o.error.ok()) << o.error.ToString();
  EXPECT_EQ(o.done.prompt_tokens, continued);
  EXPECT_GT(o.done.completion_tokens, 0);
}

TEST_F(EngineTest, NextTurnReusesTheResidentConversation) {
  auto turn1 = Chat({Msg("system", "You are a pirate."), Msg("user", Words(40, "ahoy"))}, 16);
  Output a = Run(turn1);
  ASSERT_TRUE(a.error.ok());
  auto messages = turn1.messages;
  messages.push_back(Msg("assistant", a.text));
  messages.push_back(Msg("user", "And then?"));
  Output b = Run(Chat(messages, 16));
  ASSERT_TRUE(b.error.ok());
  // Everything up to the first assistant answer is reused (its re-tokenization may differ).
  EXPECT_GE(b.done.cached_tokens, a.done.prompt_tokens);
  EXPECT_LT(b.done.cached_tokens, b.done.prompt_tokens);
}

TEST_F(EngineTest, AgentsWithTheSameSystemPromptShareItsBlocks) {
  const std::string system = Words(120, "rules");
  Output a = Run(Chat({Msg("system", system), Msg("user", "I am agent A")}, 4));
  Output b = Run(Chat({Msg("system", system), Msg("user", "I am agent B")}, 4));
  ASSERT_TRUE(a.error.ok() && b.error.ok());
  EXPECT_EQ(a.done.cached_tokens, 0);
  // Everything before "B": the template, the system prompt, "I am agent" (not only whole 16-token
  // blocks). After it: " B", <|eot_id|>, <|start_header_id|>, "assistant", <|end_header_id|>, "\n\n".
  EXPECT_EQ(b.done.prompt_tokens, a.done.prompt_tokens);
  EXPECT_EQ(b.done.cached_tokens, b.done.prompt_tokens - 6);
  EXPECT_NE(b.done.cached_tokens % 16, 0);  // so that this test tells the two apart
  // A's conversation left the pool when B was admitted (idle_tokens 0), after B took the shared
  // blocks: B alone is resident (stats are published after the step that finished b).
  for (int i = 0; i < 100 && (engine_->stats().idle_trims != 1u || engine_->stats().idle_resident != 1u); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(engine_->stats().idle_trims, 1u);
  EXPECT_EQ(engine_->stats().idle_resident, 1u);
}

// Each prompt alone (one after another, in a fresh engine), then all at once in another fresh
// engine: the two runs' outputs, in prompt order.
std::pair<std::vector<Output>, std::vector<Output>> AloneThenTogether(const EngineOptions& o,
                                                                      const std::vector<std::string>& prompts,
                                                                      int32_t max_tokens) {
  std::vector<Output> alone, together;
  {
    auto solo = StartEngine(o);
    if (!solo) return {};
    for (const auto& p : prompts) alone.push_back(Collect(solo->Submit(UserSays(p, max_tokens))));
  }
  auto engine = StartEngine(o);
  if (!engine) return {};
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (const auto& p : prompts) handles.push_back(engine->Submit(UserSays(p, max_tokens)));
  for (auto& h : handles) together.push_back(Collect(h));
  return {std::move(alone), std::move(together)};
}

// Exactness (deterministic mode, --deterministic). llama.cpp's CPU backend computes each token's
// row independently of the others in the batch as long as every step uses the same kernels: the
// engine pads one-token batches and one-output steps and keeps steps below flash attention's
// tiled size (Engine::Impl::Step, Load). Greedy output is then identical alone, batched, and
// resumed from a resident prefix in these tests. Not a guarantee for long runs: see
// docs/architecture.md, "Exactness".
// Flash attention sums a sequence's cells in cell order, so exactness also needs a request's cells
// in position order: no cells freed and refilled while it runs. Here the pool is large enough and
// finished sequences stay resident (--idle-tokens -1). With the default idle eviction, 2 of these
// 16 answers of 200 tokens (and the logits of 12) part from their alone runs, from the step where
// the first request finishes; without deterministic mode, 4 of 16 part (checked 2026-11-28).
EngineOptions NoCellReuse() {
  EngineOptions o = TinyOptions(true);
  o.pool_tokens = 16384;
  o.idle_tokens = -1;
  return o;
}

TEST(EngineExactnessTest, BatchedOutputEqualsAloneOutput) {
  // 16 requests on 9 parallel sequences: batches of every size, prefill chunks split and shared,
  // sequences joining and leaving mid-way.
  std::vector<std::string> prompts;
  for (int i = 0; i < 16; ++i) prompts.push_back("Agent number " + std::to_string(i) + " " + Words(i * 7, "task"));
  const auto [alone, together] = AloneThenTogether(NoCellReuse(), prompts, 200);
  ASSERT_EQ(alone.size(), prompts.size());
  ASSERT_EQ(together.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(alone[i].error.ok()) << alone[i].error.ToString();
    ASSERT_TRUE(together[i].error.ok()) << together[i].error.ToString();
    EXPECT_EQ(together[i].text, alone[i].text) << "prompt " << i;
  }
}

// The mechanism, bit for bit: every sampled position's logits are identical whether a request
// decodes alone or in batches of up to 9 with shared prefill chunks. Fails (checked 2026-11-28)
// without the padding (the default mode: position 0 already differs), with a single output row
// left unpadded, and with steps of 64 tokens or more.
TEST(EngineExactnessTest, PaddedStepsGiveBitIdenticalLogitsAloneAndBatched) {
  EngineOptions o = TinyOptions(true);
  o.step_tokens = 256;  // lowered to 63 by deterministic mode (flash attention's tiled kernel)
  o.digest_logits = true;
  std::vector<std::string> prompts;
  for (int i = 0; i < 9; ++i) prompts.push_back(std::to_string(i * 37) + " " + Words(3 + i * 5, "item"));
  const auto [alone, together] = AloneThenTogether(o, prompts, 12);
  ASSERT_EQ(alone.size(), prompts.size());
  ASSERT_EQ(together.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(alone[i].error.ok()) << alone[i].error.ToString();
    ASSERT_TRUE(together[i].error.ok()) << together[i].error.ToString();
    const std::vector<uint64_t>& a = alone[i].done.logits_digests;
    const std::vector<uint64_t>& b = together[i].done.logits_digests;
    ASSERT_EQ(b.size(), a.size()) << "prompt " << i;
    ASSERT_FALSE(a.empty());
    for (size_t k = 0; k < a.size(); ++k) EXPECT_EQ(b[k], a[k]) << "prompt " << i << ", sampled position " << k;
  }
}

TEST(EngineExactnessTest, ResumedOutputEqualsColdOutput) {
  auto engine = StartEngine(TinyOptions(true));
  ASSERT_NE(engine, nullptr);
  auto turn1 = Chat({Msg("system", Words(50, "policy")), Msg("user", "first question")}, 20);
  Output a = Collect(engine->Submit(turn1));
  auto messages = turn1.messages;
  messages.push_back(Msg("assistant", a.text));
  messages.push_back(Msg("user", "second question"));
  Output resumed = Collect(engine->Submit(Chat(messages, 20)));
  ASSERT_GT(resumed.done.cached_tokens, 0);
  auto cold_engine = StartEngine(TinyOptions(true));
  Output cold = Collect(cold_engine->Submit(Chat(messages, 20)));
  EXPECT_EQ(cold.done.cached_tokens, 0);
  EXPECT_EQ(resumed.text, cold.text);
}

TEST(EngineStartTest, MissingModelFailsWithNotFound) {
  EngineOptions o;
  o.model_path = "/nonexistent.gguf";
  auto e = Engine::Start(o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Status::Code::kNotFound);
}

TEST(EngineStartTest, BadCacheTypeIsRejected) {
  EngineOptions o = TinyOptions();
  o.cache_type = "f7";
  auto e = Engine::Start(o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Status::Code::kInvalidArgument);
}

TEST(EngineStartTest, QuantizedCacheTypesWork) {
  for (const char* type : {"q8_0", "q4_0"}) {
    EngineOptions o = TinyOptions();
    o.cache_type = type;
    auto e = StartEngine(o);
    ASSERT_NE(e, nullptr) << type;
    Output out = Collect(e->Submit(UserSays("hello", 8)));
    EXPECT_TRUE(out.error.ok()) << type << ": " << out.error.ToString();
    EXPECT_GT(out.done.completion_tokens, 0);
    EXPECT_LT(e->info().pool_bytes, TinyOptions().pool_tokens * 256u) << type;  // smaller than f16
  }
}

TEST(EngineBackpressureTest, FullQueueIsOverloadedAtOnce) {
  EngineOptions o = TinyOptions();
  o.parallel = 1;
  o.resident_seqs = 1;
  o.max_queue = 2;
  auto e = StartEngine(o);
  auto first = e->Submit(UserSays("long one", 300));
  for (int i = 0; i < 500 && e->stats().running < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(e->stats().running, 1u);
  auto second = e->Submit(UserSays("second", 4));
  auto third = e->Submit(UserSays("third", 4));
  auto fourth = e->Submit(UserSays("fourth", 4));  // one running, the queue holds 2: rejected
  Output f = Collect(fourth);
  EXPECT_EQ(f.error.code(), Status::Code::kOverloaded);
  first->Cancel();
  EXPECT_TRUE(Collect(first).error.ok());
  EXPECT_TRUE(Collect(second).error.ok());
  EXPECT_TRUE(Collect(third).error.ok());
}

TEST(EngineBackpressureTest, ZeroQueueStillRunsWhatFitsAndRejectsTheRest) {
  EngineOptions o = TinyOptions();
  o.parallel = 1;
  o.resident_seqs = 1;
  o.max_queue = 0;
  // The first request must still run when the second arrives, however long the test thread waits
  // to be scheduled on a loaded machine: 4000 tokens (300 could finish first; cancelled below).
  o.ctx_size = 4096;
  o.pool_tokens = 8192;
  auto e = StartEngine(o);
  // Idle server: the request starts at once, max_queue 0 does not reject it.
  Output alone = Collect(e->Submit(UserSays("alone", 4)));
  EXPECT_TRUE(alone.error.ok()) << alone.error.ToString();
  auto first = e->Submit(UserSays("long one", 4000));
  for (int i = 0; i < 500 && e->stats().running < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Output second = Collect(e->Submit(UserSays("second", 4)));
  EXPECT_EQ(second.error.code(), Status::Code::kOverloaded);
  first->Cancel();
  Collect(first);
}

TEST(EngineBackpressureTest, RequestsWaitingTooLongTimeOut) {
  EngineOptions o = TinyOptions();
  o.parallel = 1;
  o.resident_seqs = 1;
  o.queue_timeout_ms = 100;
  // The first request must outlast the second's 100 ms in the queue on any machine: 4000 tokens
  // (it is cancelled once the second has timed out).
  o.ctx_size = 4096;
  o.pool_tokens = 8192;
  auto e = StartEngine(o);
  auto first = e->Submit(UserSays("long one", 4000));
  auto second = e->Submit(UserSays("second", 4));
  Output s = Collect(second);
  EXPECT_EQ(s.error.code(), Status::Code::kOverloaded);
  EXPECT_NE(s.error.message().find("timed out"), std::string::npos);
  first->Cancel();
  Collect(first);
}

TEST(EngineEvictionTest, LeastRecentlyUsedIdleConversationIsEvicted) {
  EngineOptions o = TinyOptions();
  o.parallel = 2;
  o.resident_seqs = 2;
  o.idle_tokens = -1;  // idle conversations stay until their slot is needed
  auto e = StartEngine(o);
  auto ask = [&](const std::string& who) { return Collect(e->Submit(UserSays(who + " " + Words(30, who), 4))); };
  // Every prompt starts with the same ~30 template tokens (system header with dates, user turn
  // header); only those can come from another conversation. A resident conversation gives 60+.
  const int32_t header_only = 40;
  ask("alpha");
  ask("beta");
  EXPECT_GT(ask("beta").done.cached_tokens, 60);  // resident
  ask("gamma");                                   // needs a slot: alpha's conversation (least recently used) goes
  EXPECT_GT(ask("beta").done.cached_resident, 60);
  Output alpha = ask("alpha");
  EXPECT_LE(alpha.done.cached_resident, header_only);  // no longer in the pool...
  EXPECT_GT(alpha.done.cached_ram, 40);                // ...but restored from the RAM tier
}

TEST(EngineEvictionTest, ByDefaultIdleConversationsLeaveThePoolWhenAnotherRequestIsAdmitted) {
  auto e = StartEngine(TinyOptions());  // idle_tokens 0
  auto ask = [&](const std::string& who) { return Collect(e->Submit(UserSays(who + " " + Words(30, who), 4))); };
  // The engine publishes its stats after each step: they may lag an answer by a moment.
  auto stats_when = [&](const std::function<bool(const EngineStats&)>& done) {
    EngineStats st = e->stats();
    for (int i = 0; i < 100 && !done(st); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      st = e->stats();
    }
    return st;
  };
  const Output alpha1 = ask("alpha");
  // stays while nothing else runs
  EXPECT_GT(stats_when([](const EngineStats& st) { return st.idle_blocks > 2; }).idle_blocks, 2u);
  EXPECT_GT(ask("alpha").done.cached_resident, 60);  // and the same conversation continues in place
  ask("beta");
  EXPECT_EQ(stats_when([](const EngineStats& st) { return st.idle_trims > 0; }).idle_trims, 1u);
  const Output alpha2 = ask("alpha");
  EXPECT_GT(alpha2.done.cached_ram, 40);  // from the RAM tier
  EXPECT_EQ(alpha2.text, alpha1.text);
}

}  // namespace
}  // namespace kvault

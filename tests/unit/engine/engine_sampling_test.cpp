// The sampling fields through the real engine on the tiny model: logprobs (every generated token
// once, in order, with the text it produced), logit_bias, presence and frequency penalties, and
// the server's default temperature. Each assertion fails if the field were ignored.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "engine/engine.h"
#include "llama.h"
#include "test_env.h"
#include "unit/engine/engine_test_util.h"

namespace kvault {
namespace {

using testing::Collect;
using testing::Msg;
using testing::Output;

// Every logprob entry of a run, in order, and each text event next to its entries.
struct Traced {
  Output out;
  std::vector<TokenLogprob> logprobs;
  bool entries_never_ahead_of_text = true;  // streamed: the entries so far spell a prefix of the text so far
};

class EngineSamplingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.model_path = testing::TinyModel();
    o.ctx_size = 512;
    o.pool_tokens = 2048;
    o.block_tokens = 16;
    o.n_threads = 1;
    o.default_temperature = 0.0f;  // greedy unless a test asks otherwise
    auto e = Engine::Start(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e.value()).release();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    vocab_model_ = llama_model_load_from_file(testing::TinyModel().c_str(), mp);
    ASSERT_NE(vocab_model_, nullptr);
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
    llama_model_free(vocab_model_);
    vocab_model_ = nullptr;
  }

  static GenerateRequest Ask(const std::string& text, int32_t max_tokens) {
    GenerateRequest r;
    r.messages = {Msg("user", text)};
    r.max_tokens = max_tokens;
    return r;
  }

  static Traced Run(GenerateRequest r) {
    Traced t;
    auto h = engine_->Submit(std::move(r));
    std::string text, spelled;
    while (auto ev = h->events().Pop()) {
      if (ev->kind == GenerationEvent::Kind::kText) {
        text += ev->text;
        t.out.text += ev->text;
        for (auto& e : ev->logprobs) {
          spelled += e.token;
          t.logprobs.push_back(std::move(e));
        }
        if (text.rfind(spelled, 0) != 0) t.entries_never_ahead_of_text = false;
      } else if (ev->kind == GenerationEvent::Kind::kDone) {
        t.out.done = *ev;
      } else if (ev->kind == GenerationEvent::Kind::kError) {
        t.out.error = ev->status;
      }
    }
    return t;
  }

  static std::string Spelled(const std::vector<TokenLogprob>& v) {
    std::string s;
    for (const auto& e : v) s += e.token;
    return s;
  }

  static const llama_vocab* vocab() { return llama_model_get_vocab(vocab_model_); }
  static std::string Piece(int32_t id) { return common_token_to_piece(vocab(), id, false); }
  // The one token that spells `text`, or -1.
  static int32_t TokenOf(const std::string& text) {
    auto ids = common_tokenize(vocab(), text, false, false);
    return ids.size() == 1 ? ids[0] : -1;
  }

  static inline Engine* engine_ = nullptr;
  static inline llama_model* vocab_model_ = nullptr;
};

TEST_F(EngineSamplingTest, LogprobsCoverEveryTokenWithItsTextAndAlternatives) {
  for (bool stream : {false, true}) {
    GenerateRequest r = Ask("Tell me about the sea.", 24);
    r.top_logprobs = 4;
    r.stream = stream;
    Traced t = Run(std::move(r));
    ASSERT_TRUE(t.out.error.ok()) << t.out.error.ToString();
    ASSERT_EQ(static_cast<int32_t>(t.logprobs.size()), t.out.done.completion_tokens) << "stream " << stream;
    EXPECT_EQ(Spelled(t.logprobs), t.out.text);
    EXPECT_TRUE(t.entries_never_ahead_of_text);
    for (const auto& e : t.logprobs) {
      ASSERT_EQ(e.top.size(), 4u);
      EXPECT_LE(e.logprob, 0.0f);
      // Greedy: the sampled token is the most likely one of the model's distribution.
      EXPECT_EQ(e.top[0].token, e.token);
      EXPECT_FLOAT_EQ(e.top[0].logprob, e.logprob);
      for (size_t i = 1; i < e.top.size(); ++i) EXPECT_GE(e.top[i - 1].logprob, e.top[i].logprob);
    }
  }
  // top_logprobs 0: each token's own logprob only.
  GenerateRequest r = Ask("Tell me about the sea.", 8);
  r.top_logprobs = 0;
  Traced t = Run(std::move(r));
  ASSERT_EQ(static_cast<int32_t>(t.logprobs.size()), t.out.done.completion_tokens);
  EXPECT_TRUE(t.logprobs[0].top.empty());
}

TEST_F(EngineSamplingTest, NoLogprobsUnlessAsked) {
  GenerateRequest r = Ask("Tell me about the sea.", 8);
  r.stream = true;
  Traced t = Run(std::move(r));
  ASSERT_GT(t.out.done.completion_tokens, 0);
  EXPECT_TRUE(t.logprobs.empty());
}

TEST_F(EngineSamplingTest, LogprobsStopWhereAStopSequenceCutsTheText) {
  GenerateRequest whole = Ask("Tell me a story about dragons", 40);
  whole.top_logprobs = 1;
  Traced full = Run(std::move(whole));
  ASSERT_GT(full.out.text.size(), 20u);
  const std::string stop = full.out.text.substr(full.out.text.size() / 2, 3);
  GenerateRequest r = Ask("Tell me a story about dragons", 40);
  r.stop = {stop};
  r.top_logprobs = 1;
  r.stream = true;
  Traced t = Run(std::move(r));
  ASSERT_EQ(t.out.done.finish, FinishReason::kStopSequence);
  const std::string spelled = Spelled(t.logprobs);
  // The tokens that produced the text, up to the one the stop sequence starts in; no later ones.
  ASSERT_FALSE(t.logprobs.empty());
  EXPECT_EQ(spelled.rfind(t.out.text, 0), 0u) << spelled;
  EXPECT_LT(spelled.size() - t.logprobs.back().token.size(), t.out.text.size()) << "the last one starts before the cut";
  EXPECT_LT(t.logprobs.size(), full.logprobs.size());
}

TEST_F(EngineSamplingTest, LogitBiasForcesOrBansATokenUnderGreedy) {
  const int32_t the = TokenOf(" the");
  ASSERT_GE(the, 0);
  GenerateRequest forced = Ask("Tell me about the sea.", 6);
  forced.sampling.logit_bias = {{the, 100.0f}};
  Output f = Run(std::move(forced)).out;
  ASSERT_TRUE(f.error.ok()) << f.error.ToString();
  EXPECT_EQ(f.text, " the the the the the the");

  GenerateRequest greedy = Ask("Tell me about the sea.", 1);
  greedy.top_logprobs = 0;
  Traced g = Run(std::move(greedy));
  ASSERT_EQ(g.logprobs.size(), 1u);
  const int32_t first = TokenOf(g.logprobs[0].token);
  ASSERT_GE(first, 0) << "the greedy first token's text is one token: " << g.logprobs[0].token;
  GenerateRequest banned = Ask("Tell me about the sea.", 1);
  banned.sampling.logit_bias = {{first, -100.0f}};
  banned.top_logprobs = 0;
  Traced b = Run(std::move(banned));
  ASSERT_EQ(b.logprobs.size(), 1u);
  EXPECT_NE(b.logprobs[0].token, g.logprobs[0].token);

  GenerateRequest outside = Ask("x", 1);
  outside.sampling.logit_bias = {{1 << 30, 1.0f}};
  Output o = Run(std::move(outside)).out;
  EXPECT_EQ(o.error.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(o.error.message().find("logit_bias"), std::string::npos);
}

// Two tokens lifted far above the rest, A a little more than B: greedy repeats A. The penalties
// count A's uses and hand the lead to B.
TEST_F(EngineSamplingTest, PenaltiesBreakARepetition) {
  const int32_t a = TokenOf(" the"), b = TokenOf(" sea");
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  auto run = [&](float gap, float presence, float frequency) {
    GenerateRequest r = Ask("Tell me about the sea.", 8);
    r.sampling.logit_bias = {{a, 100.0f}, {b, 100.0f - gap}};
    r.sampling.presence_penalty = presence;
    r.sampling.frequency_penalty = frequency;
    return Run(std::move(r)).out.text;
  };
  const std::string plain = " the the the the the the the the";
  EXPECT_EQ(run(4.0f, 0, 0), plain);
  const std::string freq = run(4.0f, 0, 2.0f);  // A: 100 - 2 × uses; B takes over by the third token
  EXPECT_NE(freq, plain);
  EXPECT_NE(freq.find(" sea"), std::string::npos) << freq;
  EXPECT_EQ(run(1.0f, 0, 0), plain);
  const std::string presence = run(1.0f, 2.0f, 0);  // A: 98 once used, below B's 99
  EXPECT_NE(presence, plain);
  EXPECT_EQ(presence.rfind(" the sea", 0), 0u) << presence;
}

TEST_F(EngineSamplingTest, ARequestWithoutTemperatureGetsTheServerDefault) {
  // This engine's default is 0: without a temperature the answer is the greedy one.
  GenerateRequest greedy = Ask("Pick some words at random", 16);
  greedy.sampling.temperature = 0.0f;
  const std::string greedy_text = Run(std::move(greedy)).out.text;
  EXPECT_EQ(Run(Ask("Pick some words at random", 16)).out.text, greedy_text);
  // An engine whose default is 1 (the server's, as in both APIs) samples: two seeds, two answers
  // (the tiny model's distribution is nearly flat), and an explicit 0 is still greedy.
  EngineOptions o;
  o.model_path = testing::TinyModel();
  o.ctx_size = 512;
  o.pool_tokens = 1024;
  o.n_threads = 1;
  ASSERT_EQ(o.default_temperature, 1.0f);
  auto sampling = Engine::Start(o);
  ASSERT_TRUE(sampling.ok()) << sampling.status().ToString();
  std::vector<std::string> sampled;
  for (uint32_t seed : {1u, 2u}) {
    GenerateRequest r = Ask("Pick some words at random", 16);
    r.sampling.seed = seed;
    sampled.push_back(Collect((*sampling)->Submit(std::move(r))).text);
  }
  EXPECT_NE(sampled[0], sampled[1]);
  GenerateRequest zero = Ask("Pick some words at random", 16);
  zero.sampling.temperature = 0.0f;
  EXPECT_EQ(Collect((*sampling)->Submit(std::move(zero))).text, greedy_text);
}

}  // namespace
}  // namespace kvault

#include "engine/engine.h"

#include <gtest/gtest.h>

#include "test_env.h"

namespace kvault {
namespace {

struct Output {
  std::string text;
  GenerationEvent done;
  Status error;
  int text_events = 0;
};

Output Collect(const std::shared_ptr<RequestHandle>& h) {
  Output out;
  while (auto ev = h->events().Pop()) {
    if (ev->kind == GenerationEvent::Kind::kText) {
      out.text += ev->text;
      ++out.text_events;
    } else if (ev->kind == GenerationEvent::Kind::kDone) {
      out.done = *ev;
    } else {
      out.error = ev->status;
    }
  }
  return out;
}

GenerateRequest UserSays(const std::string& text, int32_t max_tokens) {
  GenerateRequest r;
  common_chat_msg m;
  m.role = "user";
  m.content = text;
  r.messages.push_back(m);
  r.max_tokens = max_tokens;
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.model_path = testing::TinyModel();
    o.n_ctx = 256;
    o.n_batch = 32;  // several prefill chunks for longer prompts
    auto e = Engine::Start(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e.value()).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  static Engine* engine_;
};
Engine* EngineTest::engine_ = nullptr;

TEST_F(EngineTest, ReportsModelInfo) {
  EXPECT_EQ(engine_->info().id, "tiny");
  EXPECT_EQ(engine_->info().n_ctx, 256u);
  EXPECT_GT(engine_->info().n_params, 0u);
}

TEST_F(EngineTest, GreedyIsDeterministicAndHonoursMaxTokens) {
  Output a = Collect(engine_->Submit(UserSays("Tell me about the sea.", 12)));
  Output b = Collect(engine_->Submit(UserSays("Tell me about the sea.", 12)));
  ASSERT_TRUE(a.error.ok()) << a.error.ToString();
  EXPECT_GT(a.done.prompt_tokens, 5);
  EXPECT_LE(a.done.completion_tokens, 12);
  if (a.done.finish == FinishReason::kLength) {
    EXPECT_EQ(a.done.completion_tokens, 12);
  }
  EXPECT_FALSE(a.text.empty());
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.done.completion_tokens, b.done.completion_tokens);
  EXPECT_EQ(a.done.prompt_tokens, b.done.prompt_tokens);
}

TEST_F(EngineTest, DifferentPromptsGiveDifferentOutputs) {
  // Guards the demo model itself: if its output ignored the prompt, every exactness test that
  // compares outputs would pass vacuously.
  Output a = Collect(engine_->Submit(UserSays("hi", 24)));
  Output b = Collect(engine_->Submit(UserSays("Tell me a story about dragons", 24)));
  EXPECT_NE(a.text, b.text);
}

TEST_F(EngineTest, PreviousRequestDoesNotLeakIntoTheNext) {
  Output first = Collect(engine_->Submit(UserSays("alpha beta gamma", 6)));
  Collect(engine_->Submit(UserSays("something entirely different and longer than before", 6)));
  Output again = Collect(engine_->Submit(UserSays("alpha beta gamma", 6)));
  EXPECT_EQ(first.text, again.text);
}

TEST_F(EngineTest, PromptLongerThanContextIsRejectedClearly) {
  std::string long_text;
  for (int i = 0; i < 400; ++i) long_text += "word ";
  Output o = Collect(engine_->Submit(UserSays(long_text, 4)));
  EXPECT_EQ(o.error.code(), Status::Code::kTooLarge);
  EXPECT_NE(o.error.message().find("256"), std::string::npos) << o.error.message();
  // The engine keeps serving afterwards.
  Output ok = Collect(engine_->Submit(UserSays("hi", 2)));
  EXPECT_TRUE(ok.error.ok());
}

TEST_F(EngineTest, GenerationStopsAtTheEndOfTheContext) {
  std::string text;
  for (int i = 0; i < 150; ++i) text += "word ";
  Output o = Collect(engine_->Submit(UserSays(text, 1000)));
  ASSERT_TRUE(o.error.ok()) << o.error.ToString();
  EXPECT_EQ(o.done.finish, FinishReason::kLength);
  EXPECT_EQ(o.done.prompt_tokens + o.done.completion_tokens, 256);
}

TEST_F(EngineTest, CancelledRequestStopsEarly) {
  auto h = engine_->Submit(UserSays("count to a thousand", 200));
  h->Cancel();
  Output o = Collect(h);
  EXPECT_TRUE(o.error.ok());
  EXPECT_EQ(o.done.finish, FinishReason::kCancelled);
  EXPECT_LT(o.done.completion_tokens, 200);
}

TEST(EngineStartTest, MissingModelFailsWithNotFound) {
  EngineOptions o;
  o.model_path = "/nonexistent.gguf";
  auto e = Engine::Start(o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace kvault

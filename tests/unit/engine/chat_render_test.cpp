#include "engine/chat_render.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "api/chat_output.h"
#include "chat.h"
#include "core/paths.h"
#include "llama.h"
#include "model/demo_model.h"
#include "test_env.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

common_chat_msg Msg(const std::string& role, const std::string& content) {
  common_chat_msg m;
  m.role = role;
  m.content = content;
  return m;
}

// The tiny shape with the Qwen3 chat template and tokenizer (what `make-demo --template qwen3`
// writes), loaded for its vocabulary and template only.
class ChatRenderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto spec = DemoModelSpecFor("tiny");
    spec->chat_template = "qwen3";
    auto vocab = FindSharedFile(DemoVocabFile("qwen3"));
    ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
    // One directory per process: CTest runs each test of the suite in its own process, in parallel.
    dir_ = testing::ScratchDir("chat-render-" + std::to_string(getpid()));
    const fs::path path = dir_ / "tiny-qwen3.gguf";
    ASSERT_TRUE(WriteDemoModel(*spec, *vocab, path, 1).ok());
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    model_ = llama_model_load_from_file(path.c_str(), mp);
    ASSERT_NE(model_, nullptr);
  }
  static void TearDownTestSuite() {
    llama_model_free(model_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // The renderer over the model's own template, or over `override_template`.
  ChatRenderer Renderer(const std::string& override_template = "") {
    templates_ = common_chat_templates_init(model_, override_template);
    return ChatRenderer(templates_.get(), llama_model_get_vocab(model_));
  }

  static llama_model* model_;
  static fs::path dir_;
  common_chat_templates_ptr templates_;
};
llama_model* ChatRenderTest::model_ = nullptr;
fs::path ChatRenderTest::dir_;

TEST_F(ChatRenderTest, ThinkingSwitchDrivesTheQwen3Template) {
  ChatRenderer r = Renderer();
  EXPECT_TRUE(r.supports_thinking());
  GenerateRequest g;
  g.messages = {Msg("user", "hi")};
  g.enable_thinking = false;
  auto off = r.Render(g);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_NE(off->prompt.find("<think>\n\n</think>"), std::string::npos) << off->prompt;
  EXPECT_FALSE(off->syntax.parse_reasoning);
  g.enable_thinking = true;
  auto on = r.Render(g);
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(on->prompt.find("</think>"), std::string::npos) << on->prompt;
  EXPECT_TRUE(on->syntax.parse_reasoning);
  // Unset: the template's own default, and the text left as the model writes it.
  g.enable_thinking.reset();
  auto unset = r.Render(g);
  ASSERT_TRUE(unset.ok());
  EXPECT_FALSE(unset->syntax.parse_reasoning);
}

TEST_F(ChatRenderTest, ReasoningIsParsedOutOfTheAnswerWhenThinkingIsOn) {
  GenerateRequest g;
  g.messages = {Msg("user", "hi")};
  g.enable_thinking = true;
  auto on = Renderer().Render(g);
  ASSERT_TRUE(on.ok());
  ChatOutput out(on->syntax, [] { return std::string("id"); });
  std::string thinking, text;
  auto take = [&](const std::vector<OutputDelta>& ds) {
    for (const auto& d : ds) (d.kind == OutputDelta::Kind::kThinking ? thinking : text) += d.text;
  };
  take(out.Append("<think>\nfirst I"));
  take(out.Append(" weigh it</think>\n\nThe "));
  take(out.Append("answer."));
  take(out.Finish());
  EXPECT_EQ(thinking, "first I weigh it");
  EXPECT_EQ(text, "The answer.");
  EXPECT_EQ(out.reasoning(), "first I weigh it");
}

TEST_F(ChatRenderTest, AThinkingBudgetFindsTheTemplatesTags) {
  GenerateRequest g;
  g.messages = {Msg("user", "hi")};
  g.enable_thinking = true;
  g.thinking_budget = 16;
  auto on = Renderer().Render(g);
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(on->reasoning.budget, 16);
  EXPECT_FALSE(on->reasoning.start.empty());
  EXPECT_FALSE(on->reasoning.forced.empty());
}

TEST_F(ChatRenderTest, LaterSystemMessagesAreSystemTurnsWhereTheTemplateRendersThem) {
  GenerateRequest g;
  g.messages = {Msg("system", "You are terse."), Msg("user", "hi"), Msg("system", "ENV BLOCK")};
  auto r = Renderer().Render(g);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->folded_system);
  EXPECT_NE(r->prompt.find("<|im_start|>system\nENV BLOCK<|im_end|>"), std::string::npos) << r->prompt;
}

TEST_F(ChatRenderTest, LaterSystemMessagesAreFoldedWhereTheTemplateRejectsOrDropsThem) {
  GenerateRequest g;
  g.messages = {Msg("system", "You are terse."), Msg("user", "hi"), Msg("system", "ENV BLOCK")};
  const std::string rejects =
      "{% for m in messages %}{% if m.role == 'system' and not loop.first %}{{ raise_exception('roles') }}"
      "{% endif %}[{{ m.role }}] {{ m.content }}\n{% endfor %}";
  auto folded = Renderer(rejects).Render(g);
  ASSERT_TRUE(folded.ok()) << folded.status().ToString();
  EXPECT_TRUE(folded->folded_system);
  EXPECT_NE(folded->prompt.find("[user] hi\n\nENV BLOCK\n"), std::string::npos) << folded->prompt;
  const std::string drops =
      "{% for m in messages %}{% if m.role != 'system' or loop.first %}[{{ m.role }}] {{ m.content }}\n"
      "{% endif %}{% endfor %}";
  auto kept = Renderer(drops).Render(g);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept->folded_system);
  EXPECT_NE(kept->prompt.find("ENV BLOCK"), std::string::npos) << kept->prompt;
}

TEST(ChatRenderFoldTest, FoldsIntoThePreviousUserTurnElseTheNextElseANewOne) {
  auto fold = [](std::vector<common_chat_msg> in) { return ChatRenderer::FoldSystemMessages(in); };
  auto a = fold({Msg("system", "S"), Msg("user", "u"), Msg("system", "e")});
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[1].content, "u\n\ne");
  auto b = fold({Msg("user", "u"), Msg("assistant", "a"), Msg("system", "e"), Msg("user", "v")});
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[2].content, "e\n\nv");
  auto c = fold({Msg("user", "u"), Msg("assistant", "a"), Msg("system", "e")});
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[2].role, "user");
  EXPECT_EQ(c[2].content, "e");
  // The same history folds the same way when it grows (the prefix stays cacheable).
  auto grown =
      fold({Msg("system", "S"), Msg("user", "u"), Msg("system", "e"), Msg("assistant", "a"), Msg("user", "w")});
  EXPECT_EQ(grown[1].content, a[1].content);
  // After an assistant turn, followed by another assistant turn: a user turn of its own, as when
  // it was last (the earlier rendering stays a prefix, and roles still alternate).
  auto d = fold({Msg("user", "u"), Msg("assistant", "a"), Msg("system", "e"), Msg("assistant", "a2"), Msg("user", "u2")});
  ASSERT_EQ(d.size(), 5u);
  EXPECT_EQ(d[2].role, "user");
  EXPECT_EQ(d[2].content, "e");
  EXPECT_EQ(d[3].role, "assistant");
  EXPECT_EQ(d[4].content, "u2");
}

}  // namespace
}  // namespace kvault

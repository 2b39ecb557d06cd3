// ChatOutput against the real engine and the tiny model's chat template (Llama 3.1): the
// tool-call grammar, the template's parser and the incremental deltas together.
#include "api/chat_output.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "test_env.h"
#include "unit/engine/engine_test_util.h"

namespace kvault {
namespace {

using json = nlohmann::json;
using testing::Msg;

const char* kWeatherSchema =
    R"({"type":"object","properties":{"city":{"type":"string","enum":["Paris","London","Tokyo"]}},"required":["city"]})";

class ChatOutputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.model_path = testing::TinyModel();
    o.default_temperature = 0.0f;  // greedy: these tests compare outputs
    o.ctx_size = 1024;
    o.pool_tokens = 4096;
    o.block_tokens = 16;
    auto e = Engine::Start(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e.value()).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }

  struct Streamed {
    std::string text;                 // kText deltas
    std::vector<OutputDelta> deltas;  // all of them
    std::unique_ptr<ChatOutput> out;
    GenerationEvent done;
  };

  // Runs `req` streamed and feeds every piece through a ChatOutput, as the HTTP layer does.
  static Streamed Run(GenerateRequest req) {
    req.stream = true;
    auto h = engine_->Submit(std::move(req));
    Streamed s;
    int n = 0;
    while (auto ev = h->events().Pop()) {
      if (!s.out) s.out = std::make_unique<ChatOutput>(h->syntax(), [&n] { return "call_" + std::to_string(n++); });
      std::vector<OutputDelta> d;
      if (ev->kind == GenerationEvent::Kind::kText) d = s.out->Append(ev->text);
      if (ev->kind == GenerationEvent::Kind::kDone) {
        d = s.out->Finish();
        s.done = *ev;
      }
      EXPECT_NE(ev->kind, GenerationEvent::Kind::kError) << ev->status.ToString();
      for (auto& x : d) {
        if (x.kind == OutputDelta::Kind::kText) s.text += x.text;
        s.deltas.push_back(std::move(x));
      }
    }
    return s;
  }

  static inline Engine* engine_ = nullptr;
};

TEST_F(ChatOutputTest, WithoutToolsTheTextIsContentUnchanged) {
  GenerateRequest r;
  r.messages = {Msg("user", "hello there")};
  r.max_tokens = 12;
  Streamed s = Run(std::move(r));
  EXPECT_EQ(s.text, s.out->raw_text());
  EXPECT_EQ(s.out->content(), s.out->raw_text());
  EXPECT_TRUE(s.out->tool_calls().empty());
  EXPECT_FALSE(s.text.empty());
}

TEST_F(ChatOutputTest, ARequiredToolIsCalledAtOnceAndStreamedInStableDeltas) {
  GenerateRequest r;
  r.messages = {Msg("user", "What is the weather in Paris?")};
  r.tools = {{"get_weather", "Get the weather for a city", kWeatherSchema}};
  r.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
  r.max_tokens = 200;
  Streamed s = Run(std::move(r));
  ASSERT_EQ(s.out->tool_calls().size(), 1u) << s.out->raw_text();
  const ToolCall& call = s.out->tool_calls()[0];
  EXPECT_EQ(call.name, "get_weather");
  EXPECT_EQ(call.id, "call_0");
  const json args = json::parse(call.arguments);
  ASSERT_TRUE(args.contains("city")) << call.arguments;
  EXPECT_TRUE(args["city"] == "Paris" || args["city"] == "London" || args["city"] == "Tokyo") << call.arguments;
  // A required call is the whole answer: no text before it (the grammar's leading text is cut).
  EXPECT_EQ(s.text, "") << s.out->raw_text();
  EXPECT_EQ(s.done.finish, FinishReason::kStop);  // the grammar ended the turn after the call
  // One start with the final name and id, then argument pieces that add up to the arguments.
  ASSERT_FALSE(s.deltas.empty());
  EXPECT_EQ(s.deltas[0].kind, OutputDelta::Kind::kToolStart);
  EXPECT_EQ(s.deltas[0].name, "get_weather");
  std::string args_streamed;
  for (size_t i = 1; i < s.deltas.size(); ++i) {
    EXPECT_EQ(s.deltas[i].kind, OutputDelta::Kind::kToolArgs);
    args_streamed += s.deltas[i].text;
  }
  EXPECT_EQ(args_streamed, call.arguments);
}

TEST_F(ChatOutputTest, ToolChoiceNoneNeverParsesToolCalls) {
  GenerateRequest r;
  r.messages = {Msg("user", "What is the weather in Paris?")};
  r.tools = {{"get_weather", "Get the weather for a city", kWeatherSchema}};
  r.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
  r.max_tokens = 12;
  Streamed s = Run(std::move(r));
  EXPECT_TRUE(s.out->tool_calls().empty());
  EXPECT_EQ(s.text, s.out->raw_text());
}

TEST_F(ChatOutputTest, JsonSchemaResponseFormatConstrainsTheAnswer) {
  GenerateRequest r;
  r.messages = {Msg("user", "Is it sunny?")};
  r.json_schema =
      R"({"type":"object","properties":{"sunny":{"type":"boolean"}},"required":["sunny"],"additionalProperties":false})";
  r.max_tokens = 100;
  Streamed s = Run(std::move(r));
  const json answer = json::parse(s.out->raw_text(), nullptr, false);
  ASSERT_FALSE(answer.is_discarded()) << s.out->raw_text();
  ASSERT_TRUE(answer.is_object());
  EXPECT_TRUE(answer["sunny"].is_boolean()) << s.out->raw_text();
}

TEST_F(ChatOutputTest, CountOnlyGivesThePromptTokensOfTheSameRequest) {
  GenerateRequest a;
  a.messages = {Msg("system", "be brief"), Msg("user", "hello there")};
  GenerateRequest count = a;
  count.count_only = true;
  a.max_tokens = 2;
  auto counted = testing::Collect(engine_->Submit(std::move(count)));
  auto ran = testing::Collect(engine_->Submit(std::move(a)));
  EXPECT_GT(counted.done.prompt_tokens, 5);
  EXPECT_EQ(counted.done.prompt_tokens, ran.done.prompt_tokens);
  EXPECT_EQ(counted.done.completion_tokens, 0);
}

// A model that repeats brackets: its output is not handed to llama.cpp's parser (which recurses
// per level) past the nesting limit; it comes back as text instead of overflowing the stack.
TEST_F(ChatOutputTest, OutputNestedTooDeeplyIsTextNotAStackOverflow) {
  GenerateRequest r;
  r.messages = {Msg("user", "What is the weather in Paris?")};
  r.tools = {{"get_weather", "Get the weather for a city", kWeatherSchema}};
  r.max_tokens = 1;
  auto h = engine_->Submit(std::move(r));
  testing::Collect(h);
  ASSERT_TRUE(h->syntax().parse_tool_calls);
  const std::string deep =
      R"({"name": "get_weather", "parameters": {"city": )" + std::string(200000, '[') + std::string(200000, ']') + "}}";
  ChatOutput out(h->syntax(), [] { return std::string("call_x"); });
  std::string text;
  for (size_t at = 0; at < deep.size(); at += 100000) {
    for (const auto& d : out.Append(deep.substr(at, 100000))) text += d.text;
  }
  for (const auto& d : out.Finish()) text += d.text;
  EXPECT_TRUE(out.tool_calls().empty());
  EXPECT_EQ(out.content(), deep);
  EXPECT_EQ(text, deep);
}

TEST_F(ChatOutputTest, AnUnparseableGrammarIsA400NotACrash) {
  GenerateRequest r;
  r.messages = {Msg("user", "x")};
  r.json_schema = R"({"type":"object","properties":{"a":{"$ref":"#/definitions/missing"}}})";
  r.max_tokens = 4;
  auto out = testing::Collect(engine_->Submit(std::move(r)));
  // Either llama.cpp rejects the schema (400) or it compiles it; never a crash or a hang.
  if (!out.error.ok()) {
    EXPECT_EQ(out.error.code(), Status::Code::kInvalidArgument) << out.error.ToString();
  }
}

}  // namespace
}  // namespace kvault

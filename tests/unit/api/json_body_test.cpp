// Nesting limits on JSON from clients and models (json_body.h): request bodies nested past the
// limit are a 400 in every API parser, never a stack overflow.
#include "api/json_body.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "api/anthropic_messages.h"
#include "api/openai_chat.h"
#include "api/openai_completions.h"

namespace kvault {
namespace {

std::string Nested(int depth, const std::string& inner = "1") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

TEST(JsonNestingDepthTest, CountsArraysAndObjects) {
  EXPECT_EQ(JsonNestingDepth("1"), 0);
  EXPECT_EQ(JsonNestingDepth("[]"), 1);
  EXPECT_EQ(JsonNestingDepth(R"({"a":[{"b":[]}],"c":{}})"), 4);
  EXPECT_EQ(JsonNestingDepth("[[]][[[]]]"), 3);  // the deepest point, not the sum
  EXPECT_EQ(JsonNestingDepth(Nested(1000)), 1000);
}

TEST(JsonNestingDepthTest, BracketsInStringsDoNotCountUnlessAsked) {
  EXPECT_EQ(JsonNestingDepth(R"(["[[[{{{"])"), 1);
  EXPECT_EQ(JsonNestingDepth(R"(["a\"[[[", "\\", []])"), 2);  // escaped quote, escaped backslash
  EXPECT_EQ(JsonNestingDepth(R"(["[[[{{{"])", /*count_in_strings=*/true), 7);
  // Model output: a stray quote in prose must not hide the brackets after it.
  EXPECT_EQ(JsonNestingDepth("it's \"quoted " + Nested(300), /*count_in_strings=*/true), 300);
}

TEST(ParseJsonBodyTest, AcceptsUpToTheLimitAndRejectsBeyond) {
  auto ok = ParseJsonBody(Nested(kMaxJsonDepth));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  auto deep = ParseJsonBody(Nested(kMaxJsonDepth + 1));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(deep.status().message().find("deeper than 128"), std::string::npos) << deep.status().message();
  auto bad = ParseJsonBody("{\"a\":");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not valid JSON"), std::string::npos);
}

// A tool schema nested a million levels deep in a 2 MB body: the parsers copy and dump schemas,
// which recurses once per level — without the limit this overflows the HTTP thread's stack.
const int kHuge = 1000000;

TEST(ParseJsonBodyTest, DeeplyNestedToolSchemasAreAnErrorInEveryParser) {
  const std::string schema = "{\"type\":\"object\",\"x\":" + Nested(kHuge) + "}";
  auto a = ParseMessagesRequest(
      R"({"max_tokens":8,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"t","input_schema":)" + schema +
      "}]}");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), Status::Code::kInvalidArgument);
  auto o = ParseChatCompletionRequest(
      R"({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"t","parameters":)" +
      schema + "}}]}");
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), Status::Code::kInvalidArgument);
  auto c = ParseCompletionRequest(R"({"prompt":"hi","stop":)" + Nested(kHuge, "\"x\"") + "}");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kInvalidArgument);
}

// A model can repeat brackets too: generated tool arguments nested past the limit are not taken
// apart (Anthropic's tool_use input is then empty) instead of overflowing the stack.
TEST(ParseJsonBodyTest, DeeplyNestedGeneratedToolArgumentsRenderWithoutInput) {
  MessagesResult r;
  r.id = "msg_1";
  r.tool_calls = {{"toolu_1", "t", "{\"x\":" + Nested(kHuge) + "}"}};
  r.finish = FinishReason::kStop;
  const nlohmann::json body = nlohmann::json::parse(RenderMessage(r));
  ASSERT_EQ(body["content"].size(), 1u) << body.dump();
  EXPECT_EQ(body["content"][0]["type"], "tool_use");
  EXPECT_EQ(body["content"][0]["input"], nlohmann::json::object());
  // Within the limit the arguments are the input, as generated.
  r.tool_calls = {{"toolu_1", "t", "{\"x\":" + Nested(3) + "}"}};
  EXPECT_EQ(nlohmann::json::parse(RenderMessage(r))["content"][0]["input"]["x"], nlohmann::json::parse(Nested(3)));
}

}  // namespace
}  // namespace kvault

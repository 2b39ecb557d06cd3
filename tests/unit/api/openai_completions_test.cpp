#include "api/openai_completions.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kvault {
namespace {

using json = nlohmann::json;

std::string ParseError(const std::string& body) {
  auto r = ParseCompletionRequest(body);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? "" : r.status().message();
}

TEST(OpenAiCompletionsParseTest, StreamAndUsageOptions) {
  auto plain = ParseCompletionRequest(R"({"prompt":"hi"})");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_FALSE(plain->generate.stream);
  EXPECT_FALSE(plain->include_usage);
  EXPECT_EQ(plain->generate.max_tokens, 16);  // OpenAI's default for completions
  auto s = ParseCompletionRequest(R"({"prompt":["hi"],"stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->generate.stream);
  EXPECT_TRUE(s->include_usage);
  EXPECT_EQ(*s->generate.raw_prompt, "hi");
}

TEST(OpenAiCompletionsParseTest, BadStreamFieldsAreNamed) {
  EXPECT_EQ(ParseError(R"({"prompt":"hi","stream":"yes"})"), "'stream' must be a boolean");
  EXPECT_EQ(ParseError(R"({"prompt":"hi","stream_options":{"include_usage":true}})"),
            "'stream_options' is only allowed when 'stream' is true");
  EXPECT_EQ(ParseError(R"({"prompt":"hi","stream":true,"stream_options":{"include_usage":1}})"),
            "'stream_options.include_usage' must be a boolean");
  EXPECT_EQ(ParseError(R"({"prompt":["a","b"]})"),
            "'prompt' must be a string (one prompt per request; token arrays are not supported)");
}

json Data(const std::string& event) {
  EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
  EXPECT_EQ(event.substr(event.size() - 2), "\n\n");
  return json::parse(event.substr(6, event.size() - 8));
}

TEST(OpenAiCompletionsRenderTest, StreamChunksAsOpenAiSendsThem) {
  CompletionResult r;
  r.id = "cmpl-1";
  r.model = "m";
  r.created = 7;
  const json text = Data(RenderCompletionChunk(r, CompletionChunkKind::kText, "Hel", false));
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["id"], "cmpl-1");
  EXPECT_EQ(text["choices"][0]["text"], "Hel");
  EXPECT_TRUE(text["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(text.contains("usage"));  // only with include_usage

  r.finish = FinishReason::kLength;
  r.prompt_tokens = 5;
  r.completion_tokens = 3;
  r.cached_tokens = 2;
  const json finish = Data(RenderCompletionChunk(r, CompletionChunkKind::kFinish, "", true));
  EXPECT_EQ(finish["choices"][0]["text"], "");
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(finish.contains("usage"));
  EXPECT_TRUE(finish["usage"].is_null());

  const json usage = Data(RenderCompletionChunk(r, CompletionChunkKind::kUsage, "", true));
  EXPECT_TRUE(usage["choices"].is_array());
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(usage["usage"]["completion_tokens"], 3);
  EXPECT_EQ(usage["usage"]["total_tokens"], 8);
  EXPECT_EQ(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
}

TEST(OpenAiCompletionsRenderTest, WholeAnswer) {
  CompletionResult r;
  r.id = "cmpl-2";
  r.text = "abc";
  r.finish = FinishReason::kStop;
  r.prompt_tokens = 4;
  r.completion_tokens = 1;
  const json j = json::parse(RenderCompletion(r));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "abc");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
}

}  // namespace
}  // namespace kvault

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

TEST(OpenAiCompletionsParseTest, FieldsAreReadOrRefusedByName) {
  auto r = ParseCompletionRequest(
      R"({"prompt":"hi","logprobs":3,"presence_penalty":1,"logit_bias":{"9":5},"best_of":1,"echo":false,"stop":["a","b","c","d","e"]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generate.top_logprobs, 3);
  EXPECT_FLOAT_EQ(r->generate.sampling.presence_penalty, 1.0f);
  EXPECT_EQ(r->generate.sampling.logit_bias.size(), 1u);
  EXPECT_EQ(r->generate.stop.size(), 5u);
  auto plain = ParseCompletionRequest(R"({"prompt":"hi"})");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->generate.top_logprobs, -1);
  EXPECT_NE(ParseError(R"({"prompt":"hi","best_of":2})").find("best_of"), std::string::npos);
  EXPECT_NE(ParseError(R"({"prompt":"hi","logprobs":21})").find("logprobs"), std::string::npos);
  EXPECT_NE(ParseError(R"({"prompt":"hi","suffix":"x"})").find("suffix"), std::string::npos);
  EXPECT_NE(ParseError(R"({"prompt":"hi","echo":true})").find("echo"), std::string::npos);
  EXPECT_NE(ParseError(R"({"prompt":"hi","grammar":"root ::= x"})").find("grammar"), std::string::npos);
}

TEST(OpenAiCompletionsRenderTest, LegacyLogprobsWithTextOffsets) {
  CompletionResult r;
  r.id = "cmpl-3";
  r.text = "Hello";
  r.logprobs = true;
  r.token_logprobs = {{"Hel", -0.25f, {{"Hel", -0.25f}, {"He", -2.0f}}}, {"lo", -0.5f, {{"lo", -0.5f}}}};
  const json j = json::parse(RenderCompletion(r));
  const json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json::array({"Hel", "lo"}));
  EXPECT_EQ(lp["text_offset"], json::array({0, 3}));
  EXPECT_FLOAT_EQ(lp["token_logprobs"][1].get<float>(), -0.5f);
  EXPECT_FLOAT_EQ(lp["top_logprobs"][0]["He"].get<float>(), -2.0f);
  // Streamed: each chunk its own tokens, the offsets continuing.
  size_t offset = 0;
  const std::vector<TokenLogprob> first = {r.token_logprobs[0]}, second = {r.token_logprobs[1]};
  Data(RenderCompletionChunk(r, CompletionChunkKind::kText, "Hel", false, &first, &offset));
  const json c = Data(RenderCompletionChunk(r, CompletionChunkKind::kText, "lo", false, &second, &offset));
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"], json::array({3}));
  EXPECT_TRUE(
      Data(RenderCompletionChunk(r, CompletionChunkKind::kText, "x", false))["choices"][0]["logprobs"].is_null());
}

}  // namespace
}  // namespace kvault

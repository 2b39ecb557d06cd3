#include "api/openai_chat.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/errors.h"

namespace kvault {
namespace {

using json = nlohmann::json;

Status ParseError(const std::string& body) {
  auto r = ParseChatCompletionRequest(body);
  EXPECT_FALSE(r.ok()) << body;
  return r.status();
}

TEST(OpenAiChatParseTest, AFinalAssistantMessageIsContinuedAsInLlamaServer) {
  auto a = ParseChatCompletionRequest(
      R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Sure,"}]})");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(a->generate.continue_final);
  auto b = ParseChatCompletionRequest(
      R"({"messages":[{"role":"assistant","content":"Hello"},{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->generate.continue_final);
}

TEST(OpenAiChatParseTest, MinimalRequest) {
  auto r = ParseChatCompletionRequest(R"({"messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->generate.messages.size(), 1u);
  EXPECT_EQ(r->generate.messages[0].role, "user");
  EXPECT_EQ(r->generate.messages[0].content, "hi");
  EXPECT_EQ(r->generate.max_tokens, -1);
}

TEST(OpenAiChatParseTest, FullerRequest) {
  auto r = ParseChatCompletionRequest(R"({"model":"m","max_completion_tokens":9,"temperature":0,"n":1,"stream":false,
    "messages":[{"role":"developer","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                {"role":"assistant","content":null}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->generate.max_tokens, 9);
  EXPECT_EQ(r->generate.messages[0].role, "system");
  EXPECT_EQ(r->generate.messages[1].content, "ab");
  EXPECT_EQ(r->generate.messages[2].content, "");
}

TEST(OpenAiChatParseTest, RejectsBadInputNamingTheField) {
  EXPECT_NE(ParseError("{not json").message().find("not valid JSON"), std::string::npos);
  EXPECT_NE(ParseError("[]").message().find("JSON object"), std::string::npos);
  EXPECT_NE(ParseError("{}").message().find("'messages'"), std::string::npos);
  EXPECT_NE(ParseError(R"({"messages":[]})").message().find("at least one"), std::string::npos);
  EXPECT_NE(ParseError(R"({"messages":"hi"})").message().find("must be an array"), std::string::npos);
  EXPECT_NE(ParseError(R"({"messages":[{"role":"wizard","content":"x"}]})").message().find("wizard"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"messages":[{"content":"x"}]})").message().find("messages[0].role"), std::string::npos);
  EXPECT_NE(ParseError(R"({"messages":[{"role":"user","content":5}]})").message().find("messages[0].content"),
            std::string::npos);
  EXPECT_NE(
      ParseError(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})").message().find("image_url"),
      std::string::npos);
  const std::string ok_msgs = R"("messages":[{"role":"user","content":"x"}])";
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"max_tokens":0})").message().find("max_tokens"), std::string::npos);
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"max_tokens":-3})").message().find("max_tokens"), std::string::npos);
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"max_tokens":"5"})").message().find("max_tokens"), std::string::npos);
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"temperature":"hot"})").message().find("temperature"), std::string::npos);
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"n":2})").message().find("'n'"), std::string::npos);
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"stream":"yes"})").message().find("stream"), std::string::npos);
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"stream_options":{"include_usage":true}})").message().find("stream_options"),
            std::string::npos);
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"stream":true,"stream_options":{"include_usage":1}})")
                .message()
                .find("include_usage"),
            std::string::npos);
  EXPECT_NE(ParseError("{" + ok_msgs + R"(,"model":3})").message().find("model"), std::string::npos);
  EXPECT_EQ(ParseError("{}").code(), Status::Code::kInvalidArgument);
}

TEST(OpenAiChatRenderTest, ShapeMatchesOpenAi) {
  ChatCompletionResult r;
  r.id = "chatcmpl-x";
  r.model = "m";
  r.created = 123;
  r.text = "hello \xFF";  // invalid UTF-8 from a random model must not break the response
  r.finish = FinishReason::kLength;
  r.prompt_tokens = 3;
  r.completion_tokens = 2;
  json j = json::parse(RenderChatCompletion(r));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
  EXPECT_EQ(j["choices"][0]["message"]["content"].get<std::string>().rfind("hello ", 0), 0u);
}

TEST(OpenAiChatParseTest, Streaming) {
  auto r = ParseChatCompletionRequest(
      R"({"messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->generate.stream);
  EXPECT_TRUE(r->include_usage);
}

TEST(OpenAiChatRenderTest, StreamChunksMatchOpenAisShapes) {
  ChatCompletionResult r;
  r.id = "chatcmpl-1";
  r.model = "m";
  r.created = 5;
  r.finish = FinishReason::kStopSequence;
  r.prompt_tokens = 4;
  r.completion_tokens = 2;
  auto parse = [](const std::string& event) {
    EXPECT_EQ(event.rfind("data: ", 0), 0u);
    EXPECT_EQ(event.substr(event.size() - 2), "\n\n");
    return json::parse(event.substr(6));
  };
  json role = parse(RenderChatCompletionChunk(r, ChunkKind::kRole, "", false));
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(role["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(role.contains("usage"));
  json text = parse(RenderChatCompletionChunk(r, ChunkKind::kText, "hi", true));
  EXPECT_EQ(text["choices"][0]["delta"]["content"], "hi");
  EXPECT_TRUE(text["usage"].is_null());
  json fin = parse(RenderChatCompletionChunk(r, ChunkKind::kFinish, "", false));
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(fin["choices"][0]["delta"].empty());
  json usage = parse(RenderChatCompletionChunk(r, ChunkKind::kUsage, "", true));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 6);
  EXPECT_EQ(std::string(kSseDone), "data: [DONE]\n\n");
}

TEST(OpenAiChatRenderTest, IdsAreUnique) {
  const std::string a = NewChatCompletionId(), b = NewChatCompletionId();
  EXPECT_EQ(a.rfind("chatcmpl-", 0), 0u);
  EXPECT_NE(a, b);
}

TEST(ApiErrorTest, StatusMapsToHttpAndEnvelope) {
  EXPECT_EQ(ApiErrorFromStatus(Status::InvalidArgument("x")).http_status, 400);
  EXPECT_EQ(ApiErrorFromStatus(Status::NotFound("x")).http_status, 404);
  EXPECT_EQ(ApiErrorFromStatus(Status::Overloaded("x")).http_status, 429);
  EXPECT_EQ(ApiErrorFromStatus(Status::Unavailable("x")).http_status, 503);
  EXPECT_EQ(ApiErrorFromStatus(Status::Internal("x")).http_status, 500);
  json j = json::parse(OpenAiErrorBody({400, "invalid_request_error", "bad"}));
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["message"], "bad");
  EXPECT_TRUE(j["error"].contains("param"));
  EXPECT_TRUE(j["error"].contains("code"));
}

}  // namespace
}  // namespace kvault

namespace kvault {
namespace {

TEST(OpenAiToolsParseTest, ToolsToolChoiceAndToolMessages) {
  auto r = ParseChatCompletionRequest(R"({"messages":[
      {"role":"user","content":"weather?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"21C"}],
    "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}},
             {"type":"function","function":{"name":"other"}}],
    "tool_choice":{"type":"function","function":{"name":"get_weather"}},"user":"agent-7"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& g = r->generate;
  ASSERT_EQ(g.tools.size(), 1u);  // a named choice keeps only that tool
  EXPECT_EQ(g.tools[0].name, "get_weather");
  EXPECT_EQ(g.tool_choice, COMMON_CHAT_TOOL_CHOICE_REQUIRED);
  ASSERT_EQ(g.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(g.messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(g.messages[2].role, "tool");
  EXPECT_EQ(g.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(r->user, "agent-7");
}

TEST(OpenAiToolsParseTest, BadToolInputIsNamed) {
  auto err = [](const std::string& body) {
    auto r = ParseChatCompletionRequest(body);
    EXPECT_FALSE(r.ok()) << body;
    return r.status().message();
  };
  const std::string msgs = R"("messages":[{"role":"user","content":"x"}])";
  EXPECT_NE(err("{" + msgs + R"(,"tools":[{"type":"function","function":{}}]})").find("name"), std::string::npos);
  EXPECT_NE(err("{" + msgs + R"(,"tool_choice":"required"})").find("tools"), std::string::npos);
  EXPECT_NE(
      err("{" + msgs +
          R"(,"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}})")
          .find("'b'"),
      std::string::npos);
  EXPECT_NE(err(R"({"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"a","arguments":"{oops"}}]}]})")
                .find("arguments"),
            std::string::npos);
  EXPECT_NE(err(R"({"messages":[{"role":"tool","content":"x"}]})").find("tool_call_id"), std::string::npos);
  EXPECT_NE(err("{" + msgs + R"(,"response_format":{"type":"xml"}})").find("response_format"), std::string::npos);
}

TEST(OpenAiToolsParseTest, ResponseFormatBecomesASchema) {
  auto r = ParseChatCompletionRequest(R"({"messages":[{"role":"user","content":"x"}],
    "response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object","properties":{"a":{"type":"integer"}}}}}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(json::parse(r->generate.json_schema)["properties"]["a"]["type"], "integer");
  auto o = ParseChatCompletionRequest(
      R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(json::parse(o->generate.json_schema)["type"], "object");
}

TEST(OpenAiToolsRenderTest, ToolCallsInTheMessageAndInChunks) {
  ChatCompletionResult r;
  r.id = "chatcmpl-x";
  r.model = "m";
  r.tool_calls = {{"call_1", "get_weather", R"({"city":"Paris"})"}};
  const json body = json::parse(RenderChatCompletion(r));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_TRUE(body["choices"][0]["message"]["content"].is_null());
  EXPECT_EQ(body["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(body["choices"][0]["message"]["tool_calls"][0]["type"], "function");

  const std::string start =
      RenderToolCallChunk(r, {OutputDelta::Kind::kToolStart, 0, "", "call_1", "get_weather"}, false);
  const json c1 = json::parse(start.substr(6));
  const json& call = c1["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_EQ(call["index"], 0);
  EXPECT_EQ(call["id"], "call_1");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  const std::string args = RenderToolCallChunk(r, {OutputDelta::Kind::kToolArgs, 0, "{\"ci", "", ""}, true);
  const json c2 = json::parse(args.substr(6));
  EXPECT_EQ(c2["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"], "{\"ci");
  EXPECT_FALSE(c2["choices"][0]["delta"]["tool_calls"][0].contains("id"));
  EXPECT_TRUE(c2["usage"].is_null());
}

}  // namespace
}  // namespace kvault

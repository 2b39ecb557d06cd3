#include "api/openai_chat.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/errors.h"
#include "api/openai_common.h"

namespace kvault {
namespace {

using json = nlohmann::json;

Status ParseError(const std::string& body) {
  auto r = ParseChatCompletionRequest(body);
  EXPECT_FALSE(r.ok()) << body;
  return r.status();
}

// A result to render. (Built here, not field by field in each test: g++ 12 at -O3 warns falsely,
// -Wrestrict, on assigning short literals to its strings one after the other.)
ChatCompletionResult Result(std::string id, std::string model) {
  ChatCompletionResult r;
  r.id = std::move(id);
  r.model = std::move(model);
  return r;
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
  ChatCompletionResult r = Result("chatcmpl-x", "m");
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
  ChatCompletionResult r = Result("chatcmpl-1", "m");
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
  ChatCompletionResult r = Result("chatcmpl-x", "m");
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

namespace kvault {
namespace {

// Issue #22: every field of OpenAI's Chat Completions reference is read, accepted or refused by
// name; nothing is silently dropped.
const std::string kMsgs = R"("messages":[{"role":"user","content":"x"}])";

StatusOr<ChatCompletionRequest> ParseWith(const std::string& fields) {
  return ParseChatCompletionRequest("{" + kMsgs + "," + fields + "}");
}

TEST(OpenAiChatFieldsTest, SamplingFieldsReachTheEngineRequest) {
  auto r = ParseWith(R"("presence_penalty":0.5,"frequency_penalty":-1.5,"logit_bias":{"15":100,"7":-100},
    "logprobs":true,"top_logprobs":5,"stop":["a","b","c","d","e","f"],"seed":3)");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const SamplingParams& sp = r->generate.sampling;
  EXPECT_FLOAT_EQ(sp.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(sp.frequency_penalty, -1.5f);
  ASSERT_EQ(sp.logit_bias.size(), 2u);
  EXPECT_EQ(sp.logit_bias[0], (std::pair<int32_t, float>{15, 100.0f}));
  EXPECT_EQ(sp.logit_bias[1], (std::pair<int32_t, float>{7, -100.0f}));
  EXPECT_EQ(r->generate.top_logprobs, 5);
  EXPECT_EQ(r->generate.stop.size(), 6u);  // any number of stop sequences
  auto plain = ParseWith(R"("logprobs":true)");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->generate.top_logprobs, 0);  // the sampled tokens' logprobs, no alternatives
}

TEST(OpenAiChatFieldsTest, DefaultsAreOpenAis) {
  auto r = ParseChatCompletionRequest("{" + kMsgs + "}");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->generate.sampling.temperature.has_value());  // the server's --temperature (1)
  EXPECT_FLOAT_EQ(r->generate.sampling.top_p, 1.0f);
  EXPECT_TRUE(r->generate.parallel_tool_calls);
  EXPECT_EQ(r->generate.max_tokens, -1);  // the server's default: until the context ends
  EXPECT_EQ(r->generate.top_logprobs, -1);
  auto t = ParseWith(R"("temperature":0,"parallel_tool_calls":false)");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->generate.sampling.temperature, 0.0f);
  EXPECT_FALSE(t->generate.parallel_tool_calls);
}

TEST(OpenAiChatFieldsTest, HarmlessFieldsAreAccepted) {
  auto r = ParseWith(R"("store":true,"metadata":{"k":"v"},"service_tier":"auto","user":"u",
    "safety_identifier":"s","prompt_cache_key":"p","prompt_cache_retention":"24h","modalities":["text"],
    "audio":null,"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false},"top_k":4,"min_p":0.1)");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(OpenAiChatFieldsTest, FieldsKvaultCannotHonourAreRefusedByName) {
  const std::pair<std::string, std::string> cases[] = {
      {R"("audio":{"voice":"alloy","format":"wav"})", "'audio'"},
      {R"("modalities":["text","audio"])", "'modalities'"},
      {R"("prediction":{"type":"content","content":"x"})", "'prediction'"},
      {R"("web_search_options":{})", "'web_search_options'"},
      {R"("functions":[{"name":"f"}])", "'functions'"},
      {R"("function_call":"auto")", "'function_call'"},
      {R"("verbosity":"low")", "'verbosity'"},
      {R"("reasoning_effort":"high")", "'reasoning_effort'"},
      {R"("n":2)", "'n'"},
      {R"("frobnicate":1)", "frobnicate"},
      {R"("logit_bias":{"abc":1})", "logit_bias"},
      {R"("logit_bias":{"5":101})", "logit_bias"},
      {R"("logit_bias":[1])", "logit_bias"},
      {R"("top_logprobs":3)", "'logprobs'"},
      {R"("logprobs":true,"top_logprobs":21)", "top_logprobs"},
      {R"("logprobs":1)", "logprobs"},
      {R"("presence_penalty":2.5)", "presence_penalty"},
      {R"("frequency_penalty":"x")", "frequency_penalty"},
      {R"("store":"yes")", "store"},
      {R"("stream":true,"stream_options":{"chunk_size":1})", "stream_options.chunk_size"},
  };
  for (const auto& [fields, named] : cases) {
    auto r = ParseWith(fields);
    ASSERT_FALSE(r.ok()) << fields;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(named), std::string::npos) << fields << " → " << r.status().message();
  }
}

TEST(OpenAiChatFieldsTest, ResponseFormatWithToolsAsLlamaServerUnlessACallIsRequired) {
  const std::string tools = R"("tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}])";
  const std::string rf = R"("response_format":{"type":"json_object"})";
  auto r = ParseWith(tools + "," + rf);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generate.tools.size(), 1u);
  EXPECT_FALSE(r->generate.json_schema.empty());
  auto required = ParseWith(tools + "," + rf + R"(,"tool_choice":"required")");
  ASSERT_FALSE(required.ok());
  EXPECT_NE(required.status().message().find("tool_choice"), std::string::npos);
}

TEST(OpenAiChatFieldsTest, AllowedToolsNarrowTheTools) {
  auto r =
      ParseWith(R"("tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],
    "tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"required","tools":[{"type":"function","function":{"name":"b"}}]}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->generate.tools.size(), 1u);
  EXPECT_EQ(r->generate.tools[0].name, "b");
  EXPECT_EQ(r->generate.tool_choice, COMMON_CHAT_TOOL_CHOICE_REQUIRED);
}

TEST(OpenAiChatRenderTest, SystemFingerprintAndLogprobs) {
  ChatCompletionResult r = Result("chatcmpl-1", "m");
  r.system_fingerprint = OpenAiSystemFingerprint("0123456789abcdef");
  EXPECT_EQ(r.system_fingerprint.rfind("kvault-", 0), 0u);
  EXPECT_NE(r.system_fingerprint.find("-01234567"), std::string::npos);
  r.logprobs = true;
  r.token_logprobs = {{"Hi", -0.5f, {{"Hi", -0.5f}, {"Yo", -1.5f}}}};
  const json body = json::parse(RenderChatCompletion(r));
  EXPECT_EQ(body["system_fingerprint"], r.system_fingerprint);
  const json& tok = body["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(tok["token"], "Hi");
  EXPECT_FLOAT_EQ(tok["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(tok["bytes"], json::array({72, 105}));
  EXPECT_EQ(tok["top_logprobs"][1]["token"], "Yo");
  EXPECT_TRUE(body["choices"][0]["logprobs"]["refusal"].is_null());
  const std::string chunk = RenderChatCompletionChunk(r, ChunkKind::kText, "Hi", false, &r.token_logprobs);
  const json c = json::parse(chunk.substr(6));
  EXPECT_EQ(c["system_fingerprint"], r.system_fingerprint);
  EXPECT_EQ(c["choices"][0]["logprobs"]["content"][0]["token"], "Hi");
  const json plain = json::parse(RenderChatCompletionChunk(r, ChunkKind::kText, "Hi", false).substr(6));
  EXPECT_TRUE(plain["choices"][0]["logprobs"].is_null());
  r.logprobs = false;
  EXPECT_TRUE(json::parse(RenderChatCompletion(r))["choices"][0]["logprobs"].is_null());
}

}  // namespace
}  // namespace kvault

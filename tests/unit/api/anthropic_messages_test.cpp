#include "api/anthropic_messages.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/errors.h"

namespace kvault {
namespace {

using json = nlohmann::json;

std::string ParseError(const std::string& body) {
  auto r = ParseMessagesRequest(body);
  EXPECT_FALSE(r.ok()) << body;
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << body;
  return r.status().message();
}

TEST(AnthropicParseTest, SystemStringOrBlocksAndTextMessages) {
  auto a = ParseMessagesRequest(R"({"model":"m","max_tokens":5,"system":"be brief",
    "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"yo"}]},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_EQ(a->generate.messages.size(), 4u);
  EXPECT_EQ(a->generate.messages[0].role, "system");
  EXPECT_EQ(a->generate.messages[0].content, "be brief");
  EXPECT_EQ(a->generate.messages[2].content, "yo");
  EXPECT_EQ(a->generate.messages[3].content, "a\n\nb");
  EXPECT_EQ(a->generate.max_tokens, 5);
  auto b = ParseMessagesRequest(
      R"({"max_tokens":5,"system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
    "messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->generate.messages[0].content, "be brief");
}

TEST(AnthropicParseTest, AFinalAssistantMessageIsAPrefillToContinue) {
  auto a = ParseMessagesRequest(R"({"max_tokens":5,"messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->generate.continue_final);
  auto p = ParseMessagesRequest(R"({"max_tokens":5,"messages":[{"role":"user","content":"JSON please"},
    {"role":"assistant","content":"{\"name\": \""}]})");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->generate.continue_final);
  EXPECT_EQ(p->generate.messages.back().content, "{\"name\": \"");
  // As Anthropic: a prefill may not end with whitespace.
  auto ws = ParseMessagesRequest(R"({"max_tokens":5,"messages":[{"role":"user","content":"hi"},
    {"role":"assistant","content":[{"type":"text","text":"Sure "}]}]})");
  ASSERT_FALSE(ws.ok());
  EXPECT_NE(ws.status().message().find("trailing whitespace"), std::string::npos) << ws.status().message();
  // An assistant turn that ends with a tool call is not continued (its result is missing).
  auto t = ParseMessagesRequest(R"({"max_tokens":5,"messages":[{"role":"user","content":"hi"},
    {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{}}]}]})");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_FALSE(t->generate.continue_final);
}

TEST(AnthropicParseTest, ClaudeCodeBillingLineIsRemovedFromTheSystemPrompt) {
  auto with = [](const std::string& cch) {
    auto r = ParseMessagesRequest(R"({"max_tokens":5,"system":[
      {"type":"text","text":"x-anthropic-billing-header: cc_version=2.0.14.abc; cc_entrypoint=cli; cch=)" +
                                  cch + R"(;"},
      {"type":"text","text":"You are Claude Code."}],"messages":[{"role":"user","content":"hi"}]})");
    EXPECT_TRUE(r.ok());
    return r->generate.messages[0].content;
  };
  EXPECT_EQ(with("AAAA1"), "You are Claude Code.");
  EXPECT_EQ(with("AAAA1"), with("BBBB2"));
  EXPECT_EQ(StripBillingHeader("a\nx-anthropic-billing-header: cch=1;\nb"), "a\nb");
  EXPECT_EQ(StripBillingHeader("x-anthropic-billing-header: cch=1;"), "");
  EXPECT_EQ(StripBillingHeader("keep x-anthropic-billing-header: inside a line"),
            "keep x-anthropic-billing-header: inside a line");
}

TEST(AnthropicParseTest, ToolUseAndToolResultBecomeToolCallsAndToolMessages) {
  auto r = ParseMessagesRequest(R"({"max_tokens":50,
    "tools":[{"name":"get_weather","description":"d","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
    "messages":[{"role":"user","content":"weather?"},
      {"role":"assistant","content":[{"type":"text","text":"Let me look."},
                                     {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"21C"}]},
                                {"type":"text","text":"thanks"}]}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& m = r->generate.messages;
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[1].role, "assistant");
  EXPECT_EQ(m[1].content, "Let me look.");
  ASSERT_EQ(m[1].tool_calls.size(), 1u);
  EXPECT_EQ(m[1].tool_calls[0].id, "toolu_1");
  EXPECT_EQ(json::parse(m[1].tool_calls[0].arguments), json({{"city", "Paris"}}));
  EXPECT_EQ(m[2].role, "tool");
  EXPECT_EQ(m[2].tool_call_id, "toolu_1");
  EXPECT_EQ(m[2].content, "21C");
  EXPECT_EQ(m[3].role, "user");
  EXPECT_EQ(m[3].content, "thanks");
  ASSERT_EQ(r->generate.tools.size(), 1u);
  EXPECT_EQ(r->generate.tool_choice, COMMON_CHAT_TOOL_CHOICE_AUTO);
}

TEST(AnthropicParseTest, ToolChoiceToolKeepsOnlyThatToolAndRequiresACall) {
  const std::string tools =
      R"("tools":[{"name":"a","input_schema":{"type":"object"}},{"name":"b","input_schema":{"type":"object"}}])";
  auto r = ParseMessagesRequest(R"({"max_tokens":5,)" + tools +
                                R"(,"tool_choice":{"type":"tool","name":"b","disable_parallel_tool_use":true},
    "messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->generate.tools.size(), 1u);
  EXPECT_EQ(r->generate.tools[0].name, "b");
  EXPECT_EQ(r->generate.tool_choice, COMMON_CHAT_TOOL_CHOICE_REQUIRED);
  EXPECT_FALSE(r->generate.parallel_tool_calls);
  EXPECT_NE(ParseError(R"({"max_tokens":5,)" + tools +
                       R"(,"tool_choice":{"type":"tool","name":"zzz"},"messages":[{"role":"user","content":"x"}]})")
                .find("zzz"),
            std::string::npos);
}

TEST(AnthropicParseTest, BadInputIsNamed) {
  EXPECT_NE(ParseError("{nope").find("JSON"), std::string::npos);
  EXPECT_NE(ParseError(R"({"messages":[{"role":"user","content":"x"}]})").find("max_tokens"), std::string::npos);
  EXPECT_NE(ParseError(R"({"max_tokens":-1,"messages":[{"role":"user","content":"x"}]})").find("max_tokens"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"max_tokens":5,"messages":[]})").find("messages"), std::string::npos);
  EXPECT_NE(ParseError(R"({"max_tokens":5,"messages":[{"role":"tool","content":"x"}]})").find("role"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]})")
                .find("image"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"max_tokens":5,"temperature":1.5,"messages":[{"role":"user","content":"x"}]})")
                .find("temperature"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"}],
    "messages":[{"role":"user","content":"x"}]})")
                .find("not supported"),
            std::string::npos);
  // count_tokens does not need max_tokens.
  EXPECT_TRUE(ParseMessagesRequest(R"({"messages":[{"role":"user","content":"x"}]})", true).ok());
}

TEST(AnthropicUsageTest, TheThreePromptCountsAddUp) {
  for (int prompt : {1, 63, 64, 65, 200}) {
    for (int cached : {0, 64}) {
      if (cached >= prompt) continue;
      const int kept = (prompt - 1) / 64 * 64;  // what the engine reports (KvTransfer::KeyedPromptTokens)
      const MessagesUsage u = ComputeUsage(prompt, cached, kept, 7);
      EXPECT_EQ(u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens, prompt);
      EXPECT_EQ(u.cache_read_input_tokens, cached);
      EXPECT_GE(u.cache_creation_input_tokens, 0);
      EXPECT_EQ(u.output_tokens, 7);
    }
  }
  EXPECT_EQ(ComputeUsage(200, 64, 192, 0).cache_creation_input_tokens, 128);  // blocks 2 and 3
}

TEST(AnthropicRenderTest, MessageShape) {
  MessagesResult r;
  r.id = "msg_x";
  r.model = "m";
  r.text = "hello";
  r.tool_calls = {{"toolu_1", "get_weather", R"({"city":"Paris"})"}};
  r.usage = ComputeUsage(100, 64, 64, 9);
  const json body = json::parse(RenderMessage(r));
  EXPECT_EQ(body["type"], "message");
  EXPECT_EQ(body["role"], "assistant");
  EXPECT_EQ(body["stop_reason"], "tool_use");
  EXPECT_TRUE(body["stop_sequence"].is_null());
  ASSERT_EQ(body["content"].size(), 2u);
  EXPECT_EQ(body["content"][0], json({{"type", "text"}, {"text", "hello"}}));
  EXPECT_EQ(body["content"][1]["type"], "tool_use");
  EXPECT_EQ(body["content"][1]["input"], json({{"city", "Paris"}}));
  EXPECT_EQ(body["usage"]["cache_read_input_tokens"], 64);
  EXPECT_EQ(body["usage"]["output_tokens"], 9);

  MessagesResult s;
  s.text = "ab";
  s.finish = FinishReason::kStopSequence;
  s.stop_sequence = "STOP";
  const json b2 = json::parse(RenderMessage(s));
  EXPECT_EQ(b2["stop_reason"], "stop_sequence");
  EXPECT_EQ(b2["stop_sequence"], "STOP");
  s.finish = FinishReason::kLength;
  EXPECT_EQ(json::parse(RenderMessage(s))["stop_reason"], "max_tokens");
  // A tool call that ended on a stop sequence: tool_use, and no stop sequence (as Anthropic).
  s.finish = FinishReason::kStopSequence;
  s.tool_calls = {{"toolu_1", "get_weather", R"({"city":"Paris"})"}};
  const json b3 = json::parse(RenderMessage(s));
  EXPECT_EQ(b3["stop_reason"], "tool_use");
  EXPECT_TRUE(b3["stop_sequence"].is_null()) << b3.dump();
}

// Splits an SSE text into (event name, data JSON) pairs, checking each event's framing.
std::vector<std::pair<std::string, json>> Events(const std::string& sse) {
  std::vector<std::pair<std::string, json>> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos);
    const std::string ev = sse.substr(pos, end - pos);
    const size_t nl = ev.find('\n');
    EXPECT_EQ(ev.rfind("event: ", 0), 0u);
    EXPECT_EQ(ev.compare(nl + 1, 6, "data: "), 0);
    const json data = json::parse(ev.substr(nl + 7));
    EXPECT_EQ(data["type"], ev.substr(7, nl - 7));
    out.emplace_back(ev.substr(7, nl - 7), data);
    pos = end + 2;
  }
  return out;
}

TEST(AnthropicStreamTest, EventsComeInAnthropicsOrderWithBlockIndices) {
  MessagesResult r;
  r.id = "msg_1";
  r.model = "m";
  AnthropicStream s(&r);
  std::string sse = s.Start();
  sse += s.Delta({OutputDelta::Kind::kText, 0, "Hel", "", ""});
  sse += s.Delta({OutputDelta::Kind::kText, 0, "lo", "", ""});
  sse += s.Delta({OutputDelta::Kind::kToolStart, 0, "", "toolu_9", "get_weather"});
  sse += s.Delta({OutputDelta::Kind::kToolArgs, 0, R"({"city":)", "", ""});
  sse += s.Delta({OutputDelta::Kind::kToolArgs, 0, R"("Paris"})", "", ""});
  r.tool_calls = {{"toolu_9", "get_weather", R"({"city":"Paris"})"}};
  r.usage.output_tokens = 12;
  sse += s.Finish();
  const auto ev = Events(sse);
  std::vector<std::string> names;
  for (const auto& e : ev) names.push_back(e.first);
  EXPECT_EQ(names, (std::vector<std::string>{"message_start", "ping", "content_block_start", "content_block_delta",
                                             "content_block_delta", "content_block_stop", "content_block_start",
                                             "content_block_delta", "content_block_delta", "content_block_stop",
                                             "message_delta", "message_stop"}));
  EXPECT_EQ(ev[0].second["message"]["id"], "msg_1");
  EXPECT_EQ(ev[0].second["message"]["content"], json::array());
  EXPECT_EQ(ev[2].second["index"], 0);
  EXPECT_EQ(ev[3].second["delta"], json({{"type", "text_delta"}, {"text", "Hel"}}));
  EXPECT_EQ(ev[6].second["index"], 1);
  EXPECT_EQ(ev[6].second["content_block"]["type"], "tool_use");
  EXPECT_EQ(ev[6].second["content_block"]["id"], "toolu_9");
  EXPECT_EQ(ev[7].second["delta"]["type"], "input_json_delta");
  EXPECT_EQ(json::parse(ev[7].second["delta"]["partial_json"].get<std::string>() +
                        ev[8].second["delta"]["partial_json"].get<std::string>()),
            json({{"city", "Paris"}}));
  EXPECT_EQ(ev[10].second["delta"]["stop_reason"], "tool_use");
  EXPECT_EQ(ev[10].second["usage"]["output_tokens"], 12);
}

TEST(AnthropicRenderTest, ThinkingBlockComesFirstAndOmittedDisplayKeepsOnlyTheSignature) {
  MessagesResult r;
  r.text = "answer";
  r.reasoning = "let me think";
  r.thinking = true;
  json body = json::parse(RenderMessage(r));
  ASSERT_EQ(body["content"].size(), 2u);
  EXPECT_EQ(body["content"][0]["type"], "thinking");
  EXPECT_EQ(body["content"][0]["thinking"], "let me think");
  EXPECT_EQ(ReasoningFromSignature(body["content"][0]["signature"]), "let me think");
  r.display = ThinkingDisplay::kOmitted;
  body = json::parse(RenderMessage(r));
  EXPECT_EQ(body["content"][0]["thinking"], "");
  EXPECT_EQ(ReasoningFromSignature(body["content"][0]["signature"]), "let me think");
  // No thinking asked for: no block, whatever the model wrote.
  r.thinking = false;
  EXPECT_EQ(json::parse(RenderMessage(r))["content"].size(), 1u);
  // The context ended before max_tokens.
  r.finish = FinishReason::kContextLength;
  EXPECT_EQ(json::parse(RenderMessage(r))["stop_reason"], "model_context_window_exceeded");
}

TEST(AnthropicStreamTest, ThinkingDeltasThenSignatureThenText) {
  for (ThinkingDisplay display : {ThinkingDisplay::kSummarized, ThinkingDisplay::kOmitted}) {
    MessagesResult r;
    r.thinking = true;
    r.display = display;
    AnthropicStream s(&r);
    std::string sse = s.Start();
    sse += s.Delta({OutputDelta::Kind::kThinking, 0, "step one, ", "", ""});
    sse += s.Delta({OutputDelta::Kind::kThinking, 0, "step two", "", ""});
    sse += s.Delta({OutputDelta::Kind::kText, 0, "done", "", ""});
    sse += s.Finish();
    const auto ev = Events(sse);
    std::vector<std::string> deltas;
    std::string signature;
    for (const auto& e : ev) {
      if (e.first != "content_block_delta") continue;
      deltas.push_back(e.second["delta"]["type"]);
      if (e.second["delta"]["type"] == "signature_delta") signature = e.second["delta"]["signature"];
    }
    if (display == ThinkingDisplay::kSummarized) {
      EXPECT_EQ(deltas, (std::vector<std::string>{"thinking_delta", "thinking_delta", "signature_delta", "text_delta"}));
    } else {
      EXPECT_EQ(deltas, (std::vector<std::string>{"signature_delta", "text_delta"}));
    }
    EXPECT_EQ(ReasoningFromSignature(signature), "step one, step two");
    EXPECT_EQ(ev[2].second["content_block"], json({{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}));
  }
}

TEST(AnthropicErrorsTest, EnvelopeAndStatusCodes) {
  const ApiError e = ApiErrorFromStatus(Status::InvalidArgument("bad"));
  EXPECT_EQ(json::parse(AnthropicErrorBody(e)),
            json({{"type", "error"}, {"error", {{"type", "invalid_request_error"}, {"message", "bad"}}}}));
  EXPECT_EQ(AnthropicHttpStatus(ApiErrorFromStatus(Status::Unavailable("x"))), 529);
  EXPECT_EQ(AnthropicHttpStatus(ApiErrorFromStatus(Status::Overloaded("x"))), 429);
  EXPECT_EQ(ApiErrorFromStatus(Status::Unauthenticated("x")).type, "authentication_error");
  EXPECT_EQ(ApiErrorFromStatus(Status::Unauthenticated("x")).http_status, 401);
}

}  // namespace
}  // namespace kvault

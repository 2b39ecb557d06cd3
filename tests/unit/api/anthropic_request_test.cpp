#include "api/anthropic_request.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kvault {
namespace {

using json = nlohmann::json;

// The shape of what Claude Code sends (observed, trimmed): thinking, output_config,
// context_management, a JSON metadata.user_id, system blocks with cache_control, a system-role
// message inside messages, tools with cache_control and defer_loading.
json ClaudeCodeBody() {
  return json::parse(R"({
    "model": "claude-opus-5-5", "max_tokens": 128000, "stream": true,
    "thinking": {"type": "adaptive", "display": "omitted"},
    "output_config": {"effort": "medium"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": "{\"device_id\":\"d1\",\"account_uuid\":\"\",\"session_id\":\"4f0c-11\"}"},
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc;"},
               {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
      {"role": "user", "content": [{"type": "text", "text": "<system-reminder>r</system-reminder>"},
                                   {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]},
      {"role": "system", "content": "<env>Working directory: /tmp/p</env>"}],
    "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"},
               "cache_control": {"type": "ephemeral"}},
              {"name": "Read", "description": "read", "input_schema": {"type": "object"}, "defer_loading": true,
               "strict": true, "input_examples": [{}]}]
  })");
}

std::string ParseError(const json& body) {
  auto r = ParseMessagesRequest(body.dump());
  EXPECT_FALSE(r.ok()) << body.dump();
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

TEST(AnthropicRequestTest, ClaudeCodeRequestIsAcceptedAndEachFieldHonoured) {
  auto r = ParseMessagesRequest(ClaudeCodeBody().dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->user_id, "4f0c-11");  // the session inside metadata.user_id names the agent
  EXPECT_TRUE(r->thinking);
  EXPECT_EQ(r->display, ThinkingDisplay::kOmitted);
  EXPECT_EQ(r->generate.enable_thinking, true);
  EXPECT_EQ(r->generate.thinking_budget, -1);  // adaptive: no budget
  EXPECT_EQ(r->generate.max_tokens, 128000);   // clamped by the engine to what the context has left
  const auto& m = r->generate.messages;
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[0].content, "You are Claude Code.");  // billing line gone
  EXPECT_EQ(m[1].role, "user");
  EXPECT_EQ(m[2].role, "system");  // kept as a system turn; the renderer folds it where needed
  EXPECT_EQ(m[2].content, "<env>Working directory: /tmp/p</env>");
  EXPECT_EQ(r->generate.tools.size(), 2u);
}

TEST(AnthropicRequestTest, FieldsTheReferenceDoesNotHaveAreRefusedByName) {
  auto with = [](const char* key, json value) {
    json b = ClaudeCodeBody();
    b[key] = std::move(value);
    return b;
  };
  EXPECT_EQ(ParseError(with("frobnicate", 1)), "frobnicate: Extra inputs are not permitted");
  EXPECT_NE(ParseError(with("container", "c1")).find("container"), std::string::npos);
  EXPECT_NE(ParseError(with("mcp_servers", json::parse(R"([{"type":"url","url":"http://x","name":"x"}])")))
                .find("mcp_servers"),
            std::string::npos);
  EXPECT_TRUE(ParseMessagesRequest(with("mcp_servers", json::array()).dump()).ok());
  EXPECT_NE(ParseError(with("service_tier", "priority")).find("service_tier"), std::string::npos);
  EXPECT_EQ(ParseError(with("thinking", json::parse(R"({"type":"adaptive","budget_tokens":5})"))),
            "thinking.budget_tokens: Extra inputs are not permitted");
  EXPECT_NE(ParseError(with("thinking", json::parse(R"({"type":"enabled"})"))).find("budget_tokens"),
            std::string::npos);
  EXPECT_NE(ParseError(with("thinking", json::parse(R"({"type":"adaptive","display":"full"})"))).find("display"),
            std::string::npos);
  EXPECT_EQ(ParseError(with("output_config", json::parse(R"({"verbosity":"low"})"))),
            "output_config.verbosity: Extra inputs are not permitted");
  EXPECT_NE(ParseError(with("output_config", json::parse(R"({"effort":"extreme"})"))).find("effort"),
            std::string::npos);
  EXPECT_NE(ParseError(with("context_management", json::parse(R"({"edits":[{"type":"summarize"}]})")))
                .find("context_management.edits[0].type"),
            std::string::npos);
  EXPECT_EQ(ParseError(with("metadata", json::parse(R"({"user_id":"u","tags":[]})"))),
            "metadata.tags: Extra inputs are not permitted");
  json tool = ClaudeCodeBody();
  tool["tools"][0]["color"] = "red";
  EXPECT_EQ(ParseError(tool), "tools[0].color: Extra inputs are not permitted");
}

TEST(AnthropicRequestTest, ReferenceFieldsALocalServerCannotHonourAreRefusedWithAReason) {
  for (const char* key : {"inference_geo", "speed"}) {
    json b = ClaudeCodeBody();
    b[key] = key == std::string("speed") ? "fast" : "us";
    const std::string e = ParseError(b);
    EXPECT_EQ(e.rfind(std::string(key) + ": not supported by this server", 0), 0u) << e;
  }
}

TEST(AnthropicRequestTest, TopLevelCacheControlIsAcceptedAndItsShapeChecked) {
  json b = ClaudeCodeBody();
  b["cache_control"] = json::parse(R"({"type":"ephemeral","ttl":"1h"})");
  auto r = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generate.max_tokens, 128000);  // nothing else changes
  b["cache_control"] = json::parse(R"({"type":"persistent"})");
  EXPECT_EQ(ParseError(b), "cache_control.type: must be 'ephemeral'");
  b["cache_control"] = json::parse(R"({"type":"ephemeral","ttl":"1d"})");
  EXPECT_EQ(ParseError(b), "cache_control.ttl: must be '5m' or '1h'");
  b["cache_control"] = json::parse(R"({"type":"ephemeral","scope":"org"})");
  EXPECT_EQ(ParseError(b), "cache_control.scope: Extra inputs are not permitted");
  b["cache_control"] = json::parse(R"({"ttl":"5m"})");
  EXPECT_EQ(ParseError(b), "cache_control.type: Field required");
  b["cache_control"] = "ephemeral";
  EXPECT_EQ(ParseError(b), "cache_control: must be an object");
}

TEST(AnthropicRequestTest, MaxTokensZeroIsAWarmUpThatCannotStreamThinkOrFollowAFormat) {
  json b = ClaudeCodeBody();
  b["max_tokens"] = 0;
  b["stream"] = false;
  b.erase("thinking");
  auto r = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generate.max_tokens, 0);  // the engine computes and keeps the prompt, generates nothing
  b["stream"] = true;
  EXPECT_NE(ParseError(b).find("cannot be streamed"), std::string::npos);
  b["stream"] = false;
  b["thinking"] = json::parse(R"({"type":"adaptive"})");
  EXPECT_NE(ParseError(b).find("'thinking'"), std::string::npos);
  b.erase("thinking");
  b["output_config"] = json::parse(R"({"format":{"type":"json_schema","schema":{"type":"object"}}})");
  EXPECT_NE(ParseError(b).find("output_config.format"), std::string::npos);
  b["max_tokens"] = -1;
  b.erase("output_config");
  EXPECT_EQ(ParseError(b), "max_tokens: must be greater than or equal to 0");
}

TEST(AnthropicRequestTest, WrongTypesInToolsToolChoiceAndToolResultsAreRefused) {
  json b = ClaudeCodeBody();
  b["tools"][0]["description"] = 7;
  EXPECT_EQ(ParseError(b), "'tools[0].description' must be a string");
  b = ClaudeCodeBody();
  b["tools"][0]["type"] = json::array();
  EXPECT_EQ(ParseError(b), "'tools[0].type' must be a string");
  b = ClaudeCodeBody();
  b["tool_choice"] = json::parse(R"({"type":"auto","disable_parallel_tool_use":"yes"})");
  EXPECT_EQ(ParseError(b), "'tool_choice.disable_parallel_tool_use' must be a boolean");
  b["tool_choice"] = json::parse(R"({"type":"auto","force":true})");
  EXPECT_EQ(ParseError(b), "tool_choice.force: Extra inputs are not permitted");
  b["tool_choice"] = json::parse(R"({"type":"auto","disable_parallel_tool_use":true})");
  auto r = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->generate.parallel_tool_calls);
  b = ClaudeCodeBody();
  b["messages"] = json::parse(R"([
    {"role":"user","content":"q"},
    {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{}}]},
    {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"out","is_error":"no"}]}])");
  EXPECT_EQ(ParseError(b), "'messages[2].content[0].is_error' must be a boolean");
  b["messages"][2]["content"][0]["is_error"] = true;
  r = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generate.messages.back().content, "Error: out");
}

TEST(AnthropicRequestTest, ThinkingDrivesTheTemplateSwitchAndItsBudget) {
  json b = ClaudeCodeBody();
  b["thinking"] = json::parse(R"({"type":"enabled","budget_tokens":2048})");
  auto enabled = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(enabled.ok());
  EXPECT_EQ(enabled->generate.enable_thinking, true);
  EXPECT_EQ(enabled->generate.thinking_budget, 2048);
  EXPECT_EQ(enabled->display, ThinkingDisplay::kSummarized);
  b["thinking"] = json::parse(R"({"type":"disabled"})");
  auto disabled = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(disabled.ok());
  EXPECT_EQ(disabled->generate.enable_thinking, false);
  EXPECT_FALSE(disabled->thinking);
  b.erase("thinking");
  auto absent = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(absent.ok());
  EXPECT_EQ(absent->generate.enable_thinking, false);  // as Anthropic: no thinking unless asked
}

TEST(AnthropicRequestTest, OutputConfigFormatConstrainsTheAnswer) {
  json b = ClaudeCodeBody();
  b["output_config"] = json::parse(R"({"format":{"type":"json_schema","schema":{"type":"object"}}})");
  auto r = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(json::parse(r->generate.json_schema), json::parse(R"({"type":"object"})"));
}

TEST(AnthropicRequestTest, ImagesAreRefusedInTheLastTurnAndPlaceholdersInEarlierOnes) {
  const json image = json::parse(R"({"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA"}})");
  json b = ClaudeCodeBody();
  b["messages"] =
      json::array({{{"role", "user"}, {"content", json::array({image, {{"type", "text"}, {"text", "see"}}})}}});
  EXPECT_NE(ParseError(b).find("messages[0].content[0]"), std::string::npos);
  b["messages"].push_back({{"role", "assistant"}, {"content", "ok"}});
  b["messages"].push_back({{"role", "user"}, {"content", "and now?"}});
  auto r = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generate.messages[1].content, "[image omitted: this server's model reads text only]\n\nsee");
  // Inside an earlier tool result too.
  b["messages"][0]["content"] =
      json::array({{{"type", "tool_result"}, {"tool_use_id", "t1"}, {"content", json::array({image})}}});
  b["messages"][1]["content"] =
      json::array({{{"type", "tool_use"}, {"id", "t2"}, {"name", "Bash"}, {"input", json::object()}}});
  r = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generate.messages[1].role, "tool");
  EXPECT_EQ(r->generate.messages[1].content, "[image omitted: this server's model reads text only]");
}

TEST(AnthropicRequestTest, ThinkingBlocksInHistoryBecomeTheTurnsReasoning) {
  json b = ClaudeCodeBody();
  b["messages"] = json::parse(R"([
    {"role":"user","content":"q"},
    {"role":"assistant","content":[{"type":"thinking","thinking":"visible","signature":"x"},
                                   {"type":"redacted_thinking","data":"opaque"},
                                   {"type":"text","text":"a"}]},
    {"role":"user","content":"q2"}])");
  b["messages"][1]["content"].push_back(
      {{"type", "thinking"}, {"thinking", ""}, {"signature", ThinkingSignature("from the signature")}});
  auto r = ParseMessagesRequest(b.dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->generate.messages[2].reasoning_content, "visible\n\nfrom the signature");
  EXPECT_EQ(r->generate.messages[2].content, "a");
  // A signature kvault did not write carries nothing it can read.
  EXPECT_EQ(ReasoningFromSignature("EqQBCkYIBxgCKkD"), "");
  EXPECT_EQ(ReasoningFromSignature("kvault1.%%%"), "");
  EXPECT_EQ(ReasoningFromSignature(ThinkingSignature("")), "");
}

}  // namespace
}  // namespace kvault

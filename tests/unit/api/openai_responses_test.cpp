#include "api/openai_responses.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

using json = nlohmann::json;

std::string ParseError(const json& body) {
  auto r = ParseResponsesRequest(body.dump());
  EXPECT_FALSE(r.ok()) << body.dump();
  return r.status().message();
}

// What Codex sends (trimmed): developer messages, flat and namespace function tools, reasoning,
// store false, include, prompt_cache_key, client_metadata.
json CodexBody() {
  return json::parse(R"({
    "model": "demo-small", "stream": true, "store": false, "parallel_tool_calls": true, "tool_choice": "auto",
    "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "thread-1", "client_metadata": {"thread_id": "thread-1"},
    "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "base"}]},
              {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}], "id": "msg_1"}],
    "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}, "strict": false},
              {"type": "namespace", "name": "multi_agent_v1",
               "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]}]
  })");
}

TEST(ResponsesParseTest, CodexRequestIsAcceptedAndEachFieldHonoured) {
  auto r = ParseResponsesRequest(CodexBody().dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->store);
  EXPECT_TRUE(r->generate.stream);
  EXPECT_EQ(r->prompt_cache_key, "thread-1");
  EXPECT_EQ(r->generate.enable_thinking, true);  // a reasoning object: the thinking switch on
  ASSERT_EQ(r->generate.tools.size(), 2u);
  EXPECT_EQ(r->generate.tools[1].name, "spawn_agent");
  EXPECT_EQ(r->namespaces.at("spawn_agent"), "multi_agent_v1");
  EXPECT_TRUE(r->generate.parallel_tool_calls);
  std::vector<common_chat_msg> m;
  ASSERT_TRUE(BuildResponsesMessages("", json::array(), r->input, m).ok());
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].role, "system");  // developer
  EXPECT_EQ(m[1].content, "hi");
}

TEST(ResponsesParseTest, WhatCannotBeHonouredIsRefusedByName) {
  auto with = [](const char* key, json v) {
    json b = CodexBody();
    b[key] = std::move(v);
    return b;
  };
  EXPECT_EQ(ParseError(with("frobnicate", 1)), "Unrecognized request argument supplied: frobnicate");
  EXPECT_NE(ParseError(with("background", true)).find("background"), std::string::npos);
  EXPECT_NE(ParseError(with("conversation", "conv_1")).find("conversation"), std::string::npos);
  EXPECT_NE(ParseError(with("truncation", "auto")).find("truncation"), std::string::npos);
  EXPECT_NE(ParseError(with("include", json::array({"message.output_text.logprobs"}))).find("include"),
            std::string::npos);
  EXPECT_NE(ParseError(with("tools", json::parse(R"([{"type":"web_search"}])"))).find("tools[0].type"),
            std::string::npos);
  EXPECT_NE(ParseError(with("tool_choice", json::parse(R"({"type":"function","name":"nope"})"))).find("nope"),
            std::string::npos);
  // Wrong types are 400s naming the field, never a thrown exception (a 500).
  EXPECT_NE(ParseError(with("tool_choice", json::parse(R"({"type":"allowed_tools","mode":5,"tools":[]})")))
                .find("allowed_tools"),
            std::string::npos);
  json bad_ns = CodexBody();
  bad_ns["tools"][1]["tools"][0]["type"] = 7;
  EXPECT_NE(ParseError(bad_ns).find("tools[1].tools[0].type"), std::string::npos);
  json schema_and_call = CodexBody();
  schema_and_call["text"] = json::parse(R"({"format":{"type":"json_schema","name":"x","schema":{"type":"object"}}})");
  schema_and_call["tool_choice"] = "required";
  EXPECT_NE(ParseError(schema_and_call).find("tool_choice"), std::string::npos);
  json image = CodexBody();
  image["input"][1]["content"].push_back({{"type", "input_image"}, {"image_url", "data:"}});
  auto r = ParseResponsesRequest(image.dump());
  ASSERT_TRUE(r.ok());
  std::vector<common_chat_msg> m;
  Status st = BuildResponsesMessages("", json::array(), r->input, m);
  EXPECT_NE(st.message().find("input[1].content[1]"), std::string::npos) << st.message();
}

TEST(ResponsesParseTest, PromptCacheOptionsPrewarmIsAWarmUpAndTheRestIsChecked) {
  json b = CodexBody();
  b["max_output_tokens"] = 50;
  b["prompt_cache_options"] = json::parse(R"({"prewarm":true,"mode":"explicit","ttl":"30m"})");
  auto r = ParseResponsesRequest(b.dump());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->prewarm);
  EXPECT_EQ(r->generate.max_tokens, 0);  // the prompt computed and kept, nothing generated
  b["prompt_cache_options"] = json::parse(R"({"prewarm":false})");
  r = ParseResponsesRequest(b.dump());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->prewarm);
  EXPECT_EQ(r->generate.max_tokens, 50);
  b["prompt_cache_options"] = json::parse(R"({"prewarm":"yes"})");
  EXPECT_EQ(ParseError(b), "'prompt_cache_options.prewarm' must be a boolean");
  b["prompt_cache_options"] = json::parse(R"({"mode":"sometimes"})");
  EXPECT_EQ(ParseError(b), "'prompt_cache_options.mode' must be 'implicit' or 'explicit'");
  b["prompt_cache_options"] = json::parse(R"({"comparison_response_id":"resp_1"})");
  EXPECT_NE(ParseError(b).find("prompt_cache_options.comparison_response_id"), std::string::npos);
  b["prompt_cache_options"] = json::parse(R"({"bogus":1})");
  EXPECT_EQ(ParseError(b), "Unrecognized request argument supplied: prompt_cache_options.bogus");
}

TEST(ResponsesParseTest, ReasoningEffortIsTheThinkingSwitchAndItsValuesAreChecked) {
  auto parse = [](const char* reasoning) {
    json b = CodexBody();
    b["reasoning"] = json::parse(reasoning);
    return ParseResponsesRequest(b.dump());
  };
  for (const char* effort : {"minimal", "low", "medium", "high", "xhigh", "max"}) {
    auto r = parse((std::string(R"({"effort":")") + effort + R"(","summary":"detailed"})").c_str());
    ASSERT_TRUE(r.ok()) << effort << ": " << r.status().ToString();
    EXPECT_EQ(r->generate.enable_thinking, true) << effort;
    EXPECT_EQ(r->echo["reasoning"]["effort"], effort);
  }
  auto off = parse(R"({"effort":"none","summary":"none"})");  // Codex's "no summaries" is "none"
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->generate.enable_thinking, false);
  EXPECT_FALSE(off->thinking);
  auto nulls =
      parse(R"({"effort":null,"summary":null,"generate_summary":"concise","context":"auto","mode":"standard"})");
  ASSERT_TRUE(nulls.ok()) << nulls.status().ToString();
  EXPECT_EQ(nulls->generate.enable_thinking, true);
  json b = CodexBody();
  b["reasoning"] = json::parse(R"({"effort":"extreme"})");
  EXPECT_NE(ParseError(b).find("'reasoning.effort' must be one of 'none', 'minimal', 'low', 'medium', 'high', "
                               "'xhigh', 'max' (got \"extreme\")"),
            std::string::npos);
  b["reasoning"] = json::parse(R"({"effort":3})");
  EXPECT_NE(ParseError(b).find("reasoning.effort"), std::string::npos);
  b["reasoning"] = json::parse(R"({"summary":"brief"})");
  EXPECT_NE(ParseError(b).find("'reasoning.summary' must be one of 'auto', 'concise', 'detailed', 'none' (got "
                               "\"brief\")"),
            std::string::npos);
  b["reasoning"] = json::parse(R"({"context":"all_turns"})");
  EXPECT_NE(ParseError(b).find("'reasoning.context': only 'auto'"), std::string::npos);
  b["reasoning"] = json::parse(R"({"mode":"pro"})");
  EXPECT_NE(ParseError(b).find("'reasoning.mode': only 'standard'"), std::string::npos);
  b["reasoning"] = json::parse(R"({"budget":100})");
  EXPECT_EQ(ParseError(b), "Unrecognized request argument supplied: reasoning.budget");
  b["reasoning"] = "high";
  EXPECT_EQ(ParseError(b), "'reasoning' must be an object");
}

TEST(ResponsesParseTest, ReasoningJoinsTheTurnItPrecedes) {
  const json items = json::parse(R"([
    {"role":"user","content":"q"},
    {"type":"reasoning","id":"rs_0","summary":[],"content":[{"type":"reasoning_text","text":"r0"}]},
    {"type":"message","role":"assistant","content":[{"type":"output_text","text":"A"}]},
    {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"r1"}]},
    {"type":"message","role":"assistant","content":[{"type":"output_text","text":"B"}]},
    {"role":"user","content":"q2"}])");
  std::vector<common_chat_msg> m;
  ASSERT_TRUE(BuildResponsesMessages("", json::array(), items, m).ok());
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[1].content, "A");
  EXPECT_EQ(m[1].reasoning_content, "r0");
  EXPECT_EQ(m[2].content, "B");
  EXPECT_EQ(m[2].reasoning_content, "r1");
}

TEST(ResponsesParseTest, ImagesInToolOutputsAndEarlierTurnsArePlaceholders) {
  const json image = {{"type", "input_image"}, {"image_url", "data:image/png;base64,AA"}};
  json items =
      json::array({{{"role", "user"}, {"content", json::array({image, {{"type", "input_text"}, {"text", "see"}}})}},
                   {{"type", "function_call"}, {"call_id", "c1"}, {"name", "view_image"}, {"arguments", "{}"}},
                   {{"type", "function_call_output"}, {"call_id", "c1"}, {"output", json::array({image})}},
                   {{"role", "user"}, {"content", "next"}}});
  std::vector<common_chat_msg> m;
  ASSERT_TRUE(BuildResponsesMessages("", json::array(), items, m).ok());
  EXPECT_EQ(m[0].content, "[image omitted: this server's model reads text only]see");
  EXPECT_EQ(m[2].content, "[image omitted: this server's model reads text only]");
  items[3]["content"] = json::array({image});  // in the last user message: refused
  m.clear();
  EXPECT_NE(BuildResponsesMessages("", json::array(), items, m).message().find("input[3].content[0]"),
            std::string::npos);
}

TEST(ResponsesParseTest, HistoryItemsBecomeOneAssistantTurnThenToolResults) {
  const json history = json::parse(R"([
    {"type":"message","role":"user","content":"list files"},
    {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"use ls"}]},
    {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Running ls.","annotations":[]}]},
    {"type":"function_call","call_id":"call_1","name":"exec_command","arguments":"{\"cmd\":\"ls\"}"},
    {"type":"function_call_output","call_id":"call_1","output":"a.txt"}])");
  std::vector<common_chat_msg> m;
  ASSERT_TRUE(
      BuildResponsesMessages("be brief", history, json::array({{{"role", "user"}, {"content", "next"}}}), m).ok());
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[0].content, "be brief");
  EXPECT_EQ(m[2].role, "assistant");
  EXPECT_EQ(m[2].reasoning_content, "use ls");
  EXPECT_EQ(m[2].content, "Running ls.");
  ASSERT_EQ(m[2].tool_calls.size(), 1u);
  EXPECT_EQ(m[2].tool_calls[0].id, "call_1");
  EXPECT_EQ(m[3].role, "tool");
  EXPECT_EQ(m[3].tool_call_id, "call_1");
  EXPECT_EQ(m[4].content, "next");
}

// Splits the SSE text into data objects, checking that each event line names the data's type.
std::vector<json> Events(const std::string& sse) {
  std::vector<json> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    const std::string ev = sse.substr(pos, end - pos);
    const size_t nl = ev.find('\n');
    const json data = json::parse(ev.substr(nl + 7));
    EXPECT_EQ(ev.substr(7, nl - 7), data["type"]);
    out.push_back(data);
    pos = end + 2;
  }
  return out;
}

TEST(ResponseBuilderTest, TextThenACallInTheReferencesOrderNumberedFromZero) {
  ResponseBuilder b({{"id", "resp_1"}, {"model", "m"}}, {{"spawn_agent", "multi_agent_v1"}});
  std::string sse = b.Created();
  sse += b.Delta({OutputDelta::Kind::kText, 0, "Hel", "", ""});
  sse += b.Delta({OutputDelta::Kind::kText, 0, "lo", "", ""});
  sse += b.Delta({OutputDelta::Kind::kToolStart, 1, "", "call_9", "spawn_agent"});
  sse += b.Delta({OutputDelta::Kind::kToolArgs, 1, "{}", "", ""});
  sse += b.Delta({OutputDelta::Kind::kToolArgs, 0, "late", "", ""});  // an earlier call's: not this one's
  sse += b.Finish(FinishReason::kStop, {100, 60, 7});
  sse += b.Completed();
  const auto ev = Events(sse);
  std::vector<std::string> types;
  for (size_t i = 0; i < ev.size(); ++i) {
    types.push_back(ev[i]["type"]);
    EXPECT_EQ(ev[i]["sequence_number"], i);
  }
  EXPECT_EQ(types, (std::vector<std::string>{
                       "response.created", "response.in_progress", "response.output_item.added",
                       "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                       "response.output_text.done", "response.content_part.done", "response.output_item.done",
                       "response.output_item.added", "response.function_call_arguments.delta",
                       "response.function_call_arguments.done", "response.output_item.done", "response.completed"}));
  EXPECT_EQ(ev[0]["response"]["output"], json::array());
  EXPECT_EQ(ev[9]["output_index"], 1);
  const json& done = ev.back()["response"];
  EXPECT_EQ(done["status"], "completed");
  EXPECT_EQ(done["output"][0]["content"][0]["text"], "Hello");
  EXPECT_EQ(done["output"][1]["call_id"], "call_9");
  EXPECT_EQ(done["output"][1]["namespace"], "multi_agent_v1");
  EXPECT_EQ(done["output"][1]["arguments"], "{}");
  EXPECT_EQ(done["usage"]["input_tokens_details"]["cached_tokens"], 60);
  EXPECT_EQ(done["usage"]["total_tokens"], 107);
  // Cut by max_output_tokens or the context: incomplete.
  ResponseBuilder cut({{"id", "resp_2"}}, {});
  cut.Delta({OutputDelta::Kind::kText, 0, "cut sh", "", ""});
  cut.Finish(FinishReason::kContextLength, {});
  EXPECT_NE(cut.Completed().find("response.incomplete"), std::string::npos);
  EXPECT_EQ(cut.response()["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(cut.response()["output"][0]["status"], "incomplete");
}

}  // namespace
}  // namespace kvault

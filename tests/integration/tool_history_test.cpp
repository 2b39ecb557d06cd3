// Parallel tool calls in a conversation's history (issue #24): an assistant turn that called two
// tools at once (OpenAI: two tool_calls; Anthropic: two tool_use blocks) and the two results are
// accepted on both APIs and rendered — each call's arguments and each result reach the prompt
// (their length shows in the prompt's token count). The tiny demo model cannot be made to emit
// parallel calls deterministically, so the history is written by the test.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;

const std::string kLonger = " and the whole of its surrounding region, in great detail, please";

class ToolHistoryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "2048", "--log-level", "warn"})
                  .release();
    ASSERT_TRUE(server_->WaitHealthy(std::chrono::seconds(60))) << server_->Log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static json Post(const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(std::chrono::seconds(60));
    auto r = c.Post(path, {{"anthropic-version", "2023-06-01"}}, body.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 200) << path << ": " << r->body;
    return r->status == 200 ? json::parse(r->body) : json();
  }
  static ServerProcess* server_;
};
ServerProcess* ToolHistoryTest::server_ = nullptr;

json OpenAiTools() {
  auto fn = [](const char* name, const char* param) {
    return json{{"type", "function"},
                {"function",
                 {{"name", name},
                  {"description", std::string("Look up the ") + param},
                  {"parameters",
                   {{"type", "object"},
                    {"properties", {{param, {{"type", "string"}}}}},
                    {"required", json::array({param})}}}}}};
  };
  return json::array({fn("get_weather", "city"), fn("get_time", "zone")});
}

// The chat so far: the user asks, the assistant calls both tools at once, both results come back.
json OpenAiBody(const std::string& second_args, const std::string& second_result) {
  const json calls = json::array(
      {{{"id", "call_1"},
        {"type", "function"},
        {"function", {{"name", "get_weather"}, {"arguments", json{{"city", "Paris"}}.dump()}}}},
       {{"id", "call_2"},
        {"type", "function"},
        {"function", {{"name", "get_time"}, {"arguments", json{{"zone", second_args}}.dump()}}}}});
  return {{"messages",
           {{{"role", "user"}, {"content", "What is the weather and the time in Paris?"}},
            {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", calls}},
            {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "21 degrees and sunny"}},
            {{"role", "tool"}, {"tool_call_id", "call_2"}, {"content", second_result}}}},
          {"tools", OpenAiTools()},
          {"parallel_tool_calls", true},
          {"max_tokens", 2},
          {"temperature", 0}};
}

TEST_F(ToolHistoryTest, OpenAiAssistantTurnWithTwoToolCallsIsAcceptedAndBothCallsAreRendered) {
  auto prompt_tokens = [&](const json& body) {
    const json r = Post("/v1/chat/completions", body);
    return r.is_null() ? -1 : r["usage"]["prompt_tokens"].get<int>();
  };
  const int base = prompt_tokens(OpenAiBody("Europe/Paris", "14:05"));
  ASSERT_GT(base, 0);
  // The second call's arguments and the second result are in the prompt, not dropped.
  EXPECT_GT(prompt_tokens(OpenAiBody("Europe/Paris" + kLonger, "14:05")), base + 8);
  EXPECT_GT(prompt_tokens(OpenAiBody("Europe/Paris", "14:05" + kLonger)), base + 8);
  // Streamed too.
  json streamed = OpenAiBody("Europe/Paris", "14:05");
  streamed["stream"] = true;
  httplib::Client c("127.0.0.1", server_->port());
  c.set_read_timeout(std::chrono::seconds(60));
  auto r = c.Post("/v1/chat/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos) << r->body;
}

json AnthropicTools() {
  auto tool = [](const char* name, const char* param) {
    return json{{"name", name},
                {"description", std::string("Look up the ") + param},
                {"input_schema",
                 {{"type", "object"}, {"properties", {{param, {{"type", "string"}}}}}, {"required", {param}}}}};
  };
  return json::array({tool("get_weather", "city"), tool("get_time", "zone")});
}

json AnthropicBody(const std::string& second_input, const std::string& second_result) {
  return {{"messages",
           {{{"role", "user"}, {"content", "What is the weather and the time in Paris?"}},
            {{"role", "assistant"},
             {"content",
              {{{"type", "text"}, {"text", "Let me look both up."}},
               {{"type", "tool_use"}, {"id", "toolu_1"}, {"name", "get_weather"}, {"input", {{"city", "Paris"}}}},
               {{"type", "tool_use"}, {"id", "toolu_2"}, {"name", "get_time"}, {"input", {{"zone", second_input}}}}}}},
            {{"role", "user"},
             {"content",
              {{{"type", "tool_result"}, {"tool_use_id", "toolu_1"}, {"content", "21 degrees and sunny"}},
               {{"type", "tool_result"}, {"tool_use_id", "toolu_2"}, {"content", second_result}}}}}}},
          {"tools", AnthropicTools()}};
}

TEST_F(ToolHistoryTest, AnthropicAssistantTurnWithTwoToolUseBlocksIsAcceptedAndBothAreRendered) {
  auto counted = [&](const json& body) {
    const json r = Post("/v1/messages/count_tokens", body);
    return r.is_null() ? -1 : r["input_tokens"].get<int>();
  };
  const int base = counted(AnthropicBody("Europe/Paris", "14:05"));
  ASSERT_GT(base, 0);
  EXPECT_GT(counted(AnthropicBody("Europe/Paris" + kLonger, "14:05")), base + 8);
  EXPECT_GT(counted(AnthropicBody("Europe/Paris", "14:05" + kLonger)), base + 8);
  json body = AnthropicBody("Europe/Paris", "14:05");
  body["max_tokens"] = 2;
  body["temperature"] = 0;
  const json r = Post("/v1/messages", body);
  ASSERT_FALSE(r.is_null());
  const json& u = r["usage"];
  EXPECT_EQ(u["input_tokens"].get<int>() + u["cache_read_input_tokens"].get<int>() +
                u["cache_creation_input_tokens"].get<int>(),
            base)
      << r.dump();
}

}  // namespace
}  // namespace kvault::testing

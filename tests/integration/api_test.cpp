// Both APIs through the real server binary with API keys: authentication in each API's
// envelope, tenants kept apart, request ids, Anthropic usage and count_tokens, raw completions.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;

const char* kKeyA = "test-key-A-0123456789";
const char* kKeyB = "test-key-B-9876543210";

// A system prompt long enough to span several 64-token blocks.
std::string LongSystem() {
  std::string s = "You are a careful assistant. ";
  for (int i = 0; i < 60; ++i) s += "Rule " + std::to_string(i) + ": answer with care and cite sources. ";
  return s;
}

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "2048", "--log-level", "info",
                                    "--api-key", kKeyA, "--api-key", kKeyB})
                  .release();
    ASSERT_TRUE(server_->WaitHealthy(std::chrono::seconds(60))) << server_->Log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static httplib::Result Post(const std::string& path, const json& body, const httplib::Headers& headers) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(std::chrono::seconds(60));
    return c.Post(path, headers, body.dump(), "application/json");
  }
  static json Messages(const json& body, const char* key) {
    auto res = Post("/v1/messages", body, {{"x-api-key", key}});
    EXPECT_TRUE(res);
    if (!res) return json();
    EXPECT_EQ(res->status, 200) << res->body;
    return json::parse(res->body);
  }
  static ServerProcess* server_;
};
ServerProcess* ApiTest::server_ = nullptr;

TEST_F(ApiTest, MissingOrWrongKeysGet401InEachApisEnvelope) {
  const json chat = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}, {"temperature", 0}};
  const json msg = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}, {"temperature", 0}};
  for (const httplib::Headers& h : {httplib::Headers{}, httplib::Headers{{"x-api-key", "nope"}},
                                     httplib::Headers{{"Authorization", "Bearer nope"}}}) {
    auto o = Post("/v1/chat/completions", chat, h);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->status, 401);
    const json oj = json::parse(o->body);
    EXPECT_EQ(oj["error"]["code"], "invalid_api_key");
    auto a = Post("/v1/messages", msg, h);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 401);
    const json aj = json::parse(a->body);
    EXPECT_EQ(aj["type"], "error");
    EXPECT_EQ(aj["error"]["type"], "authentication_error");
    EXPECT_EQ(a->body.find("nope"), std::string::npos);  // the presented key is never echoed
  }
  httplib::Client c("127.0.0.1", server_->port());
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 401);
  auto ok = c.Get("/v1/models", httplib::Headers{{"Authorization", std::string("Bearer ") + kKeyA}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  // Tenants see the model, not where its file lives on the server.
  const json list = json::parse(ok->body);
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["meta"]["state"], "loaded");
  EXPECT_FALSE(list["data"][0]["meta"].contains("path"));
  EXPECT_EQ(ok->body.find(TinyModel().filename().string()), std::string::npos);
  // The key never reaches the log.
  EXPECT_EQ(server_->Log().find(kKeyA), std::string::npos);
}

TEST_F(ApiTest, RequestIdIsEchoedOrGenerated) {
  const json chat = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}, {"temperature", 0}};
  auto echoed = Post("/v1/chat/completions", chat, {{"x-api-key", kKeyA}, {"X-Request-Id", "abc-123"}});
  ASSERT_TRUE(echoed);
  EXPECT_EQ(echoed->get_header_value("X-Request-Id"), "abc-123");
  auto generated = Post("/v1/chat/completions", chat, {{"x-api-key", kKeyA}});
  ASSERT_TRUE(generated);
  EXPECT_EQ(generated->get_header_value("X-Request-Id").rfind("req_", 0), 0u);
  EXPECT_FALSE(generated->get_header_value("X-Cache-Tokens").empty());
  EXPECT_EQ(generated->get_header_value_count("X-Cache-Tokens"), 1u);
}

TEST_F(ApiTest, AnthropicUsageAddsUpToCountTokensAndTheNextTurnReadsTheCache) {
  const json turn1 = {{"model", "kvault-tiny"},
                      {"max_tokens", 8},
                      {"temperature", 0},
                      {"system", LongSystem()},
                      {"messages", {{{"role", "user"}, {"content", "First question, please."}}}}};
  json counted_body = turn1;
  counted_body.erase("max_tokens");
  auto counted = Post("/v1/messages/count_tokens", counted_body, {{"x-api-key", kKeyA}});
  ASSERT_TRUE(counted);
  ASSERT_EQ(counted->status, 200) << counted->body;
  const int n = json::parse(counted->body)["input_tokens"];
  const json r1 = Messages(turn1, kKeyA);
  const json& u1 = r1["usage"];
  EXPECT_EQ(u1["input_tokens"].get<int>() + u1["cache_creation_input_tokens"].get<int>() +
                u1["cache_read_input_tokens"].get<int>(),
            n)
      << r1.dump();
  EXPECT_GT(n, 500);
  EXPECT_EQ(r1["type"], "message");
  EXPECT_EQ(r1["id"].get<std::string>().rfind("msg_", 0), 0u);

  json turn2 = turn1;
  std::string answer;
  for (const auto& b : r1["content"]) answer += b.value("text", "");
  turn2["messages"].push_back({{"role", "assistant"}, {"content", answer.empty() ? "ok" : answer}});
  turn2["messages"].push_back({{"role", "user"}, {"content", "Second question."}});
  const json r2 = Messages(turn2, kKeyA);
  EXPECT_GE(r2["usage"]["cache_read_input_tokens"].get<int>(), 512) << r2.dump();

  // Another tenant sending the very same first turn gets no hit on tenant A's blocks.
  const json other = Messages(turn1, kKeyB);
  EXPECT_EQ(other["usage"]["cache_read_input_tokens"], 0) << other.dump();
}

// Anthropic's cache warm-up: max_tokens 0 computes and keeps the prompt and generates nothing;
// the real turn that follows reads it from the cache. Sent with top-level cache_control
// (automatic caching), as the reference pairs them.
TEST_F(ApiTest, AnthropicMaxTokensZeroWarmsTheCacheForTheTurnAfterIt) {
  const json turn = {{"model", "kvault-tiny"},
                     {"max_tokens", 0},
                     {"temperature", 0},
                     {"cache_control", {{"type", "ephemeral"}, {"ttl", "5m"}}},
                     {"system", "Warm-up first. " + LongSystem()},
                     {"messages", {{{"role", "user"}, {"content", "A question for later."}}}}};
  const json warm = Messages(turn, kKeyA);
  EXPECT_EQ(warm["content"], json::array()) << warm.dump();
  EXPECT_EQ(warm["stop_reason"], "max_tokens");
  EXPECT_EQ(warm["usage"]["output_tokens"], 0);
  // At most the chat template's header, shared with the tenant's earlier requests.
  EXPECT_LT(warm["usage"]["cache_read_input_tokens"].get<int>(), 64) << warm.dump();
  const int kept = warm["usage"]["cache_creation_input_tokens"].get<int>();
  EXPECT_GT(kept, 500) << warm.dump();
  json real = turn;
  real["max_tokens"] = 8;
  const json answer = Messages(real, kKeyA);
  // The whole prompt but its last token (recomputed for the first token's logits): the kept
  // blocks and the partial one the idle sequence still holds.
  const json& u = answer["usage"];
  const int prompt = u["input_tokens"].get<int>() + u["cache_creation_input_tokens"].get<int>() +
                     u["cache_read_input_tokens"].get<int>();
  EXPECT_EQ(u["cache_read_input_tokens"].get<int>(), prompt - 1) << answer.dump();
  EXPECT_GE(u["cache_read_input_tokens"].get<int>(), kept);
  EXPECT_GT(answer["usage"]["output_tokens"].get<int>(), 0);
  json streamed = turn;
  streamed["stream"] = true;
  auto refused = Post("/v1/messages", streamed, {{"x-api-key", kKeyA}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  const json e = json::parse(refused->body);
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_NE(e["error"]["message"].get<std::string>().find("max_tokens"), std::string::npos) << refused->body;
}

TEST_F(ApiTest, AnthropicErrorsUseItsEnvelope) {
  auto bad = Post("/v1/messages", {{"messages", {{{"role", "user"}, {"content", "x"}}}}}, {{"x-api-key", kKeyA}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  const json j = json::parse(bad->body);
  EXPECT_EQ(j["type"], "error");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("max_tokens"), std::string::npos);
  httplib::Client c("127.0.0.1", server_->port());
  auto malformed = c.Post("/v1/messages", {{"x-api-key", kKeyA}}, "{not json", "application/json");
  ASSERT_TRUE(malformed);
  EXPECT_EQ(malformed->status, 400);
  EXPECT_EQ(json::parse(malformed->body)["type"], "error");
}

TEST_F(ApiTest, AnthropicStreamEndsWithMessageStopAndMatchesTheNonStreamedText) {
  json body = {
      {"max_tokens", 12}, {"temperature", 0}, {"messages", {{{"role", "user"}, {"content", "Stream this, please."}}}}};
  const json whole = Messages(body, kKeyA);
  std::string expected;
  for (const auto& b : whole["content"]) expected += b.value("text", "");
  body["stream"] = true;
  auto res = Post("/v1/messages", body, {{"x-api-key", kKeyA}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  std::string text;
  std::vector<std::string> types;
  size_t pos = 0;
  while ((pos = res->body.find("data: ", pos)) != std::string::npos) {
    const size_t end = res->body.find('\n', pos);
    const json ev = json::parse(res->body.substr(pos + 6, end - pos - 6));
    types.push_back(ev["type"]);
    if (ev["type"] == "content_block_delta") text += ev["delta"]["text"].get<std::string>();
    pos = end;
  }
  ASSERT_GE(types.size(), 5u);
  EXPECT_EQ(types.front(), "message_start");
  EXPECT_EQ(types[types.size() - 2], "message_delta");
  EXPECT_EQ(types.back(), "message_stop");
  EXPECT_EQ(text, expected);
}

TEST_F(ApiTest, RawCompletions) {
  auto res = Post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 5}, {"temperature", 0}},
                  {{"x-api-key", kKeyA}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json j = json::parse(res->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_TRUE(j["choices"][0]["text"].is_string());
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  auto bad = Post("/v1/completions", {{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}},
                  {{"x-api-key", kKeyA}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(json::parse(bad->body)["error"]["type"], "invalid_request_error");
}

TEST_F(ApiTest, RawCompletionsStreamTheSameTextAsTheWholeAnswer) {
  json body = {{"prompt", "Once upon a time"}, {"max_tokens", 12}, {"temperature", 0}};
  auto whole = Post("/v1/completions", body, {{"x-api-key", kKeyA}});
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200) << whole->body;
  const json w = json::parse(whole->body);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto res = Post("/v1/completions", body, {{"x-api-key", kKeyA}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  std::vector<json> chunks;
  bool done = false;
  size_t pos = 0;
  while ((pos = res->body.find("data: ", pos)) != std::string::npos) {
    const size_t end = res->body.find('\n', pos);
    const std::string data = res->body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      break;
    }
    chunks.push_back(json::parse(data));
  }
  EXPECT_TRUE(done);
  ASSERT_GE(chunks.size(), 3u);  // text, finish, usage
  std::string text;
  for (size_t i = 0; i + 2 < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i]["object"], "text_completion");
    EXPECT_EQ(chunks[i]["id"], chunks.back()["id"]);
    EXPECT_TRUE(chunks[i]["usage"].is_null());
    EXPECT_TRUE(chunks[i]["choices"][0]["finish_reason"].is_null());
    text += chunks[i]["choices"][0]["text"].get<std::string>();
  }
  const json& finish = chunks[chunks.size() - 2];
  EXPECT_EQ(finish["choices"][0]["text"], "");
  EXPECT_EQ(finish["choices"][0]["finish_reason"], w["choices"][0]["finish_reason"]);
  const json& usage = chunks.back();
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], w["usage"]["completion_tokens"]);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], w["usage"]["prompt_tokens"]);
  EXPECT_EQ(text, w["choices"][0]["text"]);
}

}  // namespace
}  // namespace kvault::testing

namespace kvault::testing {
namespace {

TEST(KeyConcurrencyTest, AKeyAtItsLimitGets429OtherKeysDoNot) {
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "1024", "--api-key", kKeyA,
                                 "--api-key", kKeyB, "--key-concurrency", "1"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  std::atomic<bool> streaming{false};
  std::thread first([&] {
    httplib::Client c("127.0.0.1", s->port());
    c.set_read_timeout(std::chrono::seconds(60));
    c.Post("/v1/chat/completions", {{"x-api-key", kKeyA}},
           R"({"messages":[{"role":"user","content":"long"}],"max_tokens":600,"temperature":0,"stream":true})",
           "application/json", [&](const char*, size_t) {
             streaming = true;
             return true;
           });
  });
  for (const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
       !streaming && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!streaming) first.join();  // it ended without a chunk: the failure below says so
  ASSERT_TRUE(streaming) << "the first stream never started";
  httplib::Client c("127.0.0.1", s->port());
  c.set_read_timeout(std::chrono::seconds(60));
  const std::string body = R"({"messages":[{"role":"user","content":"short"}],"max_tokens":2,"temperature":0})";
  auto same = c.Post("/v1/chat/completions", {{"x-api-key", kKeyA}}, body, "application/json");
  ASSERT_TRUE(same);
  EXPECT_EQ(same->status, 429) << same->body;
  EXPECT_EQ(same->get_header_value("Retry-After"), "1");
  auto other = c.Post("/v1/chat/completions", {{"x-api-key", kKeyB}}, body, "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200) << other->body;
  first.join();
  // The client sees the stream's end a moment before the server's handler returns the slot.
  httplib::Result again;
  for (const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       std::chrono::steady_clock::now() < deadline;) {
    again = c.Post("/v1/chat/completions", {{"x-api-key", kKeyA}}, body, "application/json");
    if (!again || again->status != 429) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;  // the slot was given back
}

}  // namespace
}  // namespace kvault::testing

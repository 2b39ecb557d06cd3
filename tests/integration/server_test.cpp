// The real server binary over real HTTP with the tiny demo model.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ =
        ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "512", "--log-level", "warn"}).release();
    ASSERT_TRUE(server_->WaitHealthy(std::chrono::seconds(60))) << server_->Log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static httplib::Client Client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(std::chrono::seconds(60));
    return c;
  }
  static httplib::Result Chat(const std::string& body) {
    return Client().Post("/v1/chat/completions", body, "application/json");
  }
  static void ExpectOpenAiError(const httplib::Result& res, int status, const std::string& type,
                                const std::string& needle) {
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, status) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
    json j = json::parse(res->body);
    EXPECT_EQ(j["error"]["type"], type) << res->body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << res->body;
  }
  static ServerProcess* server_;
};
ServerProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, HealthIsOk) {
  auto res = Client().Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  json j = json::parse(res->body);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["model"], "tiny");
}

// /health's devices: the CPU always, with its memory; the KV backend in the fingerprint is "CPU"
// unless a GPU device is there (a CUDA build on a GPU machine: scripts/gpu-check.sh).
TEST_F(ServerTest, HealthShowsTheDevicesAndTheKvBackend) {
  auto res = Client().Get("/health");
  ASSERT_TRUE(res);
  json j = json::parse(res->body);
  EXPECT_EQ(j["offload"]["gpu_layers"], -1);
  EXPECT_EQ(j["offload"]["main_gpu"], -1);
  ASSERT_TRUE(j["devices"].is_array()) << res->body;
  bool cpu = false, gpu = false;
  for (const auto& d : j["devices"]) {
    EXPECT_FALSE(d["name"].get<std::string>().empty()) << d;
    if (d["type"] == "cpu") {
      cpu = true;
      EXPECT_GT(d["memory_total_bytes"].get<uint64_t>(), 0u) << d;
      EXPECT_GT(d["memory_free_bytes_at_load"].get<uint64_t>(), 0u) << d;
    }
    gpu = gpu || d["type"] == "gpu" || d["type"] == "igpu";
  }
  EXPECT_TRUE(cpu) << res->body;
  if (gpu) {
    EXPECT_NE(j["offload"]["kv_backend"], "CPU") << res->body;
  } else {
    EXPECT_EQ(j["offload"]["kv_backend"], "CPU") << res->body;
  }
}

TEST_F(ServerTest, ModelsListsTheLoadedModel) {
  auto res = Client().Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  json j = json::parse(res->body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "tiny");
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["meta"]["n_ctx"], 512);
  // An open server (no API keys) shows the operator where the file is.
  EXPECT_EQ(j["data"][0]["meta"]["path"], TinyModel().string());
}

TEST_F(ServerTest, ChatCompletionEndToEnd) {
  // The exact request from the README.
  auto res = Chat(R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":16,"temperature":0})");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json j = json::parse(res->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(j["choices"][0]["message"]["content"].is_string());
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 5);
  const int completion = j["usage"]["completion_tokens"].get<int>();
  EXPECT_GE(completion, 1);
  EXPECT_LE(completion, 16);
  const std::string finish = j["choices"][0]["finish_reason"];
  if (finish == "length") {
    EXPECT_EQ(completion, 16);
  } else {
    EXPECT_EQ(finish, "stop");
  }
}

TEST_F(ServerTest, GreedyOutputIsReproducibleOverHttp) {
  const std::string body = R"({"messages":[{"role":"system","content":"You are terse."},
    {"role":"user","content":"Name three colours."}],"max_tokens":10,"temperature":0})";
  auto a = Chat(body);
  auto b = Chat(body);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->status, 200);
  ASSERT_EQ(b->status, 200);
  EXPECT_EQ(json::parse(a->body)["choices"][0]["message"]["content"],
            json::parse(b->body)["choices"][0]["message"]["content"]);
}

TEST_F(ServerTest, BadRequestsGetOpenAiErrors) {
  ExpectOpenAiError(Chat("{oops"), 400, "invalid_request_error", "not valid JSON");
  ExpectOpenAiError(Chat("{}"), 400, "invalid_request_error", "messages");
  ExpectOpenAiError(Chat(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})"), 400,
                    "invalid_request_error", "max_tokens");
  ExpectOpenAiError(Chat(R"({"messages":[{"role":"user","content":"x"}],"stream":"yes"})"), 400,
                    "invalid_request_error", "stream");
  ExpectOpenAiError(Client().Get("/v1/nothing-here"), 404, "not_found_error", "/v1/nothing-here");
  // And the server is still fine.
  auto res = Chat(R"({"messages":[{"role":"user","content":"still there?"}],"max_tokens":2,"temperature":0})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(ServerTest, PromptBeyondTheContextIs400NotACrash) {
  std::string words;
  for (int i = 0; i < 700; ++i) words += "word ";
  auto res = Chat(R"({"messages":[{"role":"user","content":")" + words + R"("}]})");
  ExpectOpenAiError(res, 400, "invalid_request_error", "prompt is too long: ");
  // The code OpenAI's clients look for to trim the conversation.
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "context_length_exceeded") << res->body;
  auto health = Client().Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// Server-sent events, parsed the way OpenAI's clients do.
std::vector<json> ParseSse(const std::string& body, bool* done) {
  std::vector<json> events;
  *done = false;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    if (ev == "data: [DONE]") {
      *done = true;
      continue;
    }
    events.push_back(json::parse(ev.substr(6)));
  }
  EXPECT_EQ(pos, body.size()) << "trailing bytes after the last event";
  return events;
}

TEST_F(ServerTest, StreamingMatchesTheNonStreamingAnswer) {
  const std::string msgs =
      R"("messages":[{"role":"user","content":"Stream me a story."}],"max_tokens":24,"temperature":0)";
  auto plain = Chat("{" + msgs + "}");
  ASSERT_TRUE(plain);
  const std::string expected = json::parse(plain->body)["choices"][0]["message"]["content"];
  auto res = Chat("{" + msgs + R"(,"stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  bool done = false;
  auto events = ParseSse(res->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front()["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  size_t text_chunks = 0;
  for (const auto& e : events) {
    EXPECT_EQ(e["id"], events.front()["id"]);
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    if (!e["choices"].empty() && e["choices"][0]["delta"].contains("content")) {
      text += e["choices"][0]["delta"]["content"].get<std::string>();
      ++text_chunks;
    }
  }
  EXPECT_EQ(text, expected);
  EXPECT_GT(text_chunks, 3u);  // really streamed, not one block
  const json& fin = events[events.size() - 2];
  EXPECT_FALSE(fin["choices"][0]["finish_reason"].is_null());
  const json& usage = events.back();
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_GT(usage["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_GT(usage["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);  // same prompt as before
}

TEST_F(ServerTest, StreamingErrorsBeforeTheFirstTokenArePlainHttpErrors) {
  std::string words;
  for (int i = 0; i < 700; ++i) words += "word ";
  ExpectOpenAiError(Chat(R"({"stream":true,"messages":[{"role":"user","content":")" + words + R"("}]})"), 400,
                    "invalid_request_error", "prompt is too long: ");
}

TEST(ServerLifecycleTest, SigtermStopsCleanlyWithExitZero) {
  auto server = ServerProcess::Start({"--model", TinyModel().string(), "--log-level", "info"});
  ASSERT_TRUE(server->WaitHealthy(std::chrono::seconds(60))) << server->Log();
  EXPECT_EQ(server->Stop(SIGTERM), 0) << server->Log();
  EXPECT_NE(server->Log().find("draining"), std::string::npos);
  EXPECT_NE(server->Log().find("stopped"), std::string::npos);
}

TEST(ServerLifecycleTest, DefaultModelIsGeneratedIntoTheDataDirectory) {
  // No --model: the demo 'small' model is made on first start, then reused.
  const auto data = ScratchDir("default-model-data");
  auto server = ServerProcess::Start({"--data-dir", data.string(), "--ctx-size", "256"});
  ASSERT_TRUE(server->WaitHealthy(std::chrono::seconds(120))) << server->Log();
  EXPECT_TRUE(std::filesystem::exists(data / "models" / "demo-small.gguf"));
  httplib::Client c("127.0.0.1", server->port());
  c.set_read_timeout(std::chrono::seconds(60));
  auto res =
      c.Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0})",
             "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["model"], "demo-small");
  EXPECT_EQ(server->Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace kvault::testing

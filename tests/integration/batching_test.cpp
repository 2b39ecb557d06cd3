// Continuous batching, prefix reuse, backpressure and cancellation through the real server.
#include <gtest/gtest.h>
#include <httplib.h>

#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;

std::string Body(const std::string& user, int max_tokens, const json& extra = json::object()) {
  json b = {{"messages", json::array({{{"role", "user"}, {"content", user}}})},
            {"max_tokens", max_tokens},
            {"temperature", 0}};
  b.update(extra);
  return b.dump();
}

httplib::Result Post(int port, const std::string& body, int timeout_s = 60) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(timeout_s));
  return c.Post("/v1/chat/completions", body, "application/json");
}

// /health once no request runs any more (or after 60 s: a request not cancelled runs on).
json HealthWhenIdle(int port) {
  return HealthWhen(
      port, [](const json& h) { return h["running"] == 0; }, std::chrono::seconds(60), std::chrono::milliseconds(20));
}

// /health once `h["running"]` and `h["queue_depth"]` are these (or after 60 s).
json HealthWhenLoad(int port, int running, int queued) {
  return HealthWhen(
      port, [&](const json& h) { return h.is_object() && h["running"] == running && h["queue_depth"] == queued; },
      std::chrono::seconds(60), std::chrono::milliseconds(10));
}

std::unique_ptr<ServerProcess> StartServer(std::vector<std::string> extra) {
  std::vector<std::string> args = {"--model",      TinyModel().string(), "--ctx-size", "512", "--pool-tokens",
                                   "8192",         "--block-tokens",     "16",         "--log-level", "warn"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto s = ServerProcess::Start(args);
  EXPECT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  return s;
}

std::string Content(const httplib::Result& r) {
  EXPECT_TRUE(r);
  if (!r) return "";
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>();
}

// Deterministic mode through the CLI (the default mode does not promise this; EngineExactnessTest
// has the details).
TEST(BatchingTest, ConcurrentRequestsMatchSequentialOnes) {
  auto server = StartServer({"--parallel", "4", "--deterministic"});
  const json health = GetHealth(server->port());
  EXPECT_EQ(health["engine"]["deterministic"], true);
  EXPECT_EQ(health["engine"]["step_tokens"], 63);  // below flash attention's tiled kernel
  std::vector<std::string> prompts;
  for (int i = 0; i < 6; ++i) prompts.push_back("agent " + std::to_string(i) + " asks about item " + std::to_string(i * 17));
  std::vector<std::string> sequential;
  for (const auto& p : prompts) sequential.push_back(Content(Post(server->port(), Body(p, 20))));
  // Restart so that nothing is resident, then all at once.
  server = StartServer({"--parallel", "4", "--deterministic"});
  std::vector<std::future<std::string>> futures;
  for (const auto& p : prompts) {
    futures.push_back(std::async(std::launch::async, [&, p] { return Content(Post(server->port(), Body(p, 20))); }));
  }
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(futures[i].get(), sequential[i]) << prompts[i];
}

TEST(BatchingTest, UsageReportsCachedPromptTokens) {
  auto server = StartServer({});
  auto first = Post(server->port(), Body("remember this sentence please", 8));
  ASSERT_TRUE(first);
  json a = json::parse(first->body);
  EXPECT_EQ(a["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  auto second = Post(server->port(), Body("remember this sentence please", 8));
  ASSERT_TRUE(second);
  json b = json::parse(second->body);
  const int prompt = b["usage"]["prompt_tokens"];
  EXPECT_EQ(b["usage"]["prompt_tokens_details"]["cached_tokens"], prompt - 1);
  EXPECT_EQ(second->get_header_value("X-Cache-Tokens"), std::to_string(prompt - 1));
  EXPECT_EQ(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"]);
}

TEST(BatchingTest, StopSequencesAndSamplingFields) {
  // --deterministic: the second request of each pair reuses the first one's prompt KV and
  // computes only its last token, so without batch-invariant kernels its logits may differ in the
  // last bits and a sampled token (temperature 0.9) may flip. The seed is what is tested here.
  auto server = StartServer({"--deterministic"});
  const std::string full = Content(Post(server->port(), Body("write something long", 40)));
  ASSERT_GT(full.size(), 20u);
  const std::string stop = full.substr(full.size() / 2, 3);
  const std::string cut = Content(Post(server->port(), Body("write something long", 40, {{"stop", stop}})));
  EXPECT_EQ(cut, full.substr(0, full.find(stop)));
  const json seeded = {{"temperature", 0.9}, {"top_p", 0.9}, {"top_k", 50}, {"seed", 11}};
  EXPECT_EQ(Content(Post(server->port(), Body("random words", 16, seeded))),
            Content(Post(server->port(), Body("random words", 16, seeded))));
  auto bad = Post(server->port(), Body("x", 4, {{"temperature", 7}}));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("temperature"), std::string::npos);
}

TEST(BatchingTest, FullQueueAnswers429WithRetryAfter) {
  auto server = StartServer({"--parallel", "1", "--resident-seqs", "1", "--max-queue", "1"});
  auto running = std::async(std::launch::async, [&] { return Post(server->port(), Body("long answer", 440)); });
  ASSERT_EQ(HealthWhenLoad(server->port(), 1, 0)["running"], 1);
  auto queued = std::async(std::launch::async, [&] { return Post(server->port(), Body("queued", 2)); });
  ASSERT_EQ(HealthWhenLoad(server->port(), 1, 1)["queue_depth"], 1);
  auto rejected = Post(server->port(), Body("one too many", 2));
  ASSERT_TRUE(rejected);
  EXPECT_EQ(rejected->status, 429) << rejected->body;
  EXPECT_EQ(rejected->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(rejected->body)["error"]["type"], "rate_limit_error");
  EXPECT_EQ(running.get()->status, 200);
  EXPECT_EQ(queued.get()->status, 200);
}

TEST(BatchingTest, ClientDisconnectCancelsTheRequest) {
  auto server = StartServer({"--parallel", "1", "--resident-seqs", "1"});
  {
    // A non-streamed request, hung up once it runs (not after a fixed time, which a fast machine
    // could outlast).
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(std::chrono::seconds(600));
    auto r = std::async(std::launch::async,
                        [&] { return c.Post("/v1/chat/completions", Body("go on forever", 440), "application/json"); });
    ASSERT_EQ(HealthWhenLoad(server->port(), 1, 0)["running"], 1);
    c.stop();
    EXPECT_FALSE(r.get());  // we hung up first
  }
  // The engine drops the request within a step of noticing; the pool holds nothing for it.
  const json h = HealthWhenIdle(server->port());
  EXPECT_EQ(h["running"], 0) << h.dump();
  EXPECT_EQ(h["pool"]["blocks_reserved"], 0) << h.dump();
  EXPECT_EQ(h["pool"]["blocks_used"], 0) << h.dump();
  EXPECT_LT(h["engine"]["tokens_generated"].get<int>(), 400) << h.dump();
  EXPECT_EQ(Post(server->port(), Body("still serving", 2))->status, 200);
}

TEST(BatchingTest, ClientLeavingAStreamCancelsIt) {
  auto server = StartServer({"--parallel", "1", "--resident-seqs", "1"});
  int chunks = 0;
  {
    httplib::Client c("127.0.0.1", server->port());
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.body = Body("stream forever", 440, {{"stream", true}});
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };  // stop reading
    c.send(req);
  }  // and hang up
  EXPECT_GE(chunks, 3);
  const json h = HealthWhenIdle(server->port());
  EXPECT_EQ(h["running"], 0) << h.dump();
  EXPECT_EQ(h["pool"]["blocks_used"], 0) << h.dump();  // cancelled: its cells were freed
  EXPECT_LT(h["engine"]["tokens_generated"].get<int>(), 400) << h.dump();
  EXPECT_EQ(h["engine"]["deterministic"], false);  // the default
}

}  // namespace
}  // namespace kvault::testing

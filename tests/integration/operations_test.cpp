// Operating the real server: liveness, metrics, CORS, non-public health, graceful drain.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;

httplib::Client ClientFor(const ServerProcess& s) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(std::chrono::seconds(60));
  return c;
}

// The value of the first sample line starting with `prefix` (metric name and labels), or -1.
double MetricValue(const std::string& text, const std::string& prefix) {
  size_t pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const size_t sp = text.find(' ', pos + prefix.size());
      return std::stod(text.substr(sp + 1, text.find('\n', sp) - sp - 1));
    }
    pos += prefix.size();
  }
  return -1;
}

TEST(OperationsTest, LivenessMetricsAndCors) {
  auto server = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "512", "--cors-origins",
                                      "https://app.example,https://other.example"});
  ASSERT_TRUE(server->WaitHealthy(std::chrono::seconds(60))) << server->Log();
  auto c = ClientFor(*server);
  auto live = c.Get("/health/live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);

  const std::string body =
      R"({"messages":[{"role":"user","content":"metrics please"}],"max_tokens":3,"temperature":0})";
  for (int i = 0; i < 2; ++i) {
    auto r = c.Post("/v1/chat/completions", body, "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
  }
  auto bad = c.Post("/v1/chat/completions", "{", "application/json");
  ASSERT_TRUE(bad);
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  const std::string& m = metrics->body;
  EXPECT_EQ(MetricValue(m, R"(kvault_http_requests_total{endpoint="/v1/chat/completions",status="200"})"), 2) << m;
  EXPECT_EQ(MetricValue(m, R"(kvault_http_requests_total{endpoint="/v1/chat/completions",status="400"})"), 1);
  EXPECT_EQ(MetricValue(m, R"(kvault_time_to_first_token_seconds_count{api="openai.chat"})"), 2);
  EXPECT_EQ(MetricValue(m, R"(kvault_generated_tokens_total)"), 6);
  // The second, identical request reused the first one's prompt from the pool.
  EXPECT_GT(MetricValue(m, R"(kvault_prompt_tokens_cached_total{tier="pool"})"), 0);
  EXPECT_EQ(MetricValue(m, R"(kvault_cache_hits_total{tier="pool"})"), 1);
  EXPECT_GE(MetricValue(m, "kvault_pool_utilization"), 0);
  EXPECT_EQ(MetricValue(m, "kvault_model_loaded"), 1);
  EXPECT_NE(m.find("# TYPE kvault_request_duration_seconds histogram"), std::string::npos);

  // CORS: an allowed origin's preflight is answered; others get no CORS headers (that preflights
  // need no key is CorsPreflightIsAnsweredBeforeAuth's part).
  auto pre = c.Options("/v1/messages", {{"Origin", "https://app.example"},
                                        {"Access-Control-Request-Method", "POST"},
                                        {"Access-Control-Request-Headers", "content-type,x-api-key"}});
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->status, 204);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "https://app.example");
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Headers"), "content-type,x-api-key");
  auto denied = c.Options("/v1/messages", {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
  EXPECT_FALSE(denied->has_header("Access-Control-Allow-Origin"));
  auto simple = c.Get("/v1/models", httplib::Headers{{"Origin", "https://other.example"}});
  ASSERT_TRUE(simple);
  EXPECT_EQ(simple->get_header_value("Access-Control-Allow-Origin"), "https://other.example");
  auto foreign = c.Get("/v1/models", httplib::Headers{{"Origin", "https://evil.example"}});
  ASSERT_TRUE(foreign);
  EXPECT_FALSE(foreign->has_header("Access-Control-Allow-Origin"));
}

// A browser sends its preflight without credentials (Fetch standard): with --api-key set, the
// preflight must still get the CORS answer, while the real request without the key is refused
// (401, with the CORS headers so that the page can read why) and with the key is served.
TEST(OperationsTest, CorsPreflightIsAnsweredBeforeAuth) {
  auto server = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "256", "--api-key", "cors-key",
                                      "--cors-origins", "https://app.example"});
  ASSERT_TRUE(server->WaitHealthy(std::chrono::seconds(60))) << server->Log();
  auto c = ClientFor(*server);
  for (const char* path : {"/v1/messages", "/v1/chat/completions", "/v1/models"}) {
    auto pre = c.Options(path, {{"Origin", "https://app.example"},
                                {"Access-Control-Request-Method", "POST"},
                                {"Access-Control-Request-Headers", "authorization,content-type"}});
    ASSERT_TRUE(pre) << path;
    EXPECT_EQ(pre->status, 204) << path << ": " << pre->body;
    EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "https://app.example") << path;
    EXPECT_NE(pre->get_header_value("Access-Control-Allow-Methods").find("POST"), std::string::npos) << path;
    EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Headers"), "authorization,content-type") << path;
  }
  const std::string body = R"({"messages":[{"role":"user","content":"cors"}],"max_tokens":2,"temperature":0})";
  auto no_key =
      c.Post("/v1/chat/completions", httplib::Headers{{"Origin", "https://app.example"}}, body, "application/json");
  ASSERT_TRUE(no_key);
  EXPECT_EQ(no_key->status, 401) << no_key->body;
  EXPECT_EQ(no_key->get_header_value("Access-Control-Allow-Origin"), "https://app.example");
  auto wrong_key = c.Post("/v1/chat/completions",
                          httplib::Headers{{"Origin", "https://app.example"}, {"Authorization", "Bearer nope"}}, body,
                          "application/json");
  ASSERT_TRUE(wrong_key);
  EXPECT_EQ(wrong_key->status, 401) << wrong_key->body;
  auto with_key = c.Post("/v1/chat/completions",
                         httplib::Headers{{"Origin", "https://app.example"}, {"Authorization", "Bearer cors-key"}},
                         body, "application/json");
  ASSERT_TRUE(with_key);
  EXPECT_EQ(with_key->status, 200) << with_key->body;
  EXPECT_EQ(with_key->get_header_value("Access-Control-Allow-Origin"), "https://app.example");
  // A preflight from an origin not allowed is refused, key or not.
  auto denied = c.Options("/v1/chat/completions",
                          {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
  EXPECT_FALSE(denied->has_header("Access-Control-Allow-Origin"));
}

TEST(OperationsTest, HealthIsDegradedWhileRunningRequestsHoldMostOfThePool) {
  auto server = ServerProcess::Start({"--model", TinyModel().string(), "--pool-tokens", "256", "--ctx-size", "256",
                                      "--block-tokens", "16", "--degraded-utilization", "0.8"});
  ASSERT_TRUE(server->WaitHealthy(std::chrono::seconds(60))) << server->Log();
  // One request reserving prompt (36) + 180 tokens of a 256-token pool (small: under TSan one decode
  // step takes over a second).
  auto big = std::async(std::launch::async, [&] {
    auto c = ClientFor(*server);
    c.set_read_timeout(std::chrono::seconds(1500));
    return c.Post("/v1/chat/completions",
                  R"({"messages":[{"role":"user","content":"hold"}],"max_tokens":180,"temperature":0})",
                  "application/json");
  });
  auto c = ClientFor(*server);
  json h;
  int status = 0;
  // Poll while the big request runs (however slow the machine is).
  while (status != 503 && big.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
    auto r = c.Get("/health");
    ASSERT_TRUE(r);
    status = r->status;
    h = json::parse(r->body);
  }
  EXPECT_EQ(status, 503);
  EXPECT_EQ(h["status"], "degraded") << h.dump();
  EXPECT_GT(h["pool"]["active_utilization"].get<double>(), 0.8);
  auto r = big.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  // Finished: its cells stay resident (idle) but count as evictable: healthy again (once the
  // engine has published its stats after the last step).
  httplib::Result after;
  for (const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       std::chrono::steady_clock::now() < deadline;) {
    after = c.Get("/health");
    ASSERT_TRUE(after);
    if (after->status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(after->status, 200) << after->body;
  EXPECT_EQ(json::parse(after->body)["status"], "ok");
}

TEST(OperationsTest, JsonLogsAreOneObjectPerLine) {
  auto server = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "256", "--log-format", "json"});
  ASSERT_TRUE(server->WaitHealthy(std::chrono::seconds(60))) << server->Log();
  auto c = ClientFor(*server);
  auto r = c.Post("/v1/chat/completions", httplib::Headers{{"X-Agent-Id", "json-agent"}},
                  R"({"messages":[{"role":"user","content":"log \"this\""}],"max_tokens":2,"temperature":0})",
                  "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(server->Stop(SIGTERM), 0);
  const std::string log = server->Log();
  size_t lines = 0, pos = 0;
  bool request_line = false;
  while (pos < log.size()) {
    const size_t end = log.find('\n', pos);
    const std::string line = log.substr(pos, end - pos);
    pos = end == std::string::npos ? log.size() : end + 1;
    if (line.empty()) continue;
    const json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg")) << line;
    request_line |= j["msg"].get<std::string>().find("agent=json-agent") != std::string::npos;
    ++lines;
  }
  EXPECT_GT(lines, 3u);
  EXPECT_TRUE(request_line) << log;
}

TEST(OperationsTest, PrivateHealthAndMetricsNeedAKeyLivenessNever) {
  auto server = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "256", "--api-key", "ops-key",
                                      "--private-health", "--private-metrics"});
  // WaitHealthy polls /health, which needs the key now.
  ASSERT_TRUE(server->WaitAnswering(std::chrono::seconds(60), "/v1/models", {{"x-api-key", "ops-key"}}))
      << server->Log();
  auto c = ClientFor(*server);
  auto live = c.Get("/health/live");
  ASSERT_TRUE(live) << server->Log();
  EXPECT_EQ(live->status, 200);
  for (const char* path : {"/health", "/metrics"}) {
    auto no = c.Get(path);
    ASSERT_TRUE(no);
    EXPECT_EQ(no->status, 401) << path;
    auto yes = c.Get(path, httplib::Headers{{"Authorization", "Bearer ops-key"}});
    ASSERT_TRUE(yes);
    EXPECT_EQ(yes->status, 200) << path;
  }
}

TEST(OperationsTest, SigtermDrainsRunningStreamsRefusesNewOnesAndExitsZero) {
  const auto data = ScratchDir("ops-drain");
  auto server = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "1024", "--data-dir",
                                      data.string(), "--log-level", "info", "--drain-timeout", "60"});
  ASSERT_TRUE(server->WaitHealthy(std::chrono::seconds(60))) << server->Log();
  // A long streamed answer, read to its end on another thread.
  auto stream = std::async(std::launch::async, [&] {
    auto c = ClientFor(*server);
    std::string got;
    auto r = c.Post(
        "/v1/chat/completions", httplib::Headers{},
        R"({"messages":[{"role":"user","content":"a long answer"}],"max_tokens":400,"temperature":0,"stream":true})",
        "application/json", [&](const char* d, size_t n) {
          got.append(d, n);
          return true;
        });
    return std::make_pair(r ? r->status : -1, got);
  });
  auto c = ClientFor(*server);
  // Wait until it is running, then signal, and wait until the server says it drains.
  const json running = HealthWhen(
      server->port(), [](const json& h) { return h.is_object() && h["running"] == 1; }, std::chrono::seconds(60),
      std::chrono::milliseconds(10));
  ASSERT_EQ(running["running"], 1) << running.dump();
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
  const json draining = HealthWhen(
      server->port(), [](const json& h) { return h.is_object() && h.value("status", "") == "draining"; },
      std::chrono::seconds(60), std::chrono::milliseconds(10));
  ASSERT_EQ(draining.value("status", ""), "draining") << draining.dump();
  auto refused =
      c.Post("/v1/chat/completions",
             R"({"messages":[{"role":"user","content":"late"}],"max_tokens":2,"temperature":0})", "application/json");
  // The stream (400 tokens) is still running: the listener is open and refuses new work.
  ASSERT_TRUE(refused) << server->Log();
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_EQ(refused->get_header_value("Retry-After"), "1");
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_NE(health->body.find("draining"), std::string::npos) << health->body;
  const auto [status, got] = stream.get();
  EXPECT_EQ(status, 200);
  EXPECT_NE(got.find("data: [DONE]"), std::string::npos) << "the running stream was cut: " << got.substr(0, 300);
  EXPECT_EQ(server->Wait(std::chrono::seconds(60)), 0) << server->Log();
  EXPECT_NE(server->Log().find("flushed"), std::string::npos);
}

}  // namespace
}  // namespace kvault::testing

// Load through the real server: many concurrent streaming clients on both APIs, some of them
// hanging up mid-stream. Nothing may fail with a 5xx, every finished stream must be well formed,
// and the server must come back to idle without leaking descriptors.
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

struct Tally {
  std::atomic<int> ok{0}, hung_up{0}, rate_limited{0}, server_errors{0}, malformed{0}, transport{0};
};

// Every "data:" line of an SSE body is JSON (or [DONE]); returns false otherwise.
bool WellFormed(const std::string& body, bool anthropic) {
  size_t pos = 0;
  int events = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find('\n', pos);
    if (end == std::string::npos) return false;
    const std::string data = body.substr(pos + 6, end - pos - 6);
    if (data != "[DONE]" && json::parse(data, nullptr, false).is_discarded()) return false;
    ++events;
    pos = end;
  }
  if (events < 3) return false;
  return anthropic ? body.find("\"type\":\"message_stop\"") != std::string::npos
                   : body.find("data: [DONE]") != std::string::npos;
}

void Client(int port, int id, int requests, Tally& t) {
  for (int r = 0; r < requests; ++r) {
    const bool anthropic = (id + r) % 2 == 0;
    const bool hang_up = (id * 7 + r) % 4 == 0;
    const std::string agent = "agent-" + std::to_string(id % 8);
    json body = {{"max_tokens", 24 + (id % 5) * 8},
                 {"temperature", 0},
                 {"stream", true},
                 {"messages", {{{"role", "user"}, {"content", "Client " + std::to_string(id) + " asks " + agent}}}}};
    if (anthropic) body["system"] = "You are " + agent + ".";
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(std::chrono::seconds(600));  // sanitizer builds are many times slower
    std::string got;
    int chunks = 0;
    auto res = c.Post(anthropic ? "/v1/messages" : "/v1/chat/completions",
                      {{"x-api-key", "stress-key"}, {"X-Agent-Id", agent}}, body.dump(), "application/json",
                      [&](const char* d, size_t n) {
                        got.append(d, n);
                        return !(hang_up && ++chunks >= 3);
                      });
    if (hang_up) {
      ++t.hung_up;
      continue;
    }
    if (!res) {
      ++t.transport;
    } else if (res->status == 429) {
      ++t.rate_limited;
    } else if (res->status >= 500) {
      ++t.server_errors;
    } else if (res->status == 200 && WellFormed(got, anthropic)) {
      ++t.ok;
    } else {
      ++t.malformed;
      ADD_FAILURE() << "status " << res->status << ": " << got.substr(0, 400);
    }
  }
}

TEST(StressTest, SixtyFourStreamingClientsOnBothApisSomeHangingUp) {
  const auto data = ScratchDir("stress");
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "512",
                                 "--parallel", "8", "--max-queue", "128", "--api-key", "stress-key", "--log-level",
                                 "warn",
                                 // the queue's capacity is what is tested, not its time limit (a TSan
                                 // build serves the 192 requests in ~5 minutes)
                                 "--queue-timeout", "600"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  const int fds_before = OpenFds(s->pid());
  constexpr int kClients = 64, kRequests = 3;
  Tally t;
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) clients.emplace_back(Client, s->port(), i, kRequests, std::ref(t));
  for (auto& c : clients) c.join();
  EXPECT_EQ(t.server_errors.load(), 0);
  EXPECT_EQ(t.malformed.load(), 0);
  EXPECT_EQ(t.transport.load(), 0);
  EXPECT_EQ(t.rate_limited.load(), 0);  // 64 clients fit in --parallel 8 + --max-queue 128
  EXPECT_EQ(t.ok.load() + t.hung_up.load(), kClients * kRequests);
  EXPECT_GT(t.hung_up.load(), 20);

  // Back to idle: nothing running or waiting, every used block an idle sequence's (the hung-up
  // requests' cells freed), no fd leak.
  const json h = WaitPoolIdle(s->port());
  EXPECT_TRUE(PoolIsIdle(h)) << h.dump();
  // Then hang-ups on their own, where their cells can be told apart: the pool must go back to
  // empty and the server must serve the next request.
  ExpectHungUpStreamsAreFreed(s->port(), {{"x-api-key", "stress-key"}}, 8);
  // The clients' keep-alive sockets close as the server notices them gone.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (OpenFds(s->pid()) > fds_before + 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LE(OpenFds(s->pid()), fds_before + 4) << "descriptors before: " << fds_before;
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
}

}  // namespace
}  // namespace kvault::testing

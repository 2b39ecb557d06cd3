// A client that leaves before its answer (issue #24), at the moments BatchingTest's decode-time
// disconnects do not cover: while its request waits in the queue, during its prefill, and while
// its finished answer waits for a sync-durability write. Each time the server lets go of it
// (queue slot, cells, reservations, the key's concurrency slot), goes back to idle and serves on.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;

std::string Words(const std::string& tag, int n) {
  std::string s = tag + ": ";
  for (int i = 0; i < n; ++i) s += tag + std::to_string(i % 13) + " ";
  return s;
}

json Body(const std::string& user, int max_tokens, bool stream = false) {
  return {{"messages", json::array({{{"role", "user"}, {"content", user}}})},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"stream", stream}};
}

// Posts and gives up after `timeout` (the client closes its connection): returns whether an
// answer came first.
bool PostAndLeave(int port, const json& body, std::chrono::milliseconds timeout, const httplib::Headers& headers = {}) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(timeout);
  return static_cast<bool>(c.Post("/v1/chat/completions", headers, body.dump(), "application/json"));
}

// Sends a chat request on a connection of its own and hangs up once `ready` holds for /health
// (or after 60 s): a client that leaves at a known stage, however slow the machine is.
void PostAndLeaveWhen(int port, const json& body, const std::function<bool(const json&)>& ready) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string payload = body.dump();
  const std::string req =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(payload.size()) + "\r\n\r\n" + payload;
  for (size_t sent = 0; sent < req.size();) {
    const ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    sent += static_cast<size_t>(n);
  }
  const json h = HealthWhen(port, ready, std::chrono::seconds(60), std::chrono::milliseconds(10));
  EXPECT_TRUE(ready(h)) << h.dump();
  close(fd);
}

httplib::Result Post(int port, const json& body, const httplib::Headers& headers = {}) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(120));
  return c.Post("/v1/chat/completions", headers, body.dump(), "application/json");
}

bool Idle(const json& h) {
  return h["running"] == 0 && h["queue_depth"] == 0 && h["pool"]["blocks_reserved"] == 0;
}

TEST(ClientLeavesTest, WhileQueuedItLeavesTheQueueAndFreesItsPlace) {
  const auto data = ScratchDir("leave-queued");
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "2048",
                                 "--parallel", "1", "--resident-seqs", "1", "--max-queue", "1", "--log-level", "warn"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  auto running = std::async(std::launch::async, [&] { return Post(s->port(), Body("a long answer", 1500)); });
  ASSERT_EQ(HealthWhen(s->port(), [](const json& h) { return h["running"] == 1; })["running"], 1);
  // Queued behind it (--parallel 1); the client gives up after 400 ms.
  auto leaver = std::async(std::launch::async, [&] {
    return PostAndLeave(s->port(), Body(Words("queued", 50), 8), std::chrono::milliseconds(400));
  });
  ASSERT_EQ(HealthWhen(s->port(), [](const json& h) { return h["queue_depth"] == 1; })["queue_depth"], 1);
  EXPECT_FALSE(leaver.get()) << "answered although another request held the only place";
  // It leaves the queue at once, while the long request still runs...
  const json h = HealthWhen(s->port(), [](const json& h) { return h["queue_depth"] == 0; });
  EXPECT_EQ(h["queue_depth"], 0) << h.dump();
  ASSERT_EQ(running.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the long request ended too soon for this test";
  // ...and its place in the queue (--max-queue 1) is free again: the next one waits, no 429.
  auto next = std::async(std::launch::async, [&] { return Post(s->port(), Body("next", 4)); });
  auto first = running.get();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->body;
  auto second = next.get();
  ASSERT_TRUE(second);
  ASSERT_EQ(second->status, 200) << second->body;
  // The one that left never ran: only the two answered requests generated tokens.
  const json end = HealthWhen(s->port(), Idle);
  EXPECT_TRUE(Idle(end)) << end.dump();
  EXPECT_EQ(end["engine"]["tokens_generated"].get<int>(),
            json::parse(first->body)["usage"]["completion_tokens"].get<int>() +
                json::parse(second->body)["usage"]["completion_tokens"].get<int>())
      << end.dump();
}

TEST(ClientLeavesTest, DuringPrefillItsCellsAreFreedBeforeAnyTokenIsGenerated) {
  const auto data = ScratchDir("leave-prefill");
  // Four prompt tokens per step: a 3000-token prompt takes a while to prefill. (A step smaller
  // than the resident sequences aborted the server at start: llama.cpp's output rows.)
  auto s =
      ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "4096",
                            "--pool-tokens", "8192", "--step-tokens", "4", "--parallel", "1", "--log-level", "warn"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  const int fds = OpenFds(s->pid());
  for (const bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "stream" : "no stream");
    const json before = GetHealth(s->port());
    // Hangs up once the prefill has started (its first computed tokens show in /health).
    const int computed_before = before["engine"]["prompt_tokens_computed"].get<int>();
    PostAndLeaveWhen(s->port(), Body(Words(stream ? "streamed" : "plain", 1000), 16, stream),
                     [&](const json& h) { return h["engine"]["prompt_tokens_computed"].get<int>() > computed_before; });
    const json h = HealthWhen(s->port(), Idle);
    EXPECT_TRUE(Idle(h)) << h.dump();
    EXPECT_EQ(h["pool"]["blocks_used"], 0) << "a cancelled request's cells are freed: " << h.dump();
    EXPECT_EQ(h["engine"]["tokens_generated"], before["engine"]["tokens_generated"]) << h.dump();
    const int computed =
        h["engine"]["prompt_tokens_computed"].get<int>() - before["engine"]["prompt_tokens_computed"].get<int>();
    EXPECT_GT(computed, 0) << "the prefill had started";
    EXPECT_LT(computed, 2000) << "the prefill was cut short (it is ~3000 tokens)";
  }
  auto ok = Post(s->port(), Body("still serving", 4));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // keep-alive sockets close
  EXPECT_LE(OpenFds(s->pid()), fds + 2);
}

TEST(ClientLeavesTest, WhileItsAnswerWaitsForASyncWriteTheServerLetsGo) {
  const auto data = ScratchDir("leave-sync-write");
  // Every block write takes 100 ms: a ~600-token prompt's ~40 blocks keep the answer of a sync
  // turn waiting for seconds after its last token. One request in flight per key.
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "1024",
                                 "--block-tokens", "16", "--durability", "sync", "--debug-slow-disk-ms", "100",
                                 "--api-key", "leave-key", "--key-concurrency", "1", "--log-level", "warn"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  const httplib::Headers key = {{"x-api-key", "leave-key"}};
  const int fds = OpenFds(s->pid());
  for (const bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "stream" : "no stream");
    const json before = GetHealth(s->port());
    const json body = Body(Words(stream ? "durable-stream" : "durable", 200), 2, stream);
    if (stream) {
      // A stream's last events (finish, usage, [DONE]) are what waits for the disk.
      httplib::Client c("127.0.0.1", s->port());
      c.set_read_timeout(std::chrono::milliseconds(1000));
      std::string got;
      auto r = c.Post("/v1/chat/completions", key, body.dump(), "application/json", [&](const char* d, size_t n) {
        got.append(d, n);
        return true;
      });
      EXPECT_EQ(got.find("[DONE]"), std::string::npos) << "the stream ended before the blocks were on disk";
    } else {
      EXPECT_FALSE(PostAndLeave(s->port(), body, std::chrono::milliseconds(1000), key));
    }
    // Gone while the answer was generated and its blocks were still being written.
    const json h = GetHealth(s->port());
    EXPECT_EQ(h["running"], 0) << "its answer was generated: " << h.dump();
    EXPECT_GT(h["engine"]["tokens_generated"].get<int>(), before["engine"]["tokens_generated"].get<int>()) << h.dump();
    EXPECT_GT(h["kv_store"]["pending_writes"].get<int>(), 0) << "the client left after the writes: " << h.dump();
    // The key's slot is given back when the server notices the client left (it looks every
    // 100 ms): within a second the next request of that key is taken (answered once its own
    // blocks, queued behind the others, are on disk), not a 429 — while the leaver's writes are
    // still queued.
    httplib::Result next;
    int pending_when_taken = -1;
    const auto left = std::chrono::steady_clock::now();
    while (true) {
      pending_when_taken = GetHealth(s->port())["kv_store"]["pending_writes"].get<int>();
      next = Post(s->port(), Body("after the leaver", 2), key);
      ASSERT_TRUE(next);
      if (next->status != 429 || std::chrono::steady_clock::now() - left > std::chrono::seconds(1)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(next->status, 200) << "the key's place was still held a second after its client left: " << next->body;
    EXPECT_GT(pending_when_taken, 0) << "the slot came back only after the leaver's writes";
    const json end = HealthWhen(
        s->port(), [](const json& h) { return Idle(h) && h["kv_store"]["pending_writes"] == 0; },
        std::chrono::seconds(30));
    EXPECT_TRUE(Idle(end)) << end.dump();
    EXPECT_EQ(end["kv_store"]["pending_writes"], 0) << end.dump();
    EXPECT_EQ(end["kv_store"]["write_errors"], 0) << end.dump();
    // Once the writes are done the slot is free at the latest.
    auto later = Post(s->port(), Body("later", 2), key);
    ASSERT_TRUE(later);
    EXPECT_EQ(later->status, 200) << later->body;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LE(OpenFds(s->pid()), fds + 2);
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
}

}  // namespace
}  // namespace kvault::testing

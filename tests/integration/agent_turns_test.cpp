// Two turns of one agent at once (issue #24): the same X-Agent-Id on two concurrent requests.
// Both are answered; afterwards the agent is one record (both turns counted, the chain of the
// turn that finished last, all of it on disk), the same after a restart, and the next turn of
// that conversation restores from it.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const char* kAdmin = "turns-admin-key";

std::unique_ptr<ServerProcess> Serve(const fs::path& data) {
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "1024",
                                 "--block-tokens", "16", "--durability", "sync", "--parallel", "4", "--admin-key",
                                 kAdmin, "--log-level", "warn",
                                 // the answers are compared across a restart: batched and alone alike
                                 "--deterministic"});
  EXPECT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  return s;
}

json Messages(const std::string& topic, int words) {
  std::string s = "Twin agent on " + topic + ": ";
  for (int i = 0; i < words; ++i) s += topic + std::to_string(i % 11) + " ";
  return json::array({{{"role", "user"}, {"content", s}}});
}

json Turn(int port, const json& messages, int max_tokens) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(60));
  const json body = {{"messages", messages}, {"max_tokens", max_tokens}, {"temperature", 0}};
  auto r = c.Post("/v1/chat/completions", {{"X-Agent-Id", "twin"}}, body.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body);
}

json Agents(int port) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/admin/agents", httplib::Headers{{"Authorization", std::string("Bearer ") + kAdmin}});
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body)["agents"];
}

int Total(const json& answer) {
  return answer["usage"]["prompt_tokens"].get<int>() + answer["usage"]["completion_tokens"].get<int>();
}

TEST(AgentTurnsTest, ConcurrentTurnsOfOneAgentLeaveOneConsistentRecordThatRestores) {
  const auto data = ScratchDir("agent-concurrent-turns");
  // Two conversations of clearly different lengths, so that the record shows which one it holds.
  const json short_msgs = Messages("alpha", 30), long_msgs = Messages("beta", 90);
  json a, b;
  {
    auto s = Serve(data);
    std::atomic<int> ready{0};
    auto go = [&](const json& msgs, int max_tokens) {
      ++ready;
      while (ready.load() < 2) std::this_thread::yield();
      return Turn(s->port(), msgs, max_tokens);
    };
    auto fa = std::async(std::launch::async, go, short_msgs, 6);
    auto fb = std::async(std::launch::async, go, long_msgs, 24);
    a = fa.get();
    b = fb.get();
    ASSERT_FALSE(a.is_null());
    ASSERT_FALSE(b.is_null());
    ASSERT_NE(Total(a), Total(b));

    const json list = Agents(s->port());
    ASSERT_EQ(list.size(), 1u) << list.dump();
    const json& rec = list[0];
    EXPECT_EQ(rec["id"], "twin");
    EXPECT_EQ(rec["turns"], 2) << rec.dump();
    const int tokens = rec["tokens"];
    // The record holds one of the two conversations, whole (prompt and answer; the last token
    // sampled may not be in the KV).
    const bool holds_a = tokens >= Total(a) - 1 && tokens <= Total(a);
    const bool holds_b = tokens >= Total(b) - 1 && tokens <= Total(b);
    EXPECT_TRUE(holds_a != holds_b) << rec.dump() << " a=" << Total(a) << " b=" << Total(b);
    EXPECT_EQ(rec["blocks"], (tokens + 15) / 16) << rec.dump();
    EXPECT_EQ(rec["disk"]["blocks"], rec["blocks"]) << "sync durability: the record's blocks are on disk";
    EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
  }
  auto s = Serve(data);
  const json after = Agents(s->port());
  ASSERT_EQ(after.size(), 1u) << after.dump();
  EXPECT_EQ(after[0]["turns"], 2) << after.dump();
  const int tokens = after[0]["tokens"];
  const bool holds_a = tokens >= Total(a) - 1 && tokens <= Total(a);
  const json& kept = holds_a ? a : b;
  const json& kept_msgs = holds_a ? short_msgs : long_msgs;
  EXPECT_EQ(after[0]["disk"]["blocks"], after[0]["blocks"]) << after.dump();

  // The same turn again, after the restart: all of its prompt but the last token comes from disk,
  // and the answer is the one it had.
  const json again = Turn(s->port(), kept_msgs, holds_a ? 6 : 24);
  const int prompt = kept["usage"]["prompt_tokens"];
  EXPECT_EQ(again["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), prompt - 1) << again.dump();
  EXPECT_GT(again["cache"]["disk_tokens"].get<int>(), prompt / 2) << again.dump();
  EXPECT_EQ(again["choices"][0]["message"]["content"], kept["choices"][0]["message"]["content"]);
  // The conversation's next turn: its whole earlier prompt is restored.
  json next_msgs = kept_msgs;
  next_msgs.push_back({{"role", "assistant"}, {"content", kept["choices"][0]["message"]["content"]}});
  next_msgs.push_back({{"role", "user"}, {"content", "And then?"}});
  const json next = Turn(s->port(), next_msgs, 4);
  EXPECT_GE(next["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), prompt - 1) << next.dump();
  const json last = Agents(s->port());
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0]["turns"], 4);
  EXPECT_GE(last[0]["tokens"].get<int>(), Total(next) - 1) << last.dump();
}

}  // namespace
}  // namespace kvault::testing

// A fleet (issue #26): kvault instances sharing one real Redis (--remote-cache), started by the
// test on free loopback ports. An agent's next turn on another instance restores its prompt from
// the remote tier with the same output; Redis going away fails no request and shows in /health;
// back, writes resume; garbage in Redis is a counted miss; tenants stay apart across instances.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "fleet_helpers.h"
#include "redis_process.h"
#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

const char* kAlpha = "alpha-key-1234";
const char* kBeta = "beta-key-5678";
const char* kAdmin = "fleet-admin-key";

std::unique_ptr<ServerProcess> Serve(const fs::path& data, const std::string& remote) {
  // NAME=KEY tenants: the same on every instance (a bare key's tenant id is keyed by each
  // instance's own secret, so it would differ between them).
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "1024",
                                 "--block-tokens", "16", "--log-level", "warn", "--deterministic", "--api-key",
                                 std::string("alpha=") + kAlpha, "--api-key", std::string("beta=") + kBeta,
                                 "--admin-key", kAdmin, "--remote-cache", remote});
  EXPECT_TRUE(s->WaitHealthy(60s)) << s->Log();
  return s;
}

json Turn(int port, const json& messages, const char* key = kAlpha, int max_tokens = 12) {
  int status = 0;
  const json r = Chat(port, {{"Authorization", std::string("Bearer ") + key}, {"X-Agent-Id", "fleet-agent"}}, messages,
                      max_tokens, &status);
  EXPECT_EQ(status, 200) << r.dump();
  return status == 200 ? r : json();
}

// The agent as the instance's admin API shows it.
json AdminAgent(int port, const std::string& id) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/admin/agents/" + id, httplib::Headers{{"Authorization", std::string("Bearer ") + kAdmin}});
  EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
  if (!r || r->status != 200) return json();
  const json j = json::parse(r->body);
  return j.contains("agents") ? j["agents"][0] : j;
}

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    redis_ = RedisProcess::Start(ScratchDir(std::string("fleet-redis-") + Name()), &error);
    ASSERT_NE(redis_, nullptr) << error;
  }
  static std::string Name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }
  fs::path Data(const std::string& instance) { return ScratchDir("fleet-" + Name() + "-" + instance); }

  std::unique_ptr<RedisProcess> redis_;
};

TEST_F(FleetTest, AnAgentsNextTurnOnAnotherInstanceRestoresFromRedisWithTheSameOutput) {
  auto a = Serve(Data("a"), redis_->url());
  auto b = Serve(Data("b"), redis_->url());
  // Long enough that what B must compute is under a tenth of it: from where the answer re-rendered
  // tokenizes differently from how it was sampled (B reuses the part of that block it shares
  // through A's agent record, read from Redis), the answer's template and the new message.
  const json turn1 = Conversation("orbit", 260);
  const json first = Turn(a->port(), turn1);
  ASSERT_FALSE(first.is_null());
  ASSERT_FALSE(RemoteOf(RemoteWritten(a->port())).is_null());
  EXPECT_FALSE(redis_->Keys("kvault:*").empty());

  json turn2 = turn1;
  turn2.push_back({{"role", "assistant"}, {"content", AnswerText(first)}});
  turn2.push_back({{"role", "user"}, {"content", "Go on."}});
  const json on_b = Turn(b->port(), turn2);
  ASSERT_FALSE(on_b.is_null());
  const int prompt = on_b["usage"]["prompt_tokens"];
  // B has never seen the agent: its disk is empty, so every block below RAM came from Redis.
  EXPECT_GE(on_b["cache"]["remote_tokens"].get<int>(), prompt * 9 / 10) << on_b.dump();
  EXPECT_EQ(on_b["cache"]["disk_tokens"], 0) << on_b.dump();
  EXPECT_EQ(on_b["usage"]["prompt_tokens_details"]["cached_tokens"], on_b["cache"]["remote_tokens"]) << on_b.dump();
  const json hb = HealthWhen(b->port(), [](const json& h) { return RemoteOf(h)["hits"].get<int>() > 0; });
  EXPECT_EQ(hb["kv_store"]["disk_hits"], 0) << hb.dump();
  EXPECT_EQ(RemoteOf(hb)["state"], "up");
  EXPECT_GE(RemoteOf(hb)["hits"].get<int>(), prompt * 9 / 10 / 16) << hb.dump();
  EXPECT_EQ(hb["status"], "ok") << hb.dump();
  EXPECT_GT(Metric(b->port(), R"(kvault_kv_tier_hits_total{tier="remote"})"), 0);
  EXPECT_EQ(Metric(b->port(), R"(kvault_prompt_tokens_cached_total{tier="remote"})"),
            on_b["cache"]["remote_tokens"].get<double>());
  EXPECT_GT(Metric(b->port(), R"(kvault_kv_tier_read_bytes_total{tier="remote"})"), 0);
  EXPECT_GT(Metric(b->port(), R"(kvault_kv_tier_fetch_seconds_total{tier="remote"})"), 0);
  EXPECT_GT(RemoteOf(hb)["fetch_seconds"].get<double>(), 0) << hb.dump();
  EXPECT_EQ(hb["kv_store"]["disk_fetch_seconds"], 0) << "nothing came from B's disk";
  EXPECT_EQ(Metric(b->port(), "kvault_kv_remote_up"), 1);

  // B knows the agent as it stands: turn 2, its chain's blocks in Redis (once B wrote them).
  RemoteWritten(b->port());
  const json agent = AdminAgent(b->port(), "fleet-agent");
  EXPECT_EQ(agent["turns"], 2) << "A's turn and B's: the shared record was adopted, " << agent.dump();
  EXPECT_EQ(agent["remote"]["blocks"], agent["blocks"]) << agent.dump();
  EXPECT_EQ(Metric(b->port(), R"(kvault_kv_remote_agent_reads_total{result="found"})"), 1);

  // The same turn on A (its own cache) gives the same answer (deterministic mode).
  const json on_a = Turn(a->port(), turn2);
  EXPECT_EQ(AnswerText(on_b), AnswerText(on_a));
  EXPECT_FALSE(AnswerText(on_b).empty());
}

TEST_F(FleetTest, RedisGoingAwayFailsNoRequestAndWritesResumeWhenItIsBack) {
  auto a = Serve(Data("a"), redis_->url());
  ASSERT_FALSE(Turn(a->port(), Conversation("first", 60)).is_null());
  RemoteWritten(a->port());
  redis_->Stop();
  // Turns go on, served by the local tiers; the remote tier is reported down.
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(Turn(a->port(), Conversation("while-down" + std::to_string(i), 60)).is_null());
  int status = 0;
  const json down = HealthWhen(
      a->port(), [](const json& h) { return RemoteOf(h)["state"] == "down"; }, 10s);
  GetHealth(a->port(), &status);
  EXPECT_EQ(RemoteOf(down)["state"], "down") << down.dump();
  EXPECT_FALSE(RemoteOf(down)["last_error"].get<std::string>().empty());
  EXPECT_EQ(down["status"], "degraded");
  EXPECT_NE(std::find(down["degraded"].begin(), down["degraded"].end(), "remote_cache"), down["degraded"].end());
  EXPECT_EQ(status, 200) << "serving goes on";
  EXPECT_EQ(Metric(a->port(), "kvault_kv_remote_up"), 0);
  const int writes_before = RemoteOf(down)["writes"];

  ASSERT_TRUE(redis_->Restart());
  const json up = HealthWhen(
      a->port(), [](const json& h) { return RemoteOf(h)["state"] == "up" && RemoteOf(h)["queued_writes"] == 0; }, 15s);
  EXPECT_EQ(RemoteOf(up)["state"], "up") << up.dump();
  ASSERT_FALSE(Turn(a->port(), Conversation("after", 60)).is_null());
  const json after = RemoteWritten(a->port());
  EXPECT_GT(RemoteOf(after)["writes"].get<int>(), writes_before) << after.dump();
  EXPECT_FALSE(redis_->Keys("kvault:*").empty()) << "the restarted (empty) Redis has blocks again";
  EXPECT_EQ(after["status"], "ok");
}

TEST_F(FleetTest, GarbageInRedisIsACountedMissNotAFailure) {
  auto a = Serve(Data("a"), redis_->url());
  const json turn = Conversation("garbled", 80);
  const json first = Turn(a->port(), turn);
  RemoteWritten(a->port());
  const auto keys = redis_->Keys("kvault:*");
  ASSERT_FALSE(keys.empty());
  for (const auto& k : keys) ASSERT_EQ(redis_->Command({"SET", k, "not a block"}), "OK");

  auto b = Serve(Data("b"), redis_->url());
  const json again = Turn(b->port(), turn);
  ASSERT_FALSE(again.is_null());
  EXPECT_EQ(again["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << again.dump();
  EXPECT_EQ(AnswerText(again), AnswerText(first)) << "computed afresh, the same answer";
  const json h = HealthWhen(b->port(), [](const json& h) { return RemoteOf(h)["rejected"].get<int>() > 0; });
  EXPECT_GE(RemoteOf(h)["rejected"].get<int>(), 1) << h.dump();
  EXPECT_GE(Metric(b->port(), R"(kvault_kv_tier_rejected_total{tier="remote"})"), 1);
}

TEST_F(FleetTest, OneTenantsBlocksAreNeverHitsForAnotherOnAnotherInstance) {
  auto a = Serve(Data("a"), redis_->url());
  auto b = Serve(Data("b"), redis_->url());
  const json turn = Conversation("secret", 80);
  ASSERT_FALSE(Turn(a->port(), turn, kAlpha).is_null());
  RemoteWritten(a->port());
  const json beta = Turn(b->port(), turn, kBeta);
  ASSERT_FALSE(beta.is_null());
  EXPECT_EQ(beta["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << beta.dump();
  EXPECT_EQ(RemoteOf(GetHealth(b->port()))["hits"], 0);
  // The control: the tenant that wrote them gets them on B.
  const json alpha = Turn(b->port(), turn, kAlpha);
  EXPECT_GT(alpha["cache"]["remote_tokens"].get<int>(), 0) << alpha.dump();
}

// `kvault cache stats --remote-cache`: the blocks, bytes and agent records in Redis, per model;
// a Redis that cannot be reached is an error that names it.
TEST_F(FleetTest, CacheStatsCountsWhatRedisHolds) {
  auto a = Serve(Data("a"), redis_->url());
  ASSERT_FALSE(Turn(a->port(), Conversation("counted", 80)).is_null());
  RemoteWritten(a->port());
  size_t blocks = 0;
  for (const auto& k : redis_->Keys("kvault:*")) blocks += k.find(":agent:") == std::string::npos;
  ASSERT_GT(blocks, 0u);
  std::string out;
  ASSERT_EQ(RunKvault({"cache", "stats", "--remote-cache", redis_->url()}, &out), 0) << out;
  EXPECT_NE(out.find("remote models: 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("remote blocks: " + std::to_string(blocks) + "\n"), std::string::npos) << out;
  EXPECT_NE(out.find("remote agents: 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("redis maxmemory_policy: "), std::string::npos) << out;
  EXPECT_EQ(out.find("remote bytes: 0\n"), std::string::npos) << out;
  redis_->Stop();
  EXPECT_NE(RunKvault({"cache", "stats", "--remote-cache", redis_->url()}, &out), 0) << out;
  EXPECT_NE(out.find("connect to 127.0.0.1"), std::string::npos) << out;
  EXPECT_NE(RunKvault({"cache", "stats"}, &out), 0) << "nothing to look at";
}

// The same fleet on a Redis Cluster of 3 masters (--remote-cache redis-cluster://…): the agent's
// blocks spread over the masters, and its next turn on B is restored from them.
TEST(FleetClusterTest, AnAgentsNextTurnOnAnotherInstanceRestoresFromARedisCluster) {
  std::string error;
  auto cluster = RedisCluster::Start(ScratchDir("fleet-cluster-redis"), 3, &error);
  ASSERT_NE(cluster, nullptr) << error;
  auto a = Serve(ScratchDir("fleet-cluster-a"), cluster->url());
  auto b = Serve(ScratchDir("fleet-cluster-b"), cluster->url());
  const json turn1 = Conversation("cluster", 260);
  const json first = Turn(a->port(), turn1);
  ASSERT_FALSE(first.is_null());
  ASSERT_FALSE(RemoteOf(RemoteWritten(a->port())).is_null());
  for (size_t i = 0; i < cluster->size(); ++i) {
    EXPECT_FALSE(cluster->node(i).Keys("kvault:*").empty()) << "master " << i << " holds some of the blocks";
  }
  json turn2 = turn1;
  turn2.push_back({{"role", "assistant"}, {"content", AnswerText(first)}});
  turn2.push_back({{"role", "user"}, {"content", "Go on."}});
  const json on_b = Turn(b->port(), turn2);
  ASSERT_FALSE(on_b.is_null());
  EXPECT_GE(on_b["cache"]["remote_tokens"].get<int>(), on_b["usage"]["prompt_tokens"].get<int>() * 9 / 10)
      << on_b.dump();
  EXPECT_EQ(AdminAgent(b->port(), "fleet-agent")["turns"], 2);
  EXPECT_EQ(AnswerText(on_b), AnswerText(Turn(a->port(), turn2))) << "the same answer as on A";
  EXPECT_EQ(RemoteOf(GetHealth(b->port()))["errors"], 0);
}

TEST(FleetOptionsTest, TheRemoteCacheUrlIsValidatedAndItsPasswordNeverPrinted) {
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--remote-cache", "redis://kv:hunter2@127.0.0.1:6379/1", "--print-config"}, &out), 0)
      << out;
  EXPECT_NE(out.find("remote-cache=\"redis://kv:<hidden>@127.0.0.1:6379/1\""), std::string::npos) << out;
  EXPECT_EQ(out.find("hunter2"), std::string::npos) << out;
  EXPECT_EQ(
      RunKvault({"serve", "--remote-cache", "redis-cluster://kv:hunter2@10.0.0.1:7000,10.0.0.2:7000", "--print-config"},
                &out),
      0)
      << out;
  EXPECT_EQ(out.find("hunter2"), std::string::npos) << out;
  EXPECT_NE(RunKvault({"serve", "--remote-cache", "http://127.0.0.1:6379", "--print-config"}, &out), 0);
  EXPECT_NE(out.find("redis://"), std::string::npos) << out;
}

}  // namespace
}  // namespace kvault::testing

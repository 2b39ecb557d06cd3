// A fleet behind nginx (issue #26): two real kvault instances sharing a real redis-server, and a
// real nginx running deploy/nginx/kvault.conf (as scripts/fleet.sh writes it), all on free loopback
// ports. An agent's turns stay on one instance; when it dies, nginx moves the agent and its next
// turn resumes from Redis with the same output; Redis flushed or holding corrupted values: misses,
// no errors, the right answer.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <set>
#include <string>
#include <thread>

#include "fleet_helpers.h"
#include "nginx_process.h"
#include "redis_process.h"
#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kAlphaKey = "alpha-fleet-key-0001";
const int kTeamKeys = 16;  // more keys, all of tenant `team`: to see routing by the API key
std::string TeamKey(int i) {
  return "team-fleet-key-" + std::to_string(i);
}
const std::string kChats = R"(kvault_http_requests_total{endpoint="/v1/chat/completions",status="200"})";

class FleetRoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    redis_ = RedisProcess::Start(ScratchDir("routing-redis-" + Name()), &error);
    ASSERT_NE(redis_, nullptr) << error;
    for (int i = 0; i < 2; ++i) {
      data_[i] = ScratchDir("routing-" + Name() + "-" + std::to_string(i));
      kv_[i] = Serve(i);
      ASSERT_TRUE(kv_[i]->WaitHealthy(60s)) << kv_[i]->Log();
      ports_[i] = kv_[i]->port();
    }
    nginx_ = NginxProcess::Start(ScratchDir("routing-nginx-" + Name()),
                                 {"127.0.0.1:" + std::to_string(ports_[0]), "127.0.0.1:" + std::to_string(ports_[1])},
                                 &error);
    ASSERT_NE(nginx_, nullptr) << error;
  }

  static std::string Name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }

  // Instance i on its data directory.
  std::unique_ptr<ServerProcess> Serve(int i) {
    std::vector<std::string> args = {"--model",
                                     TinyModel().string(),
                                     "--data-dir",
                                     data_[i].string(),
                                     "--ctx-size",
                                     "1024",
                                     "--block-tokens",
                                     "16",
                                     "--log-level",
                                     "warn",
                                     "--deterministic",
                                     "--api-key",
                                     "alpha=" + kAlphaKey,
                                     "--remote-cache",
                                     redis_->url()};
    for (int k = 0; k < kTeamKeys; ++k) {
      args.push_back("--api-key");
      args.push_back("team=" + TeamKey(k));
    }
    return ServerProcess::Start(args);
  }

  // A chat turn through nginx; which instance answered it in *where (-1: none seen).
  json Via(const Headers& headers, const json& messages, int* where, int max_tokens = 12, int want_status = 200) {
    int status = 0;
    json r = Chat(nginx_->port(), headers, messages, max_tokens, &status);
    EXPECT_EQ(status, want_status) << r.dump() << "\n" << nginx_->ErrorLog();
    *where = status == 200 ? Served() : -1;
    return r;
  }

  // Which instance served the chat that just ended: polls both instances' chat counters (kvault
  // counts a request after its answer is sent) until one of them moved past what it was.
  int Served() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (int i = 0; i < 2; ++i) {
        const double now = Metric(ports_[i], kChats);
        if (now > seen_[i]) {
          seen_[i] = now;
          return i;
        }
      }
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "no instance counted the request";
    return -1;
  }

  // Waits until instance i has sent Redis every block it stored (more writes than `after`).
  json WrittenToRedis(int i, int after) {
    return HealthWhen(
        ports_[i],
        [after](const json& h) {
          const json r = RemoteOf(h);
          return !r.is_null() && r["writes"].get<int>() > after && r["queued_writes"] == 0 &&
                 h["kv_store"]["pending_writes"] == 0;
        },
        10s);
  }
  int RemoteWrites(int i) { return RemoteOf(GetHealth(ports_[i]))["writes"].get<int>(); }

  // Kills instance i as a crash would, and makes sure its port no longer answers.
  void Kill(int i) { ASSERT_EQ(kv_[i]->Stop(SIGKILL), 128 + SIGKILL); }

  // Instance i started again on its own cache directory (another port, not behind nginx): the
  // answer a turn gets from that cache, to compare with what the fleet answered.
  json AnswerOnRestarted(int i, const Headers& headers, const json& messages) {
    kv_[i] = Serve(i);
    EXPECT_TRUE(kv_[i]->WaitHealthy(60s)) << kv_[i]->Log();
    int status = 0;
    json r = Chat(kv_[i]->port(), headers, messages, 12, &status);
    EXPECT_EQ(status, 200) << r.dump();
    return r;
  }

  std::unique_ptr<RedisProcess> redis_;
  std::array<fs::path, 2> data_;
  std::array<std::unique_ptr<ServerProcess>, 2> kv_;
  std::array<int, 2> ports_{};
  std::array<double, 2> seen_{0, 0};
  std::unique_ptr<NginxProcess> nginx_;
};

Headers Agent(const std::string& id) {
  return {{"X-Agent-Id", id}, {"Authorization", "Bearer " + kAlphaKey}};
}

// A streamed request to `port` whose client reads nothing, through a small receive buffer: it stays
// in flight, kvault's writes blocked, until the returned socket is closed.
int StalledStream(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int small = 2048;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  const std::string body = json{
      {"messages", Conversation("stall", 20)},
      {"max_tokens", 900},
      {"temperature", 0},
      {"stream", true},
      // ~2 KB per token: far more than the sockets' buffers hold
      {"logprobs", true},
      {"top_logprobs", 20}}.dump();
  const std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + kAlphaKey +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  return fd;
}

TEST_F(FleetRoutingTest, AnAgentStaysOnItsInstanceAndResumesFromRedisOnAnotherWhenItDies) {
  const Headers h = Agent("mover");
  int home = -1, where = -1;
  const json turn1 = Conversation("orbit", 260);
  const json a1 = Via(h, turn1, &home);
  ASSERT_GE(home, 0);
  const int other = 1 - home;
  const json turn2 = NextTurn(turn1, AnswerText(a1), "Go on.");
  const int writes = RemoteWrites(home);
  const json a2 = Via(h, turn2, &where);
  EXPECT_EQ(where, home) << "the agent's second turn went to the other instance";
  EXPECT_GE(a2["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(),
            a2["usage"]["prompt_tokens"].get<int>() * 9 / 10)
      << a2.dump();
  ASSERT_FALSE(RemoteOf(WrittenToRedis(home, writes)).is_null());

  Kill(home);
  const json turn3 = NextTurn(turn2, AnswerText(a2), "And then?");
  const json a3 = Via(h, turn3, &where);
  ASSERT_EQ(where, other) << "nginx did not move the agent";
  const int prompt = a3["usage"]["prompt_tokens"];
  // The other instance never saw the agent: what it did not compute came from Redis.
  EXPECT_GE(a3["cache"]["remote_tokens"].get<int>(), prompt * 9 / 10) << a3.dump();
  EXPECT_EQ(a3["usage"]["prompt_tokens_details"]["cached_tokens"], a3["cache"]["remote_tokens"]) << a3.dump();
  const json h_other = HealthWhen(ports_[other], [](const json& j) { return RemoteOf(j)["hits"].get<int>() > 0; });
  EXPECT_EQ(h_other["kv_store"]["disk_hits"], 0) << h_other.dump();
  EXPECT_GE(RemoteOf(h_other)["hits"].get<int>(), prompt * 9 / 10 / 16) << h_other.dump();
  EXPECT_GT(Metric(ports_[other], R"(kvault_kv_tier_hits_total{tier="remote"})"), 0);
  EXPECT_NE(nginx_->AccessLog().find("upstream_status=502, 200"), std::string::npos)
      << "the dead instance was tried first, then the next one:\n"
      << nginx_->AccessLog();

  // It stays there while its instance is down.
  const json turn4 = NextTurn(turn3, AnswerText(a3), "Once more.");
  Via(h, turn4, &where);
  EXPECT_EQ(where, other);

  // Deterministic mode: the dead instance, back on its own cache, answers turn 3 the same way.
  const json again = AnswerOnRestarted(home, h, turn3);
  EXPECT_FALSE(AnswerText(a3).empty());
  EXPECT_EQ(AnswerText(a3), AnswerText(again));
}

TEST_F(FleetRoutingTest, AgentsAreRoutedByAgentIdThenSessionThenApiKey) {
  // Each agent's turns on one instance, and the agents over both.
  std::set<int> used;
  for (int a = 0; a < 16; ++a) {
    const Headers h = Agent("spread-" + std::to_string(a));
    int first = -1, second = -1;
    Via(h, Conversation("spread", 4), &first, 1);
    Via(h, Conversation("spread", 5), &second, 1);
    EXPECT_EQ(first, second) << "agent " << a;
    used.insert(first);
  }
  EXPECT_EQ(used.size(), 2u) << "16 agents all on one instance";

  // X-Agent-Id wins over the session and the key: 8 sessions and keys, one instance.
  int pinned = -1, where = -1;
  Via({{"X-Agent-Id", "pinned"}, {"Authorization", "Bearer " + TeamKey(0)}}, Conversation("id", 4), &pinned, 1);
  for (int k = 1; k < 8; ++k) {
    Via({{"X-Agent-Id", "pinned"},
         {"X-Claude-Code-Session-Id", "session-" + std::to_string(k)},
         {"Authorization", "Bearer " + TeamKey(k)}},
        Conversation("id", 4), &where, 1);
    EXPECT_EQ(where, pinned) << "key " << k;
  }
  // Without X-Agent-Id, Claude Code's session wins over the key (x-api-key here).
  int session = -1;
  Via({{"X-Claude-Code-Session-Id", "one-session"}, {"x-api-key", TeamKey(0)}}, Conversation("session", 4), &session,
      1);
  for (int k = 1; k < 8; ++k) {
    Via({{"X-Claude-Code-Session-Id", "one-session"}, {"x-api-key", TeamKey(k)}}, Conversation("session", 4), &where,
        1);
    EXPECT_EQ(where, session) << "key " << k;
  }
  // Without either, the API key: one key always on one instance, different keys over both.
  std::set<int> by_key;
  for (int k = 0; k < kTeamKeys; ++k) {
    int first = -1, second = -1;
    Via({{"Authorization", "Bearer " + TeamKey(k)}}, Conversation("key", 4), &first, 1);
    Via({{"x-api-key", TeamKey(k)}}, Conversation("key", 5), &second, 1);
    EXPECT_EQ(first, second) << "key " << k << ": Authorization and x-api-key are the same key";
    by_key.insert(first);
  }
  EXPECT_EQ(by_key.size(), 2u) << kTeamKeys << " keys all on one instance";

  // The access log names the agent and the instance, never the key.
  const std::string log = nginx_->AccessLog();
  EXPECT_NE(log.find("agent=\"pinned\""), std::string::npos) << log;
  EXPECT_NE(log.find("upstream=127.0.0.1:"), std::string::npos) << log;
  EXPECT_EQ(log.find("fleet-key"), std::string::npos) << "an API key in the access log:\n" << log;
  EXPECT_EQ(nginx_->ErrorLog().find("fleet-key"), std::string::npos) << nginx_->ErrorLog();
}

TEST_F(FleetRoutingTest, AnAgentPromptOfMegabytesReachesKvault) {
  // Above nginx's default 1 MiB body limit: kvault itself answers (its context is 1024 tokens),
  // in the API's error format, not nginx's HTML 413.
  int where = -1;
  const json r = Via(Agent("big"), Conversation("large", 300000), &where, 1, 400);
  ASSERT_TRUE(r.is_object()) << "not kvault's JSON";
  EXPECT_TRUE(r.contains("error")) << r.dump();
  EXPECT_GT(Conversation("large", 300000).dump().size(), 2u << 20);
}

TEST_F(FleetRoutingTest, RedisFlushedMidRunMeansMissesNotErrors) {
  const Headers h = Agent("flushed");
  int home = -1, where = -1;
  const json turn1 = Conversation("flush", 200);
  const int writes = 0;
  const json a1 = Via(h, turn1, &home);
  ASSERT_GE(home, 0);
  ASSERT_FALSE(RemoteOf(WrittenToRedis(home, writes)).is_null());
  ASSERT_FALSE(redis_->Keys("kvault:*").empty());
  ASSERT_EQ(redis_->Command({"FLUSHALL"}), "OK");

  Kill(home);
  const int other = 1 - home;
  const json turn2 = NextTurn(turn1, AnswerText(a1), "Go on.");
  const json a2 = Via(h, turn2, &where);
  ASSERT_EQ(where, other);
  EXPECT_EQ(a2["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << a2.dump();
  const json hb = WrittenToRedis(other, 0);
  const json r = RemoteOf(hb);
  EXPECT_GT(r["misses"].get<int>(), 0) << hb.dump();
  EXPECT_EQ(r["hits"], 0) << hb.dump();
  EXPECT_EQ(r["errors"], 0) << hb.dump();
  EXPECT_EQ(r["rejected"], 0) << hb.dump();
  EXPECT_EQ(hb["status"], "ok") << hb.dump();
  EXPECT_GT(Metric(ports_[other], "kvault_kv_remote_misses_total"), 0);
  EXPECT_FALSE(redis_->Keys("kvault:*").empty()) << "the turn's blocks are written again";

  const json again = AnswerOnRestarted(home, h, turn2);
  EXPECT_FALSE(AnswerText(a2).empty());
  EXPECT_EQ(AnswerText(a2), AnswerText(again));
}

TEST_F(FleetRoutingTest, TruncatedOrFlippedValuesInRedisAreCountedMissesAndTheAnswerIsRight) {
  const Headers h = Agent("corrupted");
  int home = -1, where = -1;
  const json turn1 = Conversation("corrupt", 200);
  const json a1 = Via(h, turn1, &home);
  ASSERT_GE(home, 0);
  ASSERT_FALSE(RemoteOf(WrittenToRedis(home, 0)).is_null());
  std::vector<std::string> keys;  // the blocks (not the agent's shared record, a hash)
  for (const auto& k : redis_->Keys("kvault:*")) {
    if (k.find(":agent:") == std::string::npos) keys.push_back(k);
  }
  ASSERT_FALSE(keys.empty());
  for (size_t i = 0; i < keys.size(); ++i) {
    std::string v = redis_->Command({"GET", keys[i]}).value_or("");
    ASSERT_GT(v.size(), 64u) << keys[i];
    if (i % 2 == 0) {
      v.resize(v.size() / 2);  // truncated
    } else {
      v[v.size() * 3 / 4] ^= 0x5a;  // one byte changed, in the KV data
    }
    ASSERT_EQ(redis_->Command({"SET", keys[i], v}), "OK");
  }

  Kill(home);
  const int other = 1 - home;
  const json turn2 = NextTurn(turn1, AnswerText(a1), "Go on.");
  const json a2 = Via(h, turn2, &where);
  ASSERT_EQ(where, other);
  EXPECT_EQ(a2["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << a2.dump();
  const json hb = HealthWhen(ports_[other], [](const json& j) { return RemoteOf(j)["rejected"].get<int>() > 0; });
  EXPECT_GE(RemoteOf(hb)["rejected"].get<int>(), 1) << hb.dump();
  EXPECT_EQ(RemoteOf(hb)["hits"], 0) << hb.dump();
  EXPECT_GE(Metric(ports_[other], R"(kvault_kv_tier_rejected_total{tier="remote"})"), 1);
  EXPECT_NE(hb["status"], "unavailable");

  const json again = AnswerOnRestarted(home, h, turn2);
  EXPECT_FALSE(AnswerText(a2).empty());
  EXPECT_EQ(AnswerText(a2), AnswerText(again)) << "computed afresh, the same answer as from a good cache";
}

TEST_F(FleetRoutingTest, ADrainingInstancesAgentsMoveToAnotherWithoutAnError) {
  const Headers h = Agent("drained");
  int home = -1;
  const json turn1 = Conversation("drain", 60);
  const json a1 = Via(h, turn1, &home);
  ASSERT_GE(home, 0);
  // A rolling restart: the instance gets SIGTERM while a long answer still streams from it, and
  // drains - running requests finish, new ones get 503.
  const int stalled = StalledStream(ports_[home]);
  const json busy = HealthWhen(
      ports_[home], [](const json& j) { return j.contains("models") && j["models"][0]["in_flight"] == 1; }, 10s);
  ASSERT_EQ(busy["models"][0]["in_flight"], 1) << busy.dump();
  ASSERT_EQ(kill(kv_[home]->pid(), SIGTERM), 0);
  const json draining = HealthWhen(
      ports_[home], [](const json& j) { return j["status"] == "draining"; }, 10s);
  ASSERT_EQ(draining["status"], "draining") << draining.dump();

  // The agent's next turn: the 503 stays between nginx and kvault; the client gets its answer.
  const json turn2 = NextTurn(turn1, AnswerText(a1), "Go on.");
  int status = 0;
  const json a2 = Chat(nginx_->port(), h, turn2, 12, &status);
  EXPECT_EQ(status, 200) << a2.dump();
  EXPECT_FALSE(AnswerText(a2).empty()) << a2.dump();
  // (Not the instances' counters: the stalled stream may end meanwhile and count on the home.)
  const std::string moved = "upstream=127.0.0.1:" + std::to_string(ports_[home]) +
                            ", 127.0.0.1:" + std::to_string(ports_[1 - home]) + " upstream_status=503, 200";
  for (int i = 0; i < 100 && nginx_->AccessLog().find(moved) == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  EXPECT_NE(nginx_->AccessLog().find(moved), std::string::npos)
      << "the draining instance answered 503 and nginx sent the request on:\n"
      << nginx_->AccessLog();

  close(stalled);  // the stream ends; the drained instance exits
  EXPECT_EQ(kv_[home]->Wait(60s), 0) << kv_[home]->Log();
}

}  // namespace
}  // namespace kvault::testing

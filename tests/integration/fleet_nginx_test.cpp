// The fleet's deployment files and script (issue #26): deploy/nginx/kvault.conf passes `nginx -t`
// as scripts/fleet.sh writes it (and a broken one does not), says what the routing needs, and
// agrees with deploy/compose.yaml; `scripts/fleet.sh up 2` starts Redis, two kvault instances and
// nginx that answer, `status` reports them, `down` stops every process it started.
#include <gtest/gtest.h>
#include <signal.h>

#include <array>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <sstream>
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

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Template() {
  return Read(SourceDir() / "deploy" / "nginx" / "kvault.conf");
}

// The configuration without what scripts/fleet.sh may change: the upstream servers between their
// markers, and the lines marked `kvault-fleet:`.
std::string Unmarked(const std::string& conf) {
  std::string s = std::regex_replace(
      conf, std::regex(R"(# kvault-fleet: servers begin\n[\s\S]*?# kvault-fleet: servers end)"), "servers");
  return std::regex_replace(s, std::regex(R"([^\n]*# kvault-fleet: (listen|access_log))"), "$1");
}

TEST(FleetNginxConfigTest, TheDeployConfigurationPassesNginxTWithLoopbackUpstreams) {
  ASSERT_TRUE(HaveNginx()) << "nginx is not installed: make deps installs it";
  const fs::path dir = ScratchDir("nginx-conf-check");
  std::string out;
  ASSERT_EQ(WriteNginxConf(dir, FreePort(), {"127.0.0.1:18081", "127.0.0.1:18082", "127.0.0.1:18083"}, &out), 0) << out;
  ASSERT_EQ(RunProgram({"nginx", "-t", "-p", dir.string() + "/", "-c", (dir / "nginx.conf").string()}, &out), 0) << out;
  EXPECT_NE(out.find("test is successful"), std::string::npos) << out;

  // Only the marked lines changed: the generated file is the template with the loopback servers.
  const std::string conf = Read(dir / "kvault.conf");
  for (const char* kept : {"hash $kvault_agent consistent;", "map $http_x_agent_id $kvault_agent {",
                           "proxy_buffering off;", "proxy_http_version 1.1;", "proxy_read_timeout 3600s;",
                           "proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
                           "client_max_body_size 64m;", "keepalive_timeout 4s;"}) {
    EXPECT_NE(Template().find(kept), std::string::npos) << kept;
    EXPECT_NE(conf.find(kept), std::string::npos) << kept;
  }
  EXPECT_NE(conf.find("server 127.0.0.1:18083 max_fails=2 fail_timeout=10s;"), std::string::npos) << conf;
  EXPECT_EQ(conf.find("kvault-1:8080"), std::string::npos) << conf;
  EXPECT_EQ(Unmarked(conf), Unmarked(Template()));

  // The check can fail: a broken copy is refused.
  std::string broken = conf;
  broken.replace(broken.find("proxy_buffering off;"), 20, "proxy_buffering of;");
  std::ofstream(dir / "kvault.conf") << broken;
  EXPECT_NE(RunProgram({"nginx", "-t", "-p", dir.string() + "/", "-c", (dir / "nginx.conf").string()}, &out), 0);
  EXPECT_NE(out.find("proxy_buffering"), std::string::npos) << out;
}

TEST(FleetNginxConfigTest, TheLogFormatHasNoHeaderThatCarriesAKey) {
  const std::string conf = Template();
  const size_t begin = conf.find("log_format kvault");
  ASSERT_NE(begin, std::string::npos);
  const std::string format = conf.substr(begin, conf.find(";", begin) - begin);
  for (const char* secret : {"$http_authorization", "$http_x_api_key", "$kvault_agent", "$http_"}) {
    if (std::string(secret) == "$http_") {
      // The only request header logged is the agent's name.
      std::regex header(R"(\$http_[a-z_]+)");
      for (auto it = std::sregex_iterator(format.begin(), format.end(), header); it != std::sregex_iterator(); ++it) {
        EXPECT_EQ(it->str(), "$http_x_agent_id") << format;
      }
    } else {
      EXPECT_EQ(format.find(std::string(secret) + " "), std::string::npos) << format;
    }
  }
  EXPECT_NE(conf.find("access_log /var/log/nginx/access.log kvault;"), std::string::npos);
}

TEST(FleetNginxConfigTest, TheComposeFileRunsTheServersTheNginxConfigurationNames) {
  const std::string compose = Read(SourceDir() / "deploy" / "compose.yaml");
  ASSERT_FALSE(compose.empty());
  const std::string conf = Template();
  std::regex server(R"(\n    server ([a-z0-9-]+):([0-9]+) max_fails)");
  int n = 0;
  for (auto it = std::sregex_iterator(conf.begin(), conf.end(), server); it != std::sregex_iterator(); ++it, ++n) {
    const std::string name = (*it)[1], port = (*it)[2];
    EXPECT_NE(compose.find("\n  " + name + ":\n"), std::string::npos) << "no service " << name;
    EXPECT_NE(compose.find("KVAULT_PORT: \"" + port + "\""), std::string::npos) << port;
  }
  EXPECT_GE(n, 2);
  EXPECT_NE(compose.find("./nginx/kvault.conf:/etc/nginx/conf.d/default.conf:ro"), std::string::npos);
  EXPECT_NE(compose.find("allkeys-lru"), std::string::npos);
  EXPECT_NE(compose.find("KVAULT_REMOTE_CACHE"), std::string::npos);
}

// docs/operations.md's Redis ACL user (deploy/compose.yaml's), with Redis's default user off: two
// instances share an agent's blocks and record through it, without an error.
TEST(FleetSecurityTest, TwoInstancesShareAnAgentAsTheDocumentedRedisUserWithTheDefaultUserOff) {
  std::string error;
  auto redis = RedisProcess::Start(ScratchDir("acl-redis"), &error);
  ASSERT_NE(redis, nullptr) << error;
  ASSERT_EQ(redis->Command({"ACL", "SETUSER", "kvault", "on", ">acl-password", "~kvault:*", "+get", "+set", "+del",
                            "+ping", "+exists", "+hget", "+hset", "+eval", "+expire", "+scan", "+strlen", "+info"}),
            "OK");
  const std::string url = "redis://kvault:acl-password@127.0.0.1:" + std::to_string(redis->port());
  std::array<std::unique_ptr<ServerProcess>, 2> kv;
  for (int i = 0; i < 2; ++i) {
    kv[i] = ServerProcess::Start(
        {"--model", TinyModel().string(), "--data-dir", ScratchDir("acl-" + std::to_string(i)).string(), "--ctx-size",
         "1024", "--block-tokens", "16", "--log-level", "warn", "--api-key", "team=acl-key", "--remote-cache", url});
    ASSERT_TRUE(kv[i]->WaitHealthy(60s)) << kv[i]->Log();
  }
  ASSERT_EQ(redis->Command({"ACL", "SETUSER", "default", "off"}), "OK");  // from here on, only kvault's user
  const Headers h = {{"Authorization", "Bearer acl-key"}, {"X-Agent-Id", "acl"}};
  int status = 0;
  const json turn = Conversation("acl", 120);
  Chat(kv[0]->port(), h, turn, 4, &status);
  ASSERT_EQ(status, 200);
  const json written = RemoteWritten(kv[0]->port());
  EXPECT_EQ(RemoteOf(written)["errors"], 0) << written.dump();
  const json on_b = Chat(kv[1]->port(), h, turn, 4, &status);
  ASSERT_EQ(status, 200);
  EXPECT_GE(on_b["cache"]["remote_tokens"].get<int>(), on_b["usage"]["prompt_tokens"].get<int>() * 9 / 10)
      << on_b.dump();
  const json hb = HealthWhen(kv[1]->port(), [](const json& j) { return RemoteOf(j)["queued_writes"] == 0; });
  EXPECT_GT(RemoteOf(hb)["hits"].get<int>(), 0) << hb.dump();
  EXPECT_GT(RemoteOf(hb)["agents"]["found"].get<int>(), 0) << "B adopted A's record of the agent: " << hb.dump();
  EXPECT_EQ(RemoteOf(GetHealth(kv[0]->port()))["errors"], 0);
  EXPECT_EQ(RemoteOf(hb)["errors"], 0) << hb.dump();
  EXPECT_EQ(RemoteOf(hb)["state"], "up") << hb.dump();
  EXPECT_EQ(redis->Command({"PING"}), std::nullopt) << "the default user is off";
}

// ---- scripts/fleet.sh ---------------------------------------------------------------------------

std::string PidIn(const fs::path& file) {
  std::string s = Read(file);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A process that still runs (a zombie whose parent has not reaped it yet does not count).
bool Running(const std::string& pid) {
  if (pid.empty()) return false;
  const std::string stat = Read("/proc/" + pid + "/stat");
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

std::map<std::string, std::string> FleetEnv(const fs::path& dir) {
  std::map<std::string, std::string> env;
  std::istringstream in(Read(dir / "fleet.env"));
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string v = line.substr(eq + 1);
    if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
    env[line.substr(0, eq)] = v;
  }
  return env;
}

TEST(FleetScriptTest, UpTwoServesThroughNginxStatusReportsItAndDownStopsEverything) {
  ASSERT_TRUE(HaveNginx()) << "nginx is not installed: make deps installs it";
  const fs::path dir = ScratchDir("fleet-script");
  const std::string script = (SourceDir() / "scripts" / "fleet.sh").string();
  const std::map<std::string, std::string> env = {{"KVAULT_FLEET_DIR", dir.string()}, {"KVAULT_BIN", KvaultBinary()}};
  const int port = FreePort();
  std::string out;
  const int up = RunProgram(
      {"bash", script, "up", "2", "--model", TinyModel().string(), "--port", std::to_string(port), "--", "--ctx-size",
       "1024", "--kv-memory", "64", "--ram-cache", "64", "--log-level", "warn", "--api-key", "team=fleet-script-key"},
      &out, env, 180s);
  struct Down {  // whatever the test's outcome, the fleet goes
    std::string script;
    std::map<std::string, std::string> env;
    ~Down() { RunProgram({"bash", script, "down"}, nullptr, env); }
  } down{script, env};
  ASSERT_EQ(up, 0) << out;
  EXPECT_NE(out.find("fleet: up: http://127.0.0.1:" + std::to_string(port)), std::string::npos) << out;

  // A chat through nginx, and its blocks in Redis.
  int status = 0;
  const json r = Chat(port, {{"X-Agent-Id", "script"}, {"Authorization", "Bearer fleet-script-key"}},
                      Conversation("script", 40), 4, &status);
  EXPECT_EQ(status, 200) << r.dump();
  const auto fleet = FleetEnv(dir);
  ASSERT_TRUE(fleet.contains("REDIS_PORT") && fleet.contains("KVAULT_PORTS")) << Read(dir / "fleet.env");
  std::string keys;
  for (int i = 0; i < 100 && keys.find("kvault:") == std::string::npos; ++i) {
    RunProgram({"redis-cli", "-p", fleet.at("REDIS_PORT"), "--scan", "--pattern", "kvault:*"}, &keys);
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(keys.find("kvault:"), std::string::npos) << "no block in the fleet's Redis";
  // Every instance has the fleet's one tenant secret: a bare key is one tenant on all of them.
  EXPECT_EQ(Read(dir / "kvault-1" / "kv-cache" / "tenant-secret").size(), 32u);
  EXPECT_EQ(Read(dir / "kvault-1" / "kv-cache" / "tenant-secret"),
            Read(dir / "kvault-2" / "kv-cache" / "tenant-secret"));

  ASSERT_EQ(RunProgram({"bash", script, "status"}, &out, env), 0) << out;
  EXPECT_NE(out.find("kvault-2 127.0.0.1:"), std::string::npos) << out;
  EXPECT_NE(out.find("remote up"), std::string::npos) << out;
  EXPECT_NE(RunProgram({"bash", script, "up", "2"}, &out, env), 0) << "a second fleet on the same state: " << out;
  EXPECT_NE(out.find("a fleet is running"), std::string::npos) << out;

  const std::vector<fs::path> pid_files = {dir / "redis" / "redis.pid", dir / "kvault-1" / "kvault.pid",
                                           dir / "kvault-2" / "kvault.pid", dir / "nginx" / "nginx.pid"};
  std::vector<std::string> pids;
  for (const auto& f : pid_files) {
    pids.push_back(PidIn(f));
    EXPECT_TRUE(Running(pids.back())) << f;
  }
  ASSERT_EQ(RunProgram({"bash", script, "down"}, &out, env, 90s), 0) << out;
  for (size_t i = 0; i < pids.size(); ++i) EXPECT_FALSE(Running(pids[i])) << pid_files[i] << " still runs";
  EXPECT_EQ(GetHealth(port), json()) << "nginx still answers";
  EXPECT_NE(RunProgram({"bash", script, "status"}, &out, env), 0) << out;
  EXPECT_NE(out.find("no fleet running"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir / "kvault-1" / "kv-cache")) << "down keeps the caches";
}

}  // namespace
}  // namespace kvault::testing

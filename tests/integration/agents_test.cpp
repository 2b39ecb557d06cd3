// The agents API through the real server: per-agent records, tiers, evict and forget, admin
// keys, and records that survive a restart.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const char* kKeyA = "agents-key-A";
const char* kKeyB = "agents-key-B";
const char* kAdmin = "agents-admin-key";

std::unique_ptr<ServerProcess> Serve(const fs::path& data) {
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "1024",
                                 "--block-tokens", "16", "--durability", "sync", "--api-key", kKeyA, "--api-key", kKeyB,
                                 "--admin-key", kAdmin, "--log-level", "warn",
                                 // finished conversations stay in the pool (admin evict moves them out)
                                 "--idle-tokens", "-1"});
  EXPECT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  return s;
}

std::string Conversation(const std::string& agent) {
  std::string s = "Agent " + agent + " works on its task: ";
  for (int i = 0; i < 40; ++i) s += agent + std::to_string(i % 7) + " ";
  return s;
}

json Turn(const ServerProcess& s, const char* key, const std::string& agent) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(std::chrono::seconds(60));
  json body = {
      {"messages", {{{"role", "user"}, {"content", Conversation(agent)}}}}, {"max_tokens", 8}, {"temperature", 0}};
  auto r = c.Post("/v1/chat/completions", {{"x-api-key", key}, {"X-Agent-Id", agent}}, body.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body);
}

httplib::Result Admin(const ServerProcess& s, const std::string& method, const std::string& path,
                      const char* key = kAdmin) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(std::chrono::seconds(60));
  httplib::Headers h;
  if (key) h.emplace("Authorization", std::string("Bearer ") + key);
  if (method == "GET") return c.Get(path, h);
  if (method == "POST") return c.Post(path, h, "", "application/json");
  return c.Delete(path, h);
}

json AdminJson(const ServerProcess& s, const std::string& method, const std::string& path, int want = 200) {
  auto r = Admin(s, method, path);
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, want) << method << " " << path << ": " << r->body;
  return json::parse(r->body);
}

TEST(AgentsTest, RecordsTiersEvictForgetAndRestart) {
  const auto data = ScratchDir("agents-api");
  std::string tenant_a;
  {
    auto s = Serve(data);
    Turn(*s, kKeyA, "planner");
    Turn(*s, kKeyA, "coder");
    Turn(*s, kKeyB, "planner");

    // Admin auth: none → 401, an API key → 403.
    EXPECT_EQ(Admin(*s, "GET", "/admin/agents", nullptr)->status, 401);
    EXPECT_EQ(Admin(*s, "GET", "/admin/agents", kKeyA)->status, 403);

    const json list = AdminJson(*s, "GET", "/admin/agents")["agents"];
    ASSERT_EQ(list.size(), 3u) << list.dump();
    for (const auto& a : list) {
      EXPECT_GT(a["tokens"].get<int>(), 100);
      EXPECT_EQ(a["blocks"].get<int>(), (a["tokens"].get<int>() + 15) / 16);  // full blocks and the partial last one
      EXPECT_EQ(a["ram"]["blocks"], a["blocks"]);
      EXPECT_EQ(a["disk"]["blocks"], a["blocks"]);  // sync durability: on disk before the answer
      if (a["id"] == "coder") tenant_a = a["tenant"];
    }
    ASSERT_FALSE(tenant_a.empty());
    // "planner" is used by two tenants.
    AdminJson(*s, "GET", "/admin/agents/planner", 409);
    EXPECT_EQ(AdminJson(*s, "GET", "/admin/agents/planner?tenant=" + tenant_a)["tenant"], tenant_a);
    // The handler's own message, not the server's generic "no route".
    EXPECT_EQ(AdminJson(*s, "GET", "/admin/agents/nobody", 404)["error"]["message"], "no agent 'nobody'");

    // Evict: out of the pool and RAM, still on disk; the next turn comes from disk.
    const json ev = AdminJson(*s, "POST", "/admin/agents/coder/evict");
    EXPECT_GT(ev["evicted"]["pool_tokens"].get<int>(), 100) << ev.dump();
    EXPECT_GT(ev["evicted"]["ram_blocks"].get<int>(), 5);
    const json after = AdminJson(*s, "GET", "/admin/agents/coder");
    EXPECT_EQ(after["ram"]["blocks"], 0);
    EXPECT_EQ(after["disk"]["blocks"], after["blocks"]);
    // The same prompt again: all of it but its last token (always computed) comes back — the
    // full blocks, and the part of the agent's next block (its answer's) that the prompt shares.
    const json again = Turn(*s, kKeyA, "coder");
    const int stored = again["usage"]["prompt_tokens"].get<int>() - 1;
    EXPECT_EQ(again["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), stored) << again.dump();
    // All but the chat template's header (shared with the planner, still resident) from disk.
    EXPECT_GE(again["cache"]["disk_tokens"].get<int>(), stored - 48) << again.dump();
    EXPECT_EQ(again["cache"]["ram_tokens"], 0);

    // Forget: the record and the blocks only it holds go; a later turn recomputes them.
    const json del = AdminJson(*s, "DELETE", "/admin/agents/coder");
    EXPECT_TRUE(del["deleted"].get<bool>());
    EXPECT_GT(del["blocks_removed"].get<int>(), 5) << del.dump();
    AdminJson(*s, "GET", "/admin/agents/coder", 404);
    const json fresh = Turn(*s, kKeyA, "coder");
    // Only the chat template's header (shared with tenant A's planner) can still be found.
    EXPECT_LE(fresh["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 48) << fresh.dump();
    EXPECT_EQ(s->Stop(SIGTERM), 0);
  }
  // The records survive a restart.
  auto s = Serve(data);
  const json list = AdminJson(*s, "GET", "/admin/agents?tenant=" + tenant_a)["agents"];
  ASSERT_EQ(list.size(), 2u) << list.dump();
  for (const auto& a : list) EXPECT_EQ(a["disk"]["blocks"], a["blocks"]);
}

// The tenant id kvault used to give a key: `key-` + 8 bytes of an unkeyed XXH3-128 of it, which
// anyone could compute from a guessed key.
std::string UnkeyedTenantId(const std::string& key) {
  const std::string input = "kvault-api-key:" + key;
  const XXH128_hash_t h = XXH3_128bits(input.data(), input.size());
  unsigned char d[8];
  std::memcpy(d, &h.low64, 8);
  std::string id = "key-";
  for (unsigned char b : d) {
    id += "0123456789abcdef"[b >> 4];
    id += "0123456789abcdef"[b & 15];
  }
  return id;
}

// /admin/agents shows tenant ids keyed by the installation's secret (kept in the cache
// directory, mode 0600), the same after a restart, never the unkeyed digest of the key; a key
// given as NAME=KEY shows its tenant as NAME.
TEST(AgentsTest, TenantIdsAreKeyedOrNamed) {
  const auto data = ScratchDir("agents-tenant-ids");
  auto serve = [&] {
    auto s = ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "512",
                                   "--block-tokens", "16", "--api-key", kKeyA, "--api-key",
                                   std::string("team.b=") + kKeyB, "--admin-key", kAdmin, "--log-level", "info"});
    EXPECT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
    return s;
  };
  auto tenants = [](const ServerProcess& s) {
    std::map<std::string, std::string> out;  // agent -> tenant
    const json list = AdminJson(s, "GET", "/admin/agents");
    for (const auto& a : list["agents"]) out[a["id"]] = a["tenant"];
    return out;
  };
  std::string id_a;
  {
    auto s = serve();
    Turn(*s, kKeyA, "planner");
    Turn(*s, kKeyB, "coder");
    const auto t = tenants(*s);
    id_a = t.at("planner");
    EXPECT_EQ(id_a.rfind("key-", 0), 0u) << id_a;
    EXPECT_EQ(id_a.size(), 20u) << id_a;
    EXPECT_NE(id_a, UnkeyedTenantId(kKeyA));
    EXPECT_EQ(t.at("coder"), "team.b");
    EXPECT_EQ(s->Log().find(kKeyB), std::string::npos) << "the log names the tenant, never the key";
    EXPECT_NE(s->Log().find("named tenants: team.b"), std::string::npos) << s->Log();
    EXPECT_EQ(s->Stop(SIGTERM), 0);
  }
  const fs::path secret = data / "kv-cache" / "tenant-secret";
  struct stat st {};
  ASSERT_EQ(::stat(secret.c_str(), &st), 0) << secret;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  // A restart: the same ids, so the agents' records (and caches) are found again.
  auto s = serve();
  const json again = Turn(*s, kKeyA, "planner");
  EXPECT_GT(again["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 100) << again.dump();
  EXPECT_EQ(tenants(*s).at("planner"), id_a);
}

TEST(AgentsTest, AgentIdsAreValidatedAndNeverPaths) {
  const auto data = ScratchDir("agents-ids");
  auto s = Serve(data);
  httplib::Client c("127.0.0.1", s->port());
  const std::string body = R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"temperature":0})";
  for (const std::string& bad :
       std::vector<std::string>{"../../etc/passwd", "a/b", "has space", std::string(300, 'x')}) {
    auto r = c.Post("/v1/chat/completions", {{"x-api-key", kKeyA}, {"X-Agent-Id", bad}}, body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_NE(r->body.find("X-Agent-Id"), std::string::npos);
  }
  // A NUL or a CR inside the header value (sent raw: client libraries refuse to): never a
  // record, never a 2xx.
  for (const std::string& bad : {std::string("a\0b", 3), std::string("a\rb")}) {
    const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-api-key: " + std::string(kKeyA) +
                             "\r\nContent-Type: application/json\r\nX-Agent-Id: " + bad +
                             "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(s->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string req = head + body;
    ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) got.append(buf, static_cast<size_t>(n));
    ::close(fd);
    EXPECT_EQ(got.rfind("HTTP/1.1 2", 0), std::string::npos) << got.substr(0, 300);
  }
  // Agent records are files named by a hash, inside the cache directory.
  Turn(*s, kKeyA, "user@example.com");
  size_t records = 0;
  for (const auto& e : fs::recursive_directory_iterator(data)) {
    if (e.path().extension() == ".json" && e.path().parent_path().filename() == "agents") {
      ++records;
      EXPECT_EQ(e.path().stem().string().size(), 32u);
    }
  }
  EXPECT_EQ(records, 1u);
}

}  // namespace
}  // namespace kvault::testing

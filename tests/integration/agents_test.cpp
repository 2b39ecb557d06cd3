// The agents API through the real server: per-agent records, tiers, evict and forget, admin
// keys, and records that survive a restart.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

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
                                 "--block-tokens", "16", "--durability", "sync", "--api-key", kKeyA, "--api-key",
                                 kKeyB, "--admin-key", kAdmin, "--log-level", "warn"});
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
  json body = {{"messages", {{{"role", "user"}, {"content", Conversation(agent)}}}}, {"max_tokens", 8}};
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
      EXPECT_EQ(a["blocks"].get<int>(), a["tokens"].get<int>() / 16);
      EXPECT_EQ(a["ram"]["blocks"], a["blocks"]);
      EXPECT_EQ(a["disk"]["blocks"], a["blocks"]);  // sync durability: on disk before the answer
      if (a["id"] == "coder") tenant_a = a["tenant"];
    }
    ASSERT_FALSE(tenant_a.empty());
    // "planner" is used by two tenants.
    AdminJson(*s, "GET", "/admin/agents/planner", 409);
    EXPECT_EQ(AdminJson(*s, "GET", "/admin/agents/planner?tenant=" + tenant_a)["tenant"], tenant_a);
    AdminJson(*s, "GET", "/admin/agents/nobody", 404);

    // Evict: out of the pool and RAM, still on disk; the next turn comes from disk.
    const json ev = AdminJson(*s, "POST", "/admin/agents/coder/evict");
    EXPECT_GT(ev["evicted"]["pool_tokens"].get<int>(), 100) << ev.dump();
    EXPECT_GT(ev["evicted"]["ram_blocks"].get<int>(), 5);
    const json after = AdminJson(*s, "GET", "/admin/agents/coder");
    EXPECT_EQ(after["ram"]["blocks"], 0);
    EXPECT_EQ(after["disk"]["blocks"], after["blocks"]);
    const json again = Turn(*s, kKeyA, "coder");
    const int stored = (again["usage"]["prompt_tokens"].get<int>() - 1) / 16 * 16;
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

TEST(AgentsTest, AgentIdsAreValidatedAndNeverPaths) {
  const auto data = ScratchDir("agents-ids");
  auto s = Serve(data);
  httplib::Client c("127.0.0.1", s->port());
  const std::string body = R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":2})";
  for (const std::string& bad : std::vector<std::string>{"../../etc/passwd", "a/b", "has space", std::string(300, 'x')}) {
    auto r = c.Post("/v1/chat/completions", {{"x-api-key", kKeyA}, {"X-Agent-Id", bad}}, body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_NE(r->body.find("X-Agent-Id"), std::string::npos);
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

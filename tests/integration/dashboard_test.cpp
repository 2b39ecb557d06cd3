// The dashboard's data routes through the real server (server/dashboard_routes.cpp): who sees
// what (admin key, API key, no key), the agents' placement and turns, the event stream, and a
// shutdown with a stream open. The page itself is tested in a browser (tests/e2e/dashboard.browser.mjs).
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const char* kKeyA = "dash-key-A";
const char* kKeyB = "dash-key-B";
const char* kAdmin = "dash-admin-key";

std::unique_ptr<ServerProcess> Serve(const fs::path& data, std::vector<std::string> keys) {
  std::vector<std::string> args = {
      "--model", TinyModel().string(), "--data-dir", data.string(), "--ctx-size", "1024", "--block-tokens",
      "16",      "--durability",       "sync",       "--log-level", "warn"};
  args.insert(args.end(), keys.begin(), keys.end());
  auto s = ServerProcess::Start(args);
  EXPECT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  return s;
}

void Turn(const ServerProcess& s, const char* key, const std::string& agent) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(std::chrono::seconds(60));
  std::string text = "Agent " + agent + " asks: ";
  for (int i = 0; i < 30; ++i) text += agent + std::to_string(i % 5) + " ";
  json body = {{"messages", {{{"role", "user"}, {"content", text}}}}, {"max_tokens", 4}, {"temperature", 0}};
  httplib::Headers h = {{"X-Agent-Id", agent}};
  if (key) h.emplace("Authorization", std::string("Bearer ") + key);
  auto r = c.Post("/v1/chat/completions", h, body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
}

httplib::Result Call(const ServerProcess& s, const std::string& method, const std::string& path, const char* key) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(std::chrono::seconds(60));
  httplib::Headers h;
  if (key) h.emplace("Authorization", std::string("Bearer ") + key);
  if (method == "POST") return c.Post(path, h, "", "application/json");
  if (method == "DELETE") return c.Delete(path, h);
  return c.Get(path, h);
}

json Get(const ServerProcess& s, const std::string& path, const char* key, int want = 200) {
  auto r = Call(s, "GET", path, key);
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, want) << path << ": " << r->body;
  return json::parse(r->body);
}

std::set<std::string> Ids(const json& overview) {
  std::set<std::string> ids;
  for (const auto& a : overview["agents"]) ids.insert(a["id"].get<std::string>());
  return ids;
}

TEST(DashboardTest, AdminKeysSeeEveryTenantApiKeysTheirOwnReadOnly) {
  auto s = Serve(ScratchDir("dashboard-auth"),
                 {"--api-key", kKeyA, "--api-key", std::string("team=") + kKeyB, "--admin-key", kAdmin});
  Turn(*s, kKeyA, "a1");
  Turn(*s, kKeyB, "b1");

  const json admin = Get(*s, "/admin/overview", kAdmin);
  EXPECT_EQ(admin["viewer"]["role"], "admin");
  EXPECT_EQ(admin["viewer"]["can_manage"], true);
  EXPECT_EQ(Ids(admin), (std::set<std::string>{"a1", "b1"}));
  EXPECT_EQ(admin["totals"]["generations"], 2);
  EXPECT_EQ(admin["recent"]["requests"], 2);
  EXPECT_FALSE(admin["recent"]["ttft_p50_ms"].is_null());
  EXPECT_EQ(admin["tiers"]["disk"]["state"], "ok");
  EXPECT_GT(admin["tiers"]["ram"]["limit_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(Ids(Get(*s, "/admin/overview?tenant=team", kAdmin)), (std::set<std::string>{"b1"}));

  const json a = Get(*s, "/admin/overview", kKeyA);
  EXPECT_EQ(a["viewer"]["role"], "tenant");
  EXPECT_EQ(a["viewer"]["can_manage"], false);
  EXPECT_EQ(Ids(a), (std::set<std::string>{"a1"}));
  EXPECT_EQ(Ids(Get(*s, "/admin/overview?tenant=team", kKeyA)), (std::set<std::string>{"a1"}))
      << "an API key cannot pick another tenant";
  EXPECT_EQ(Get(*s, "/admin/overview", kKeyB)["viewer"]["tenant"], "team");

  Get(*s, "/admin/overview", "wrong-key", 401);
  Get(*s, "/admin/overview", nullptr, 401);
  Get(*s, "/admin/events", "wrong-key", 401);
  Get(*s, "/admin/overview?limit=0", kAdmin, 400);
  Get(*s, "/admin/overview?limit=x", kAdmin, 400);
  Get(*s, "/admin/overview?model=nope", kAdmin, 404);
  const json one = Get(*s, "/admin/overview?limit=1", kAdmin);
  EXPECT_EQ(one["agents"].size(), 1u);
  EXPECT_EQ(one["agents_total"], 2);

  // Turns: the agent's own tenant (or an admin) only.
  const json turns = Get(*s, "/admin/agents/a1/turns", kKeyA);
  ASSERT_EQ(turns["turns"].size(), 1u);
  EXPECT_GT(turns["turns"][0]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(turns["agent"]["id"], "a1");
  Get(*s, "/admin/agents/b1/turns", kKeyA, 404);
  EXPECT_EQ(Get(*s, "/admin/agents/b1/turns", kAdmin)["turns"].size(), 1u);

  // Managing stays with admin keys.
  EXPECT_EQ(Call(*s, "POST", "/admin/agents/a1/evict", kKeyA)->status, 403);
  EXPECT_EQ(Call(*s, "DELETE", "/admin/agents/a1", kKeyA)->status, 403);
  EXPECT_EQ(Call(*s, "GET", "/admin/agents", kKeyA)->status, 403);
}

TEST(DashboardTest, WithoutKeysItIsOpenAndReadOnlyWithOnlyAnAdminKeyItNeedsIt) {
  {
    auto s = Serve(ScratchDir("dashboard-open"), {});
    Turn(*s, nullptr, "solo");
    const json o = Get(*s, "/admin/overview", nullptr);
    EXPECT_EQ(o["viewer"]["role"], "open");
    EXPECT_EQ(o["viewer"]["can_manage"], false);
    EXPECT_EQ(Ids(o), (std::set<std::string>{"solo"}));
    EXPECT_EQ(Call(*s, "POST", "/admin/agents/solo/evict", nullptr)->status, 403);  // admin endpoints are off
  }
  {
    auto s = Serve(ScratchDir("dashboard-admin-only"), {"--admin-key", kAdmin});
    Get(*s, "/admin/overview", nullptr, 401);
    EXPECT_EQ(Get(*s, "/admin/overview", kAdmin)["viewer"]["role"], "admin");
  }
}

TEST(DashboardTest, PlacementMovesFromThePoolToDiskOnEvictAndForgetClearsTheTurns) {
  auto s = Serve(ScratchDir("dashboard-placement"), {"--api-key", kKeyA, "--admin-key", kAdmin});
  Turn(*s, kKeyA, "p1");
  auto agent = [&] { return Get(*s, "/admin/agents/p1/turns", kAdmin)["agent"]; };
  json a = agent();
  const int blocks = a["blocks"].get<int>();
  ASSERT_GT(blocks, 1);
  EXPECT_EQ(a["placement"]["pool"], blocks) << a.dump();  // the last conversation stays resident
  EXPECT_GT(a["last_turn_cached_share"].get<double>(), -1);
  auto r = Call(*s, "POST", "/admin/agents/p1/evict", kAdmin);
  ASSERT_EQ(r->status, 200) << r->body;
  a = agent();
  EXPECT_EQ(a["placement"]["pool"], 0) << a.dump();
  EXPECT_EQ(a["placement"]["ram"], 0) << a.dump();
  EXPECT_EQ(a["placement"]["disk"], blocks) << a.dump();

  Turn(*s, kKeyA, "p1");  // the second turn: restored from disk
  json turns = Get(*s, "/admin/agents/p1/turns", kAdmin)["turns"];
  ASSERT_EQ(turns.size(), 2u);
  EXPECT_GT(turns[1]["cached"]["disk"].get<int>(), 0) << turns.dump();
  EXPECT_EQ(Call(*s, "DELETE", "/admin/agents/p1", kAdmin)->status, 200);
  Get(*s, "/admin/agents/p1/turns", kAdmin, 404);
  Turn(*s, kKeyA, "p1");
  EXPECT_EQ(Get(*s, "/admin/agents/p1/turns", kAdmin)["turns"].size(), 1u) << "forget cleared the history";
}

TEST(DashboardTest, EventsStreamOverviewsEverySecondAndEndWhenTheServerStops) {
  auto s = Serve(ScratchDir("dashboard-events"), {"--admin-key", kAdmin});
  httplib::Client c("127.0.0.1", s->port());
  c.set_read_timeout(std::chrono::seconds(10));
  int events = 0;
  std::string buffer;
  const auto t0 = std::chrono::steady_clock::now();
  auto r =
      c.Get("/admin/events", {{"Authorization", std::string("Bearer ") + kAdmin}}, [&](const char* data, size_t n) {
        buffer.append(data, n);
        for (size_t at; (at = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, at + 2)) {
          const std::string event = buffer.substr(0, at);
          EXPECT_EQ(event.rfind("event: overview\ndata: {", 0), 0u) << event;
          EXPECT_EQ(json::parse(event.substr(event.find("data: ") + 6))["viewer"]["role"], "admin");
          ++events;
        }
        return events < 3;
      });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(events, 3);
  EXPECT_GT(seconds, 1.5) << "one event a second";
  EXPECT_LT(seconds, 6);

  // A stream left open does not hold the shutdown: it ends when the server drains.
  std::atomic<bool> ended{false};
  std::thread reader([&] {
    httplib::Client c2("127.0.0.1", s->port());
    c2.set_read_timeout(std::chrono::seconds(30));
    c2.Get("/admin/events", {{"Authorization", std::string("Bearer ") + kAdmin}},
           [](const char*, size_t) { return true; });
    ended = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(s->Stop(SIGTERM, std::chrono::seconds(20)), 0) << s->Log();
  reader.join();
  EXPECT_TRUE(ended);
}

// Event streams hold an HTTP thread each: at most a quarter of them (here 20 threads: 5 streams),
// so that dashboards never starve the API.
TEST(DashboardTest, EventStreamsTakeAtMostAQuarterOfTheHttpThreads) {
  // --http-threads 16 grows to --parallel + --max-queue + 16 = 20 threads.
  auto s = Serve(ScratchDir("dashboard-streams"),
                 {"--admin-key", kAdmin, "--parallel", "2", "--max-queue", "2", "--http-threads", "16"});
  constexpr int kStreams = 5;
  const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kAdmin}};
  std::atomic<bool> stop{false};
  std::atomic<int> open{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < kStreams; ++i) {
    readers.emplace_back([&] {
      httplib::Client c("127.0.0.1", s->port());
      c.set_read_timeout(std::chrono::seconds(30));
      bool counted = false;
      c.Get("/admin/events", auth, [&](const char*, size_t) {
        if (!counted) {
          open.fetch_add(1);
          counted = true;
        }
        return !stop.load();
      });
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (open.load() < kStreams && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(open.load(), kStreams);
  // The API is still served meanwhile.
  Turn(*s, nullptr, "while-streaming");
  {
    // The status and headers only: had it been a stream, it would not end.
    httplib::Client c("127.0.0.1", s->port());
    int status = 0;
    std::string retry_after;
    c.Get(
        "/admin/events", auth,
        [&](const httplib::Response& r) {
          status = r.status;
          retry_after = r.get_header_value("Retry-After");
          return false;
        },
        [](const char*, size_t) { return false; });
    EXPECT_EQ(status, 429);
    EXPECT_EQ(retry_after, "1");
  }
  stop = true;
  for (auto& t : readers) t.join();
  // Their places are given back once the server notices they left (at its next event).
  int events = 0;
  for (int attempt = 0; attempt < 50 && events == 0; ++attempt) {
    httplib::Client c("127.0.0.1", s->port());
    c.Get("/admin/events", auth, [&](const char*, size_t) { return ++events < 1; });
    if (events == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(events, 1);
}

}  // namespace
}  // namespace kvault::testing

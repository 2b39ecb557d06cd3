// Several models by name through the real server: on-demand loading with --max-loaded-models 1
// (a swap), admin swap, agents resuming from disk after swapping back, and a failed load that
// leaves the other model serving.
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

std::string Prompt() {
  std::string s = "A long conversation about models: ";
  for (int i = 0; i < 40; ++i) s += "swap" + std::to_string(i % 9) + " ";
  return s;
}

json Chat(const ServerProcess& s, const std::string& model, int want = 200) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(std::chrono::seconds(60));
  json body = {{"model", model}, {"messages", {{{"role", "user"}, {"content", Prompt()}}}}, {"max_tokens", 8}};
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, want) << r->body;
  return json::parse(r->body);
}

std::map<std::string, std::string> States(const ServerProcess& s) {
  httplib::Client c("127.0.0.1", s.port());
  std::map<std::string, std::string> out;
  const json health = json::parse(c.Get("/health")->body);
  for (const auto& m : health["models"]) {
    out[m["name"].get<std::string>()] = m["state"].get<std::string>();
  }
  return out;
}

TEST(ModelsTest, OnDemandSwapAdminSwapAndResumeFromDiskAfterSwappingBack) {
  const auto dir = ScratchDir("models-swap");
  const fs::path beta = dir / "beta.gguf";
  std::string out;
  ASSERT_EQ(RunKvault({"model", "make-demo", "--size", "tiny", "--seed", "2", "--out", beta.string()}, &out), 0) << out;
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--model-id", "alpha", "--models",
                                 "beta=" + beta.string(), "--max-loaded-models", "1", "--admin-key", "adm",
                                 "--data-dir", (dir / "data").string(), "--ctx-size", "1024", "--block-tokens", "16",
                                 "--durability", "sync", "--log-level", "info"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  EXPECT_EQ(States(*s), (std::map<std::string, std::string>{{"alpha", "loaded"}, {"beta", "unloaded"}}));

  const json a1 = Chat(*s, "alpha");
  EXPECT_EQ(a1["model"], "alpha");
  // Another model by name: loaded on demand, alpha unloaded (one at a time).
  const json b1 = Chat(*s, "beta");
  EXPECT_EQ(b1["model"], "beta");
  EXPECT_NE(b1["choices"][0]["message"]["content"], a1["choices"][0]["message"]["content"]);  // other weights
  EXPECT_EQ(States(*s), (std::map<std::string, std::string>{{"alpha", "unloaded"}, {"beta", "loaded"}}));
  // Names the server does not know go to the default model (clients send their own names).
  const json other = Chat(*s, "claude-sonnet-4-5");
  EXPECT_EQ(other["model"], "alpha");
  // Back on alpha after a swap: the conversation resumes from disk, with the same answer.
  EXPECT_EQ(other["choices"][0]["message"]["content"], a1["choices"][0]["message"]["content"]);
  EXPECT_GT(other["cache"]["disk_tokens"].get<int>(), 100) << other.dump();

  // The admin swap, timed.
  httplib::Client c("127.0.0.1", s->port());
  auto swap = c.Post("/admin/models/swap", {{"Authorization", "Bearer adm"}}, R"({"model":"beta"})", "application/json");
  ASSERT_TRUE(swap);
  ASSERT_EQ(swap->status, 200) << swap->body;
  const json sj = json::parse(swap->body);
  EXPECT_GT(sj["seconds"].get<double>(), 0);
  EXPECT_EQ(sj["models"]["beta"], "loaded");
  EXPECT_EQ(sj["models"]["alpha"], "unloaded");
  const json b2 = Chat(*s, "beta");
  EXPECT_EQ(b2["choices"][0]["message"]["content"], b1["choices"][0]["message"]["content"]);
  EXPECT_GT(b2["cache"]["disk_tokens"].get<int>(), 100) << b2.dump();
  auto bad = c.Post("/admin/models/swap", {{"Authorization", "Bearer adm"}}, R"({"model":"gamma"})", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 404);

  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"].size(), 2u);
  const std::string metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("kvault_model_loads_total 4"), std::string::npos) << metrics.substr(0, 2000);

  // A load that fails (the file vanished) answers 503 and leaves the loaded model serving.
  fs::remove(beta);
  auto alpha_again = c.Post("/admin/models/swap", {{"Authorization", "Bearer adm"}}, R"({"model":"alpha"})",
                            "application/json");
  ASSERT_TRUE(alpha_again);
  EXPECT_EQ(alpha_again->status, 200) << alpha_again->body;
  const json failed = Chat(*s, "beta", 503);
  EXPECT_NE(failed["error"]["message"].get<std::string>().find("beta"), std::string::npos);
  EXPECT_EQ(Chat(*s, "alpha")["model"], "alpha");
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
}

TEST(ModelsTest, BadModelListIsAUsageError) {
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--model", TinyModel().string(), "--models", "nopath", "--port", "0"}, &out), 2);
  EXPECT_NE(out.find("NAME=PATH"), std::string::npos) << out;
  EXPECT_EQ(RunKvault({"serve", "--model", TinyModel().string(), "--models", "x=/nonexistent.gguf", "--port", "0"}, &out),
            2);
  EXPECT_NE(out.find("/nonexistent.gguf"), std::string::npos) << out;
}

}  // namespace
}  // namespace kvault::testing

// Several models by name through the real server: on-demand loading with --max-loaded-models 1
// (a swap), admin swap, agents resuming from disk after swapping back, and failed loads that
// leave the other model serving (without a reload when the file itself is bad).
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "gguf.h"
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
  json body = {{"model", model},
               {"messages", {{{"role", "user"}, {"content", Prompt()}}}},
               {"max_tokens", 8},
               {"temperature", 0}};
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

// `name` from /metrics (a counter or gauge without labels); -1 if absent.
double Metric(const ServerProcess& s, const std::string& name) {
  httplib::Client c("127.0.0.1", s.port());
  auto r = c.Get("/metrics");
  if (!r) return -1;
  const std::string line = "\n" + name + " ";
  const size_t at = r->body.find(line);
  return at == std::string::npos ? -1 : std::stod(r->body.substr(at + line.size()));
}

// /health's load count of model `name`.
uint64_t Loads(const ServerProcess& s, const std::string& name) {
  httplib::Client c("127.0.0.1", s.port());
  const json health = json::parse(c.Get("/health")->body);
  for (const auto& m : health["models"]) {
    if (m["name"] == name) return m["loads"].get<uint64_t>();
  }
  return 0;
}

// docs/operations.md, "Several models": with one model loaded at most, a request for a model
// whose file is bad (gone, not GGUF, truncated) gets an error naming the model and the cause,
// and the loaded model keeps serving without being unloaded or loaded again. A file that passes
// the check but that llama.cpp refuses (a GGUF without an architecture) costs the loaded model a
// reload: it is loaded again, and serves.
TEST(ModelsTest, AFailedLoadKeepsTheLoadedModelServing) {
  const auto dir = ScratchDir("models-failed-load");
  const fs::path bad = dir / "bad.gguf";
  const fs::path empty = dir / "no-architecture.gguf";
  fs::copy_file(TinyModel(), bad);  // good at start-up (every file is checked then)
  gguf_context* g = gguf_init_empty();
  gguf_set_val_str(g, "general.name", "nothing to load");
  ASSERT_TRUE(gguf_write_to_file(g, empty.c_str(), /*only_meta=*/false));
  gguf_free(g);
  auto s =
      ServerProcess::Start({"--model", TinyModel().string(), "--model-id", "alpha", "--models", "bad=" + bad.string(),
                            "--models", "empty=" + empty.string(), "--max-loaded-models", "1", "--data-dir",
                            (dir / "data").string(), "--ctx-size", "512", "--log-level", "info"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  const std::string answer = Chat(*s, "alpha")["choices"][0]["message"]["content"];
  ASSERT_EQ(Metric(*s, "kvault_model_loads_total"), 1);
  ASSERT_EQ(Metric(*s, "kvault_model_unloads_total"), 0);

  const auto size = fs::file_size(bad);
  const std::vector<std::pair<std::string, std::function<void()>>> damages = {
      {"truncated", [&] { fs::resize_file(bad, size - 64); }},  // a copy cut short in the weights
      {"not a GGUF", [&] { std::ofstream(bad, std::ios::trunc) << "garbage bytes, not a model"; }},
      {"not found", [&] { fs::remove(bad); }},
  };
  for (const auto& [cause, damage] : damages) {
    damage();
    const json failed = Chat(*s, "bad", 500);
    const std::string message = failed["error"]["message"];
    EXPECT_NE(message.find("cannot load model 'bad'"), std::string::npos) << message;
    EXPECT_NE(message.find(cause), std::string::npos) << message;
    EXPECT_EQ(States(*s),
              (std::map<std::string, std::string>{{"alpha", "loaded"}, {"bad", "unloaded"}, {"empty", "unloaded"}}))
        << cause;
  }
  // alpha was never unloaded: the same engine answers, no load or unload counted.
  EXPECT_EQ(Chat(*s, "alpha")["choices"][0]["message"]["content"], answer);
  EXPECT_EQ(Metric(*s, "kvault_model_loads_total"), 1);
  EXPECT_EQ(Metric(*s, "kvault_model_unloads_total"), 0);
  EXPECT_EQ(Loads(*s, "alpha"), 1u);

  // llama.cpp refuses a GGUF without an architecture only when it loads it: alpha, unloaded to
  // make room, is loaded again. The error is a server error without Retry-After (retrying soon
  // does not help), and /v1/models says why.
  httplib::Client c("127.0.0.1", s->port());
  const json refused = Chat(*s, "empty", 500);
  EXPECT_NE(refused["error"]["message"].get<std::string>().find("cannot load model 'empty'"), std::string::npos)
      << refused.dump();
  EXPECT_EQ(refused["error"]["type"], "api_error");
  EXPECT_EQ(States(*s)["alpha"], "loaded");
  EXPECT_EQ(Metric(*s, "kvault_model_unloads_total"), 1);
  EXPECT_EQ(Loads(*s, "alpha"), 2u);
  // The refusal is remembered while the file is unchanged: asking again costs alpha nothing.
  auto again = c.Post("/v1/chat/completions", R"({"model":"empty","messages":[{"role":"user","content":"hi"}]})",
                      "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 500) << again->body;
  EXPECT_FALSE(again->has_header("Retry-After"));
  EXPECT_EQ(json::parse(again->body)["error"]["message"], refused["error"]["message"]);
  EXPECT_EQ(Metric(*s, "kvault_model_unloads_total"), 1);
  EXPECT_EQ(Loads(*s, "alpha"), 2u);
  const json meta = json::parse(c.Get("/v1/models/empty")->body)["meta"];
  EXPECT_EQ(meta["state"], "unloaded");
  EXPECT_FALSE(meta.value("last_error", "").empty()) << meta.dump();
  EXPECT_EQ(Chat(*s, "alpha")["choices"][0]["message"]["content"], answer);
  EXPECT_EQ(Metric(*s, "kvault_model_loads_total"), 2);
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
}

// docs/operations.md, "Health": with no model loaded (unloaded by an operator, or a failed load
// whose reload failed too) /health answers 503 "unavailable" with each model's state and last
// load error, not "loading" forever.
TEST(ModelsTest, HealthSaysUnavailableWithTheLastErrorWhenNothingIsLoaded) {
  const auto dir = ScratchDir("models-nothing-loaded");
  const fs::path alpha = dir / "alpha.gguf";
  fs::copy_file(TinyModel(), alpha);
  auto s = ServerProcess::Start({"--model", alpha.string(), "--model-id", "alpha", "--admin-key", "adm",
                                 "--data-dir", (dir / "data").string(), "--ctx-size", "512"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  httplib::Client c("127.0.0.1", s->port());
  c.set_read_timeout(std::chrono::seconds(60));
  auto unload = c.Post("/admin/models/unload", {{"Authorization", "Bearer adm"}}, R"({"model":"alpha"})",
                       "application/json");
  ASSERT_TRUE(unload);
  ASSERT_EQ(unload->status, 200) << unload->body;
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  json h = json::parse(health->body);
  EXPECT_EQ(h["status"], "unavailable") << h.dump();
  ASSERT_EQ(h["models"].size(), 1u) << h.dump();
  EXPECT_EQ(h["models"][0]["state"], "unloaded");

  // Now a file llama.cpp refuses (it passes the file check): the load fails, and says why.
  gguf_context* g = gguf_init_empty();
  gguf_set_val_str(g, "general.name", "nothing to load");
  ASSERT_TRUE(gguf_write_to_file(g, (dir / "refused.gguf").c_str(), /*only_meta=*/false));
  gguf_free(g);
  fs::rename(dir / "refused.gguf", alpha);
  Chat(*s, "alpha", 500);
  h = json::parse(c.Get("/health")->body);
  EXPECT_EQ(h["status"], "unavailable") << h.dump();
  const std::string error = h["models"][0].value("last_error", "");
  EXPECT_FALSE(error.empty()) << h.dump();
  EXPECT_EQ(error.find(dir.string()), std::string::npos) << "the file's name, not its path: " << error;
  const json meta = json::parse(c.Get("/v1/models/alpha")->body)["meta"];
  EXPECT_FALSE(meta.value("last_error", "").empty()) << meta.dump();
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
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

  // A load that fails (the file vanished) answers 500 and leaves the loaded model serving.
  fs::remove(beta);
  auto alpha_again = c.Post("/admin/models/swap", {{"Authorization", "Bearer adm"}}, R"({"model":"alpha"})",
                            "application/json");
  ASSERT_TRUE(alpha_again);
  EXPECT_EQ(alpha_again->status, 200) << alpha_again->body;
  const json failed = Chat(*s, "beta", 500);
  EXPECT_NE(failed["error"]["message"].get<std::string>().find("beta"), std::string::npos);
  EXPECT_EQ(Chat(*s, "alpha")["model"], "alpha");
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
}

// GET /v1/models and /v1/models/{id} in OpenAI's shape, and in Anthropic's for a request with an
// anthropic-version header; errors in each API's envelope, Anthropic's with its request id.
TEST(ModelsTest, ModelRoutesInBothApisShapes) {
  const auto dir = ScratchDir("models-routes");
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--model-id", "alpha", "--models",
                                 "beta=" + TinyModel().string(), "--api-key", "k1", "--data-dir",
                                 (dir / "data").string(), "--ctx-size", "512"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  httplib::Client c("127.0.0.1", s->port());
  const httplib::Headers openai = {{"Authorization", "Bearer k1"}};
  const httplib::Headers anthropic = {{"x-api-key", "k1"}, {"anthropic-version", "2023-06-01"}};
  auto get = [&](const std::string& path, const httplib::Headers& h, int want) {
    auto r = c.Get(path, h);
    EXPECT_TRUE(r) << path;
    if (!r) return std::make_pair(json(), std::string());
    EXPECT_EQ(r->status, want) << path << ": " << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << path;
    return std::make_pair(json::parse(r->body), r->get_header_value("request-id"));
  };

  // OpenAI: the list and one model, with kvault's meta; no file path with API keys.
  const json list = get("/v1/models", openai, 200).first;
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 2u);
  EXPECT_EQ(list["data"][0]["id"], "alpha");
  EXPECT_EQ(list["data"][0]["object"], "model");
  EXPECT_EQ(list["data"][0]["meta"]["state"], "loaded");
  EXPECT_FALSE(list["data"][0]["meta"].contains("path"));
  EXPECT_GT(list["data"][0]["created"].get<int64_t>(), 0);  // the model file's time
  const auto [one, openai_rid] = get("/v1/models/beta", openai, 200);
  EXPECT_EQ(one["id"], "beta");
  EXPECT_EQ(one["meta"]["state"], "unloaded");
  EXPECT_TRUE(openai_rid.empty()) << "request-id is Anthropic's header";
  const json missing = get("/v1/models/gamma", openai, 404).first;
  EXPECT_EQ(missing["error"]["type"], "invalid_request_error");
  EXPECT_EQ(missing["error"]["code"], "model_not_found");
  EXPECT_NE(missing["error"]["message"].get<std::string>().find("gamma"), std::string::npos);

  // Anthropic: {data:[{type,id,display_name,created_at}],has_more,first_id,last_id}, paged.
  const json alist = get("/v1/models", anthropic, 200).first;
  ASSERT_EQ(alist["data"].size(), 2u);
  EXPECT_EQ(alist["data"][0], (json{{"type", "model"},
                                    {"id", "alpha"},
                                    {"display_name", "alpha"},
                                    {"created_at", alist["data"][0]["created_at"]}}));
  const std::string created = alist["data"][0]["created_at"];
  EXPECT_EQ(created.size(), 20u) << created;  // RFC 3339, UTC: 2025-02-19T00:00:00Z
  EXPECT_EQ(created[10], 'T');
  EXPECT_EQ(created.back(), 'Z');
  EXPECT_EQ(alist["has_more"], false);
  EXPECT_EQ(alist["first_id"], "alpha");
  EXPECT_EQ(alist["last_id"], "beta");
  const json page = get("/v1/models?limit=1", anthropic, 200).first;
  EXPECT_EQ(page["data"].size(), 1u);
  EXPECT_EQ(page["has_more"], true);
  const json next = get("/v1/models?limit=1&after_id=alpha", anthropic, 200).first;
  EXPECT_EQ(next["first_id"], "beta");
  EXPECT_EQ(next["has_more"], false);
  EXPECT_EQ(get("/v1/models?before_id=beta", anthropic, 200).first["last_id"], "alpha");
  const auto [amodel, amodel_rid] = get("/v1/models/alpha", anthropic, 200);
  EXPECT_EQ(amodel["type"], "model");
  EXPECT_EQ(amodel["id"], "alpha");
  EXPECT_EQ(amodel_rid.rfind("req_", 0), 0u);
  const auto [amissing, amissing_rid] = get("/v1/models/gamma", anthropic, 404);
  EXPECT_EQ(amissing["type"], "error");
  EXPECT_EQ(amissing["error"]["type"], "not_found_error");
  EXPECT_EQ(amissing["request_id"], amissing_rid);
  const auto [bad, bad_rid] = get("/v1/models?limit=0", anthropic, 400);
  EXPECT_EQ(bad["error"]["type"], "invalid_request_error");
  EXPECT_EQ(bad["request_id"], bad_rid);

  // Without the key: 401 in each API's envelope.
  EXPECT_EQ(get("/v1/models", {}, 401).first["error"]["code"], "invalid_api_key");
  const auto [denied, denied_rid] = get("/v1/models/alpha", {{"anthropic-version", "2023-06-01"}}, 401);
  EXPECT_EQ(denied["error"]["type"], "authentication_error");
  EXPECT_FALSE(denied_rid.empty());
  EXPECT_EQ(denied["request_id"], denied_rid);
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
}

// Anthropic's request-id header on every /v1/messages response, the same id as X-Request-Id (the
// client's when it sent one) and as the error body's request_id.
TEST(ModelsTest, AnthropicResponsesCarryRequestId) {
  const auto dir = ScratchDir("models-request-id");
  auto s = ServerProcess::Start(
      {"--model", TinyModel().string(), "--data-dir", (dir / "data").string(), "--ctx-size", "512"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  httplib::Client c("127.0.0.1", s->port());
  c.set_read_timeout(std::chrono::seconds(60));
  const json msg = {{"max_tokens", 2}, {"temperature", 0}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  auto ok = c.Post("/v1/messages", msg.dump(), "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(ok->get_header_value("request-id").rfind("req_", 0), 0u);
  EXPECT_EQ(ok->get_header_value("request-id"), ok->get_header_value("X-Request-Id"));
  auto echoed = c.Post("/v1/messages", {{"X-Request-Id", "req_mine"}}, msg.dump(), "application/json");
  ASSERT_TRUE(echoed);
  EXPECT_EQ(echoed->get_header_value("request-id"), "req_mine");
  auto err = c.Post("/v1/messages", R"({"messages":[]})", "application/json");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->status, 400);
  const json body = json::parse(err->body);
  EXPECT_EQ(body["type"], "error");
  EXPECT_EQ(body["request_id"], err->get_header_value("request-id"));
  auto no_route = c.Get("/v1/messages/nothing-here");
  ASSERT_TRUE(no_route);
  EXPECT_EQ(no_route->status, 404);
  EXPECT_EQ(json::parse(no_route->body)["request_id"], no_route->get_header_value("request-id"));
  auto chat = c.Post("/v1/chat/completions", R"({"messages":[]})", "application/json");
  ASSERT_TRUE(chat);
  EXPECT_FALSE(json::parse(chat->body).contains("request_id"));  // OpenAI's envelope has none
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

// KV bytes are only ever restored into the model and cache layout that wrote them (issue #24):
// a model file replaced in place (same path, other weights) or a server restarted with another
// KV cache type finds none of the blocks on disk, and a restart with neither change finds them
// (so the tests can fail).
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <string>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string Prompt() {
  std::string s = "A conversation worth keeping: ";
  for (int i = 0; i < 60; ++i) s += "keep" + std::to_string(i % 17) + " ";
  return s;
}

std::unique_ptr<ServerProcess> Serve(const fs::path& model, const fs::path& data,
                                     const std::string& cache_type = "f16") {
  auto s = ServerProcess::Start({"--model", model.string(), "--data-dir", data.string(), "--ctx-size", "1024",
                                 "--block-tokens", "16", "--cache-type", cache_type, "--log-level", "warn"});
  EXPECT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  return s;
}

json Turn(const ServerProcess& s) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(std::chrono::seconds(60));
  const json body = {
      {"messages", {{{"role", "user"}, {"content", Prompt()}}}}, {"max_tokens", 6}, {"temperature", 0}};
  // A named agent too: its record (and the chain it names) must not be found either.
  auto r = c.Post("/v1/chat/completions", {{"X-Agent-Id", "keeper"}}, body.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body);
}

std::string Fingerprint(const ServerProcess& s) { return GetHealth(s.port())["kv_store"]["fingerprint"]; }

// One turn on a fresh server, a graceful stop (its blocks flushed); returns the fingerprint.
std::string Write(const fs::path& model, const fs::path& data, const std::string& cache_type = "f16") {
  auto s = Serve(model, data, cache_type);
  const json first = Turn(*s);
  EXPECT_EQ(first["cache"]["disk_tokens"], 0) << first.dump();
  const std::string fp = Fingerprint(*s);
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
  return fp;
}

// A restart's first turn: how many prompt tokens came from cache (all of them from disk).
int CachedAfterRestart(const fs::path& model, const fs::path& data, const std::string& cache_type,
                       std::string* fingerprint) {
  auto s = Serve(model, data, cache_type);
  const json r = Turn(*s);
  *fingerprint = Fingerprint(*s);
  EXPECT_EQ(r["usage"]["prompt_tokens_details"]["cached_tokens"], r["cache"]["disk_tokens"]) << r.dump();
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
  return r["usage"]["prompt_tokens_details"]["cached_tokens"];
}

std::string MakeDemo(const fs::path& out, int seed) {
  std::string log;
  EXPECT_EQ(RunKvault({"model", "make-demo", "--size", "tiny", "--seed", std::to_string(seed), "--out", out.string()},
                      &log),
            0)
      << log;
  return log;
}

TEST(FingerprintTest, ModelFileReplacedInPlaceNeverGetsTheOldKv) {
  const auto dir = ScratchDir("fingerprint-model-replaced");
  const fs::path model = dir / "model.gguf";
  const fs::path data = dir / "data";
  MakeDemo(model, 1);
  const std::string fp1 = Write(model, data);
  std::string fp;
  EXPECT_GT(CachedAfterRestart(model, data, "f16", &fp), 50) << "the control: same file, blocks found";
  EXPECT_EQ(fp, fp1);

  // Other weights at the same path (same size: same shape): a new fingerprint, no disk hits.
  const auto size = fs::file_size(model);
  MakeDemo(model, 2);
  ASSERT_EQ(fs::file_size(model), size);
  EXPECT_EQ(CachedAfterRestart(model, data, "f16", &fp), 0);
  EXPECT_NE(fp, fp1);

  // Again, and this time the new file keeps the old one's modification time (as a copy with
  // preserved times, or an image build with normalised times, gives it): the content decides.
  const auto mtime = fs::last_write_time(model);
  const std::string fp2 = fp;
  MakeDemo(model, 3);
  fs::last_write_time(model, mtime);
  EXPECT_EQ(CachedAfterRestart(model, data, "f16", &fp), 0) << "seed 2's KV restored into seed 3's weights";
  EXPECT_NE(fp, fp2);
  EXPECT_NE(fp, fp1);
}

TEST(FingerprintTest, AnotherKvCacheTypeNeverLoadsTheBlocks) {
  const auto dir = ScratchDir("fingerprint-cache-type");
  const fs::path data = dir / "data";
  const std::string fp_f16 = Write(TinyModel(), data, "f16");
  std::string fp;
  EXPECT_EQ(CachedAfterRestart(TinyModel(), data, "q8_0", &fp), 0) << "f16 blocks loaded into a q8_0 cache";
  EXPECT_NE(fp, fp_f16);
  const std::string fp_q8 = fp;
  // q8_0 wrote its own blocks in that turn: found by q8_0, not by q4_0, and f16's still by f16.
  EXPECT_GT(CachedAfterRestart(TinyModel(), data, "q8_0", &fp), 50);
  EXPECT_EQ(fp, fp_q8);
  EXPECT_EQ(CachedAfterRestart(TinyModel(), data, "q4_0", &fp), 0);
  EXPECT_GT(CachedAfterRestart(TinyModel(), data, "f16", &fp), 50) << "the control: same type, blocks found";
  EXPECT_EQ(fp, fp_f16);
}

}  // namespace
}  // namespace kvault::testing

// ModelManager with real engines (the tiny model) and a model llama.cpp refuses (a GGUF without
// an architecture, which passes the file check): a refusal is not paid for again by the serving
// model, reloads respect --max-loaded-models, and a reload waits for the previous engine.
#include "engine/model_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "gguf.h"
#include "test_env.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

EngineOptions Base(const fs::path& cache_dir) {
  EngineOptions o;
  o.ctx_size = 512;
  o.pool_tokens = 2048;
  o.block_tokens = 16;
  o.parallel = 2;
  o.resident_seqs = 2;
  o.cache_dir = cache_dir;
  return o;
}

// A GGUF that passes CheckModelFile but that llama.cpp refuses to load.
fs::path Refused(const fs::path& dir) {
  const fs::path path = dir / "no-architecture.gguf";
  gguf_context* g = gguf_init_empty();
  gguf_set_val_str(g, "general.name", "nothing to load");
  EXPECT_TRUE(gguf_write_to_file(g, path.c_str(), /*only_meta=*/false));
  gguf_free(g);
  return path;
}

std::string StateOf(const ModelManager& m, const std::string& name) {
  for (const auto& s : m.List()) {
    if (s.name == name) return s.state;
  }
  return "";
}

std::string LastErrorOf(const ModelManager& m, const std::string& name) {
  for (const auto& s : m.List()) {
    if (s.name == name) return s.last_error;
  }
  return "";
}

// With one model loaded at most, the first request for a model llama.cpp refuses unloads the
// serving model and loads it again; later ones (several at once, too) fail at once with the same
// error and touch nothing, until the file changes. The error is Internal (no retry hint).
TEST(ModelManagerTest, ARefusedModelCostsTheServingModelOnlyOnce) {
  const fs::path dir = testing::ScratchDir("model-manager-refused");
  const fs::path empty = Refused(dir);
  ModelManager models({{"alpha", testing::TinyModel()}, {"empty", empty}}, Base(dir / "cache"), 1, 2s);
  ASSERT_TRUE(models.Load("alpha", 0ms).ok());
  ASSERT_EQ(models.loads(), 1u);

  auto first = models.Acquire("empty", 10s);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), Status::Code::kInternal);
  EXPECT_NE(first.status().message().find("cannot load model 'empty'"), std::string::npos);
  EXPECT_EQ(StateOf(models, "alpha"), "loaded");
  EXPECT_EQ(models.unloads(), 1u);
  EXPECT_EQ(models.loads(), 2u);  // alpha, again
  EXPECT_FALSE(LastErrorOf(models, "empty").empty());

  std::vector<std::thread> threads;
  std::atomic<int> internal{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto again = models.Acquire("empty", 10s);
      if (!again.ok() && again.status().code() == Status::Code::kInternal &&
          again.status().message() == first.status().message()) {
        ++internal;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(internal.load(), 4);
  EXPECT_EQ(models.unloads(), 1u) << "the serving model was unloaded again for a known refusal";
  EXPECT_EQ(models.loads(), 2u);
  EXPECT_EQ(StateOf(models, "alpha"), "loaded");

  // A changed file is tried again (and so is an operator's load).
  fs::last_write_time(empty, fs::last_write_time(empty) + 1s);
  EXPECT_FALSE(models.Acquire("empty", 10s).ok());
  EXPECT_EQ(models.unloads(), 2u);
  EXPECT_EQ(models.loads(), 3u);
  EXPECT_EQ(models.Load("empty", 10s).code(), Status::Code::kInternal);
  EXPECT_EQ(models.unloads(), 3u);
  EXPECT_EQ(StateOf(models, "alpha"), "loaded");
}

// After a failed load, the models unloaded for it are loaded again only while there is room:
// a load of another model that started meanwhile counts.
TEST(ModelManagerTest, TheReloadAfterAFailedLoadRespectsMaxLoaded) {
  const fs::path dir = testing::ScratchDir("model-manager-reload-limit");
  const fs::path empty = Refused(dir);
  ModelManager models({{"alpha", testing::TinyModel()},
                       {"beta", testing::TinyModel()},
                       {"gamma", testing::TinyModel()},
                       {"empty", empty}},
                      Base(dir / "cache"), 2, 3s);
  ASSERT_TRUE(models.Load("alpha", 0ms).ok());
  ASSERT_TRUE(models.Load("beta", 0ms).ok());
  // A request on beta keeps the swap draining it while gamma is loaded.
  auto beta = models.Acquire("beta", 0ms);
  ASSERT_TRUE(beta.ok());
  std::thread swap([&] { EXPECT_EQ(models.Swap("empty", 30s).code(), Status::Code::kInternal); });
  for (int i = 0; i < 500 && StateOf(models, "beta") != "unloading"; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(StateOf(models, "beta"), "unloading");
  ASSERT_TRUE(models.Load("gamma", 30s).ok());
  beta.value().reset();
  swap.join();
  EXPECT_LE(models.Loaded().size(), 2u);
  size_t loaded = 0;
  for (const auto& s : models.List()) loaded += s.state == "loaded";
  EXPECT_LE(loaded, 2u);
}

// A reload right after a drain timeout waits for the request still holding the previous engine
// (whose cache directory is locked), so the reloaded engine keeps its persistent KV cache.
TEST(ModelManagerTest, AReloadWaitsForThePreviousEngineAfterADrainTimeout) {
  const fs::path dir = testing::ScratchDir("model-manager-drain-reload");
  const fs::path empty = Refused(dir);
  ModelManager models({{"alpha", testing::TinyModel()}, {"empty", empty}}, Base(dir / "cache"), 1, 1s);
  ASSERT_TRUE(models.Load("alpha", 0ms).ok());
  auto held = models.Acquire("alpha", 0ms);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(held.value()->engine()->store_stats().persistent);
  // The request ends half a second after the drain timeout.
  std::thread request([&] {
    std::this_thread::sleep_for(1500ms);
    held.value().reset();
  });
  EXPECT_FALSE(models.Acquire("empty", 30s).ok());  // drains alpha for 1 s, fails, loads alpha again
  request.join();
  auto again = models.Acquire("alpha", 0ms);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again.value()->engine()->info().persistence_error, "");
  EXPECT_TRUE(again.value()->engine()->store_stats().persistent);
  EXPECT_EQ(models.loads(), 2u);
}

}  // namespace
}  // namespace kvault

// The engine with its KV store: blocks survive eviction and restarts, are shared between agents
// of one tenant and never between tenants, and bad files are misses, not crashes. Output after a
// restore must equal the output computed from scratch (restored KV is bit-identical).
#include <gtest/gtest.h>

#include <fstream>

#include "core/paths.h"
#include "engine/engine.h"
#include "model/demo_model.h"
#include "test_env.h"
#include "unit/engine/engine_test_util.h"

namespace kvault {
namespace {

using testing::Collect;
using testing::Msg;
using testing::Output;

namespace fs = std::filesystem;

std::string Words(int n, const std::string& w) {
  std::string s;
  for (int i = 0; i < n; ++i) s += w + std::to_string(i % 7) + " ";
  return s;
}

GenerateRequest Chat(std::vector<common_chat_msg> m, int32_t max_tokens, std::string tenant = "") {
  GenerateRequest r;
  r.messages = std::move(m);
  r.max_tokens = max_tokens;
  r.tenant = std::move(tenant);
  return r;
}

EngineOptions Options(const fs::path& cache_dir, const fs::path& model = testing::TinyModel()) {
  EngineOptions o;
  o.model_path = model;
  o.default_temperature = 0.0f;  // greedy: these tests compare outputs
  o.ctx_size = 1024;
  o.pool_tokens = 4096;
  o.block_tokens = 16;
  o.step_tokens = 64;
  o.parallel = 4;
  o.resident_seqs = 8;
  o.cache_dir = cache_dir;
  return o;
}

std::unique_ptr<Engine> Start(const EngineOptions& o) {
  auto e = Engine::Start(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e.value()) : nullptr;
}

Output Ask(Engine& e, GenerateRequest r) { return Collect(e.Submit(std::move(r))); }

size_t CountBlockFiles(const fs::path& dir) {
  size_t n = 0;
  for (auto& f : fs::recursive_directory_iterator(dir)) {
    if (f.path().extension() == ".safetensors" && f.path().parent_path().filename() != "quarantine") ++n;
  }
  return n;
}

TEST(EngineStoreTest, RestartResumesFromDiskWithTheSameOutput) {
  const auto dir = testing::ScratchDir("engine-store-restart");
  const auto reference_dir = testing::ScratchDir("engine-store-restart-reference");
  std::vector<common_chat_msg> m = {Msg("system", Words(80, "rule")), Msg("user", "first question")};
  Output resident;
  {
    // The reference: the next turn served while the conversation is resident.
    auto a = Start(Options(reference_dir));
    Output t1 = Ask(*a, Chat(m, 24));
    ASSERT_TRUE(t1.error.ok()) << t1.error.ToString();
    m.push_back(Msg("assistant", t1.text));
    m.push_back(Msg("user", "second question"));
    resident = Ask(*a, Chat(m, 24));
    EXPECT_GT(resident.done.cached_resident, 100);
    EXPECT_NE(resident.done.cached_resident % 16, 0) << "the test wants a partial last block";
    EXPECT_GT(a->stats().blocks_saved, 5u);
  }
  auto as_agent = [](GenerateRequest r) {
    r.agent_id = "restart-agent";
    return r;
  };
  const auto anonymous_dir = testing::ScratchDir("engine-store-restart-anonymous");
  {
    auto a = Start(Options(dir));
    ASSERT_TRUE(Ask(*a, as_agent(Chat({m[0], m[1]}, 24))).error.ok());
    auto anon = Start(Options(anonymous_dir));
    ASSERT_TRUE(Ask(*anon, Chat({m[0], m[1]}, 24)).error.ok());
  }  // engines gone: the process "restarted"; pending blocks were flushed
  auto b = Start(Options(dir));
  Output restored = Ask(*b, as_agent(Chat(m, 24)));
  ASSERT_TRUE(restored.error.ok());
  EXPECT_EQ(restored.done.cached_resident, 0);
  // What the store keys of this prompt (its full blocks, the last token excluded): the count the
  // Anthropic API reports as cache_creation + cache_read.
  EXPECT_EQ(restored.done.kept_prompt_tokens, (restored.done.prompt_tokens - 1) / 16 * 16);
  EXPECT_GT(restored.done.kept_prompt_tokens, 0);
  // Everything the resident sequence reused came back from disk, its partial last block included.
  EXPECT_EQ(restored.done.cached_disk, resident.done.cached_resident);
  EXPECT_EQ(restored.text, resident.text);
  // Anonymous: the conversation's stored last block is found by its content only: every full
  // block, then the stored tail as far as this turn's rendering of the previous answer matches
  // it (how far depends on the answer the random model gave, which depends on the CPU's kernels).
  auto c = Start(Options(anonymous_dir));
  Output anonymous = Ask(*c, Chat(m, 24));
  EXPECT_GE(anonymous.done.cached_disk, resident.done.cached_resident / 16 * 16);
  EXPECT_LE(anonymous.done.cached_disk, resident.done.cached_resident);
  EXPECT_EQ(anonymous.done.cached_tokens, anonymous.done.cached_disk);
  EXPECT_EQ(anonymous.text, resident.text);
  auto cold = Start(Options(""));  // no disk tier: computed from scratch
  Output computed = Ask(*cold, Chat(m, 24));
  EXPECT_EQ(computed.done.cached_tokens, 0);
  EXPECT_EQ(computed.text, resident.text);
}

// max_tokens 0 (Anthropic's cache warm-up): the prompt is computed and kept like a turn's, in the
// pool and on disk, and nothing is generated; the real turn that follows reuses it and answers
// as one computed from scratch does.
TEST(EngineStoreTest, AWarmUpKeepsThePromptWithoutGeneratingAndTheTurnAfterItReusesIt) {
  const auto dir = testing::ScratchDir("engine-store-warm-up");
  const std::vector<common_chat_msg> m = {Msg("system", Words(80, "rule")), Msg("user", "first question")};
  Output resident;
  {
    auto a = Start(Options(dir));
    Output warm = Ask(*a, Chat(m, 0));
    ASSERT_TRUE(warm.error.ok()) << warm.error.ToString();
    EXPECT_EQ(warm.text, "");
    EXPECT_EQ(warm.done.completion_tokens, 0);
    EXPECT_EQ(warm.done.finish, FinishReason::kLength);
    EXPECT_GT(warm.done.prompt_tokens, 100);
    EXPECT_EQ(warm.done.kept_prompt_tokens, (warm.done.prompt_tokens - 1) / 16 * 16);
    EXPECT_EQ(a->stats().tokens_generated, 0u);
    resident = Ask(*a, Chat(m, 24));
    ASSERT_TRUE(resident.error.ok());
    EXPECT_EQ(resident.done.prompt_tokens, warm.done.prompt_tokens);
    EXPECT_EQ(resident.done.cached_resident, warm.done.prompt_tokens - 1);  // the last is recomputed for its logits
    EXPECT_GT(resident.done.completion_tokens, 0);
  }
  {
    const auto warm_only = testing::ScratchDir("engine-store-warm-up-only");
    {
      auto a = Start(Options(warm_only));
      ASSERT_TRUE(Ask(*a, Chat(m, 0)).error.ok());
    }  // restarted: the warm-up's blocks were written before the engine stopped
    auto b = Start(Options(warm_only));
    Output restored = Ask(*b, Chat(m, 24));
    ASSERT_TRUE(restored.error.ok());
    // Every full block (the last token excluded), and the stored tail as far as it goes.
    EXPECT_GE(restored.done.cached_disk, (restored.done.prompt_tokens - 1) / 16 * 16);
    EXPECT_LE(restored.done.cached_disk, restored.done.prompt_tokens - 1);
    EXPECT_EQ(restored.text, resident.text);
  }
  auto cold = Start(Options(""));
  Output computed = Ask(*cold, Chat(m, 24));
  EXPECT_EQ(computed.done.cached_tokens, 0);
  EXPECT_EQ(computed.text, resident.text);
}

// Restored KV is bit-identical, checked on the logits rather than on greedy text (which can
// agree while the logits differ in their last bits): in deterministic mode, a conversation's next
// turn gives the same hash of every sampled position's logits resident in the pool, restored from
// the RAM tier, restored from the disk tier's files in a restarted engine and in a running one,
// and computed from scratch.
TEST(EngineStoreTest, RestoresGiveBitIdenticalLogitsInDeterministicMode) {
  const auto dir = testing::ScratchDir("engine-store-digests");
  auto options = [](const fs::path& cache_dir, uint64_t ram_mib) {
    EngineOptions o = Options(cache_dir);
    o.deterministic = true;
    o.digest_logits = true;
    o.ram_cache_mib = ram_mib;
    return o;
  };
  const std::string agent = "digest-agent";
  auto as_agent = [&](GenerateRequest r) {
    r.agent_id = agent;
    return r;
  };
  std::vector<common_chat_msg> m = {Msg("system", Words(80, "rule")), Msg("user", "first question")};
  Output resident, from_ram, from_disk_after_restart, from_disk;
  {
    auto a = Start(options(dir, 1024));
    Output t1 = Ask(*a, as_agent(Chat(m, 24)));
    ASSERT_TRUE(t1.error.ok()) << t1.error.ToString();
    m.push_back(Msg("assistant", t1.text));
    m.push_back(Msg("user", "second question"));
    resident = Ask(*a, as_agent(Chat(m, 24)));
    ASSERT_TRUE(resident.error.ok());
    ASSERT_GT(resident.done.cached_resident, 100);
    // Out of the pool; its blocks are still in the RAM tier.
    ASSERT_GT(a->EvictAgentFromPool("", agent), 0u);
    from_ram = Ask(*a, as_agent(Chat(m, 24)));
    ASSERT_TRUE(from_ram.error.ok());
    EXPECT_EQ(from_ram.done.cached_resident, 0);
    EXPECT_GE(from_ram.done.cached_ram, resident.done.cached_resident);
  }  // flushed to disk
  {
    // A restarted engine with no RAM tier to speak of: every restore reads the block files.
    auto b = Start(options(dir, 0));
    from_disk_after_restart = Ask(*b, as_agent(Chat(m, 24)));
    ASSERT_TRUE(from_disk_after_restart.error.ok());
    EXPECT_EQ(from_disk_after_restart.done.cached_resident, 0);
    EXPECT_EQ(from_disk_after_restart.done.cached_ram, 0);
    EXPECT_GE(from_disk_after_restart.done.cached_disk, resident.done.cached_resident);
    ASSERT_GT(b->EvictAgentFromPool("", agent), 0u);
    from_disk = Ask(*b, as_agent(Chat(m, 24)));
    ASSERT_TRUE(from_disk.error.ok());
    EXPECT_EQ(from_disk.done.cached_ram, 0);
    EXPECT_GE(from_disk.done.cached_disk, resident.done.cached_resident);
  }
  auto cold = Start(options("", 1024));  // no store: computed from scratch
  Output computed = Ask(*cold, Chat(m, 24));
  ASSERT_TRUE(computed.error.ok());
  EXPECT_EQ(computed.done.cached_tokens, 0);

  const std::vector<uint64_t>& want = resident.done.logits_digests;
  ASSERT_EQ(want.size(), static_cast<size_t>(resident.done.completion_tokens) +
                             (resident.done.finish == FinishReason::kStop ? 1 : 0));
  ASSERT_FALSE(want.empty());
  for (const auto& [name, got] : {std::pair<const char*, const Output*>{"RAM restore", &from_ram},
                                  {"disk restore after a restart", &from_disk_after_restart},
                                  {"disk restore", &from_disk},
                                  {"computed from scratch", &computed}}) {
    EXPECT_EQ(got->done.logits_digests, want) << name;
    EXPECT_EQ(got->text, resident.text) << name;
  }
}

// An anonymous conversation's last, partial block is found by its content: a next prompt that
// continues it gets every token back, not only its full blocks.
TEST(EngineStoreTest, ThePartialLastBlockComesBackAfterARestart) {
  const auto dir = testing::ScratchDir("engine-store-tail");
  auto raw = [](const std::string& text, int32_t max_tokens) {
    GenerateRequest r;
    r.raw_prompt = text;
    r.max_tokens = max_tokens;
    return r;
  };
  const std::string first = Words(45, "note");
  const std::string next = first + " and then the next question";
  int32_t first_tokens = 0;
  {
    auto a = Start(Options(dir));
    Output o = Ask(*a, raw(first, 1));
    ASSERT_TRUE(o.error.ok()) << o.error.ToString();
    first_tokens = o.done.prompt_tokens;  // all of them have KV (the one answered token has none)
  }
  ASSERT_NE(first_tokens % 16, 0) << "the test wants a partial last block";
  auto b = Start(Options(dir));
  Output restored = Ask(*b, raw(next, 12));
  ASSERT_TRUE(restored.error.ok());
  EXPECT_EQ(restored.done.cached_disk, first_tokens);
  auto cold = Start(Options(""));
  Output computed = Ask(*cold, raw(next, 12));
  EXPECT_EQ(computed.done.cached_tokens, 0);
  EXPECT_EQ(restored.text, computed.text);
}

TEST(EngineStoreTest, AgentsSharingASystemPromptStoreItOnce) {
  const auto dir = testing::ScratchDir("engine-store-dedup");
  auto e = Start(Options(dir));
  const std::string system = Words(200, "policy");
  size_t one_agent_blocks = 0;
  for (int i = 0; i < 5; ++i) {
    Output o = Ask(*e, Chat({Msg("system", system), Msg("user", "agent " + std::to_string(i))}, 8));
    ASSERT_TRUE(o.error.ok());
    if (i == 0) {
      one_agent_blocks = static_cast<size_t>(o.done.prompt_tokens + o.done.completion_tokens) / 16;
    } else {
      EXPECT_GT(o.done.cached_tokens, 190);  // the system prompt's blocks, from the pool
    }
  }
  e.reset();  // flush
  const size_t files = CountBlockFiles(dir);
  EXPECT_GT(one_agent_blocks, 10u);
  EXPECT_LT(files, 2 * one_agent_blocks) << "5 agents would need " << 5 * one_agent_blocks << " without sharing";
}

TEST(EngineStoreTest, TenantsNeverShareBlocks) {
  const auto dir = testing::ScratchDir("engine-store-tenants");
  auto e = Start(Options(dir));
  const std::vector<common_chat_msg> m = {Msg("system", Words(100, "secret")), Msg("user", "same question")};
  Output a1 = Ask(*e, Chat(m, 8, "tenant-a"));
  Output b1 = Ask(*e, Chat(m, 8, "tenant-b"));
  EXPECT_EQ(b1.done.cached_tokens, 0);  // neither from the pool nor from the store
  EXPECT_EQ(b1.text, a1.text);
  Output a2 = Ask(*e, Chat(m, 8, "tenant-a"));
  EXPECT_GT(a2.done.cached_tokens, 90);
  e.reset();
  auto again = Start(Options(dir));  // after a restart too
  Output b2 = Ask(*again, Chat(m, 8, "tenant-b"));
  Output c = Ask(*again, Chat(m, 8, "tenant-c"));
  EXPECT_GT(b2.done.cached_disk, 90);
  EXPECT_EQ(c.done.cached_tokens, 0);
}

TEST(EngineStoreTest, CorruptFilesAreMissesAndOutputStaysRight) {
  const auto dir = testing::ScratchDir("engine-store-corrupt");
  const auto req = Chat({Msg("system", Words(90, "fact")), Msg("user", "question")}, 16);
  Output first;
  {
    auto e = Start(Options(dir));
    first = Ask(*e, req);
  }
  size_t corrupted = 0;
  for (auto& f : fs::recursive_directory_iterator(dir)) {
    if (f.path().extension() != ".safetensors") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(f.file_size() / 2));
    io.put('\x55');
    ++corrupted;
  }
  ASSERT_GT(corrupted, 3u);
  auto e = Start(Options(dir));
  Output again = Ask(*e, req);
  ASSERT_TRUE(again.error.ok());
  EXPECT_EQ(again.done.cached_disk, 0);
  EXPECT_EQ(again.text, first.text);
  EXPECT_GE(e->store_stats().disk.quarantined, 1u);
}

TEST(EngineStoreTest, AnotherModelOfTheSameShapeNeverLoadsTheseBlocks) {
  const auto dir = testing::ScratchDir("engine-store-foreign");
  auto vocab = FindSharedFile(DemoVocabFile("llama3"));
  ASSERT_TRUE(vocab.ok());
  const fs::path other = dir / "other-tiny.gguf";
  ASSERT_TRUE(WriteDemoModel(*DemoModelSpecFor("tiny"), *vocab, other, 777).ok());
  const auto req = Chat({Msg("system", Words(90, "fact")), Msg("user", "question")}, 8);
  {
    auto e = Start(Options(dir / "cache"));
    Ask(*e, req);
  }
  auto e = Start(Options(dir / "cache", other));
  Output o = Ask(*e, req);
  EXPECT_EQ(o.done.cached_tokens, 0);
  EXPECT_NE(e->info().fingerprint, "");
}

}  // namespace
}  // namespace kvault

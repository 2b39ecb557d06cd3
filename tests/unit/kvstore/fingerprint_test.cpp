// The model fingerprint: every part of the KV layout, and the llama.cpp release, changes it
// (another release's blocks are never loaded: there is no way to run two releases in one test
// binary, so this is where that is checked); the content hash follows the file's content.
#include "kvstore/fingerprint.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <set>

#include "test_env.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

TEST(FingerprintTest, EveryPartOfTheKvLayoutAndTheLlamaReleaseChangeIt) {
  KvConfig base;
  base.llama_release = "v0.4.0";
  const std::vector<std::function<void(KvConfig&)>> changes = {
      [](KvConfig& c) { c.type_k = "q8_0"; },    [](KvConfig& c) { c.type_v = "q8_0"; },
      [](KvConfig& c) { c.flash_attn = false; }, [](KvConfig& c) { c.unified = false; },
      [](KvConfig& c) { c.swa_full = true; },    [](KvConfig& c) { c.llama_release = "v0.4.1"; },
      [](KvConfig& c) { c.backend = "CUDA"; },   [](KvConfig& c) { c.backend = "Vulkan"; },
  };
  std::set<std::string> seen = {ModelFingerprint("hash", base)};
  EXPECT_EQ(ModelFingerprint("hash", base), ModelFingerprint("hash", base));
  EXPECT_EQ(seen.begin()->size(), 32u);
  EXPECT_TRUE(seen.insert(ModelFingerprint("other-hash", base)).second);
  for (size_t i = 0; i < changes.size(); ++i) {
    KvConfig c = base;
    changes[i](c);
    EXPECT_TRUE(seen.insert(ModelFingerprint("hash", c)).second) << "change " << i;
  }
}

// The backend that computes the KV bytes is part of the fingerprint only when it is not the CPU:
// a CPU build's fingerprint is pinned to what it was before the field existed (a changed one
// would cost every existing cache one cold start), and a GPU build's differs from it.
TEST(FingerprintTest, CpuFingerprintIsUnchangedAndAGpuBackendChangesIt) {
  KvConfig cpu;
  cpu.llama_release = "v0.4.0";
  // Computed by the code before KvConfig::backend existed: the CPU cache directory's name.
  EXPECT_EQ(ModelFingerprint("hash", cpu), "7de63f7ece6bdcb87d4f0af6227b6b71");
  KvConfig cuda = cpu;
  cuda.backend = "CUDA";
  EXPECT_NE(ModelFingerprint("hash", cuda), ModelFingerprint("hash", cpu));
  EXPECT_EQ(ModelFingerprint("hash", cuda), ModelFingerprint("hash", cuda));  // stable
  KvConfig cuda_q8 = cuda;
  cuda_q8.type_k = cuda_q8.type_v = "q8_0";
  EXPECT_NE(ModelFingerprint("hash", cuda_q8), ModelFingerprint("hash", cuda));
}

// A file replaced by other content that keeps the old one's path, size and modification time (a
// copy with preserved times, an image build with normalised times) gets its own hash.
TEST(FingerprintTest, ContentHashFollowsTheContentEvenWithTheSameSizeAndTime) {
  const fs::path dir = testing::ScratchDir("fingerprint-content-hash");
  const fs::path file = dir / "model.gguf";
  std::ofstream(file) << "weights one";
  auto a = ModelContentHash(file, dir / "cache");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(ModelContentHash(file, dir / "cache").value(), *a);  // from the memo
  const auto mtime = fs::last_write_time(file);
  std::ofstream(dir / "new.gguf") << "weights two";
  fs::rename(dir / "new.gguf", file);
  fs::last_write_time(file, mtime);
  auto b = ModelContentHash(file, dir / "cache");
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*b, *a);
  // Overwritten in place (same inode), time restored again.
  std::ofstream(file, std::ios::trunc) << "weights one";
  fs::last_write_time(file, mtime);
  EXPECT_EQ(ModelContentHash(file, dir / "cache").value(), *a);
}

}  // namespace
}  // namespace kvault

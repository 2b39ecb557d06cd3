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
      [](KvConfig& c) { c.type_k = "q8_0"; },       [](KvConfig& c) { c.type_v = "q8_0"; },
      [](KvConfig& c) { c.flash_attn = false; },    [](KvConfig& c) { c.unified = false; },
      [](KvConfig& c) { c.swa_full = true; },       [](KvConfig& c) { c.llama_release = "v0.4.1"; },
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

#include "server/tenant_secret.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>
#include <vector>

#include "test_env.h"
#include "unit/core/synced_dirs.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

TEST(TenantSecretTest, MadeOnceWithMode0600AndReusedAfterwards) {
  const fs::path file = testing::ScratchDir("tenant-secret-once") / "cache" / kTenantSecretFile;
  auto first = LoadOrCreateTenantSecret(file);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->size(), kTenantSecretBytes);
  EXPECT_NE(*first, std::string(kTenantSecretBytes, '\0'));
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(static_cast<size_t>(st.st_size), kTenantSecretBytes);
  // A restart reads the same secret; nothing but the file is left in the directory.
  auto again = LoadOrCreateTenantSecret(file);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *first);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(file.parent_path())) ++entries;
  EXPECT_EQ(entries, 1u);
  // Another installation gets another secret.
  auto other = LoadOrCreateTenantSecret(testing::ScratchDir("tenant-secret-other") / kTenantSecretFile);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*other, *first);
}

// Servers starting together over one cache directory agree on one secret.
TEST(TenantSecretTest, ConcurrentCreatorsAgree) {
  for (int round = 0; round < 5; ++round) {
    const fs::path file = testing::ScratchDir("tenant-secret-race") / kTenantSecretFile;
    std::vector<std::string> got(8);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < got.size(); ++i) {
      threads.emplace_back([&, i] {
        auto s = LoadOrCreateTenantSecret(file);
        EXPECT_TRUE(s.ok()) << s.status().ToString();
        if (s.ok()) got[i] = *s;
      });
    }
    for (auto& t : threads) t.join();
    for (const auto& g : got) EXPECT_EQ(g, got[0]);
    std::ifstream in(file, std::ios::binary);
    const std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(on_disk, got[0]);
  }
}

// A file that is not a secret is never replaced (that would change every tenant id).
TEST(TenantSecretTest, AFileOfAnotherSizeIsCorruptionAndKept) {
  const fs::path file = testing::ScratchDir("tenant-secret-bad") / kTenantSecretFile;
  std::ofstream(file) << "short";
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);  // else refused for its mode first
  auto s = LoadOrCreateTenantSecret(file);
  EXPECT_EQ(s.status().code(), Status::Code::kCorruption);
  EXPECT_EQ(fs::file_size(file), 5u);
}

// An existing secret that others could have read, or that is not a file of its own, is refused
// (never used, never replaced): the server stops rather than key tenant ids with it.
TEST(TenantSecretTest, AnExposedOrLinkedSecretIsRefusedAndKept) {
  const fs::path dir = testing::ScratchDir("tenant-secret-exposed");
  const fs::path file = dir / kTenantSecretFile;
  auto made = LoadOrCreateTenantSecret(file);
  ASSERT_TRUE(made.ok());
  ASSERT_EQ(::chmod(file.c_str(), 0640), 0);
  auto exposed = LoadOrCreateTenantSecret(file);
  EXPECT_EQ(exposed.status().code(), Status::Code::kPermissionDenied);
  EXPECT_NE(exposed.status().message().find("0640"), std::string::npos) << exposed.status().message();
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  EXPECT_TRUE(LoadOrCreateTenantSecret(file).ok());

  // A symbolic link (to a good secret, even) is not followed.
  const fs::path linked = testing::ScratchDir("tenant-secret-link") / kTenantSecretFile;
  fs::create_symlink(file, linked);
  auto via_link = LoadOrCreateTenantSecret(linked);
  EXPECT_EQ(via_link.status().code(), Status::Code::kPermissionDenied);
  EXPECT_NE(via_link.status().message().find("symbolic link"), std::string::npos) << via_link.status().message();
  EXPECT_TRUE(fs::is_symlink(linked));
  EXPECT_EQ(fs::file_size(file), kTenantSecretBytes);
}

// Reading an existing secret fsyncs its directory again: its creator may have stopped after
// link(2) and before that fsync.
TEST(TenantSecretTest, ReadingTheSecretSyncsItsDirectory) {
  const fs::path dir = testing::ScratchDir("tenant-secret-sync").lexically_normal();
  ASSERT_TRUE(LoadOrCreateTenantSecret(dir / kTenantSecretFile).ok());
  testing::SyncedDirs synced;
  ASSERT_TRUE(LoadOrCreateTenantSecret(dir / kTenantSecretFile).ok());
  EXPECT_TRUE(synced.Contains(dir));
}

}  // namespace
}  // namespace kvault

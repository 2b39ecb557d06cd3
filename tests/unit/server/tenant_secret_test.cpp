#include "server/tenant_secret.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>
#include <vector>

#include "test_env.h"

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
  auto s = LoadOrCreateTenantSecret(file);
  EXPECT_EQ(s.status().code(), Status::Code::kCorruption);
  EXPECT_EQ(fs::file_size(file), 5u);
}

}  // namespace
}  // namespace kvault

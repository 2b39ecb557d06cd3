#include "core/fs_sync.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "test_env.h"
#include "unit/core/synced_dirs.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

TEST(FsSyncTest, EachCreatedLevelIsSyncedInItsParentTopDown) {
  const fs::path base = testing::ScratchDir("fs-sync-levels").lexically_normal();
  testing::SyncedDirs synced;
  auto made = CreateDirsDurably(base / "a" / "b" / "c");
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  EXPECT_EQ(made.value(), 3);
  EXPECT_TRUE(fs::is_directory(base / "a" / "b" / "c"));
  EXPECT_EQ(synced.dirs(), (std::vector<fs::path>{base, base / "a", base / "a" / "b"}));

  // Existing levels cost nothing: no mkdir, no fsync.
  auto again = CreateDirsDurably(base / "a" / "b" / "c" / "");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), 0);
  EXPECT_EQ(synced.dirs().size(), 3u);
  auto one_more = CreateDirsDurably(base / "a" / "d");
  ASSERT_TRUE(one_more.ok());
  EXPECT_EQ(one_more.value(), 1);
  EXPECT_EQ(synced.dirs().back(), base / "a");
}

// A level made but not made durable (its parent's fsync failed) is an error now and is synced
// again by the next call that needs it, not taken as durable because it exists.
TEST(FsSyncTest, AFailedParentSyncIsRetriedByTheNextCall) {
  const fs::path base = testing::ScratchDir("fs-sync-retry").lexically_normal();
  testing::SyncedDirs synced;
  synced.Fail(base / "a");
  auto failed = CreateDirsDurably(base / "a" / "b");
  EXPECT_EQ(failed.status().code(), Status::Code::kIOError);
  EXPECT_TRUE(fs::is_directory(base / "a" / "b"));  // made, but its entry in a/ is not durable
  synced.Heal();
  auto again = CreateDirsDurably(base / "a" / "b" / "c");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again.value(), 1);
  EXPECT_EQ(synced.dirs(), (std::vector<fs::path>{base, base / "a", base / "a" / "b"}));
  // Durable now: nothing more to sync.
  ASSERT_TRUE(CreateDirsDurably(base / "a" / "b").ok());
  EXPECT_EQ(synced.dirs().size(), 3u);
}

// New directories get 0777 less the umask (not a fixed 0755).
TEST(FsSyncTest, NewDirectoriesFollowTheUmask) {
  const fs::path base = testing::ScratchDir("fs-sync-umask");
  const mode_t old = ::umask(002);
  auto made = CreateDirsDurably(base / "shared");
  ::umask(old);
  ASSERT_TRUE(made.ok());
  struct stat st {};
  ASSERT_EQ(::stat((base / "shared").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0775u);
}

TEST(FsSyncTest, AFileInTheWayIsAnError) {
  const fs::path base = testing::ScratchDir("fs-sync-file");
  std::ofstream(base / "f") << "x";
  EXPECT_EQ(CreateDirsDurably(base / "f").status().code(), Status::Code::kIOError);
  EXPECT_EQ(CreateDirsDurably(base / "f" / "sub").status().code(), Status::Code::kIOError);
  EXPECT_TRUE(SyncDir(base).ok());
  EXPECT_EQ(SyncDir(base / "missing").code(), Status::Code::kIOError);
}

}  // namespace
}  // namespace kvault

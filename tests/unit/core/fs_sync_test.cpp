#include "core/fs_sync.h"

#include <gtest/gtest.h>

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

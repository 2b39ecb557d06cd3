#include "kvstore/disk_tier.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvstore/fingerprint.h"
#include "test_env.h"
#include "unit/core/synced_dirs.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

BlockKey Key(int i) {
  return CacheSalt("k", std::to_string(i));
}
std::vector<uint8_t> Bytes(size_t n, uint8_t v) {
  return std::vector<uint8_t>(n, v);
}

// The model's content hash is memoized in the cache directory, which the engine thereby makes
// before DiskTier::Open: it is made durably (else DiskTier finds it existing and never syncs its
// parent).
TEST(DiskTierTest, TheCacheDirectoryMadeForTheHashMemoIsSyncedInItsParent) {
  const auto base = testing::ScratchDir("disk-tier-memo-dir").lexically_normal();
  testing::SyncedDirs synced;
  auto hash = ModelContentHash(testing::TinyModel(), base / "kv-cache");
  ASSERT_TRUE(hash.ok()) << hash.status().ToString();
  EXPECT_TRUE(fs::exists(base / "kv-cache" / "model-hashes.tsv"));
  EXPECT_TRUE(synced.Contains(base));
}

// The model's directory is made durable in the cache directory when it is created (and the cache
// directory in its parent); so is a block's shard directory, and the model's directory again
// when it was deleted while the server ran.
TEST(DiskTierTest, NewDirectoriesAreSyncedInTheirParents) {
  const auto cache = testing::ScratchDir("disk-tier-dir-sync").lexically_normal();
  const auto root = cache / "kv" / "fingerprint";
  testing::SyncedDirs synced;
  DiskTier d(root, 1 << 20);
  ASSERT_TRUE(d.Open().ok());
  EXPECT_TRUE(synced.Contains(cache)) << "the new cache directory's entry";
  EXPECT_TRUE(synced.Contains(cache / "kv")) << "the model directory's entry";
  ASSERT_TRUE(d.Write(Key(1), Bytes(10, 1)).ok());
  EXPECT_TRUE(synced.Contains(root)) << "the shard directory's entry";
  fs::remove_all(root);
  const size_t before = synced.dirs().size();
  ASSERT_TRUE(d.Write(Key(2), Bytes(10, 2)).ok());
  const auto after = synced.dirs();
  EXPECT_NE(std::find(after.begin() + static_cast<long>(before), after.end(), cache / "kv"), after.end())
      << "the recreated model directory's entry";
}

TEST(DiskTierTest, WriteReadAndRescanAfterRestart) {
  const auto dir = testing::ScratchDir("disk-tier-rescan");
  {
    DiskTier d(dir, 1 << 20);
    ASSERT_TRUE(d.Open().ok());
    ASSERT_TRUE(d.Write(Key(1), Bytes(100, 1)).ok());
    ASSERT_TRUE(d.Write(Key(2), Bytes(200, 2)).ok());
    EXPECT_TRUE(fs::exists(d.PathFor(Key(1))));
    EXPECT_EQ(d.PathFor(Key(1)).parent_path().filename().string(), Key(1).Hex().substr(0, 2));
  }
  // An interrupted write leaves a temp file; a restart removes it and finds the blocks.
  std::ofstream(dir / "ab" / "partial.safetensors.tmp") << "junk";
  fs::create_directories(dir / "ab");
  std::ofstream(dir / "ab" / "x.safetensors.tmp") << "junk";
  DiskTier d(dir, 1 << 20);
  ASSERT_TRUE(d.Open().ok());
  EXPECT_TRUE(d.Contains(Key(1)));
  EXPECT_TRUE(d.Contains(Key(2)));
  EXPECT_FALSE(d.Contains(Key(3)));
  EXPECT_GE(d.stats().temp_files_removed, 1u);
  EXPECT_FALSE(fs::exists(dir / "ab" / "x.safetensors.tmp"));
  auto b = d.Read(Key(2));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, Bytes(200, 2));
  EXPECT_EQ(d.stats().blocks, 2u);
  EXPECT_EQ(d.stats().bytes, 300u);
}

TEST(DiskTierTest, LeastRecentlyUsedFilesGoOverTheLimit) {
  const auto dir = testing::ScratchDir("disk-tier-gc");
  DiskTier d(dir, 250);
  ASSERT_TRUE(d.Open().ok());
  ASSERT_TRUE(d.Write(Key(1), Bytes(100, 1)).ok());
  ASSERT_TRUE(d.Write(Key(2), Bytes(100, 2)).ok());
  ASSERT_TRUE(d.Read(Key(1)).ok());  // 1 is now more recent than 2
  ASSERT_TRUE(d.Write(Key(3), Bytes(100, 3)).ok());
  EXPECT_TRUE(d.Contains(Key(1)));
  EXPECT_FALSE(d.Contains(Key(2)));
  EXPECT_FALSE(fs::exists(d.PathFor(Key(2))));
  EXPECT_TRUE(d.Contains(Key(3)));
  EXPECT_LE(d.stats().bytes, 250u);
  EXPECT_EQ(d.stats().gc_deleted, 1u);
}

// The store's RAM hits are uses too (Touch), and the order is kept across a restart: the owner
// stamps modification times in use order when it closes, and Open sorts by them.
TEST(DiskTierTest, TouchedBlocksStayAndTheUseOrderSurvivesARestart) {
  const auto dir = testing::ScratchDir("disk-tier-touch");
  {
    DiskTier d(dir, 1 << 20);
    ASSERT_TRUE(d.Open().ok());
    ASSERT_TRUE(d.Write(Key(1), Bytes(100, 1)).ok());
    ASSERT_TRUE(d.Write(Key(2), Bytes(100, 2)).ok());
  }
  // Written long ago, 1 before 2 (file times are coarse: set them apart).
  const auto now = fs::file_time_type::clock::now();
  fs::last_write_time(DiskTier(dir, 0).PathFor(Key(1)), now - std::chrono::seconds(20));
  fs::last_write_time(DiskTier(dir, 0).PathFor(Key(2)), now - std::chrono::seconds(10));
  {
    DiskTier d(dir, 250);
    ASSERT_TRUE(d.Open().ok());
    d.Touch(Key(1));  // 1 was used (from RAM): now more recent than 2
  }
  DiskTier d(dir, 250);
  ASSERT_TRUE(d.Open().ok());
  ASSERT_TRUE(d.Write(Key(3), Bytes(100, 3)).ok());
  EXPECT_TRUE(d.Contains(Key(1)));
  EXPECT_FALSE(d.Contains(Key(2)));
  EXPECT_TRUE(d.Contains(Key(3)));
}

// One owner per directory: a second server (or a second model entry with the same fingerprint)
// would delete the first one's temp files at Open and race its index.
TEST(DiskTierTest, OneOwnerAtATimeAndReadersLeaveItsFilesAlone) {
  const auto dir = testing::ScratchDir("disk-tier-lock");
  auto owner = std::make_unique<DiskTier>(dir, 1 << 20);
  ASSERT_TRUE(owner->Open().ok());
  ASSERT_TRUE(owner->Write(Key(1), Bytes(100, 1)).ok());
  fs::create_directories(dir / "ab");
  std::ofstream(dir / "ab" / "inflight.safetensors.tmp") << "being written";
  DiskTier second(dir, 1 << 20);
  const Status s = second.Open();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("in use"), std::string::npos) << s.message();
  DiskTier reader(dir, 1 << 20);  // kvault cache ls/stats
  ASSERT_TRUE(reader.Open(DiskTier::Mode::kReadOnly).ok());
  EXPECT_TRUE(reader.Contains(Key(1)));
  EXPECT_TRUE(fs::exists(dir / "ab" / "inflight.safetensors.tmp"));
  EXPECT_EQ(reader.stats().temp_files_removed, 0u);
  owner.reset();  // the lock goes with the owner
  DiskTier next(dir, 1 << 20);
  ASSERT_TRUE(next.Open().ok());
  EXPECT_FALSE(fs::exists(dir / "ab" / "inflight.safetensors.tmp"));
  EXPECT_TRUE(next.Contains(Key(1)));
}

TEST(DiskTierTest, QuarantineMovesTheFileAside) {
  const auto dir = testing::ScratchDir("disk-tier-quarantine");
  {
    DiskTier d(dir, 1 << 20);
    ASSERT_TRUE(d.Open().ok());
    ASSERT_TRUE(d.Write(Key(1), Bytes(10, 1)).ok());
    d.Quarantine(Key(1), "test");
    EXPECT_FALSE(d.Contains(Key(1)));
    EXPECT_TRUE(fs::exists(dir / "quarantine" / (Key(1).Hex() + ".safetensors")));
    EXPECT_EQ(d.stats().quarantined, 1u);
  }
  DiskTier again(dir, 1 << 20);  // and a rescan does not bring it back
  ASSERT_TRUE(again.Open().ok());
  EXPECT_FALSE(again.Contains(Key(1)));
}

// The disk as the store reaches it: through BlockTier (tier.h).
TEST(DiskTierTest, AsABlockTierItReadsInOrderAndStopsWhenTheReaderDoes) {
  const auto dir = testing::ScratchDir("disk-tier-interface");
  DiskTier disk(dir, 1 << 20);
  ASSERT_TRUE(disk.Open().ok());
  BlockTier& tier = disk;
  EXPECT_STREQ(tier.name(), "disk");
  ASSERT_TRUE(tier.Write(Key(1), Bytes(100, 1)).ok());
  ASSERT_TRUE(tier.Write(Key(3), Bytes(300, 3)).ok());
  ASSERT_TRUE(tier.Write(Key(1), Bytes(5, 9)).ok());  // stored already: kept as it was
  EXPECT_TRUE(tier.Contains(Key(1)));
  EXPECT_TRUE(tier.MayContain(Key(1)));
  EXPECT_FALSE(tier.MayContain(Key(2)));  // the index knows: no read needed
  EXPECT_EQ(tier.SizeOf(Key(3)), 300u);
  std::vector<std::string> seen;
  const BlockKey keys[] = {Key(1), Key(2), Key(3), Key(1)};
  tier.ReadBlocks(keys, [&](size_t i, const StatusOr<std::span<const uint8_t>>& bytes) {
    if (!bytes.ok()) {
      seen.push_back(std::to_string(i) + ":" + StatusCodeName(bytes.status().code()));
    } else {
      seen.push_back(std::to_string(i) + ":" + std::to_string(bytes.value().size()) + "x" +
                     std::to_string(bytes.value()[0]));
    }
    return i < 2;  // stops after the third key
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"0:100x1", "1:NotFound", "2:300x3"}));
  EXPECT_EQ(disk.stats().reads, 2u);  // the missing key cost no read
  EXPECT_EQ(tier.wipes(), 0u);
}

TEST(DiskTierTest, AsABlockTierARejectedBlockIsQuarantinedAndARemovedOneIsGone) {
  const auto dir = testing::ScratchDir("disk-tier-interface-reject");
  DiskTier disk(dir, 1 << 20);
  ASSERT_TRUE(disk.Open().ok());
  BlockTier& tier = disk;
  ASSERT_TRUE(tier.Write(Key(1), Bytes(10, 1)).ok());
  ASSERT_TRUE(tier.Write(Key(2), Bytes(10, 2)).ok());
  tier.Reject(Key(1), "checksum mismatch");
  EXPECT_FALSE(tier.Contains(Key(1)));
  EXPECT_TRUE(fs::exists(dir / "quarantine" / (Key(1).Hex() + ".safetensors")));
  ASSERT_TRUE(tier.Remove(Key(2)).ok());
  EXPECT_FALSE(tier.Contains(Key(2)));
  EXPECT_FALSE(fs::exists(disk.PathFor(Key(2))));
  EXPECT_TRUE(tier.Remove(Key(2)).ok());  // not there: ok
  EXPECT_TRUE(tier.Probe().ok());
  // The directory deleted behind the tier's back: the next write notices and counts a wipe.
  fs::remove_all(dir);
  ASSERT_TRUE(tier.Write(Key(3), Bytes(10, 3)).ok());
  EXPECT_EQ(tier.wipes(), 1u);
}

TEST(DiskTierTest, UnwritableDirectoryIsAnErrorNotACrash) {
  DiskTier d("/proc/kvault-cannot-exist", 1 << 20);
  EXPECT_FALSE(d.Open().ok());
}

}  // namespace
}  // namespace kvault

#include "kvstore/kv_store.h"

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "test_env.h"
#include "unit/core/synced_dirs.h"
#include "unit/kvstore/kv_store_test_util.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;
using testing::Chain;
using testing::OpenStore;
using testing::StoreBlock0;
using testing::Wait;

// The store's directories (the model's, and its agents/ for agent records) are made durable in
// their parents when created.
TEST(KvStoreTest, NewDirectoriesAreSyncedInTheirParents) {
  const auto dir = testing::ScratchDir("kv-store-dir-sync").lexically_normal() / "cache";
  testing::SyncedDirs synced;
  auto store = OpenStore(dir);
  EXPECT_TRUE(synced.Contains(dir)) << "the model directory's entry";
  EXPECT_TRUE(synced.Contains(dir / "fp")) << "the agents directory's entry";
}

TEST(KvStoreTest, BlocksSurviveARestart) {
  const auto dir = testing::ScratchDir("kv-store-restart");
  Chain c;
  {
    auto store = OpenStore(dir);
    for (size_t i = 0; i < 3; ++i) store->Put(c.Record(i));
    EXPECT_TRUE(store->Has(c.keys[2]));
    store->Flush();
    EXPECT_EQ(store->stats().disk.blocks, 3u);
  }
  auto store = OpenStore(dir);
  EXPECT_EQ(store->FindInRam(c.keys[0]), nullptr);  // RAM is empty after a restart
  EXPECT_TRUE(store->Has(c.keys[0]));
  auto p = Wait(store->StartPrefetch(c.Request()));
  ASSERT_EQ(p->records.size(), 3u);
  EXPECT_EQ(p->from_disk, std::vector<bool>(3, true));
  EXPECT_EQ(p->records[1]->kv, c.Record(1)->kv);
  EXPECT_NE(store->FindInRam(c.keys[1]), nullptr);  // now cached in RAM
}

TEST(KvStoreTest, PrefetchStopsAtTheFirstMissingBlock) {
  const auto dir = testing::ScratchDir("kv-store-gap");
  Chain c;
  auto store = OpenStore(dir);
  store->Put(c.Record(0));
  store->Put(c.Record(2));
  auto p = Wait(store->StartPrefetch(c.Request()));
  EXPECT_EQ(p->records.size(), 1u);
}

TEST(KvStoreTest, CorruptFileIsAMissAndQuarantined) {
  const auto dir = testing::ScratchDir("kv-store-corrupt");
  Chain c;
  fs::path file;
  {
    auto store = OpenStore(dir);
    store->Put(c.Record(0));
    store->Put(c.Record(1));
    store->Flush();
  }
  // Flip a byte in block 1's KV data.
  DiskTier probe(dir / "fp", 1 << 20);
  file = probe.PathFor(c.keys[1]);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  auto store = OpenStore(dir);
  auto p = Wait(store->StartPrefetch(c.Request()));
  EXPECT_EQ(p->records.size(), 1u);  // block 0 fine, block 1 rejected
  EXPECT_EQ(store->stats().disk.quarantined, 1u);
  EXPECT_FALSE(store->Has(c.keys[1]));
}

TEST(KvStoreTest, AMislabelledFileIsQuarantinedAndNeverKept) {
  const auto dir = testing::ScratchDir("kv-store-mislabelled");
  Chain c;
  {
    auto store = OpenStore(dir);
    store->Put(c.Record(0));
    auto wrong = std::make_shared<BlockRecord>(*c.Record(1));
    wrong->tokens[2] = 7;  // the key of block 1, other tokens: a collision or a tampered file
    store->Put(wrong);
    store->Flush();
  }
  auto store = OpenStore(dir);
  auto p = Wait(store->StartPrefetch(c.Request()));
  EXPECT_EQ(p->records.size(), 1u);
  EXPECT_EQ(store->stats().disk.quarantined, 1u);
  EXPECT_FALSE(store->Has(c.keys[1]));  // not in RAM either: the right block can be stored again
  store->Put(c.Record(1));
  p = Wait(store->StartPrefetch(c.Request()));
  EXPECT_EQ(p->records.size(), 2u);  // blocks 0 (disk) and 1 (RAM); 2 was never stored
}

TEST(KvStoreTest, RamIsBoundedButDiskKeepsEverything) {
  const auto dir = testing::ScratchDir("kv-store-ram-bound");
  Chain c;
  auto store = OpenStore(dir, /*ram=*/700);  // room for about two records
  for (size_t i = 0; i < 3; ++i) store->Put(c.Record(i));
  store->Flush();
  EXPECT_LE(store->stats().ram_bytes, 700u);
  EXPECT_EQ(store->FindInRam(c.keys[0]), nullptr);  // least recently used left RAM
  EXPECT_TRUE(store->Has(c.keys[0]));               // but is on disk
  auto p = Wait(store->StartPrefetch(c.Request()));
  EXPECT_EQ(p->records.size(), 3u);
}

// Blocks served from RAM are uses for the disk tier's limit too; one whose file was collected
// anyway is written again when it is used again (Keep), and stays in RAM on an evict.
TEST(KvStoreTest, BlocksUsedFromRamStayOnDiskAndCollectedOnesAreWrittenAgain) {
  Chain c;
  uint64_t file = 0;
  {
    auto probe = OpenStore(testing::ScratchDir("kv-store-keep-probe"));
    probe->Put(c.Record(0));
    probe->Flush();
    file = probe->stats().disk.bytes;  // one block file (all three are the same size)
  }
  ASSERT_GT(file, 0u);
  auto store = OpenStore(testing::ScratchDir("kv-store-keep"), 1 << 20, file * 5 / 2);  // room for two files
  auto on_disk = [&](size_t i) { return store->TiersOf({c.keys[i]}).disk_blocks == 1; };
  store->Put(c.Record(0));
  store->Flush();
  store->Put(c.Record(1));
  store->Flush();
  ASSERT_NE(store->FindInRam(c.keys[0]), nullptr);  // block 0 is used: now more recent than 1
  store->Put(c.Record(2));
  store->Flush();
  EXPECT_TRUE(on_disk(0));
  EXPECT_FALSE(on_disk(1));
  EXPECT_TRUE(on_disk(2));
  // Block 1 is in RAM only now: an evict keeps it there (RAM is its only copy) ...
  EXPECT_EQ(store->EvictFromRam({c.keys[1]}), 0u);
  ASSERT_NE(store->FindInRam(c.keys[1]), nullptr);
  // ... and a turn that uses it again writes it again (the least recently used file goes).
  EXPECT_TRUE(store->KeepIfStored(c.keys[1]));
  store->Flush();
  EXPECT_TRUE(on_disk(1));
  EXPECT_FALSE(on_disk(0));
  EXPECT_TRUE(on_disk(2));
  EXPECT_FALSE(store->KeepIfStored(BlockKey{}));  // not stored: the caller puts it
}

// A conversation of 11 tokens: blocks 0 and 1 full, then a partial last block of 3 tokens.
TEST(KvStorePartialTest, TheLongestStoredTailAfterTheLastFullBlockIsFetched) {
  const auto dir = testing::ScratchDir("kv-store-tail");
  Chain c;
  const std::vector<int32_t> toks(c.tokens.begin(), c.tokens.begin() + 11);
  const std::vector<int32_t> rest(toks.begin() + 8, toks.end());
  auto store = OpenStore(dir);
  store->Put(c.Record(0));
  store->Put(c.Record(1));
  store->Put(c.Tail(1, rest, 2));
  store->Put(c.Tail(1, rest, 3));
  store->Put(c.Tail(0, rest, 3));  // the same tokens after another parent: not this conversation's
  auto p = Wait(store->StartPrefetch(c.Request(0, toks)));
  ASSERT_EQ(p->records.size(), 2u);
  ASSERT_NE(p->partial.record, nullptr);
  EXPECT_EQ(p->partial.tokens, 3u);
  EXPECT_EQ(p->partial.record->tokens, rest);
  EXPECT_EQ(p->partial.record->kv, c.Tail(1, rest, 3)->kv);
  EXPECT_FALSE(p->partial.from_disk);
  // A partial block must reach beyond what is resident: 10 resident tokens leave only the
  // 3-token tail; with 11 there is nothing to fetch.
  p = Wait(store->StartPrefetch(c.Request(2, toks, /*resident=*/10)));
  ASSERT_NE(p->partial.record, nullptr);
  EXPECT_EQ(p->partial.tokens, 3u);
  p = Wait(store->StartPrefetch(c.Request(2, toks, /*resident=*/11)));
  EXPECT_EQ(p->partial.record, nullptr);
  // A prompt that differs inside the tail finds the shorter tail that still matches.
  auto diverging = toks;
  diverging[10] = 999;
  p = Wait(store->StartPrefetch(c.Request(0, diverging)));
  ASSERT_NE(p->partial.record, nullptr);
  EXPECT_EQ(p->partial.tokens, 2u);
  // The engine thread's RAM-only lookup finds the same.
  const auto req = c.Request(0, toks);
  EXPECT_EQ(store->FindPartialInRam(*req, 2, 1).tokens, 3u);
  EXPECT_EQ(store->FindPartialInRam(*req, 2, 4).record, nullptr);
  EXPECT_EQ(store->FindPartialInRam(*req, 1, 1).record, nullptr);  // after block 0: tails of other tokens only
}

TEST(KvStorePartialTest, ATailWithoutFullBlocksFollowsTheSalt) {
  const auto dir = testing::ScratchDir("kv-store-tail-salt");
  Chain c;
  const std::vector<int32_t> toks = {7, 8, 9};
  auto store = OpenStore(dir);
  auto p = Wait(store->StartPrefetch(c.Request(0, toks)));
  EXPECT_EQ(p->partial.record, nullptr);
  store->Put(c.Tail(-1, toks, 3));
  p = Wait(store->StartPrefetch(c.Request(0, toks)));
  ASSERT_NE(p->partial.record, nullptr);
  EXPECT_EQ(p->partial.record->tokens, toks);
  EXPECT_EQ(p->partial.record->first_pos, 0u);
}

// A conversation whose last turn re-renders differently from the stored one: its tail matches no
// key, but the named agent's chain points at it, and its shared leading tokens are used.
TEST(KvStorePartialTest, TheAgentsOwnBlockGivesBackTheTokensTheRequestShares) {
  const auto dir = testing::ScratchDir("kv-store-partial-hint");
  Chain c;
  const std::vector<int32_t> stored(c.tokens.begin(), c.tokens.begin() + 11);  // 8 + a 3-token tail
  std::vector<int32_t> asked = c.tokens;  // 12 tokens: the 3rd block full but differs at its 3rd token
  asked[10] = 999;
  const std::vector<int32_t> rest(stored.begin() + 8, stored.end());
  auto store = OpenStore(dir);
  for (size_t i = 0; i < 2; ++i) store->Put(c.Record(i));
  store->Put(c.Tail(1, rest, 3));
  auto req = c.Request(0, asked);
  auto p = Wait(store->StartPrefetch(req));
  ASSERT_EQ(p->records.size(), 2u);
  EXPECT_EQ(p->partial.record, nullptr);  // no tail key matches: [108, 109] was never stored alone
  req->hint = {c.keys[0], c.keys[1], c.Tail(1, rest, 3)->key};
  p = Wait(store->StartPrefetch(req));
  ASSERT_NE(p->partial.record, nullptr);
  EXPECT_EQ(p->partial.tokens, 2u);
  EXPECT_EQ(store->FindPartialInRam(*req, 2, 1).tokens, 2u);
  EXPECT_EQ(store->FindPartialInRam(*req, 2, 3).record, nullptr);  // must reach beyond the resident ones
  // A chain that went elsewhere before this position is no hint.
  req->hint = {c.keys[0], c.keys[0], c.Tail(1, rest, 3)->key};
  EXPECT_EQ(store->FindPartialInRam(*req, 2, 1).record, nullptr);
  // Nor is a full block of the chain: the agent's block 1 for a request that differs inside it.
  auto early = c.tokens;
  early[5] = 999;
  auto req2 = c.Request(0, early);
  req2->hint = {c.keys[0], c.keys[1], c.keys[2]};
  const PartialBlock part = store->FindPartialInRam(*req2, 1, 1);
  ASSERT_NE(part.record, nullptr);
  EXPECT_EQ(part.record->key, c.keys[1]);
  EXPECT_EQ(part.tokens, 1u);  // token 4 is shared, token 5 is not
}

// An agent's record names its blocks; one that this request cannot use (here: the server was
// restarted with a smaller --block-tokens) is skipped, not quarantined as if it were corrupt.
TEST(KvStorePartialTest, AnAgentsBlockThatDoesNotFitThisRequestIsSkippedNotQuarantined) {
  const auto dir = testing::ScratchDir("kv-store-hint-misfit");
  Chain c;
  StoreBlock0(dir, c);
  auto store = OpenStore(dir);
  auto req = c.Request();
  req->block_tokens = 2;
  req->keys = ComputeBlockKeys(c.salt, *req->tokens, 2);
  req->hint = {c.keys[0]};  // a 4-token block: more than a partial 2-token block can hold
  auto p = Wait(store->StartPrefetch(req));
  EXPECT_TRUE(p->records.empty());
  EXPECT_EQ(p->partial.record, nullptr);
  EXPECT_EQ(store->stats().disk.quarantined, 0u);
  EXPECT_TRUE(store->Has(c.keys[0]));
}

TEST(KvStorePartialTest, TailsSurviveARestartAndABadTailFileIsAMiss) {
  const auto dir = testing::ScratchDir("kv-store-tail-restart");
  Chain c;
  const std::vector<int32_t> toks(c.tokens.begin(), c.tokens.begin() + 11);
  const std::vector<int32_t> rest(toks.begin() + 8, toks.end());
  {
    auto store = OpenStore(dir);
    for (size_t i = 0; i < 2; ++i) store->Put(c.Record(i));
    store->Put(c.Tail(1, rest, 2));
    store->Put(c.Tail(1, rest, 3));
    store->Flush();
  }
  {
    auto store = OpenStore(dir);
    auto p = Wait(store->StartPrefetch(c.Request(0, toks)));
    EXPECT_EQ(p->records.size(), 2u);
    ASSERT_NE(p->partial.record, nullptr);
    EXPECT_TRUE(p->partial.from_disk);
    EXPECT_EQ(p->partial.record->kv, c.Tail(1, rest, 3)->kv);
  }
  {
    // Resident up to the end of block 1 (the pool holds its blocks): only the tail is fetched.
    auto store = OpenStore(dir);
    auto p = Wait(store->StartPrefetch(c.Request(2, toks, 8)));
    EXPECT_TRUE(p->records.empty());
    ASSERT_NE(p->partial.record, nullptr);
    EXPECT_TRUE(p->partial.from_disk);
  }
  // Corrupt the 3-token tail: it is quarantined, and the 2-token one is used instead.
  DiskTier probe(dir / "fp", 1 << 20);
  {
    std::fstream f(probe.PathFor(c.Tail(1, rest, 3)->key), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  auto store = OpenStore(dir);
  auto p = Wait(store->StartPrefetch(c.Request(0, toks)));
  ASSERT_NE(p->partial.record, nullptr);
  EXPECT_EQ(p->partial.tokens, 2u);
  EXPECT_EQ(store->stats().disk.quarantined, 1u);
}

TEST(KvStoreTest, BuffersOfBlocksThatLeaveRamAreReused) {
  const auto dir = testing::ScratchDir("kv-store-buffers");
  Chain c;
  auto store = OpenStore(dir);
  auto r = store->NewRecord(4096);
  EXPECT_EQ(r->kv.size(), 4096u);
  const auto model = c.Record(0);
  r->key = model->key;
  r->parent = model->parent;
  r->tokens = model->tokens;
  r->fingerprint = "fp";
  store->Put(r);
  r.reset();
  EXPECT_EQ(store->stats().spare_buffer_bytes, 0u);
  EXPECT_EQ(store->EvictFromRam({c.keys[0]}), 1u);  // written, then dropped from RAM: given back
  const uint64_t spare = store->stats().spare_buffer_bytes;
  EXPECT_GE(spare, 4096u);
  auto p = Wait(store->StartPrefetch(c.Request()));  // read back from disk into a spare buffer
  ASSERT_EQ(p->records.size(), 1u);
  EXPECT_LT(store->stats().spare_buffer_bytes, spare);
  p.reset();
  EXPECT_EQ(store->EvictFromRam({c.keys[0]}), 1u);
  // And back again; the I/O thread's finished read job may hold the fetch a moment longer.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store->stats().spare_buffer_bytes != spare && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(store->stats().spare_buffer_bytes, spare);
}

TEST(KvStoreTest, OtherModelsFilesAreNotLoaded) {
  const auto dir = testing::ScratchDir("kv-store-foreign");
  Chain c;
  StoreBlock0(dir, c);
  // Same key, but the directory of another fingerprint: invisible; and a file copied into ours
  // whose metadata names another model is rejected.
  KvStoreOptions o;
  o.dir = dir;
  o.fingerprint = "other";
  auto other = KvStore::Open(o);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE((*other)->Has(c.keys[0]));
  other.value().reset();  // a directory has one owner at a time
  DiskTier mine(dir / "fp", 1 << 20), theirs(dir / "other", 1 << 20);
  fs::create_directories(theirs.PathFor(c.keys[0]).parent_path());
  fs::copy_file(mine.PathFor(c.keys[0]), theirs.PathFor(c.keys[0]));
  auto reopened = KvStore::Open(o);
  ASSERT_TRUE(reopened.ok());
  auto p = Wait((*reopened)->StartPrefetch(c.Request()));
  EXPECT_TRUE(p->records.empty());
  EXPECT_EQ((*reopened)->stats().disk.quarantined, 1u);
}

}  // namespace
}  // namespace kvault

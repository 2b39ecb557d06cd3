#include "kvstore/kv_store.h"

#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <thread>

#include "test_env.h"
#include "unit/core/synced_dirs.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

std::vector<int32_t> Tokens(int n, int from) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(from + i);
  return v;
}

// Blocks of 4 tokens for a 12-token sequence.
struct Chain {
  std::vector<int32_t> tokens = Tokens(12, 100);
  BlockKey salt = CacheSalt("fp", "");
  std::vector<BlockKey> keys = ComputeBlockKeys(salt, tokens, 4);
  std::shared_ptr<const BlockRecord> Record(size_t i) const {
    auto r = std::make_shared<BlockRecord>();
    r->key = keys[i];
    r->parent = i == 0 ? salt : keys[i - 1];
    r->fingerprint = "fp";
    r->kv_type = "f16";
    r->first_pos = static_cast<uint32_t>(i * 4);
    r->tokens.assign(tokens.begin() + static_cast<long>(i * 4), tokens.begin() + static_cast<long>(i * 4 + 4));
    r->kv.assign(64, static_cast<uint8_t>(i));
    return r;
  }
  // The tail block of `n` tokens after block `after` (-1: after the salt) of `more`.
  std::shared_ptr<const BlockRecord> Tail(int after, const std::vector<int32_t>& more, size_t n) const {
    auto r = std::make_shared<BlockRecord>();
    r->parent = after < 0 ? salt : keys[static_cast<size_t>(after)];
    r->key = TailBlockKeys(r->parent, more.data(), n).back();
    r->fingerprint = "fp";
    r->kv_type = "f16";
    r->first_pos = static_cast<uint32_t>((after + 1) * 4);
    r->tokens.assign(more.begin(), more.begin() + static_cast<long>(n));
    r->kv.assign(48, static_cast<uint8_t>(200 + n));
    return r;
  }
  // Asks for the blocks of `toks` (default: the 12 tokens) from block `first` on.
  std::shared_ptr<PrefetchRequest> Request(size_t first = 0, std::vector<int32_t> toks = {},
                                           size_t resident = 0) const {
    auto r = std::make_shared<PrefetchRequest>();
    r->salt = salt;
    if (toks.empty()) toks = tokens;
    r->keys = ComputeBlockKeys(salt, toks, 4);
    r->tokens = std::make_shared<const std::vector<int32_t>>(std::move(toks));
    r->block_tokens = 4;
    r->first = first;
    r->resident = resident;
    return r;
  }
};

std::shared_ptr<Prefetch> Wait(std::shared_ptr<Prefetch> p) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!p->done.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Not done: the test fails here instead of hanging (the I/O thread still owns `p`, kept alive).
  EXPECT_TRUE(p->done.load()) << "the prefetch never finished";
  return p;
}

std::unique_ptr<KvStore> OpenStore(const fs::path& dir, uint64_t ram = 1 << 20, uint64_t disk = 10ull << 30,
                                   uint32_t probe_interval_ms = 2000) {
  KvStoreOptions o;
  o.dir = dir;
  o.ram_bytes = ram;
  o.disk_bytes = disk;
  o.fingerprint = "fp";
  o.probe_interval_ms = probe_interval_ms;
  auto s = KvStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s.value());
}

// A store in `dir` that wrote `c`'s block 0 to disk, then closed.
void StoreBlock0(const fs::path& dir, const Chain& c) {
  auto store = OpenStore(dir);
  store->Put(c.Record(0));
  store->Flush();
}

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
  EXPECT_EQ(store->GetRam(c.keys[0]), nullptr);  // RAM is empty after a restart
  EXPECT_TRUE(store->Has(c.keys[0]));
  auto p = Wait(store->StartPrefetch(c.Request()));
  ASSERT_EQ(p->records.size(), 3u);
  EXPECT_EQ(p->from_disk, std::vector<bool>(3, true));
  EXPECT_EQ(p->records[1]->kv, c.Record(1)->kv);
  EXPECT_NE(store->GetRam(c.keys[1]), nullptr);  // now cached in RAM
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
  EXPECT_EQ(store->GetRam(c.keys[0]), nullptr);  // least recently used left RAM
  EXPECT_TRUE(store->Has(c.keys[0]));            // but is on disk
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
  ASSERT_NE(store->GetRam(c.keys[0]), nullptr);  // block 0 is used: now more recent than 1
  store->Put(c.Record(2));
  store->Flush();
  EXPECT_TRUE(on_disk(0));
  EXPECT_FALSE(on_disk(1));
  EXPECT_TRUE(on_disk(2));
  // Block 1 is in RAM only now: an evict keeps it there (RAM is its only copy) ...
  EXPECT_EQ(store->EvictFromRam({c.keys[1]}), 0u);
  ASSERT_NE(store->GetRam(c.keys[1]), nullptr);
  // ... and a turn that uses it again writes it again (the least recently used file goes).
  EXPECT_TRUE(store->Keep(c.keys[1]));
  store->Flush();
  EXPECT_TRUE(on_disk(1));
  EXPECT_FALSE(on_disk(0));
  EXPECT_TRUE(on_disk(2));
  EXPECT_FALSE(store->Keep(BlockKey{}));  // not stored: the caller puts it
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

namespace kvault {
namespace {

TEST(KvStoreAgentsTest, AnAgentsLatestChainLeavesRamLast) {
  const auto dir = testing::ScratchDir("kv-store-agent-ram");
  Chain c;
  auto store = OpenStore(dir, /*ram=*/700);  // room for about two records
  store->Put(c.Record(0));
  AgentRecord r;
  r.id = "planner";
  r.chain = {c.keys[0]};
  store->RecordAgent(r);  // block 0 is the planner's latest chain
  store->Put(c.Record(1));
  store->Put(c.Record(2));  // over budget: block 1 goes, not the older block 0
  store->Flush();
  EXPECT_NE(store->GetRam(c.keys[0]), nullptr);
  EXPECT_EQ(store->GetRam(c.keys[1]), nullptr);
}

TEST(KvStoreAgentsTest, ForgetRemovesOnlyBlocksNoOtherAgentHolds) {
  const auto dir = testing::ScratchDir("kv-store-agent-forget");
  Chain c;
  auto store = OpenStore(dir);
  for (size_t i = 0; i < 3; ++i) store->Put(c.Record(i));
  AgentRecord a;
  a.id = "a";
  a.chain = {c.keys[0], c.keys[1], c.keys[2]};
  AgentRecord b;
  b.id = "b";
  b.chain = {c.keys[0]};  // shares the first block
  store->RecordAgent(a);
  store->RecordAgent(b);
  store->Flush();
  EXPECT_EQ(store->TiersOf(a.chain).disk_blocks, 3u);
  EXPECT_EQ(store->ForgetAgent("", "a"), 2u);
  EXPECT_TRUE(store->Has(c.keys[0]));
  EXPECT_FALSE(store->Has(c.keys[1]));
  EXPECT_FALSE(store->Has(c.keys[2]));
  EXPECT_TRUE(store->agents().Find("a", std::nullopt).empty());
  EXPECT_EQ(store->agents().Find("b", std::nullopt).size(), 1u);
}

TEST(KvStoreAgentsTest, RecordsSurviveARestartAndBadFilesAreSkipped) {
  const auto dir = testing::ScratchDir("kv-store-agent-restart");
  Chain c;
  {
    auto store = OpenStore(dir);
    AgentRecord a;
    a.tenant = "key-1";
    a.id = "planner";
    a.chain = c.keys;
    a.tokens = 12;
    a.turns = 1;
    store->RecordAgent(a);
    a.turns = 1;
    store->RecordAgent(a);  // a second turn
  }
  std::ofstream(dir / "fp" / "agents" / "0123456789abcdef0123456789abcdef.json") << "{not json";
  auto store = OpenStore(dir);
  auto found = store->agents().Find("planner", std::string("key-1"));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].chain, c.keys);
  EXPECT_EQ(found[0].turns, 2u);
  EXPECT_EQ(found[0].tokens, 12u);
  EXPECT_EQ(store->agents().bad_files(), 1u);
  EXPECT_TRUE(store->agents().Find("planner", std::string("key-2")).empty());
}

// One turn of agent `id` whose conversation is `chain` (4 tokens a block).
AgentRecord Turn(const std::string& id, std::vector<BlockKey> chain) {
  AgentRecord r;
  r.id = id;
  r.tokens = static_cast<uint32_t>(chain.size() * 4);
  r.chain = std::move(chain);
  r.turns = 1;
  return r;
}

// Returns once the store's I/O thread has run every job queued so far.
void Drain(KvStore& store) {
  auto done = std::make_shared<std::promise<void>>();
  auto drained = done->get_future();
  store.AfterWrites([done] { done->set_value(); });
  drained.wait();
}

// Holds the store's I/O thread until released (or destroyed): jobs queued meanwhile run after.
class IoGate {
 public:
  explicit IoGate(KvStore& store) {
    store.AfterWrites([f = open_.get_future().share(), entered = entered_] {
      entered->set_value();
      f.wait();
    });
  }
  ~IoGate() { Release(); }
  void Release() {
    if (!released_) open_.set_value();
    released_ = true;
  }
  // Returns once the I/O thread reached the gate: every job queued before it has run.
  void WaitReached() { reached_.wait(); }

 private:
  std::promise<void> open_;
  std::shared_ptr<std::promise<void>> entered_ = std::make_shared<std::promise<void>>();
  std::future<void> reached_ = entered_->get_future();
  bool released_ = false;
};

// For a ForgetAgent running on another thread while an IoGate holds the I/O thread: returns once
// the agent left the registry and its removal job is queued (one more queued write job than the
// `jobs_before` counted before that thread started), or fails the test after 60 s.
void WaitUntilForgetIsQueued(const KvStore& store, const std::string& id, size_t jobs_before) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto queued = [&] { return store.agents().Find(id, std::nullopt).empty() && store.QueuedWriteJobs() > jobs_before; };
  while (!queued() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(queued()) << "the removal job of agent " << id << " was never queued";
}

TEST(KvStoreAgentsTest, AQueuedRecordWriteLeavesANewerTurnToItsOwnJob) {
  // A turn's record job is queued behind that turn's block writes. When an older turn's job runs
  // after a newer turn was recorded, it must not write the newer chain: its blocks may not be on
  // disk yet (a crash then would leave a record naming missing blocks).
  const auto dir = testing::ScratchDir("kv-store-agent-generation");
  Chain c;
  auto store = OpenStore(dir);
  const fs::path file = store->agents().FileFor("", "x");
  AgentRecord x = Turn("x", {c.keys[0]});
  IoGate first(*store);
  store->RecordAgent(x);  // turn 1's job
  IoGate second(*store);  // (turn 2's blocks would be queued here)
  x.chain = {c.keys[0], c.keys[1]};
  x.tokens = 8;
  store->RecordAgent(x);  // turn 2's job
  first.Release();
  second.WaitReached();  // turn 1's job has run
  EXPECT_FALSE(fs::exists(file)) << "turn 1's job wrote turn 2's record";
  second.Release();
  Drain(*store);
  EXPECT_TRUE(fs::exists(file));
}

TEST(KvStoreAgentsTest, ForgetKeepsBlocksAndRecordOfATurnThatCameAfterIt) {
  // DELETE, then the agent's next turn before the removal job ran: the job keeps what the new
  // turn's chain holds, and the agent's new record.
  const auto dir = testing::ScratchDir("kv-store-agent-forget-then-turn");
  Chain c;
  {
    auto store = OpenStore(dir);
    for (size_t i = 0; i < 2; ++i) store->Put(c.Record(i));
    AgentRecord x = Turn("x", {c.keys[0], c.keys[1]});
    store->RecordAgent(x);
    store->Flush();
    IoGate gate(*store);
    gate.WaitReached();  // the gate holds the I/O thread: later jobs stay queued
    const size_t jobs = store->QueuedWriteJobs();
    std::thread forget([&] { EXPECT_EQ(store->ForgetAgent("", "x"), 1u); });  // block 0 only
    WaitUntilForgetIsQueued(*store, "x", jobs);
    x.chain = {c.keys[1]};  // the next turn holds block 1 (after the removal job)
    x.turns = 1;
    store->RecordAgent(x);
    gate.Release();
    forget.join();
    EXPECT_FALSE(store->Has(c.keys[0]));
    EXPECT_TRUE(store->Has(c.keys[1]));
  }
  auto store = OpenStore(dir);
  auto x = store->agents().Find("x", std::nullopt);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].chain, std::vector<BlockKey>{c.keys[1]});
  EXPECT_TRUE(store->Has(c.keys[1]));
}

// A store whose first write of agent "x" (chain: block 0) failed: its agents directory was a file
// then. The directory is back; no probe runs for an hour, so the next good write ends the failing
// period (and queues again what failed).
std::unique_ptr<KvStore> StoreThatFailedToWriteX(const fs::path& dir, const Chain& c) {
  auto store = OpenStore(dir, 1 << 20, 10ull << 30, /*probe_interval_ms=*/3'600'000);
  const fs::path agents = dir / "fp" / "agents";
  fs::remove_all(agents);
  std::ofstream(agents) << "not a directory";
  AgentRecord x = Turn("x", {c.keys[0]});
  store->RecordAgent(x);
  Drain(*store);
  EXPECT_TRUE(store->stats().persistence.failing);
  fs::remove(agents);
  fs::create_directories(agents);
  return store;
}

TEST(KvStoreAgentsTest, AfterAFailedWriteTheLatestRecordIsKeptNotTheOneThatFailed) {
  const auto dir = testing::ScratchDir("kv-store-agent-backfill");
  Chain c;
  {
    auto store = StoreThatFailedToWriteX(dir, c);
    IoGate gate(*store);                         // queued in this order: y's record (the write that ends the failing
    store->RecordAgent(Turn("y", {c.keys[0]}));  // period and queues x's failed record again), x's second turn
    AgentRecord x = Turn("x", {c.keys[0], c.keys[1]});
    store->RecordAgent(x);
  }
  auto store = OpenStore(dir);
  auto x = store->agents().Find("x", std::nullopt);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].tokens, 8u);
  EXPECT_EQ(x[0].turns, 2u);
  EXPECT_EQ(x[0].chain, (std::vector<BlockKey>{c.keys[0], c.keys[1]}));
  EXPECT_EQ(store->agents().Find("y", std::nullopt).size(), 1u);
}

TEST(KvStoreAgentsTest, AnAgentForgottenWhileItsRecordWaitsToBeWrittenStaysForgotten) {
  const auto dir = testing::ScratchDir("kv-store-agent-forget-unwritten");
  Chain c;
  {
    auto store = StoreThatFailedToWriteX(dir, c);
    IoGate gate(*store);
    gate.WaitReached();                          // the gate holds the I/O thread: later jobs stay queued
    store->RecordAgent(Turn("y", {c.keys[0]}));  // ends the failing period when it runs: x's record is queued again
    const size_t jobs = store->QueuedWriteJobs();
    std::thread forget([&] { EXPECT_EQ(store->ForgetAgent("", "x"), 0u); });  // block 0 is y's too
    WaitUntilForgetIsQueued(*store, "x", jobs);                               // (behind y's write)
    gate.Release();
    forget.join();
  }
  auto store = OpenStore(dir);
  EXPECT_TRUE(store->agents().Find("x", std::nullopt).empty());
  EXPECT_EQ(store->agents().Find("y", std::nullopt).size(), 1u);
  EXPECT_EQ(store->agents().bad_files(), 0u);
}

TEST(KvStoreAgentsTest, AFailedRecordRemovalIsRetriedOnceWritesWorkAgain) {
  const auto dir = testing::ScratchDir("kv-store-agent-forget-fails");
  Chain c;
  const fs::path agents = dir / "fp" / "agents";
  {
    auto store = OpenStore(dir, 1 << 20, 10ull << 30, /*probe_interval_ms=*/3'600'000);
    AgentRecord x = Turn("x", {c.keys[0]});
    store->RecordAgent(x);
    Drain(*store);
    // The removal fails (the directory is a file now) while the record file stays where it was.
    fs::rename(agents, dir / "agents-away");
    std::ofstream(agents) << "not a directory";
    EXPECT_EQ(store->ForgetAgent("", "x"), 0u);  // (block 0 was never stored)
    EXPECT_TRUE(store->stats().persistence.failing);
    fs::remove(agents);
    fs::rename(dir / "agents-away", agents);
    ASSERT_TRUE(fs::exists(store->agents().FileFor("", "x")));
    store->RecordAgent(Turn("y", {c.keys[0]}));  // a good write: the failed removal is queued again
  }
  auto store = OpenStore(dir);
  EXPECT_TRUE(store->agents().Find("x", std::nullopt).empty()) << "a forgotten agent came back";
  EXPECT_EQ(store->agents().Find("y", std::nullopt).size(), 1u);
}

TEST(AgentRegistryTest, ValidIds) {
  for (const char* ok : {"planner", "a", "user@example.com", "agent-7:sub_2", "x.y"}) {
    EXPECT_TRUE(AgentRegistry::ValidId(ok)) << ok;
  }
  for (const std::string& bad : std::vector<std::string>{"", ".", "..", "../x", "a/b", "a b", "a\nb",
                                                         std::string("a\0b", 3), std::string(257, 'x')}) {
    EXPECT_FALSE(AgentRegistry::ValidId(bad)) << bad;
  }
}

}  // namespace
}  // namespace kvault

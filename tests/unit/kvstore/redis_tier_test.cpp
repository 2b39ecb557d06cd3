// The remote tier (kvstore/redis_tier.h) against a real redis-server started by the test on a free
// loopback port: URL parsing, the key layout, pipelined reads, verification of what comes back
// through the store's read path, Redis going away and coming back, the bounded write queue.
#include "kvstore/redis_tier.h"

#include <gtest/gtest.h>

#include <thread>

#include "kvstore/kv_store.h"
#include "redis_process.h"
#include "test_env.h"
#include "unit/kvstore/kv_store_test_util.h"

namespace kvault {
namespace {

using testing::Chain;
using testing::RedisProcess;
using testing::Wait;
using namespace std::chrono_literals;

TEST(RedisUrlTest, ParsesTheDocumentedForms) {
  auto u = ParseRedisUrl("redis://127.0.0.1:6380");
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->db, 0);
  EXPECT_TRUE(u->user.empty());
  EXPECT_TRUE(u->password.empty());
  u = ParseRedisUrl("redis://kv:s3cr@t@cache.local:6379/2");
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_EQ(u->user, "kv");
  EXPECT_EQ(u->password, "s3cr@t");
  EXPECT_EQ(u->host, "cache.local");
  EXPECT_EQ(u->db, 2);
  EXPECT_EQ(u->Redacted(), "redis://kv:<hidden>@cache.local:6379/2");
  u = ParseRedisUrl("redis://pw@h:1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->password, "pw");
  EXPECT_TRUE(u->user.empty());
  EXPECT_EQ(u->Redacted(), "redis://<hidden>@h:1");
  EXPECT_EQ(RedactRedisUrl("redis://kv:pw@h:1/0"), "redis://kv:<hidden>@h:1/0");
  EXPECT_EQ(RedactRedisUrl("redis://pw@h:1"), "redis://<hidden>@h:1");
}

TEST(RedisUrlTest, RejectsWhatItCannotUseWithTheReason) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"http://h:1", "scheme"},          {"redis://h", "no port"},
      {"redis://:6379", "no host"},      {"redis://h:0", "port"},
      {"redis://h:70000", "port"},       {"redis://h:x", "port"},
      {"redis://h:1/x", "database"},     {"redis://h:1/1/2", "database"},
      {"redis://u:@h:1", "password"},    {"redis-cluster://h:1,h:2", "Cluster"},
      {"redis://h:1?timeout=3", "query"}};
  for (const auto& [url, why] : bad) {
    auto u = ParseRedisUrl(url);
    ASSERT_FALSE(u.ok()) << url;
    EXPECT_NE(u.status().message().find(why), std::string::npos) << url << ": " << u.status().message();
  }
  auto u = ParseRedisUrl("redis://u:topsecret@h:x");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().message().find("topsecret"), std::string::npos) << "errors never show the password";
}

class RedisTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    redis_ = RedisProcess::Start(testing::ScratchDir(std::string("redis-") + Name()), &error);
    ASSERT_NE(redis_, nullptr) << error;
  }
  static std::string Name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }

  std::unique_ptr<RedisTier> Tier(size_t max_queued = 1024, uint64_t max_queued_bytes = 256ull << 20) {
    RedisTierOptions o;
    o.url = ParseRedisUrl(redis_->url()).value();
    o.fingerprint = "fp";
    o.max_queued_writes = max_queued;
    o.max_queued_bytes = max_queued_bytes;
    o.min_backoff_ms = 20;
    o.max_backoff_ms = 200;
    o.timeout_ms = 500;
    return std::make_unique<RedisTier>(std::move(o));
  }
  std::unique_ptr<KvStore> Store() {
    KvStoreOptions o;
    o.ram_bytes = 1 << 20;
    o.fingerprint = "fp";
    o.remote_cache = redis_->url();
    auto s = KvStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(s.value());
  }
  // Waits for a tier's state; true when reached.
  static bool WaitUp(const RedisTier& t, bool up, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (t.stats().up != up) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }
  // ReadBlocks' answers: the bytes, or "" for an error, "<code>" recorded in `codes`.
  static std::vector<std::string> Read(RedisTier& t, const std::vector<BlockKey>& keys,
                                       std::vector<Status::Code>* codes = nullptr, size_t stop_after = SIZE_MAX) {
    std::vector<std::string> out;
    t.ReadBlocks(keys, [&](size_t i, const StatusOr<std::span<const uint8_t>>& b) {
      EXPECT_EQ(i, out.size()) << "answers come in order";
      out.push_back(b.ok() ? std::string(b->begin(), b->end()) : std::string());
      if (codes) codes->push_back(b.ok() ? Status::Code::kOk : b.status().code());
      return out.size() < stop_after;
    });
    return out;
  }

  std::unique_ptr<RedisProcess> redis_;
};

TEST_F(RedisTierTest, BlocksAreWrittenBehindUnderFingerprintedKeysAndReadBackPipelined) {
  Chain c;
  auto tier = Tier();
  ASSERT_TRUE(WaitUp(*tier, true)) << tier->stats().last_error;
  for (size_t i = 0; i < 3; ++i) tier->Enqueue(c.Record(i));
  ASSERT_TRUE(tier->WaitWritten(5s));
  EXPECT_EQ(tier->KeyFor(c.keys[1]), "kvault:fp:" + c.keys[1].Hex());
  EXPECT_EQ(redis_->Keys("kvault:fp:*").size(), 3u);
  // The value is the disk tier's verified block file.
  std::vector<uint8_t> expected;
  EncodeBlockFile(*c.Record(1), &expected);
  EXPECT_EQ(redis_->Command({"GET", tier->KeyFor(c.keys[1])}), std::string(expected.begin(), expected.end()));

  // 40 keys (more than one pipelined batch), every third one stored.
  std::vector<BlockKey> keys;
  for (int i = 0; i < 40; ++i) keys.push_back(i % 3 == 0 ? c.keys[static_cast<size_t>(i / 3 % 3)] : c.salt);
  std::vector<Status::Code> codes;
  const auto got = Read(*tier, keys, &codes);
  ASSERT_EQ(got.size(), 40u);
  for (size_t i = 0; i < 40; ++i) {
    EXPECT_EQ(codes[i], i % 3 == 0 ? Status::Code::kOk : Status::Code::kNotFound) << i;
  }
  EXPECT_EQ(got[3].size(), got[12].size());
  const RemoteTierStats st = tier->stats();
  EXPECT_EQ(st.writes, 3u);
  EXPECT_EQ(st.reads, 40u);
  EXPECT_EQ(st.misses, 26u);
  EXPECT_GT(st.read_bytes, 0u);
  // A sink that stops early: the rest of the batch is drained, the connection stays usable.
  EXPECT_EQ(Read(*tier, keys, nullptr, 2).size(), 2u);
  codes.clear();
  Read(*tier, {c.keys[0]}, &codes);
  EXPECT_EQ(codes, std::vector<Status::Code>{Status::Code::kOk});
  EXPECT_TRUE(tier->stats().up);
}

// Two stores sharing one Redis, no disk: what one puts, the other's prefetch reads from the remote
// tier, verified; a value overwritten with garbage or truncated is a miss, counted, and deleted.
TEST_F(RedisTierTest, AnotherStoreRestoresFromRedisAndBadValuesAreCountedMisses) {
  Chain c;
  {
    auto a = Store();
    ASSERT_TRUE(WaitUp(*a->remote(), true));
    for (size_t i = 0; i < 3; ++i) a->Put(c.Record(i));
    ASSERT_TRUE(a->remote()->WaitWritten(5s));
  }
  {
    auto b = Store();
    ASSERT_TRUE(WaitUp(*b->remote(), true));
    auto p = Wait(b->StartPrefetch(c.Request()));
    ASSERT_EQ(p->records.size(), 3u);
    EXPECT_EQ(p->from_disk, std::vector<bool>(3, true)) << "read from a tier below RAM";
    EXPECT_EQ(p->records[2]->kv, c.Record(2)->kv);
    const KvStoreStats st = b->stats();
    EXPECT_TRUE(st.remote);
    EXPECT_EQ(st.remote_tier.hits, 3u);
    EXPECT_EQ(st.disk_hits, 0u);
  }
  // Garbage in block 1, block 2 cut short.
  auto b = Store();
  ASSERT_TRUE(WaitUp(*b->remote(), true));
  const std::string k1 = b->remote()->KeyFor(c.keys[1]), k2 = b->remote()->KeyFor(c.keys[2]);
  ASSERT_EQ(redis_->Command({"SET", k1, "garbage, not a block file"}), "OK");
  const std::string v2 = redis_->Command({"GET", k2}).value_or("");
  ASSERT_EQ(redis_->Command({"SET", k2, v2.substr(0, v2.size() / 2)}), "OK");
  auto p = Wait(b->StartPrefetch(c.Request()));
  EXPECT_EQ(p->records.size(), 1u) << "block 1 is a miss, so the run ends there";
  EXPECT_EQ(b->stats().remote_tier.rejected, 1u);
  ASSERT_TRUE(b->remote()->WaitWritten(5s));
  EXPECT_EQ(redis_->Command({"EXISTS", k1}), "0") << "the bad value is deleted";
  // Block 2 alone (block 1 from RAM? no: it is a miss; ask for block 2 from position 2).
  auto p2 = Wait(b->StartPrefetch(c.Request(2)));
  EXPECT_TRUE(p2->records.empty()) << "a truncated value fails the checksum";
  EXPECT_EQ(b->stats().remote_tier.rejected, 2u);
}

// Redis goes away: reads answer Unavailable without asking it, writes queue (bounded: the oldest
// dropped, counted), the tier reports down with the error; Redis back: reconnect, queued writes land.
TEST_F(RedisTierTest, ServesThroughRedisGoingAwayAndWritesResumeWhenItIsBack) {
  Chain c;
  auto tier = Tier(/*max_queued=*/2);
  ASSERT_TRUE(WaitUp(*tier, true));
  redis_->Stop();
  // The next read notices (or the writer's idle PING does).
  std::vector<Status::Code> codes;
  Read(*tier, {c.keys[0], c.keys[1]}, &codes);
  ASSERT_EQ(codes.size(), 2u);
  EXPECT_NE(codes[0], Status::Code::kOk);
  ASSERT_TRUE(WaitUp(*tier, false));
  RemoteTierStats st = tier->stats();
  EXPECT_FALSE(st.last_error.empty());
  EXPECT_GT(st.errors, 0u);
  EXPECT_FALSE(tier->Probe().ok());
  const auto t0 = std::chrono::steady_clock::now();
  codes.clear();
  Read(*tier, {c.keys[0], c.keys[1], c.keys[2]}, &codes);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 50ms) << "no I/O while down";
  EXPECT_EQ(codes, std::vector<Status::Code>(3, Status::Code::kUnavailable));
  EXPECT_GE(tier->stats().skipped_reads, 3u);

  for (size_t i = 0; i < 3; ++i) tier->Enqueue(c.Record(i));
  st = tier->stats();
  EXPECT_EQ(st.dropped_writes, 1u) << "the oldest of three, the queue holding two";
  EXPECT_EQ(st.queued_writes, 2u);

  ASSERT_TRUE(redis_->Restart());
  ASSERT_TRUE(tier->WaitWritten(10s)) << tier->stats().last_error;
  EXPECT_TRUE(tier->stats().up);
  EXPECT_GE(tier->stats().connects, 2u);
  EXPECT_EQ(redis_->Command({"EXISTS", tier->KeyFor(c.keys[0])}), "0") << "dropped";
  EXPECT_EQ(redis_->Command({"EXISTS", tier->KeyFor(c.keys[1])}), "1");
  EXPECT_EQ(redis_->Command({"EXISTS", tier->KeyFor(c.keys[2])}), "1");
  codes.clear();
  Read(*tier, {c.keys[1], c.keys[2]}, &codes);
  EXPECT_EQ(codes, std::vector<Status::Code>(2, Status::Code::kOk));
}

// Queued blocks hold memory RAM may have let go of: the queue is bounded in bytes too.
TEST_F(RedisTierTest, TheWriteQueueIsBoundedInBytesToo) {
  Chain c;
  redis_->Stop();
  const uint64_t one = c.Record(0)->ByteSize();
  auto tier = Tier(/*max_queued=*/1024, /*max_queued_bytes=*/2 * one + one / 2);
  for (size_t i = 0; i < 3; ++i) tier->Enqueue(c.Record(i));
  const RemoteTierStats st = tier->stats();
  EXPECT_EQ(st.dropped_writes, 1u);
  EXPECT_EQ(st.queued_writes, 2u);
  ASSERT_TRUE(redis_->Restart());
  ASSERT_TRUE(tier->WaitWritten(10s)) << tier->stats().last_error;
  EXPECT_EQ(redis_->Command({"EXISTS", tier->KeyFor(c.keys[0])}), "0") << "the oldest was dropped";
  EXPECT_EQ(redis_->Command({"EXISTS", tier->KeyFor(c.keys[2])}), "1");
}

// Unreachable at start (nothing listens): the store opens and serves from RAM; the tier is down.
TEST_F(RedisTierTest, AnUnreachableRedisAtStartIsATierDownNotAnError) {
  Chain c;
  redis_->Stop();
  auto store = Store();
  store->Put(c.Record(0));
  auto p = Wait(store->StartPrefetch(c.Request()));
  EXPECT_EQ(p->records.size(), 1u) << "block 0 from RAM";
  const KvStoreStats st = store->stats();
  EXPECT_FALSE(st.remote_tier.up);
  EXPECT_FALSE(st.remote_tier.last_error.empty());
}

}  // namespace
}  // namespace kvault

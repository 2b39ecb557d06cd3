// The remote tier (kvstore/redis_tier.h) against a real redis-server started by the test on a free
// loopback port: URL parsing, the key layout, pipelined reads, verification of what comes back
// through the store's read path, Redis going away and coming back, the bounded write queue.
#include "kvstore/redis_tier.h"

#include <gtest/gtest.h>

#include <thread>

#include "kvstore/kv_store.h"
#include "kvstore/redis_inventory.h"
#include "redis_process.h"
#include "test_env.h"
#include "unit/kvstore/kv_store_test_util.h"
#include "unit/kvstore/redis_test_util.h"

namespace kvault {
namespace {

using testing::Chain;
using testing::OpenRemoteStore;
using testing::RedisProcess;
using testing::Wait;
using testing::WaitUp;
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
  // A Redis Cluster: its seed nodes.
  u = ParseRedisUrl("redis-cluster://kv:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002");
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_TRUE(u->cluster);
  ASSERT_EQ(u->seeds.size(), 3u);
  EXPECT_EQ(u->seeds[2], (std::pair<std::string, int>{"::1", 7002}));
  EXPECT_EQ(u->host, "10.0.0.1");
  EXPECT_EQ(u->port, 7000);
  EXPECT_EQ(u->Redacted(), "redis-cluster://kv:<hidden>@10.0.0.1:7000,10.0.0.2:7001,::1:7002");
  EXPECT_EQ(RedactRedisUrl("redis-cluster://kv:pw@h:1,h:2"), "redis-cluster://kv:<hidden>@h:1,h:2");
}

TEST(RedisUrlTest, RejectsWhatItCannotUseWithTheReason) {
  const std::vector<std::pair<std::string, std::string>> bad = {{"http://h:1", "scheme"},
                                                                {"redis://h", "no port"},
                                                                {"redis://:6379", "no host"},
                                                                {"redis://h:0", "port"},
                                                                {"redis://h:70000", "port"},
                                                                {"redis://h:x", "port"},
                                                                {"redis://h:1/x", "database"},
                                                                {"redis://h:1/1/2", "database"},
                                                                {"redis://u:@h:1", "password"},
                                                                {"redis-cluster://h:1/0", "database"},
                                                                {"redis-cluster://h:1,h", "no port"},
                                                                {"rediss://h:1", "scheme"},
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
  std::unique_ptr<KvStore> Store() { return OpenRemoteStore(redis_->url()); }
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
    EXPECT_EQ(p->from_remote, std::vector<bool>(3, true)) << "the remote one";
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

// Agents' records are shared: stored as {turns, record} under a hashed key, found by FetchAgent;
// a record with fewer or as many turns as the stored one is not stored (compare-and-set), a value
// that is not that agent's record is no record, and ForgetAgent deletes it.
TEST_F(RedisTierTest, AgentRecordsAreSharedAndANewerTurnIsNeverOverwrittenByAnOlderOne) {
  Chain c;
  auto tier = Tier();
  ASSERT_TRUE(WaitUp(*tier, true)) << tier->stats().last_error;
  EXPECT_FALSE(tier->FetchAgent("t1", "planner")) << "none yet";
  AgentRecord rec{"t1", "planner", {c.keys[0], c.keys[1]}, 8, 3, 1000};
  tier->PublishAgent(rec);
  ASSERT_TRUE(tier->WaitWritten(5s));
  const std::string key = tier->AgentKeyFor("t1", "planner");
  EXPECT_EQ(key.rfind("kvault:fp:agent:", 0), 0u) << key;
  EXPECT_EQ(key.find("planner"), std::string::npos) << "no client text in a key";
  EXPECT_EQ(redis_->Command({"HGET", key, "turns"}), "3");
  auto got = tier->FetchAgent("t1", "planner");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->chain, rec.chain);
  EXPECT_EQ(got->turns, 3u);
  EXPECT_FALSE(tier->FetchAgent("t2", "planner")) << "another tenant's agent of that name is another agent";

  // An instance that served turn 2 (or turn 3 too) publishes late: the record stays turn 3's.
  AgentRecord older{"t1", "planner", {c.keys[2]}, 4, 2, 900};
  tier->PublishAgent(older);
  older.turns = 3;
  tier->PublishAgent(older);
  ASSERT_TRUE(tier->WaitWritten(5s));
  EXPECT_EQ(tier->FetchAgent("t1", "planner")->chain, rec.chain);
  EXPECT_EQ(tier->stats().agent_stale, 2u);
  AgentRecord newer{"t1", "planner", {c.keys[0], c.keys[1], c.keys[2]}, 12, 4, 1100};
  tier->PublishAgent(newer);
  ASSERT_TRUE(tier->WaitWritten(5s));
  EXPECT_EQ(tier->FetchAgent("t1", "planner")->chain, newer.chain);
  EXPECT_EQ(tier->stats().agent_writes, 2u);

  // Garbage, and another agent's valid record copied under this key: no record, counted.
  ASSERT_EQ(redis_->Command({"HSET", key, "record", "{not json"}), "0");
  EXPECT_FALSE(tier->FetchAgent("t1", "planner"));
  const std::vector<uint8_t> other = AgentRegistry::Encode({"t1", "coder", {c.keys[0]}, 4, 9, 1});
  ASSERT_EQ(redis_->Command({"HSET", key, "record", std::string(other.begin(), other.end())}), "0");
  EXPECT_FALSE(tier->FetchAgent("t1", "planner"));
  EXPECT_EQ(tier->stats().agent_rejected, 2u);

  // Forgotten: a tombstone of the agent's turns (the stored 4, more than the 2 given) and no record;
  // a record of no more turns — an instance that still knows the agent — is refused, a newer one not.
  tier->ForgetAgent("t1", "planner", 2);
  ASSERT_TRUE(tier->WaitWritten(5s));
  EXPECT_EQ(redis_->Command({"HGET", key, "turns"}), "4");
  EXPECT_EQ(redis_->Command({"HGET", key, "record"}), std::nullopt);
  EXPECT_FALSE(tier->FetchAgent("t1", "planner"));
  tier->PublishAgent(newer);
  ASSERT_TRUE(tier->WaitWritten(5s));
  EXPECT_FALSE(tier->FetchAgent("t1", "planner")) << "turn 4 again: refused";
  newer.turns = 5;
  tier->PublishAgent(newer);
  ASSERT_TRUE(tier->WaitWritten(5s));
  EXPECT_TRUE(tier->FetchAgent("t1", "planner")) << "turn 5: the agent went on";

  // CountPresent: blocks the tier holds, over more than one batch of keys.
  tier->Enqueue(c.Record(0));
  tier->Enqueue(c.Record(2));
  ASSERT_TRUE(tier->WaitWritten(5s));
  std::vector<BlockKey> keys;
  for (int i = 0; i < 20; ++i) keys.push_back(c.keys[static_cast<size_t>(i % 3)]);
  EXPECT_EQ(tier->CountPresent(keys), 13u) << "7 of block 0, 6 of block 2";
  redis_->Stop();
  ASSERT_TRUE(WaitUp(*tier, false));
  EXPECT_FALSE(tier->CountPresent(keys)) << "unknown while down";
  EXPECT_FALSE(tier->FetchAgent("t1", "planner"));
}

// The Redis ACL user docs/operations.md gives kvault is enough for everything the tier does (and
// `kvault cache stats`), and keeps it to its keys.
TEST_F(RedisTierTest, TheDocumentedAclUserCanDoWhatTheTierDoesAndNoMore) {
  ASSERT_EQ(redis_->Command({"ACL", "SETUSER", "kvault", "on", ">s3cret", "~kvault:*", "+get", "+set", "+del", "+ping",
                             "+exists", "+hget", "+hset", "+eval", "+expire", "+scan", "+strlen", "+info"}),
            "OK");
  Chain c;
  RedisTierOptions o;
  o.url = ParseRedisUrl("redis://kvault:s3cret@127.0.0.1:" + std::to_string(redis_->port())).value();
  o.fingerprint = "fp";
  auto tier = std::make_unique<RedisTier>(std::move(o));
  ASSERT_TRUE(WaitUp(*tier, true)) << tier->stats().last_error;
  tier->Enqueue(c.Record(0));
  tier->PublishAgent({"t", "planner", {c.keys[0]}, 4, 1, 1});
  ASSERT_TRUE(tier->WaitWritten(5s));
  EXPECT_EQ(tier->stats().errors, 0u) << tier->stats().last_error;
  std::vector<Status::Code> codes;
  Read(*tier, {c.keys[0]}, &codes);
  EXPECT_EQ(codes, std::vector<Status::Code>{Status::Code::kOk});
  EXPECT_TRUE(tier->FetchAgent("t", "planner"));
  EXPECT_EQ(tier->CountPresent(c.keys), 1u);
  tier->Remove(c.keys[0]);
  tier->ForgetAgent("t", "planner", 1);
  ASSERT_TRUE(tier->WaitWritten(5s));
  EXPECT_EQ(tier->stats().errors, 0u) << tier->stats().last_error;
  EXPECT_EQ(redis_->Keys("kvault:*"), std::vector<std::string>{tier->AgentKeyFor("t", "planner")}) << "its tombstone";
  auto inv = InventoryRedis(ParseRedisUrl("redis://kvault:s3cret@127.0.0.1:" + std::to_string(redis_->port())).value());
  ASSERT_TRUE(inv.ok()) << inv.status().message();
  EXPECT_FALSE(inv->maxmemory_policy.empty());
  // Its keys only; a wrong password is refused with a message that does not show it.
  std::string error;
  RedisConn as_kvault = ConnectRedis(
      ParseRedisUrl("redis://kvault:s3cret@127.0.0.1:" + std::to_string(redis_->port())).value(), 1000, &error);
  ASSERT_TRUE(as_kvault) << error;
  EXPECT_NE(RedisCheck(as_kvault.get(), {"SET", "other:key", "x"}).find("NOPERM"), std::string::npos);
  EXPECT_NE(RedisCheck(as_kvault.get(), {"FLUSHALL"}).find("NOPERM"), std::string::npos);
  RedisTierOptions bad;
  bad.url = ParseRedisUrl("redis://kvault:wrong@127.0.0.1:" + std::to_string(redis_->port())).value();
  bad.fingerprint = "fp";
  RedisTier refused(std::move(bad));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (refused.stats().errors == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  const RemoteTierStats st = refused.stats();
  EXPECT_FALSE(st.up);
  EXPECT_NE(st.last_error.find("WRONGPASS"), std::string::npos) << st.last_error;
  EXPECT_EQ(st.last_error.find("wrong@"), std::string::npos) << st.last_error;
}

// Store B has never seen the agent that store A served twice: B's prefetch for it adopts the
// shared record and so reaches the agent's own partial last block, which the request's tokens
// alone do not name; B's next turn is turn 3 in Redis, and A's late turn does not overwrite it.
TEST_F(RedisTierTest, AStoreAdoptsANewerSharedRecordAndReachesTheAgentsPartialBlock) {
  Chain c;
  const std::vector<int32_t> more = {901, 902, 903};
  auto tail = c.Tail(2, more, 3);
  AgentRecord turn{"", "planner", {c.keys[0], c.keys[1], c.keys[2], tail->key}, 15, 1, 1000};
  auto a = Store();
  ASSERT_TRUE(WaitUp(*a->remote(), true));
  for (size_t i = 0; i < 3; ++i) a->Put(c.Record(i));
  a->Put(tail);
  a->RecordAgent(turn);
  a->RecordAgent(turn);
  ASSERT_TRUE(a->remote()->WaitWritten(5s));
  ASSERT_EQ(a->agents().Snapshot("", "planner")->record.turns, 2u);

  auto b = Store();
  ASSERT_TRUE(WaitUp(*b->remote(), true));
  std::vector<int32_t> toks = c.tokens;
  toks.insert(toks.end(), {901, 902, 777});  // the last turn re-rendered a little differently
  auto anonymous = Wait(b->StartPrefetch(c.Request(0, toks)));
  EXPECT_EQ(anonymous->records.size(), 3u);
  EXPECT_FALSE(anonymous->partial.record) << "no tail block of these tokens is stored";
  EXPECT_EQ(b->agents().size(), 0u);

  auto named = c.Request(0, toks);
  named->agent_id = "planner";
  auto p = Wait(b->StartPrefetch(named));
  EXPECT_EQ(p->records.size(), 3u);
  ASSERT_TRUE(p->partial.record) << "the agent's own partial block, named by the shared record";
  EXPECT_EQ(p->partial.tokens, 2u) << "the two tokens this request shares with it";
  auto adopted = b->agents().Snapshot("", "planner");
  ASSERT_TRUE(adopted);
  EXPECT_EQ(adopted->record.turns, 2u);
  EXPECT_EQ(adopted->record.chain, turn.chain);

  b->RecordAgent(turn);  // B serves turn 3
  ASSERT_TRUE(b->remote()->WaitWritten(5s));
  EXPECT_EQ(b->agents().Snapshot("", "planner")->record.turns, 3u);
  EXPECT_EQ(redis_->Command({"HGET", b->remote()->AgentKeyFor("", "planner"), "turns"}), "3");
  AgentRecord stale = turn;
  stale.chain.pop_back();
  a->RecordAgent(stale);  // A, which missed turn 3, serves a concurrent turn: its turn 3
  ASSERT_TRUE(a->remote()->WaitWritten(5s));
  EXPECT_EQ(a->remote()->stats().agent_stale, 1u);
  EXPECT_EQ(b->remote()->FetchAgent("", "planner")->chain, turn.chain) << "B's turn 3 stays";

  // B forgets the agent: the shared record goes too (a tombstone of turn 3), and B's next
  // prefetch for it adopts nothing; A, which still knows the agent, cannot bring turn 3 back.
  b->ForgetAgent("", "planner");
  ASSERT_TRUE(b->remote()->WaitWritten(5s));
  EXPECT_FALSE(b->remote()->FetchAgent("", "planner"));
  const auto counted = b->RemoteBlocksOf({turn.chain})[0];
  ASSERT_TRUE(counted);
  EXPECT_EQ(counted->held, 4u) << "its blocks stay in Redis (a cache: its LRU decides)";
  EXPECT_EQ(counted->only_there, 4u) << "B's RAM let them go with the agent: only Redis has them";
  Wait(b->StartPrefetch(named));
  EXPECT_FALSE(b->agents().Snapshot("", "planner")) << "nothing adopted back";
  a->remote()->PublishAgent(a->agents().Snapshot("", "planner")->record);  // A's turn 3, late
  ASSERT_TRUE(a->remote()->WaitWritten(5s));
  EXPECT_FALSE(b->remote()->FetchAgent("", "planner"));
  // The id used again on B: its turns count on from the forgotten 3, so it is shared at once.
  b->RecordAgent(turn);
  ASSERT_TRUE(b->remote()->WaitWritten(5s));
  EXPECT_EQ(b->agents().Snapshot("", "planner")->record.turns, 4u);
  ASSERT_TRUE(b->remote()->FetchAgent("", "planner"));
  EXPECT_EQ(b->remote()->FetchAgent("", "planner")->turns, 4u);
}

}  // namespace
}  // namespace kvault

// The remote tier on a Redis Cluster (kvstore/redis_router.h), against 3 real redis-server nodes
// started by the test on loopback ports: hash slots as the cluster computes them, blocks and agent
// records spread over the masters and all found, and MOVED and ASK redirections followed while a
// slot migrates.
#include "kvstore/redis_router.h"

#include <gtest/gtest.h>

#include <thread>

#include "kvstore/kv_store.h"
#include "kvstore/redis_inventory.h"
#include "kvstore/redis_tier.h"
#include "redis_process.h"
#include "test_env.h"
#include "unit/kvstore/kv_store_test_util.h"
#include "unit/kvstore/redis_test_util.h"

namespace kvault {
namespace {

using testing::Chain;
using testing::OpenRemoteStore;
using testing::RedisCluster;
using testing::Wait;
using testing::WaitUp;
using namespace std::chrono_literals;

TEST(RedisRouterTest, SlotsFollowTheClusterSpecification) {
  EXPECT_EQ(RedisRouter::Slot("123456789"), 0x31C3 % 16384);  // the specification's CRC16 check value
  EXPECT_EQ(RedisRouter::Slot("{user1000}.following"), RedisRouter::Slot("{user1000}.followers"));
  EXPECT_EQ(RedisRouter::Slot("foo{bar}{zap}"), RedisRouter::Slot("bar"));
  EXPECT_EQ(RedisRouter::Slot("foo{{bar}}zap"), RedisRouter::Slot("{bar"));
  EXPECT_NE(RedisRouter::Slot("foo{}{bar}"), RedisRouter::Slot("bar")) << "an empty tag: the whole key";
}

class RedisClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    cluster_ = RedisCluster::Start(testing::ScratchDir(std::string("redis-cluster-") + Name()), 3, &error);
    ASSERT_NE(cluster_, nullptr) << error;
    chain_.tokens = testing::Tokens(200, 100);  // 50 blocks of 4 tokens
    chain_.keys = ComputeBlockKeys(chain_.salt, chain_.tokens, 4);
  }
  static std::string Name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }
  std::unique_ptr<RedisTier> Tier() {
    RedisTierOptions o;
    o.url = ParseRedisUrl(cluster_->url()).value();
    o.fingerprint = "fp";
    o.min_backoff_ms = 20;
    o.max_backoff_ms = 200;
    return std::make_unique<RedisTier>(std::move(o));
  }
  // ReadBlocks' answers: Ok or the error code, per key.
  static std::vector<Status::Code> Read(RedisTier& t, const std::vector<BlockKey>& keys) {
    std::vector<Status::Code> codes;
    t.ReadBlocks(keys, [&](size_t, const StatusOr<std::span<const uint8_t>>& b) {
      codes.push_back(b.ok() ? Status::Code::kOk : b.status().code());
      return true;
    });
    return codes;
  }
  std::unique_ptr<RedisCluster> cluster_;
  Chain chain_;
};

TEST_F(RedisClusterTest, TheRoutersSlotsAreTheClustersOwn) {
  for (const std::string key : {"kvault:fp:00ff", "kvault:fp:agent:abc", "a", "{x}y", "foo{}{bar}", "foo{{bar}}zap"}) {
    EXPECT_EQ(cluster_->node(0).Command({"CLUSTER", "KEYSLOT", key}), std::to_string(RedisRouter::Slot(key))) << key;
  }
}

// 50 blocks and an agent record written through the tier land on all three masters, and every one
// is read back (a store's prefetch too); cache stats counts them over the masters.
TEST_F(RedisClusterTest, BlocksSpreadOverTheMastersAndAreAllFound) {
  auto tier = Tier();
  ASSERT_TRUE(WaitUp(*tier, true, 10s)) << tier->stats().last_error;
  for (size_t i = 0; i < chain_.keys.size(); ++i) tier->Enqueue(chain_.Record(i));
  tier->PublishAgent({"t", "planner", chain_.keys, 200, 1, 1});
  ASSERT_TRUE(tier->WaitWritten(10s)) << tier->stats().last_error;
  EXPECT_EQ(tier->stats().errors, 0u) << tier->stats().last_error;
  size_t total = 0;
  for (size_t i = 0; i < cluster_->size(); ++i) {
    const size_t n = std::stoul(cluster_->node(i).Command({"DBSIZE"}).value_or("0"));
    EXPECT_GT(n, 5u) << "node " << i << " holds its share";
    total += n;
  }
  EXPECT_EQ(total, chain_.keys.size() + 1);
  EXPECT_EQ(Read(*tier, chain_.keys), std::vector<Status::Code>(chain_.keys.size(), Status::Code::kOk));
  EXPECT_EQ(tier->CountPresent(chain_.keys), chain_.keys.size());
  ASSERT_TRUE(tier->FetchAgent("t", "planner"));
  EXPECT_EQ(tier->FetchAgent("t", "planner")->chain, chain_.keys);

  auto store = OpenRemoteStore(cluster_->url());
  ASSERT_TRUE(store);
  ASSERT_TRUE(WaitUp(*store->remote(), true, 10s));
  auto p = Wait(store->StartPrefetch(chain_.Request()));
  EXPECT_EQ(p->records.size(), chain_.keys.size());
  EXPECT_EQ(store->stats().remote_tier.hits, chain_.keys.size());

  auto inv = InventoryRedis(ParseRedisUrl(cluster_->url()).value());
  ASSERT_TRUE(inv.ok()) << inv.status().message();
  EXPECT_EQ(inv->models["fp"].blocks, chain_.keys.size()) << "over all three masters";
  EXPECT_EQ(inv->models["fp"].agents, 1u);
}

// A slot moves from one master to another while the tier runs: during the migration a key already
// moved is answered ASK (followed for that command), after it MOVED (followed, the map read again).
TEST_F(RedisClusterTest, MovedAndAskRedirectionsAreFollowedWhileASlotMigrates) {
  auto tier = Tier();
  ASSERT_TRUE(WaitUp(*tier, true, 10s)) << tier->stats().last_error;
  for (size_t i = 0; i < 4; ++i) tier->Enqueue(chain_.Record(i));
  ASSERT_TRUE(tier->WaitWritten(10s));
  const std::string key = tier->KeyFor(chain_.keys[0]);
  const uint16_t slot = RedisRouter::Slot(key);
  size_t from = SIZE_MAX;
  for (size_t i = 0; i < cluster_->size(); ++i) {
    if (cluster_->node(i).Command({"EXISTS", key}) == "1") from = i;
  }
  ASSERT_NE(from, SIZE_MAX);
  const size_t to = (from + 1) % cluster_->size();
  auto& src = cluster_->node(from);
  auto& dst = cluster_->node(to);
  const std::string s = std::to_string(slot);
  ASSERT_EQ(dst.Command({"CLUSTER", "SETSLOT", s, "IMPORTING", cluster_->Id(from)}), "OK");
  ASSERT_EQ(src.Command({"CLUSTER", "SETSLOT", s, "MIGRATING", cluster_->Id(to)}), "OK");
  ASSERT_EQ(src.Command({"MIGRATE", "127.0.0.1", std::to_string(dst.port()), key, "0", "5000"}), "OK");
  EXPECT_NE(src.Command({"EXISTS", key}), "1") << "the source no longer has it (it answers ASK)";

  // Migrating: the source answers ASK for the moved key; the tier asks the target.
  EXPECT_EQ(Read(*tier, {chain_.keys[0], chain_.keys[1]}), std::vector<Status::Code>(2, Status::Code::kOk));

  // Done: the slot is the target's; the source answers MOVED.
  for (size_t i = 0; i < cluster_->size(); ++i) {
    ASSERT_EQ(cluster_->node(i).Command({"CLUSTER", "SETSLOT", s, "NODE", cluster_->Id(to)}), "OK") << i;
  }
  EXPECT_EQ(Read(*tier, {chain_.keys[0]}), std::vector<Status::Code>{Status::Code::kOk});
  EXPECT_EQ(Read(*tier, {chain_.keys[0], chain_.keys[2]}), std::vector<Status::Code>(2, Status::Code::kOk))
      << "the map read again";
  // Writes follow too: the key's DEL lands on its new master.
  ASSERT_EQ(tier->Remove(chain_.keys[0]).code(), Status::Code::kOk);
  ASSERT_TRUE(tier->WaitWritten(10s));
  EXPECT_EQ(dst.Command({"EXISTS", key}), "0");
  const RemoteTierStats st = tier->stats();
  EXPECT_EQ(st.errors, 0u) << st.last_error;
  EXPECT_TRUE(st.up);
}

}  // namespace
}  // namespace kvault

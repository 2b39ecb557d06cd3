#include "server/response_store.h"

#include <gtest/gtest.h>

#include "test_env.h"
#include "unit/core/synced_dirs.h"

namespace kvault {
namespace {

using json = nlohmann::json;

StoredResponse Turn(const std::string& id, const std::string& prev, const std::string& text) {
  StoredResponse r;
  r.id = id;
  r.tenant = "t1";
  r.agent = "chain";
  r.previous_response_id = prev;
  r.items = json::array({{{"role", "user"}, {"content", text}}});
  r.response = {{"id", id}};
  return r;
}

void ChainAndTenants(ResponseStore& store) {
  ASSERT_TRUE(store.Put(Turn("resp_a", "", "one")).ok());
  ASSERT_TRUE(store.Put(Turn("resp_b", "resp_a", "two")).ok());
  auto h = store.History("t1", "resp_b");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_EQ(h->first.size(), 2u);
  EXPECT_EQ(h->first[0]["content"], "one");  // oldest first
  EXPECT_EQ(h->second, "chain");
  EXPECT_EQ(store.Get("t2", "resp_a").status().code(), Status::Code::kNotFound);  // another tenant
  EXPECT_EQ(store.History("t2", "resp_b").status().code(), Status::Code::kNotFound);
  ASSERT_TRUE(store.Delete("t1", "resp_a").ok());
  EXPECT_EQ(store.Get("t1", "resp_a").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(store.History("t1", "resp_b").status().code(), Status::Code::kNotFound);  // a broken chain
  EXPECT_EQ(store.Delete("t1", "resp_a").code(), Status::Code::kNotFound);
}

TEST(ResponseStoreTest, ChainsAreReadOldestFirstAndTenantsNeverSeeEachOther) {
  ResponseStore memory({});
  ChainAndTenants(memory);
  ResponseStore disk(testing::ScratchDir("response-store"));
  ChainAndTenants(disk);
}

// A new responses directory (and a new data directory above it) is made durable in its parent
// before the first record is acknowledged.
TEST(ResponseStoreTest, ANewDirectoryIsSyncedInItsParent) {
  const auto base = testing::ScratchDir("response-store-dir-sync").lexically_normal();
  testing::SyncedDirs synced;
  ResponseStore store(base / "data" / "responses");
  ASSERT_TRUE(store.Put(Turn("resp_a", "", "one")).ok());
  EXPECT_TRUE(synced.Contains(base)) << "the data directory's entry";
  EXPECT_TRUE(synced.Contains(base / "data")) << "the responses directory's entry";
}

TEST(ResponseStoreTest, RecordsSurviveANewStoreOverTheSameDirectory) {
  const auto dir = testing::ScratchDir("response-store-durable");
  ASSERT_TRUE(ResponseStore(dir).Put(Turn("resp_x", "", "kept")).ok());
  auto r = ResponseStore(dir).Get("t1", "resp_x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->items[0]["content"], "kept");
  EXPECT_EQ(r->response["id"], "resp_x");
}

}  // namespace
}  // namespace kvault

#include "kvstore/redis_inventory.h"

#include <hiredis/hiredis.h>

#include <cstdlib>
#include <sstream>
#include <vector>

#include "kvstore/block_key.h"
#include "kvstore/redis_connection.h"
#include "kvstore/redis_router.h"

namespace kvault {

namespace {

// "field:value" lines of an INFO reply.
std::map<std::string, std::string> InfoFields(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon != std::string::npos && line[0] != '#') out[line.substr(0, colon)] = line.substr(colon + 1);
  }
  return out;
}

// SCAN over one node's `kvault:*` keys, counted into `inv`.
Status Scan(redisContext* c, RemoteInventory* inv) {
  std::string error;
  std::string cursor = "0";
  do {
    RedisReplyPtr r = RedisCommand(c, {"SCAN", cursor, "MATCH", "kvault:*", "COUNT", "1000"}, &error);
    if (!r) return Status::Unavailable(error);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return Status::IOError("redis SCAN: unexpected reply");
    cursor.assign(r->element[0]->str, r->element[0]->len);
    const redisReply* keys = r->element[1];
    // The block keys of this batch, their sizes asked for in one round trip.
    std::vector<std::string> blocks;
    for (size_t i = 0; i < keys->elements; ++i) {
      const std::string k(keys->element[i]->str, keys->element[i]->len);
      // kvault:<fingerprint>:<block key hex> or kvault:<fingerprint>:agent:<hash>
      const size_t a = k.find(':'), b = k.find(':', a + 1);
      BlockKey key;
      if (b == std::string::npos) {
        ++inv->other_keys;
      } else if (k.compare(b + 1, 6, "agent:") == 0) {
        ++inv->models[k.substr(a + 1, b - a - 1)].agents;
      } else if (BlockKey::FromHex(k.substr(b + 1), &key)) {
        blocks.push_back(k);
      } else {
        ++inv->other_keys;
      }
    }
    for (const auto& k : blocks) redisAppendCommand(c, "STRLEN %b", k.data(), k.size());
    for (const auto& k : blocks) {
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK) return Status::Unavailable(RedisConnError(c, "STRLEN"));
      RedisReplyPtr len(static_cast<redisReply*>(raw), freeReplyObject);
      if (len->type != REDIS_REPLY_INTEGER || len->integer == 0) continue;  // evicted meanwhile, or not a string
      const size_t a = k.find(':'), b = k.find(':', a + 1);
      RemoteModelInventory& m = inv->models[k.substr(a + 1, b - a - 1)];
      ++m.blocks;
      m.bytes += static_cast<uint64_t>(len->integer);
    }
  } while (cursor != "0");
  return Status::Ok();
}

}  // namespace

StatusOr<RemoteInventory> InventoryRedis(const RedisUrl& url, uint32_t timeout_ms) {
  std::string error;
  RedisRouter router(url, timeout_ms);
  const std::vector<redisContext*> masters = router.Masters(&error);
  if (masters.empty()) return Status::Unavailable(url.Redacted() + ": " + error);
  RemoteInventory inv;
  for (redisContext* c : masters) {
    if (Status s = Scan(c, &inv); !s.ok()) return s;
  }
  // INFO of every master: memory and evictions summed over a cluster's masters.
  std::map<std::string, uint64_t> sums;
  for (redisContext* c : masters) {
    for (const char* section : {"memory", "stats"}) {
      RedisReplyPtr r = RedisCommand(c, {"INFO", section}, &error);
      if (!r) return Status::Unavailable(error);
      if (r->type != REDIS_REPLY_STRING) continue;  // not allowed: not shown
      auto f = InfoFields(std::string(r->str, r->len));
      for (const char* field : {"used_memory", "maxmemory", "evicted_keys"}) {
        if (f.count(field)) sums[field] += std::strtoull(f[field].c_str(), nullptr, 10);
      }
      if (f.count("maxmemory_policy")) inv.maxmemory_policy = f["maxmemory_policy"];
    }
  }
  if (sums.count("used_memory")) inv.used_memory = std::to_string(sums["used_memory"]);
  if (sums.count("maxmemory")) inv.maxmemory = std::to_string(sums["maxmemory"]);
  if (sums.count("evicted_keys")) inv.evicted_keys = std::to_string(sums["evicted_keys"]);
  return inv;
}

}  // namespace kvault

// RedisInventory: what a Redis used as kvault's remote tier (redis_tier.h) holds — blocks, their
// bytes and shared agent records per model fingerprint — and how it is run (memory used and its
// limit, eviction policy, keys evicted). For `kvault cache stats --remote-cache URL`: reads only
// (SCAN over `kvault:*` on every master, STRLEN, INFO), safe on a Redis a fleet is using.
//
// Stateless; any thread (it opens a connection of its own).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/status.h"
#include "kvstore/redis_url.h"

namespace kvault {

struct RemoteModelInventory {
  uint64_t blocks = 0, bytes = 0;  // block values and their bytes
  uint64_t agents = 0;             // shared agent records
};

struct RemoteInventory {
  std::map<std::string, RemoteModelInventory> models;  // by fingerprint
  uint64_t other_keys = 0;                             // under `kvault:` but not of this layout
  // From INFO (bytes and counts summed over a cluster's masters): "" where the server does not say
  // (or the user may not ask).
  std::string used_memory, maxmemory, maxmemory_policy, evicted_keys;
};

// Unavailable when the server cannot be reached (the error names it, never the password).
StatusOr<RemoteInventory> InventoryRedis(const RedisUrl& url, uint32_t timeout_ms = 5000);

}  // namespace kvault

// Helpers of the remote tier's tests (redis_tier_test.cpp, redis_router_test.cpp): waiting for a
// tier's state, and a RAM-only store over a Redis.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "kvstore/kv_store.h"
#include "kvstore/redis_tier.h"

namespace kvault::testing {

// Waits until the tier is up (or down); true when reached within `timeout`.
inline bool WaitUp(const RedisTier& t, bool up, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (t.stats().up != up) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A store with 1 MiB of RAM, no disk, model fingerprint "fp", and `remote_cache` below its RAM.
inline std::unique_ptr<KvStore> OpenRemoteStore(const std::string& remote_cache) {
  KvStoreOptions o;
  o.ram_bytes = 1 << 20;
  o.fingerprint = "fp";
  o.remote_cache = remote_cache;
  auto s = KvStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s.value()) : nullptr;
}

}  // namespace kvault::testing

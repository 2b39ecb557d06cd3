// Helpers for the KV store's tests: a chain of blocks of 4 tokens (records, tail blocks, prefetch
// requests), a store in a directory, and waiting for a prefetch.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "kvstore/kv_store.h"

namespace kvault::testing {

inline std::vector<int32_t> Tokens(int n, int from) {
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

inline std::shared_ptr<Prefetch> Wait(std::shared_ptr<Prefetch> p) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!p->done.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Not done: the test fails here instead of hanging (the I/O thread still owns `p`, kept alive).
  EXPECT_TRUE(p->done.load()) << "the prefetch never finished";
  return p;
}

inline std::unique_ptr<KvStore> OpenStore(const std::filesystem::path& dir, uint64_t ram = 1 << 20,
                                          uint64_t disk = 10ull << 30, uint32_t probe_interval_ms = 2000) {
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
inline void StoreBlock0(const std::filesystem::path& dir, const Chain& c) {
  auto store = OpenStore(dir);
  store->Put(c.Record(0));
  store->Flush();
}

}  // namespace kvault::testing

// MemoryTier: a BlockTier (kvstore/tier.h) in a map, for tests of the units that use the
// interface (block_lookup, write_behind). It records every ReadBlocks call, can fail its writes,
// and can act as a tier without a local index (MayContain true for every key: a remote cache).
#pragma once

#include <map>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kvstore/tier.h"

namespace kvault::testing {

class MemoryTier : public BlockTier {
 public:
  const char* name() const override { return "memory"; }
  bool Contains(const BlockKey& key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    return blocks_.count(key) > 0;
  }
  bool MayContain(const BlockKey& key) const override { return may_contain_all_ || Contains(key); }
  uint64_t SizeOf(const BlockKey& key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(key);
    return it == blocks_.end() ? 0 : it->second.size();
  }
  void Touch(const BlockKey& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    touched_.push_back(key);
  }
  void ReadBlocks(std::span<const BlockKey> keys, const ReadSink& sink) override {
    std::vector<StatusOr<std::vector<uint8_t>>> got;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reads_.emplace_back(keys.begin(), keys.end());
      for (const BlockKey& k : keys) {
        auto it = blocks_.find(k);
        if (it == blocks_.end()) {
          got.emplace_back(Status::NotFound("not in memory"));
        } else {
          got.emplace_back(it->second);
        }
      }
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      const bool go_on = got[i].ok() ? sink(i, std::span<const uint8_t>(got[i].value())) : sink(i, got[i].status());
      if (!go_on) return;
    }
  }
  Status Write(const BlockKey& key, std::span<const uint8_t> bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++write_calls_;
    if (fail_writes_) return Status::IOError("memory tier: writes fail");
    blocks_[key].assign(bytes.begin(), bytes.end());
    return Status::Ok();
  }
  Status Remove(const BlockKey& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    blocks_.erase(key);
    return Status::Ok();
  }
  void Reject(const BlockKey& key, const std::string& why) override {
    std::lock_guard<std::mutex> lock(mu_);
    blocks_.erase(key);
    rejected_.push_back(why);
  }
  Status Probe() override {
    std::lock_guard<std::mutex> lock(mu_);
    ++probes_;
    return fail_writes_ ? Status::IOError("memory tier: probe fails") : Status::Ok();
  }
  uint64_t wipes() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return wipes_;
  }

  // Test controls and records.
  void Set(const BlockKey& key, std::vector<uint8_t> bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    blocks_[key] = std::move(bytes);
  }
  void FailWrites(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_writes_ = fail;
  }
  void Wipe() {
    std::lock_guard<std::mutex> lock(mu_);
    blocks_.clear();
    ++wipes_;
  }
  void set_may_contain_all(bool all) { may_contain_all_ = all; }
  std::vector<std::vector<BlockKey>> reads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reads_;
  }
  std::vector<std::string> rejected() const {
    std::lock_guard<std::mutex> lock(mu_);
    return rejected_;
  }
  std::vector<BlockKey> touched() const {
    std::lock_guard<std::mutex> lock(mu_);
    return touched_;
  }
  size_t write_calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return write_calls_;
  }
  size_t probes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return probes_;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return blocks_.size();
  }

 private:
  mutable std::mutex mu_;
  std::map<BlockKey, std::vector<uint8_t>> blocks_;
  std::vector<std::vector<BlockKey>> reads_;
  std::vector<std::string> rejected_;
  std::vector<BlockKey> touched_;
  bool fail_writes_ = false;
  bool may_contain_all_ = false;
  size_t write_calls_ = 0, probes_ = 0;
  uint64_t wipes_ = 0;
};

}  // namespace kvault::testing

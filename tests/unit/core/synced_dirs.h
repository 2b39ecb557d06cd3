// Test helper: records every directory core/fs_sync's SyncDir fsyncs while it lives, to check
// that a new directory's entry is made durable in its parent; can make chosen fsyncs fail.
#pragma once

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <vector>

#include "core/fs_sync.h"

namespace kvault::testing {

class SyncedDirs {
 public:
  SyncedDirs() {
    SetSyncDirHookForTesting([this](const std::filesystem::path& d) {
      std::lock_guard<std::mutex> lock(mu_);
      if (std::find(failing_.begin(), failing_.end(), d.lexically_normal()) != failing_.end()) return false;
      dirs_.push_back(d.lexically_normal());
      return true;
    });
  }
  ~SyncedDirs() { SetSyncDirHookForTesting({}); }
  SyncedDirs(const SyncedDirs&) = delete;
  SyncedDirs& operator=(const SyncedDirs&) = delete;

  std::vector<std::filesystem::path> dirs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dirs_;
  }
  // fsyncs of `dir` fail (not recorded) until Heal.
  void Fail(const std::filesystem::path& dir) {
    std::lock_guard<std::mutex> lock(mu_);
    failing_.push_back(dir.lexically_normal());
  }
  void Heal() {
    std::lock_guard<std::mutex> lock(mu_);
    failing_.clear();
  }
  bool Contains(const std::filesystem::path& dir) const {
    const auto all = dirs();
    return std::find(all.begin(), all.end(), dir.lexically_normal()) != all.end();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::filesystem::path> dirs_;
  std::vector<std::filesystem::path> failing_;
};

}  // namespace kvault::testing

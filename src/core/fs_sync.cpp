#include "core/fs_sync.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

namespace kvault {

namespace fs = std::filesystem;

namespace {

std::mutex& HookMutex() {
  static std::mutex mu;
  return mu;
}

std::function<bool(const fs::path&)>& Hook() {
  static std::function<bool(const fs::path&)> hook;
  return hook;
}

// Directories made here whose parent's fsync failed: synced again by the next call that needs them.
std::mutex& UnsyncedMutex() {
  static std::mutex mu;
  return mu;
}

std::set<fs::path>& Unsynced() {
  static std::set<fs::path> dirs;
  return dirs;
}

}  // namespace

void SetSyncDirHookForTesting(std::function<bool(const fs::path&)> hook) {
  std::lock_guard<std::mutex> lock(HookMutex());
  Hook() = std::move(hook);
}

Status SyncDir(const fs::path& dir) {
  const fs::path d = dir.empty() ? fs::path(".") : dir;
  {
    std::lock_guard<std::mutex> lock(HookMutex());
    if (Hook() && !Hook()(d)) return Status::IOError("fsync directory " + d.string() + ": failed (test hook)");
  }
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open directory " + d.string() + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::IOError("fsync directory " + d.string() + ": " + std::strerror(err));
  return Status::Ok();
}

StatusOr<int> CreateDirsDurably(const fs::path& dir) {
  fs::path p = dir;
  if (!p.empty() && p.filename().empty()) p = p.parent_path();  // "a/b/" -> "a/b"
  // The missing levels, deepest first.
  std::vector<fs::path> missing;
  for (; !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        return Status::IOError("cannot create directory " + dir.string() + ": " + p.string() + " is not a directory");
      break;
    }
    if (errno != ENOENT)
      return Status::IOError("cannot create directory " + dir.string() + ": " + p.string() + ": " +
                             std::strerror(errno));
    missing.push_back(p);
    if (p == p.parent_path()) break;  // a root that does not exist: mkdir reports it
  }
  // Levels that exist but whose entry an earlier call could not make durable: again, top down.
  {
    std::lock_guard<std::mutex> lock(UnsyncedMutex());
    if (!Unsynced().empty()) {
      std::vector<fs::path> retry;
      for (fs::path q = p; !q.empty(); q = q.parent_path()) {
        if (Unsynced().count(q)) retry.push_back(q);
        if (q == q.parent_path()) break;
      }
      for (auto it = retry.rbegin(); it != retry.rend(); ++it) {
        if (Status s = SyncDir(it->parent_path()); !s.ok()) return s;
        Unsynced().erase(*it);
      }
    }
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    // 0777: the umask decides, as for any directory a program makes.
    if (::mkdir(it->c_str(), 0777) != 0) {
      const int err = errno;
      struct stat st {};
      if (err != EEXIST || ::stat(it->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return Status::IOError("cannot create directory " + it->string() + ": " + std::strerror(err));
      }
    }
    if (Status s = SyncDir(it->parent_path()); !s.ok()) {
      std::lock_guard<std::mutex> lock(UnsyncedMutex());
      Unsynced().insert(*it);  // it exists now: the next call must not take it as durable
      return s;
    }
  }
  return static_cast<int>(missing.size());
}

}  // namespace kvault

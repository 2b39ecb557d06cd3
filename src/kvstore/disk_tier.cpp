#include "kvstore/disk_tier.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/fs_sync.h"

namespace kvault {

namespace fs = std::filesystem;

namespace {

constexpr const char* kExt = ".safetensors";

Status WriteAllAndSync(const fs::path& path, std::span<const uint8_t> bytes, uint32_t pause_ms) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot create " + path.string() + ": " + std::strerror(errno));
  size_t off = 0;
  const size_t half = pause_ms ? bytes.size() / 2 : bytes.size();
  bool paused = pause_ms == 0;
  while (off < bytes.size()) {
    if (off == half && !paused) {
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
      paused = true;
    }
    const size_t end = off < half ? half : bytes.size();
    const ssize_t n = ::write(fd, bytes.data() + off, end - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      return Status::IOError("write " + path.string() + ": " + err);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    return Status::IOError("fsync " + path.string() + ": " + err);
  }
  ::close(fd);
  return Status::Ok();
}

}  // namespace

Status WriteFileDurably(const fs::path& path, std::span<const uint8_t> bytes, uint32_t pause_ms) {
  // A new directory's own entry must be durable too (each level created), or the file can
  // vanish with it.
  if (auto made = CreateDirsDurably(path.parent_path()); !made.ok()) return made.status();
  std::error_code ec;
  const fs::path tmp = path.string() + ".tmp";
  Status s = WriteAllAndSync(tmp, bytes, pause_ms);
  if (s.ok()) {
    fs::rename(tmp, path, ec);
    if (ec) s = Status::IOError("rename " + tmp.string() + ": " + ec.message());
  }
  if (!s.ok()) {
    fs::remove(tmp, ec);
    return s;
  }
  return SyncDir(path.parent_path());  // an error: the rename may not survive a power loss
}

DiskTier::DiskTier(fs::path root, uint64_t limit_bytes) : root_(std::move(root)), limit_(limit_bytes) {}

DiskTier::~DiskTier() {
  if (lock_fd_ < 0) return;
  StampUseOrder();
  ::close(lock_fd_);  // releases the flock
}

void DiskTier::StampUseOrder() {
  // From the least recently used touched key on, every file gets a modification time one
  // microsecond after the previous one, so that the next Open's scan sees the same order.
  std::lock_guard<std::mutex> lock(mu_);
  if (touched_.empty()) return;
  auto it = lru_.begin();
  while (it != lru_.end() && !touched_.count(*it)) ++it;
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME, &now);
  int64_t us = static_cast<int64_t>(now.tv_sec) * 1000000 + now.tv_nsec / 1000;
  for (; it != lru_.end(); ++it, ++us) {
    struct timespec times[2];
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_OMIT;  // access time unchanged
    times[1].tv_sec = static_cast<time_t>(us / 1000000);
    times[1].tv_nsec = static_cast<long>(us % 1000000) * 1000;
    ::utimensat(AT_FDCWD, PathFor(*it).c_str(), times, 0);  // best effort: only the order is at stake
  }
  touched_.clear();
}

fs::path DiskTier::PathFor(const BlockKey& key) const {
  const std::string hex = key.Hex();
  return root_ / hex.substr(0, 2) / (hex + kExt);
}

Status DiskTier::Open(Mode mode) {
  mode_ = mode;
  std::error_code ec;
  if (mode == Mode::kOwner) {
    // The model's directory (and the cache directory, when new) made durable in its parent: sync
    // durability promises every acknowledged turn, and a turn's files live below this entry.
    if (auto made = CreateDirsDurably(root_); !made.ok()) return made.status();
    if (lock_fd_ < 0) {
      const fs::path lock_path = root_ / ".lock";
      // Read-only: a file open for writing would keep the filesystem from being remounted read-only.
      const int fd = ::open(lock_path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return Status::IOError("cannot create " + lock_path.string() + ": " + std::strerror(errno));
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        ::close(fd);
        if (err == EWOULDBLOCK) {
          return Status::Unavailable("cache directory " + root_.string() +
                                     " is in use by another kvault process (or another model entry with the same "
                                     "model file and KV settings)");
        }
        return Status::IOError("cannot lock " + lock_path.string() + ": " + std::strerror(err));
      }
      lock_fd_ = fd;
    }
  }
  struct Found {
    BlockKey key;
    uint64_t size;
    fs::file_time_type mtime;
  };
  std::vector<Found> found;
  uint64_t temps = 0;
  for (auto it = fs::recursive_directory_iterator(root_, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() == "quarantine") {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    if (name.find(".tmp") != std::string::npos) {  // an interrupted write (or, read-only, one in flight)
      if (mode == Mode::kOwner) {
        fs::remove(it->path(), ec);
        ++temps;
      }
      continue;
    }
    BlockKey key;
    if (name.size() != 32 + std::strlen(kExt) || name.compare(32, std::string::npos, kExt) != 0 ||
        !BlockKey::FromHex(name.substr(0, 32), &key)) {
      continue;
    }
    found.push_back({key, it->file_size(ec), it->last_write_time(ec)});
  }
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.mtime < b.mtime; });
  std::lock_guard<std::mutex> lock(mu_);
  index_.clear();
  lru_.clear();
  stats_.bytes = 0;
  for (const Found& f : found) {
    lru_.push_back(f.key);
    index_[f.key] = Entry{f.size, std::prev(lru_.end())};
    stats_.bytes += f.size;
  }
  stats_.blocks = index_.size();
  stats_.temp_files_removed += temps;
  touched_.clear();
  if (mode == Mode::kOwner) {
    std::error_code ec;
    for (const BlockKey& victim : EnforceLimitLocked()) fs::remove(PathFor(victim), ec);  // nobody else runs yet
  }
  return Status::Ok();
}

bool DiskTier::Contains(const BlockKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.count(key) > 0;
}

void DiskTier::Touch(const BlockKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  TouchLocked(key);
}

void DiskTier::TouchLocked(const BlockKey& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  lru_.splice(lru_.end(), lru_, it->second.lru);
  if (mode_ == Mode::kOwner) touched_.insert(key);
}

StatusOr<std::vector<uint8_t>> DiskTier::Read(const BlockKey& key) {
  std::vector<uint8_t> bytes;
  auto n = ReadInto(key, &bytes);
  if (!n.ok()) return n.status();
  bytes.resize(*n);
  return bytes;
}

StatusOr<size_t> DiskTier::ReadInto(const BlockKey& key, std::vector<uint8_t>* buf) {
  const fs::path path = PathFor(key);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) Forget(key);  // deleted behind our back: no longer stored
    return Status::NotFound("cannot open block file " + path.string() + ": " + std::strerror(err));
  }
  struct stat st {};
  size_t size = 0;
  if (::fstat(fd, &st) == 0) size = static_cast<size_t>(st.st_size);
  if (buf->size() < size) buf->resize(size);
  size_t off = 0;
  while (off < size) {
    const ssize_t n = ::read(fd, buf->data() + off, size - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.reads;
  stats_.read_bytes += off;
  TouchLocked(key);
  return off;
}

void DiskTier::ReadBlocks(std::span<const BlockKey> keys, const ReadSink& sink) {
  std::lock_guard<std::mutex> lock(read_mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!Contains(keys[i])) {
      if (!sink(i, Status::NotFound("block " + keys[i].Hex() + " is not on disk"))) return;
      continue;
    }
    const StatusOr<size_t> n = ReadInto(keys[i], &read_buf_);
    if (!n.ok()) {
      if (!sink(i, n.status())) return;
      continue;
    }
    if (!sink(i, std::span<const uint8_t>(read_buf_.data(), n.value()))) return;
  }
}

Status DiskTier::Write(const BlockKey& key, std::span<const uint8_t> bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.count(key)) {  // content-addressed: already there
      TouchLocked(key);
      return Status::Ok();
    }
  }
  std::error_code ec;
  if (!fs::exists(root_, ec)) {
    // The directory was deleted while we ran: every indexed file went with it. Start again empty.
    std::lock_guard<std::mutex> lock(mu_);
    spdlog::warn("kv store: cache directory {} vanished; {} block(s) lost, starting it again", root_.string(),
                 index_.size());
    index_.clear();
    lru_.clear();
    touched_.clear();
    stats_.bytes = 0;
    stats_.blocks = 0;
    ++stats_.dir_lost;
  }
  const fs::path path = PathFor(key);
  Status s = WriteFileDurably(path, bytes, write_pause_ms_);
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.write_errors;
    return s;
  }
  std::vector<BlockKey> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lru_.push_back(key);
    index_[key] = Entry{bytes.size(), std::prev(lru_.end())};
    stats_.bytes += bytes.size();
    stats_.blocks = index_.size();
    ++stats_.writes;
    stats_.write_bytes += bytes.size();
    victims = EnforceLimitLocked();
  }
  // Out of the lock: the engine thread's Contains/Touch need not wait for unlinks. Only this
  // (the I/O) thread writes, so no victim's key can be written again before its file is gone.
  for (const BlockKey& victim : victims) fs::remove(PathFor(victim), ec);
  return Status::Ok();
}

std::vector<BlockKey> DiskTier::EnforceLimitLocked() {
  std::vector<BlockKey> victims;
  while (stats_.bytes > limit_ && !lru_.empty()) {
    victims.push_back(lru_.front());
    EraseLocked(victims.back());
    ++stats_.gc_deleted;
  }
  return victims;
}

bool DiskTier::EraseLocked(const BlockKey& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  stats_.bytes -= it->second.size;
  lru_.erase(it->second.lru);
  index_.erase(it);
  touched_.erase(key);
  stats_.blocks = index_.size();
  return true;
}

void DiskTier::Quarantine(const BlockKey& key, const std::string& why) {
  std::error_code ec;
  const fs::path q = root_ / "quarantine";
  fs::create_directories(q, ec);
  fs::rename(PathFor(key), q / (key.Hex() + kExt), ec);
  spdlog::warn("kv store: block {} moved to quarantine: {}", key.Hex(), why);
  std::lock_guard<std::mutex> lock(mu_);
  EraseLocked(key);
  ++stats_.quarantined;
}

void DiskTier::Forget(const BlockKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (EraseLocked(key)) ++stats_.vanished;
}

Status DiskTier::Probe() {
  const fs::path probe = root_ / "write-probe";
  Status s = WriteFileDurably(probe, std::vector<uint8_t>(4096, 0));
  std::error_code ec;
  fs::remove(probe, ec);
  return s;
}

Status DiskTier::Remove(const BlockKey& key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!EraseLocked(key)) return Status::Ok();
  }
  std::error_code ec;
  fs::remove(PathFor(key), ec);
  if (ec) return Status::IOError("remove " + PathFor(key).string() + ": " + ec.message());
  return Status::Ok();
}

uint64_t DiskTier::SizeOf(const BlockKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  return it == index_.end() ? 0 : it->second.size;
}

DiskTierStats DiskTier::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace kvault

// DiskTier: KV blocks as one immutable safetensors file each, named by key, under
//   <cache-dir>/<model fingerprint>/<first two hex digits of the key>/<key>.safetensors
//
// Writes are atomic and durable: temp file → fsync → rename → fsync directory, so a crash leaves
// either the whole file or none (temp files are removed at Open). One process owns a directory at
// a time (an flock on <dir>/.lock, held while the tier lives): a second server, or a second
// model entry with the same fingerprint, is refused instead of deleting the first one's temp
// files and racing its index. The index (key → size, in least-recently-used order: writes,
// reads and Touch — the store's RAM hits — count as uses) is rebuilt by scanning at Open, in
// file modification time order; the owner stamps the files' times in use order when it closes,
// so the order survives a restart. Over the size limit, least recently used files are deleted. Unreadable or corrupt
// files are moved to <root>/quarantine and counted. A cache directory deleted while the server runs is noticed at the
// next write and started again empty; files deleted one by one are dropped from the index when read.
//
// The KV store reaches it as one of its tiers below RAM (tier.h: BlockTier); `kvault cache`
// (cli/cache_command) opens it directly. Internally synchronised: lookups from the engine thread,
// I/O from the store's thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <list>
#include <mutex>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/status.h"
#include "kvstore/block_key.h"
#include "kvstore/tier.h"

namespace kvault {

struct DiskTierStats {
  uint64_t blocks = 0;
  uint64_t bytes = 0;
  uint64_t writes = 0;
  uint64_t write_bytes = 0;
  uint64_t reads = 0;
  uint64_t read_bytes = 0;
  uint64_t quarantined = 0;
  uint64_t gc_deleted = 0;
  uint64_t write_errors = 0;
  uint64_t temp_files_removed = 0;
  uint64_t vanished = 0;  // indexed files found missing when read (deleted behind our back)
  uint64_t dir_lost = 0;  // times the whole directory was found deleted and started again
};

// Writes `bytes` to `path` durably and atomically: a temp file, fsync, rename, fsync of the
// directory. Readers see the old file or the new one, never a part. `pause_ms` (fault injection,
// tests): sleep that long with half of the bytes in the temp file, so that a crash test can kill
// the process while a write is torn.
Status WriteFileDurably(const std::filesystem::path& path, std::span<const uint8_t> bytes, uint32_t pause_ms = 0);

class DiskTier final : public BlockTier {
 public:
  DiskTier(std::filesystem::path root, uint64_t limit_bytes);
  ~DiskTier() override;  // the owner stamps modification times in use order, then unlocks
  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  enum class Mode {
    kOwner,     // a server or `kvault cache gc`: locks the directory, removes temp files, enforces the limit
    kReadOnly,  // `kvault cache ls/stats`: scans only (a running server may own the directory)
  };
  // kOwner: creates the directory, takes its lock (Unavailable when another process holds it),
  // removes temp files of interrupted writes, scans the index. kReadOnly: scans the index.
  Status Open(Mode mode = Mode::kOwner);

  // BlockTier (tier.h).
  const char* name() const override { return "disk"; }
  bool Contains(const BlockKey& key) const override;
  // The block was used (from the store's RAM copy): it moves to the most recently used end.
  void Touch(const BlockKey& key) override;
  // Reads the files one after another into one buffer reused from call to call (reads are
  // serialised); a key the index lacks is NotFound without touching the file system.
  void ReadBlocks(std::span<const BlockKey> keys, const ReadSink& sink) override;
  // Quarantine().
  void Reject(const BlockKey& key, const std::string& why) override { Quarantine(key, why); }
  uint64_t wipes() const override { return stats().dir_lost; }

  StatusOr<std::vector<uint8_t>> Read(const BlockKey& key);
  // Read into a caller's buffer that is reused from call to call: it only grows, so a steady
  // stream of reads allocates, zero-fills and page-faults nothing. Returns the file's length
  // (the bytes at the front of *buf).
  StatusOr<size_t> ReadInto(const BlockKey& key, std::vector<uint8_t>* buf);
  // One thread writes (the store's I/O thread): the files of keys the size limit drops are
  // deleted after the lock is released, which is safe only while no other thread can write them.
  Status Write(const BlockKey& key, std::span<const uint8_t> bytes) override;
  // Fault injection (tests, --debug-slow-disk-ms): every block write pauses this long halfway
  // through its temp file (WriteFileDurably's pause_ms). Set before writes start.
  void set_write_pause_ms(uint32_t ms) { write_pause_ms_ = ms; }
  // Moves a bad file aside (kept for inspection, no longer indexed).
  void Quarantine(const BlockKey& key, const std::string& why);
  // Deletes a block's file (an agent was forgotten). Ok when it was not there.
  Status Remove(const BlockKey& key) override;
  // Drops a block from the index whose file is gone (not deleted by us).
  void Forget(const BlockKey& key);
  // Writes and removes a small file: can blocks be written again (after a full or read-only disk)?
  Status Probe() override;
  // Size of a stored block's file; 0 when not stored.
  uint64_t SizeOf(const BlockKey& key) const override;

  DiskTierStats stats() const;
  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path PathFor(const BlockKey& key) const;

 private:
  struct Entry {
    uint64_t size;
    std::list<BlockKey>::iterator lru;  // front = least recently used
  };
  void TouchLocked(const BlockKey& key);
  // Drops least recently used keys from the index until the size limit holds; returns them (the
  // caller deletes their files once the lock is released).
  std::vector<BlockKey> EnforceLimitLocked();
  // Drops a key from the index (not its file); false when it was not there.
  bool EraseLocked(const BlockKey& key);
  void StampUseOrder();

  std::filesystem::path root_;
  uint64_t limit_;
  Mode mode_ = Mode::kReadOnly;
  uint32_t write_pause_ms_ = 0;
  int lock_fd_ = -1;
  // Keys used since Open other than by being written: from the oldest of them on, the files'
  // modification times no longer follow the index's order.
  std::unordered_set<BlockKey, BlockKeyHash> touched_;
  mutable std::mutex mu_;
  std::unordered_map<BlockKey, Entry, BlockKeyHash> index_;
  std::list<BlockKey> lru_;
  DiskTierStats stats_;
  std::mutex read_mu_;             // ReadBlocks: one at a time, for its buffer
  std::vector<uint8_t> read_buf_;  // grows only (fresh memory costs page faults: buffer_recycler.h)
};

}  // namespace kvault

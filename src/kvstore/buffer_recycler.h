// BufferRecycler: recycles the memory of KV block buffers instead of handing it back to the kernel.
//
// Why: on a virtual machine a fresh page can be expensive to fault in (this project's machines:
// ~3 ms for the 256 pages of a 1 MiB block, ten times the cost of reading that block from the
// page cache and restoring it into the pool). A store that allocates every block anew spends most
// of a restore — and of every save, on the engine thread — in page faults. So buffers of blocks
// that leave RAM come back here and are reused, and Prefault() fills the recycler ahead of need (the
// engine does so on a helper thread while it loads, for about one context's worth of blocks) so
// that even the first restore after a restart finds its memory ready.
//
// Thread-safe: the engine thread takes buffers for the blocks it saves, the I/O thread for the
// blocks it reads, and whichever thread drops a block's last reference gives its buffer back.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace kvault {

class BufferRecycler {
 public:
  // Keeps at most `max_spare_bytes` of capacity in spare buffers; more is freed.
  explicit BufferRecycler(uint64_t max_spare_bytes) : max_spare_(max_spare_bytes) {}

  // A buffer of `size` bytes (contents unspecified): the smallest spare one whose capacity is
  // enough but not more than twice that, or a new one.
  std::vector<uint8_t> Take(size_t size);
  // Takes back a buffer no one uses any more. Never throws (record deleters call it).
  void Give(std::vector<uint8_t> buffer) noexcept;
  // Adds spare buffers of `size` bytes, every page touched, while the spare capacity stays within
  // `bytes` and the limit, or until `*stop`. Returns how many were added.
  size_t Prefault(size_t size, uint64_t bytes, const std::atomic<bool>* stop = nullptr);

  uint64_t spare_bytes() const;
  uint64_t reused() const;  // Take calls served by a spare buffer

 private:
  mutable std::mutex mu_;
  const uint64_t max_spare_;
  uint64_t spare_bytes_ = 0;
  uint64_t reused_ = 0;
  std::vector<std::vector<uint8_t>> spare_;
};

}  // namespace kvault

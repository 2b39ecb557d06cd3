#include "kvstore/buffer_recycler.h"

#include <algorithm>
#include <cstring>

namespace kvault {

std::vector<uint8_t> BufferRecycler::Take(size_t size) {
  std::vector<uint8_t> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t best = spare_.size();
    for (size_t i = 0; i < spare_.size(); ++i) {
      // Big enough, and not wasting more than half of itself (a small tail block takes new memory
      // rather than pinning a whole block's buffer).
      const size_t cap = spare_[i].capacity();
      if (cap >= size && cap / 2 <= size && (best == spare_.size() || cap < spare_[best].capacity())) best = i;
    }
    if (best < spare_.size()) {
      std::swap(spare_[best], spare_.back());
      out = std::move(spare_.back());
      spare_.pop_back();
      spare_bytes_ -= out.capacity();
      ++reused_;
    }
  }
  out.resize(size);  // within the capacity: no allocation; a new buffer is zero-filled
  return out;
}

void BufferRecycler::Give(std::vector<uint8_t> buffer) noexcept {
  if (buffer.capacity() == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (spare_bytes_ + buffer.capacity() > max_spare_) return;  // freed as it goes out of scope
  try {
    spare_.push_back(std::move(buffer));
    spare_bytes_ += spare_.back().capacity();
  } catch (const std::bad_alloc&) {  // called from deleters: never throws; the buffer is freed
  }
}

size_t BufferRecycler::Prefault(size_t size, uint64_t bytes, const std::atomic<bool>* stop) {
  size_t added = 0;
  while (size > 0 && !(stop && stop->load(std::memory_order_relaxed))) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (spare_bytes_ + size > std::min(bytes, max_spare_)) break;
    }
    std::vector<uint8_t> buffer(size);  // value-initialised: every page written, so faulted in
    std::lock_guard<std::mutex> lock(mu_);
    spare_bytes_ += buffer.capacity();
    spare_.push_back(std::move(buffer));
    ++added;
  }
  return added;
}

uint64_t BufferRecycler::spare_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return spare_bytes_;
}

uint64_t BufferRecycler::reused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reused_;
}

}  // namespace kvault

// LoadEngine: makes the parts of an engine for one model, in order — options checked, the model
// loaded (LlamaRunner), the pool sized (from --pool-tokens, else the KV memory budget and the
// model's K/V row sizes), the KV store's block buffers faulted in on a helper thread while the
// context is created, the context and its KvPool, and the KV store with its KvTransfer (none for
// recurrent/hybrid models, whose per-sequence state cannot be cut into blocks).
//
// Called on the engine thread (which then owns every part); the parts are destroyed in reverse
// order of declaration: the prefault thread stops first, the store flushes, the pool, then llama.
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include "core/status.h"
#include "engine/engine.h"
#include "engine/kv_pool.h"
#include "engine/kv_transfer.h"
#include "engine/llama_runner.h"
#include "engine/scheduler.h"
#include "kvstore/buffer_recycler.h"

namespace kvault {

// Fills a BufferRecycler on a helper thread (below decoding's priority); stops and joins when
// destroyed. Engine thread only.
class BufferPrefault {
 public:
  BufferPrefault(std::shared_ptr<BufferRecycler> pool, size_t block_bytes, uint64_t bytes);
  ~BufferPrefault();
  BufferPrefault(const BufferPrefault&) = delete;
  BufferPrefault& operator=(const BufferPrefault&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct EngineParts {
  std::unique_ptr<LlamaRunner> runner;
  std::unique_ptr<KvPool> pool;
  std::unique_ptr<KvTransfer> transfer;  // null: no KV store (recurrent/hybrid model)
  std::unique_ptr<BufferPrefault> prefault;
  SchedulerOptions scheduling;
  uint32_t ctx_limit = 0;  // tokens of one request (prompt + answer) at most
};

// Scratch llama sequences beyond the resident ones (padding, KV store I/O), and the pool blocks
// kept for them.
inline constexpr uint32_t kScratchSeqs = 2;
inline constexpr uint32_t kScratchBlocks = 2;

StatusOr<EngineParts> LoadEngine(const EngineOptions& options, ModelInfo* info);

}  // namespace kvault

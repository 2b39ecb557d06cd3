// KvTransfer: the bridge between the KV pool and the KV store (vLLM's KV connector). It owns the
// store of one loaded model and states, once, the rules blocks move by:
// - keys: a prompt's full blocks, its last token excluded (its logits are sampled from, so it
//   is always computed), content-addressed under the model fingerprint and the tenant;
// - lookup at intake: the store fetches, from where the resident prefix ends, the leading run of
//   blocks it has and the partial block that continues them (on its I/O thread);
// - restore at admission: from where the resident prefix ends, each full block — the fetched
//   ones, else from RAM (the resident prefix may have changed since intake) — is placed into the
//   request's sequence (LlamaRunner::LoadBlock), replacing a partial resident block (the
//   resident tokens are cut back to the block's start); then a partial block, only when it
//   reaches past the resident tokens, the prompt continues its tokens and leaves the prompt's
//   last token to compute;
// - save when a request ends: every block of its sequence the store lacks — the full ones and
//   the partial last one (a tail block) — serialised (LlamaRunner::SaveBlock) and handed to the
//   store, and the named agent's latest chain recorded.
//
// Engine thread only (the store itself is thread-safe; see kvstore/kv_store.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "engine/kv_pool.h"
#include "engine/llama_runner.h"
#include "engine/request_state.h"
#include "kvstore/kv_store.h"

namespace kvault {

struct TransferStats {
  uint64_t restored_tokens_ram = 0;
  uint64_t restored_tokens_disk = 0;
  uint64_t restored_tokens_remote = 0;
  uint64_t blocks_saved = 0;
  double save_seconds = 0;     // engine-thread time serialising blocks
  double restore_seconds = 0;  // engine-thread time deserialising blocks
};

class KvTransfer {
 public:
  // `runner` and `pool` outlive it. `fingerprint` names the model's blocks; `cache_type` is
  // recorded in each block.
  KvTransfer(std::unique_ptr<KvStore> store, LlamaRunner* runner, KvPool* pool, std::string fingerprint,
             std::string cache_type);
  ~KvTransfer();  // flushes the store's pending writes

  // Prompt tokens whose KV the store keys (and so keeps for later turns): the full blocks of the
  // prompt without its last token.
  static int32_t KeyedPromptTokens(size_t prompt_tokens, uint32_t block_tokens);

  // At intake: keys the prompt and asks the store for the blocks beyond the resident prefix
  // (r.lookup; the scheduler admits r once the fetch is done).
  void StartLookup(RequestState& r);
  // At admission (r.slot holds r.n_past resident tokens): places the stored blocks that extend
  // it; counts them in r.restored_ram / r.restored_disk / r.restored_remote; may cut r.n_past (and
  // r.reused_resident) back to a block boundary first. Drops the fetch afterwards (its buffers go
  // back to the store); keeps the keys for Save.
  void Restore(RequestState& r);
  // When r ends normally (its slot still holds its tokens): saves what the store lacks.
  void Save(const RequestState& r);
  // Runs `fn` once every block saved so far is on disk (sync durability): on the I/O thread, or
  // at once on the calling thread when the store has no disk tier.
  void AfterWrites(std::function<void()> fn) { store_->AfterWrites(std::move(fn)); }

  KvStore& store() { return *store_; }
  const TransferStats& stats() const { return stats_; }

 private:
  // Drops a newly admitted sequence's resident tokens from `n` on (a stored block replaces them).
  void TruncateTo(RequestState& r, size_t n);
  // Places the first `n_tokens` of `rec` at the end of r's sequence; false when it does not fit.
  enum class Source { kRam, kDisk, kRemote };  // where a block came from, for the counts
  bool Place(RequestState& r, const BlockRecord& rec, Source from, size_t n_tokens);

  std::unique_ptr<KvStore> store_;
  LlamaRunner* runner_;
  KvPool* pool_;
  std::string fingerprint_;
  std::string cache_type_;
  uint32_t block_tokens_;
  TransferStats stats_;
};

}  // namespace kvault

// RequestState: one request inside the engine, from intake (templated, tokenized) through waiting,
// running, to its end — one record for every stage, so nothing is copied field by field when a
// request is admitted. PendingTicket: its place in the engine's admission count.
//
// Owned on the engine thread: by the Scheduler while waiting or running, by the engine loop once
// handed out (expired, shut down). Never shared with other threads, except through its
// RequestHandle (thread-safe) and its Prefetch (filled by the KV store's I/O thread, read once
// `done` is set; dropped after admission). No llama.h: the sampler is an opaque pointer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_pool.h"
#include "engine/logprobs.h"
#include "engine/request.h"
#include "engine/sampling.h"
#include "engine/text_stream.h"
#include "kvstore/block_key.h"
#include "kvstore/kv_store.h"

namespace kvault {

using EngineClock = std::chrono::steady_clock;

// Holds one unit of a counter for as long as a request is submitted but neither running nor
// ended: Engine::Submit's room check reads the counter (queued + waiting requests). Released
// once, at admission or when the ticket is destroyed (the request was rejected, timed out,
// cancelled or shut down) — so the count cannot drift whatever path a request takes. Move-only.
class PendingTicket {
 public:
  PendingTicket() = default;
  explicit PendingTicket(std::atomic<uint32_t>* counter) : counter_(counter) {}
  PendingTicket(PendingTicket&& o) noexcept : counter_(o.counter_) { o.counter_ = nullptr; }
  PendingTicket& operator=(PendingTicket&& o) noexcept {
    if (this != &o) {
      Release();
      counter_ = o.counter_;
      o.counter_ = nullptr;
    }
    return *this;
  }
  PendingTicket(const PendingTicket&) = delete;
  PendingTicket& operator=(const PendingTicket&) = delete;
  ~PendingTicket() { Release(); }
  void Release() {
    if (counter_) counter_->fetch_sub(1);
    counter_ = nullptr;
  }
  bool held() const { return counter_ != nullptr; }

 private:
  std::atomic<uint32_t>* counter_ = nullptr;
};

// What the KV store was asked for at intake (engine/kv_transfer): the prompt's block keys and
// the fetch of the blocks found in RAM or on disk.
struct StoreLookup {
  BlockKey salt;                                 // model fingerprint + tenant
  std::vector<BlockKey> keys;                    // the prompt's full blocks, its last token excluded
  std::shared_ptr<const PrefetchRequest> fetch;  // what the store was asked for
  std::shared_ptr<Prefetch> prefetch;            // blocks being fetched; null: nothing asked (or restored)
  // The fetch has ended (or none was asked): the request may be admitted.
  bool ready() const { return !prefetch || prefetch->done.load(std::memory_order_acquire); }
};

struct RequestState {
  // --- set at intake ---
  GenerateRequest request;
  std::shared_ptr<RequestHandle> handle;
  EngineClock::time_point submitted;
  PendingTicket ticket;
  std::vector<Token> prompt;
  int32_t max_tokens = 0;
  bool to_context_end = false;     // max_tokens is what the context had left
  uint64_t tenant = 0;             // the pool's tenant tag (0: none)
  SamplerPtr sampler;              // built at intake: a bad grammar is rejected at once
  std::vector<Token> preserved;    // output with special=true (tool-call markers)
  TextStream text;                 // the request's and the chat format's stop sequences
  StoreLookup lookup;              // empty without a KV store
  int32_t kept_prompt_tokens = 0;  // prompt tokens the store keys for later turns (KvTransfer)

  // --- from admission (Scheduler, KvTransfer) ---
  int slot = -1;
  int32_t n_past = 0;           // tokens with KV in the slot
  int32_t reused_resident = 0;  // prompt tokens found resident in the pool
  int32_t restored_ram = 0;     // ... restored from the RAM tier
  int32_t restored_disk = 0;    // ... restored from disk
  int32_t restored_remote = 0;  // ... restored from the remote tier (Redis)
  int32_t reserved_total = 0;   // prompt + answer tokens the pool has reserved cells for
  EngineClock::time_point admitted;

  // --- while generating ---
  int32_t n_gen = 0;
  Token next = -1;     // sampled, decoded in the next step
  std::string unsent;  // non-streaming requests: text kept until the end
  // GenerateRequest::top_logprobs >= 0 only: entries waiting for their text, and a non-streamed
  // request's entries kept until the end.
  std::unique_ptr<LogprobQueue> logprobs;
  std::vector<TokenLogprob> unsent_logprobs;
  double ttft_ms = -1;
  std::vector<uint64_t> digests;  // EngineOptions::digest_logits
  bool done = false;              // ended; the scheduler drops it after the step

  int32_t prefill_left() const { return static_cast<int32_t>(prompt.size()) - n_past; }
  // Prompt tokens not computed (all tiers).
  int32_t cached_tokens() const { return reused_resident + restored_ram + restored_disk + restored_remote; }
};

}  // namespace kvault

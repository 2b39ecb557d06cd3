// Engine: the one thread that owns a loaded model and its llama_context, and runs continuous
// batching for every request on that model.
//
// Start() loads the model on the engine thread and returns once it is ready (or failed).
// Submit() may be called from any thread; it queues the request and returns a handle whose
// channel delivers the output. stats() is a snapshot, safe from any thread. Nothing outside the
// engine thread touches llama objects.
//
// The thread's loop drives small parts (engine/engine_setup makes them): intake (template and
// tokenize through LlamaRunner; reject what can never fit; KvTransfer starts the KV store
// lookup) → Scheduler::Admit (FIFO, KvPool slots and blocks; each admitted request gets its
// stored blocks restored by KvTransfer before the next one is considered)
// → Scheduler::Schedule (one step's plan) → LlamaRunner::Decode → Scheduler::Update → sample
// and stream (engine/request_output) → at the end KvTransfer saves the blocks the store lacks.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "engine/channel.h"
#include "engine/device_info.h"
#include "engine/request.h"
#include "engine/request_state.h"
#include "kvstore/kv_store.h"

namespace kvault {

struct EngineOptions {
  std::filesystem::path model_path;
  std::string model_id;            // the name clients use; default: file stem
  uint32_t ctx_size = 0;           // max tokens of one request (prompt + completion); 0 = model's
  uint32_t pool_tokens = 0;        // KV pool size in tokens; 0 = derived from kv_memory_mib
  uint32_t kv_memory_mib = 1024;   // KV pool size in MiB when pool_tokens is 0
  uint32_t block_tokens = 64;      // pool accounting granularity (and prefix-sharing unit)
  std::string cache_type = "f16";  // f16, q8_0, q4_0 (K and V)
  uint32_t parallel = 8;           // requests decoded together at most
  uint32_t resident_seqs = 32;     // sequences kept in the pool (running + idle)
  // Tokens that finished conversations may keep in the pool once another request is admitted;
  // beyond, the least recently used go (their blocks are in the KV store). -1: no limit (idle
  // sequences leave only when their cells are needed). Applies only with a KV store. Default 0:
  // idle cells slow every running sequence (llama.cpp attends over all cells up to the highest
  // in use) by more than restoring them from RAM costs — see docs/architecture.md, "Idle
  // sequences".
  int64_t idle_tokens = 0;
  uint32_t step_tokens = 256;  // tokens per step: decode tokens + prefill chunks
  uint32_t max_queue = 64;     // requests waiting for capacity before 429
  uint32_t queue_timeout_ms = 60000;
  int32_t n_threads = 0;  // 0 = all cores
  // Offload (llama_model_params): layers whose weights and KV go to the GPU(s), -1 = all of them
  // (llama.cpp's own default; no effect without a GPU backend), 0 = none. main_gpu -1: layers
  // spread over every GPU (llama.cpp's layer split); I >= 0: the whole model on GPU I alone.
  int32_t gpu_layers = -1;
  int32_t main_gpu = -1;
  // When a request sets no max_tokens: at most this many (capped by the context); 0 = until the
  // context ends (the API references' rule).
  int32_t default_max_tokens = 0;
  // Cells reserved for a request's answer when it is admitted: at most this many tokens (0: all of
  // max_tokens). An answer that grows past them takes more as it goes, evicting idle sequences;
  // when running requests hold the whole pool it waits, and if every running answer waits, the
  // most recently admitted one ends with a retryable error (the pool is full). So an answer
  // allowed to run to the end of the context (Claude Code's max_tokens, an OpenAI request with
  // none) does not hold the rest of the context from the start.
  int32_t reserve_tokens = 4096;
  // When a request sets no temperature (OpenAI and Anthropic both default to 1; 0 = greedy).
  float default_temperature = 1.0f;
  // Pin llama.cpp's shape-dependent CPU kernels (no one-token batch, no step with one output row,
  // steps below flash attention's tiled size) so that a request's logits do not depend on what
  // else runs, as long as no cells are freed and refilled meanwhile (docs/architecture.md,
  // "Exactness"). Off by default: it costs about a quarter of single-stream decode speed on CPU.
  bool deterministic = false;
  // Tests: hash the logits of every sampled position into kDone's logits_digests, so that runs
  // can be compared bit for bit (costs a pass over the vocabulary per token).
  bool digest_logits = false;
  // KV store (RAM and disk tiers below the pool).
  std::filesystem::path cache_dir;  // empty: no disk tier (nothing survives a restart)
  // false (async): a response ends at once, its blocks reach disk right after; true (sync): its
  // final event is sent only once its blocks are on disk (fsynced).
  bool sync_durability = false;
  uint32_t debug_slow_write_ms = 0;  // fault injection for tests: a slow disk
  uint64_t ram_cache_mib = 1024;
  double disk_cache_gib = 10;
  // A Redis shared by kvault instances, below the disk tier (kvstore/redis_tier.h); empty: none.
  std::string remote_cache;
};

// Read-only facts about the loaded model and pool, safe to read from any thread after Start.
struct ModelInfo {
  std::string id;
  std::string path;
  std::string description;  // llama.cpp's model description, e.g. "llama 8B F16"
  uint32_t ctx_size = 0;    // per-request limit actually in force
  int32_t n_ctx_train = 0;
  uint64_t n_params = 0;
  uint64_t size_bytes = 0;
  uint32_t pool_tokens = 0;
  uint64_t pool_bytes = 0;
  uint32_t block_tokens = 0;
  std::string cache_type;
  bool deterministic = false;     // --deterministic in force
  uint32_t step_tokens = 0;       // tokens per step in force (capped in deterministic mode)
  std::string fingerprint;        // model + KV configuration; names the cache directory
  bool persistent = false;        // blocks are written to disk
  std::string persistence_error;  // why not, when a cache directory was asked for and is unusable
  std::string persistence_off;    // why not, when the model cannot have a store (recurrent)
  // Offload in force: the devices llama.cpp enumerated, the layers asked for (-1 = all), the GPU
  // (-1 = all, layer split), and the KV bytes' producer in the fingerprint ("" = CPU only).
  std::vector<DeviceInfo> devices;
  int32_t gpu_layers = -1;
  int32_t main_gpu = -1;
  std::string kv_backend;
  // The KV store's limits in force (--ram-cache, --disk-cache); disk 0 without a disk tier.
  uint64_t ram_limit_bytes = 0;
  uint64_t disk_limit_bytes = 0;
};

struct EngineStats {
  uint32_t pool_blocks_total = 0;
  uint32_t pool_blocks_used = 0;
  uint32_t pool_blocks_reserved = 0;
  uint32_t pool_blocks_active = 0;     // held by running requests (their KV and reservations)
  double pool_utilization = 0;         // (used + reserved) / total
  double pool_active_utilization = 0;  // blocks of running requests / total (idle ones are evictable)
  uint32_t running = 0;
  uint32_t waiting = 0;  // admitted to the queue, not yet running
  uint32_t idle_resident = 0;
  uint32_t idle_blocks = 0;  // pool blocks held only by idle sequences
  uint64_t idle_trims = 0;   // idle sequences evicted because idle ones held more than --idle-tokens
  uint64_t evictions = 0;
  uint64_t steps = 0;
  // Throughput counters. "Decode-only" steps carry no prompt tokens, so their rate is the pure
  // generation throughput (what llama-batched-bench calls S_TG).
  uint64_t decode_only_steps = 0;
  uint64_t decode_only_tokens = 0;
  double decode_only_seconds = 0;
  uint64_t prompt_tokens_computed = 0;
  uint64_t prompt_tokens_cached = 0;
  uint64_t tokens_generated = 0;
  double busy_seconds = 0;  // time spent in llama_decode
  // Prompt tokens restored from the KV store instead of computed, by tier; blocks saved.
  uint64_t restored_tokens_ram = 0;
  uint64_t restored_tokens_disk = 0;
  uint64_t restored_tokens_remote = 0;
  uint64_t blocks_saved = 0;
  double save_seconds = 0;     // engine-thread time serialising blocks
  double restore_seconds = 0;  // engine-thread time deserialising blocks
};

// A named agent's conversation resident in the pool now: idle (finished, kept for its next turn)
// or running (a request of that agent being computed).
struct PoolResident {
  std::string tenant;
  std::string agent_id;
  uint32_t tokens = 0;  // tokens with KV cells in the pool
  bool running = false;
};

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> Start(const EngineOptions& options);
  ~Engine();  // stops the thread; unfinished requests get an Unavailable error

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Never blocks. A full queue answers at once with an Overloaded error event.
  std::shared_ptr<RequestHandle> Submit(GenerateRequest request);
  const ModelInfo& info() const { return info_; }
  // A snapshot, thread-safe: published after each step, and when a request finishes, before
  // its end reaches the client (so it counts that request's restores and saves; requests that
  // end in an error are counted by the next step's publish).
  EngineStats stats() const;
  // The named agents resident in the pool, as of the engine's last publish (see stats());
  // thread-safe.
  std::vector<PoolResident> pool_residents() const;
  // The KV store's own counters (RAM/disk sizes, hits, writes); thread-safe.
  KvStoreStats store_stats() const;

  // Agents (the admin API). Any thread except the engine's. Without a KV store (recurrent models)
  // there are none and nothing is done.
  struct AgentView {
    AgentRecord record;
    AgentTiers tiers;  // where its chain's blocks are now
  };
  bool keeps_agents() const { return store_.load() != nullptr; }
  // Every agent (of `tenant` when set).
  std::vector<AgentView> ListAgents(const std::optional<std::string>& tenant) const;
  // The agents named `id` (one per tenant that uses it; of `tenant` when set).
  std::vector<AgentView> FindAgent(const std::string& id, const std::optional<std::string>& tenant) const;
  struct AgentEviction {
    size_t pool_tokens = 0;  // idle pool cells freed (between engine steps)
    size_t ram_blocks = 0;   // blocks dropped from RAM (they stay on disk)
    AgentTiers tiers;        // where its blocks are afterwards
  };
  // Out of the pool and RAM, kept on disk.
  AgentEviction EvictAgent(const AgentRecord& agent);
  struct AgentRemoval {
    size_t pool_tokens = 0;
    size_t blocks_removed = 0;  // blocks only this agent referenced
  };
  // Forgets the agent: its pool cells, its record and the blocks only it references.
  AgentRemoval ForgetAgent(const AgentRecord& agent);
  // Frees the idle pool cells holding an agent's conversation (between engine steps; waits for
  // it). Returns the tokens freed.
  size_t EvictAgentFromPool(const std::string& tenant, const std::string& agent_id);

 private:
  class Impl;  // the parts and the loop, touched only by the engine thread
  struct Job {
    GenerateRequest request;
    std::shared_ptr<RequestHandle> handle;
    std::chrono::steady_clock::time_point submitted;
    PendingTicket ticket;                // counted in pending_ until admitted or ended
    std::function<void(Impl&)> control;  // set: not a request, work for the engine thread
  };

  explicit Engine(const EngineOptions& options);
  void Run(std::promise<Status>* ready);

  EngineOptions options_;
  ModelInfo info_;
  // Requests submitted, not yet running or ended (PendingTicket); declared before the queue and
  // the loop's state, whose tickets point at it.
  std::atomic<uint32_t> pending_{0};
  std::atomic<uint32_t> running_{0};  // decoding now (as of the engine's last step)
  Channel<Job> queue_;
  mutable std::mutex stats_mu_;
  EngineStats stats_;
  std::vector<PoolResident> residents_;  // under stats_mu_
  std::unique_ptr<Impl> impl_;
  std::atomic<KvStore*> store_{nullptr};  // owned by impl_'s KvTransfer; set once loaded
  std::thread thread_;
};

}  // namespace kvault

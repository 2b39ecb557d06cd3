#include "engine/engine_setup.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include <sys/resource.h>
#include <unistd.h>

#include "kvstore/fingerprint.h"
#include "model/model_file.h"

namespace kvault {

namespace {

constexpr uint32_t kFaTileRows = 64;  // GGML_FA_TILE_Q of the pinned llama.cpp
constexpr uint64_t kMaxDefaultPoolTokens = 131072;

// Options that can never work, and the step budget in force (capped in deterministic mode).
StatusOr<uint32_t> CheckOptions(const EngineOptions& o) {
  if (o.cache_type != "f16" && o.cache_type != "q8_0" && o.cache_type != "q4_0") {
    return Status::InvalidArgument("unknown KV cache type '" + o.cache_type + "' (f16, q8_0, q4_0)");
  }
  if (o.parallel == 0 || o.resident_seqs < o.parallel) {
    return Status::InvalidArgument("resident sequences must be at least the parallel limit (>= 1)");
  }
  if (o.resident_seqs + kScratchSeqs > 256) {
    return Status::InvalidArgument("at most " + std::to_string(256 - kScratchSeqs) + " resident sequences");
  }
  if (o.block_tokens == 0 || o.step_tokens == 0) {
    return Status::InvalidArgument("block tokens and step tokens must be at least 1");
  }
  uint32_t step = o.step_tokens;
  if (o.deterministic) {
    // ggml's CPU flash attention takes a tiled kernel, with another summation order, for every
    // row of a batch of kFaTileRows or more query rows (GGML_FA_TILE_Q in ggml-cpu/common.h):
    // deterministic steps stay below it.
    if (o.parallel >= kFaTileRows) {
      return Status::InvalidArgument("deterministic mode allows at most " + std::to_string(kFaTileRows - 1) +
                                     " parallel sequences (llama.cpp's CPU attention changes kernels at " +
                                     std::to_string(kFaTileRows) + " rows per step)");
    }
    if (step >= kFaTileRows) {
      step = kFaTileRows - 1;
      spdlog::info("engine: deterministic mode: steps of at most {} tokens (--step-tokens {} lowered)", step,
                   o.step_tokens);
    }
  }
  return step;
}

// Opens the KV store below the pool (RAM only when the cache directory is unusable).
StatusOr<std::unique_ptr<KvTransfer>> OpenStore(const EngineOptions& o, EngineParts& parts,
                                                std::shared_ptr<BufferRecycler> buffers, ModelInfo* info) {
  KvConfig kc;
  kc.type_k = kc.type_v = o.cache_type;
  kc.flash_attn = parts.runner->layout().flash_attn;
  kc.unified = true;
  kc.swa_full = parts.runner->layout().swa_full;
  kc.llama_release = KVAULT_LLAMA_TAG;
  kc.backend = info->kv_backend;
  auto hash = ModelContentHash(o.model_path, o.cache_dir);
  if (!hash.ok()) return hash.status();
  const std::string fingerprint = ModelFingerprint(*hash, kc);
  KvStoreOptions so;
  so.dir = o.cache_dir;
  so.ram_bytes = o.ram_cache_mib << 20;
  so.disk_bytes = static_cast<uint64_t>(o.disk_cache_gib * (1ull << 30));
  so.fingerprint = fingerprint;
  so.slow_write_ms = o.debug_slow_write_ms;
  so.remote_cache = o.remote_cache;
  so.buffers = std::move(buffers);
  auto store = KvStore::Open(so);
  if (!store.ok() && !so.dir.empty()) {
    spdlog::warn("engine: cache directory unusable ({}); serving without persistence", store.status().message());
    info->persistence_error = store.status().message();
    so.dir.clear();
    store = KvStore::Open(so);
  }
  if (!store.ok()) return store.status();
  info->fingerprint = fingerprint;
  info->persistent = store.value()->persistent();
  info->ram_limit_bytes = so.ram_bytes;
  info->disk_limit_bytes = info->persistent ? so.disk_bytes : 0;
  if (info->persistent) {
    const auto st = store.value()->stats();
    spdlog::info("kv store: {} ({} blocks, {:.1f} MiB on disk); RAM tier {} MiB", (so.dir / fingerprint).string(),
                 st.disk.blocks, static_cast<double>(st.disk.bytes) / (1 << 20), o.ram_cache_mib);
  }
  return std::make_unique<KvTransfer>(std::move(store.value()), parts.runner.get(), parts.pool.get(), fingerprint,
                                      o.cache_type);
}

}  // namespace

BufferPrefault::BufferPrefault(std::shared_ptr<BufferRecycler> pool, size_t block_bytes, uint64_t bytes) {
  thread_ = std::thread([pool = std::move(pool), block_bytes, bytes, stop = &stop_] {
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);  // like the I/O thread: below decoding
    const auto t0 = std::chrono::steady_clock::now();
    size_t n = 0;
    try {
      n = pool->Prefault(block_bytes, bytes, stop);
    } catch (const std::bad_alloc&) {
      spdlog::warn("kv store: could not allocate block buffers ahead of time; they will be allocated as needed");
    }
    spdlog::info("kv store: {} block buffers ({:.0f} MiB) ready in {:.0f} ms", n,
                 static_cast<double>(n * block_bytes) / (1 << 20),
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  });
}

BufferPrefault::~BufferPrefault() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

StatusOr<EngineParts> LoadEngine(const EngineOptions& o, ModelInfo* info) {
  Status s = CheckModelFile(o.model_path);
  if (!s.ok()) return s;
  auto step = CheckOptions(o);
  if (!step.ok()) return step.status();
  EngineParts parts;
  OffloadSpec offload;
  offload.gpu_layers = o.gpu_layers;
  offload.main_gpu = o.main_gpu;
  auto runner = LlamaRunner::LoadModel(o.model_path, offload);
  if (!runner.ok()) return runner.status();
  parts.runner = std::move(runner.value());
  const ModelFacts& facts = parts.runner->facts();
  const uint64_t bytes_per_token = parts.runner->KvBytesPerToken(o.cache_type);

  // Pool size: from --pool-tokens, else from the memory budget and the model's KV row sizes.
  uint64_t pool_tokens = o.pool_tokens;
  if (pool_tokens == 0) {
    pool_tokens = (static_cast<uint64_t>(o.kv_memory_mib) << 20) / std::max<uint64_t>(1, bytes_per_token);
    pool_tokens = std::min<uint64_t>(pool_tokens, kMaxDefaultPoolTokens);
  }
  pool_tokens = std::max<uint64_t>(256, pool_tokens / 256 * 256);  // llama.cpp pads to 256

  std::shared_ptr<BufferRecycler> buffers;
  if (!facts.recurrent) {
    // Block buffers for the KV store, one context's worth (at most the RAM tier) faulted in while
    // the context is created (which takes a while: llama.cpp clears the pool's memory) — so that
    // the first restore after a restart does not pay for fresh pages (buffer_recycler.h). A full
    // block's serialised state: its cells' K and V rows, plus a little metadata per cell and
    // layer (an upper bound: a buffer must hold it).
    const uint64_t block_bytes = bytes_per_token * o.block_tokens + 64ull * o.block_tokens +
                                 64ull * static_cast<uint64_t>(std::max(0, facts.n_layer)) + 4096;
    const uint64_t ctx = std::min<uint64_t>(pool_tokens, o.ctx_size > 0 ? o.ctx_size : std::max(1, facts.n_ctx_train));
    const uint64_t prefault = std::min<uint64_t>(o.ram_cache_mib << 20, (ctx / o.block_tokens + 1) * block_bytes);
    buffers = std::make_shared<BufferRecycler>(std::max<uint64_t>(prefault, 64ull << 20));
    parts.prefault = std::make_unique<BufferPrefault>(buffers, block_bytes, prefault);
  }
  ContextSpec cs;
  cs.pool_tokens = static_cast<uint32_t>(pool_tokens);
  cs.n_seq_max = o.resident_seqs + kScratchSeqs;
  // llama.cpp reserves one output row per sequence at start and asserts that they fit in a batch:
  // a step smaller than the resident sequences gets a batch that large (steps still carry at most
  // step_tokens + parallel tokens).
  cs.n_batch = std::max<uint32_t>(o.step_tokens + o.parallel, cs.n_seq_max);
  cs.cache_type = o.cache_type;
  cs.n_threads = o.n_threads;
  cs.deterministic = o.deterministic;
  s = parts.runner->CreateContext(cs);
  if (!s.ok()) return s;

  const uint32_t n_ctx = parts.runner->pool_tokens();
  const uint32_t n_blocks = n_ctx / o.block_tokens;
  if (n_blocks <= kScratchBlocks) {
    return Status::InvalidArgument("the pool (" + std::to_string(n_ctx) + " tokens) must hold more than " +
                                   std::to_string(kScratchBlocks) + " blocks of " + std::to_string(o.block_tokens) +
                                   " tokens");
  }
  parts.pool =
      std::make_unique<KvPool>(&parts.runner->kv_ops(), o.resident_seqs, n_blocks - kScratchBlocks, o.block_tokens);
  parts.ctx_limit = o.ctx_size > 0 ? o.ctx_size : static_cast<uint32_t>(std::max(1, facts.n_ctx_train));
  parts.ctx_limit = std::min(parts.ctx_limit, (n_blocks - kScratchBlocks) * o.block_tokens);
  parts.scheduling.parallel = o.parallel;
  parts.scheduling.step_tokens = step.value();
  parts.scheduling.reserve_tokens = o.reserve_tokens;
  parts.scheduling.queue_timeout = std::chrono::milliseconds(o.queue_timeout_ms);

  info->description = facts.description;
  info->ctx_size = parts.ctx_limit;
  info->n_ctx_train = facts.n_ctx_train;
  info->n_params = facts.n_params;
  info->size_bytes = facts.size_bytes;
  info->pool_tokens = n_ctx;
  info->pool_bytes = bytes_per_token * n_ctx;
  info->block_tokens = o.block_tokens;
  info->cache_type = o.cache_type;
  info->deterministic = o.deterministic;
  info->step_tokens = step.value();
  info->devices = LlamaRunner::Devices();
  info->gpu_layers = o.gpu_layers < 0 ? -1 : o.gpu_layers;
  info->main_gpu = o.main_gpu < 0 ? -1 : o.main_gpu;
  info->kv_backend = LlamaRunner::KvBackend();
  if (!info->kv_backend.empty())
    spdlog::info("engine: KV computed with {} (part of the cache fingerprint)", info->kv_backend);

  if (facts.recurrent) {
    spdlog::warn(
        "engine: recurrent/hybrid model: KV store and prefix reuse off (its per-sequence state cannot "
        "be split into blocks or cut back to a prefix): every request is prefilled in full");
    parts.pool->set_prefix_reuse(false);
    if (o.idle_tokens >= 0) spdlog::info("engine: --idle-tokens has no effect without a KV store");
    info->persistence_off = "recurrent/hybrid model: no KV store, no prefix reuse";
    return parts;
  }
  auto transfer = OpenStore(o, parts, std::move(buffers), info);
  if (!transfer.ok()) return transfer.status();
  parts.transfer = std::move(transfer.value());
  if (o.idle_tokens >= 0) {
    const uint64_t limit = (static_cast<uint64_t>(o.idle_tokens) + o.block_tokens - 1) / o.block_tokens;
    parts.pool->set_idle_limit(static_cast<uint32_t>(std::min<uint64_t>(limit, KvPool::kNoIdleLimit - 1)));
  }
  return parts;
}

}  // namespace kvault

#include "engine/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <future>
#include <iterator>
#include <optional>
#include <thread>

#include <sys/resource.h>
#include <unistd.h>

#include "common.h"
#include "engine/chat_render.h"
#include "engine/kv_pool.h"
#include "engine/logprobs.h"
#include "engine/step_planner.h"
#include "engine/text_stream.h"
#include "kvstore/block_key.h"
#include "kvstore/fingerprint.h"
#include "kvstore/kv_store.h"
#include "llama.h"
#include "model/demo_model.h"
#include "model/model_file.h"

namespace kvault {

using Clock = std::chrono::steady_clock;

namespace {

constexpr int kScratchSeqs = 2;         // llama sequences beyond the resident ones: padding, KV store I/O
constexpr uint32_t kFaTileRows = 64;    // GGML_FA_TILE_Q of the pinned llama.cpp (see Load)
constexpr uint32_t kScratchBlocks = 2;  // pool blocks kept for them

std::optional<ggml_type> ParseCacheType(const std::string& name) {
  if (name == "f16") return GGML_TYPE_F16;
  if (name == "q8_0") return GGML_TYPE_Q8_0;
  if (name == "q4_0") return GGML_TYPE_Q4_0;
  return std::nullopt;
}

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void SendError(const std::shared_ptr<RequestHandle>& h, Status s) {
  GenerationEvent ev;
  ev.kind = GenerationEvent::Kind::kError;
  ev.status = std::move(s);
  h->events().Push(std::move(ev));
  h->events().Close();
}

class LlamaKvOps : public KvOps {
 public:
  explicit LlamaKvOps(llama_context* ctx) : ctx_(ctx) {}
  void Copy(int src, int dst, int32_t p0, int32_t p1) override {
    llama_memory_seq_cp(llama_get_memory(ctx_), src, dst, p0, p1);
  }
  void Remove(int seq, int32_t p0, int32_t p1) override { llama_memory_seq_rm(llama_get_memory(ctx_), seq, p0, p1); }

 private:
  llama_context* ctx_;
};

}  // namespace

// Everything llama.cpp, and the scheduling loop: created, used and destroyed on the engine
// thread only.
class Engine::Impl {
 public:
  Impl(Engine* owner) : owner_(owner), opt_(owner->options_) {}

  ~Impl() {
    stop_prefault_.store(true);
    if (prefault_.joinable()) prefault_.join();
    running_.clear();
    owner_->store_.store(nullptr);
    store_.reset();  // flushes pending writes
    pool_.reset();
    if (batch_.token) llama_batch_free(batch_);
    if (ctx_) llama_free(ctx_);
    if (model_) llama_model_free(model_);
  }

  Status Load(ModelInfo* info) {
    Status s = CheckModelFile(opt_.model_path);
    if (!s.ok()) return s;
    const auto cache_type = ParseCacheType(opt_.cache_type);
    if (!cache_type)
      return Status::InvalidArgument("unknown KV cache type '" + opt_.cache_type + "' (f16, q8_0, q4_0)");
    if (opt_.parallel == 0 || opt_.resident_seqs < opt_.parallel) {
      return Status::InvalidArgument("resident sequences must be at least the parallel limit (>= 1)");
    }
    if (opt_.resident_seqs + kScratchSeqs > 256) {
      return Status::InvalidArgument("at most " + std::to_string(256 - kScratchSeqs) + " resident sequences");
    }
    if (opt_.block_tokens == 0 || opt_.step_tokens == 0) {
      return Status::InvalidArgument("block tokens and step tokens must be at least 1");
    }
    step_budget_ = opt_.step_tokens;
    if (opt_.deterministic) {
      // ggml's CPU flash attention takes a tiled kernel, with another summation order, for every
      // row of a batch of kFaTileRows or more query rows (GGML_FA_TILE_Q in ggml-cpu/common.h):
      // deterministic steps stay below it.
      if (opt_.parallel >= kFaTileRows) {
        return Status::InvalidArgument("deterministic mode allows at most " + std::to_string(kFaTileRows - 1) +
                                       " parallel sequences (llama.cpp's CPU attention changes kernels at " +
                                       std::to_string(kFaTileRows) + " rows per step)");
      }
      if (step_budget_ >= kFaTileRows) {
        step_budget_ = kFaTileRows - 1;
        spdlog::info("engine: deterministic mode: steps of at most {} tokens (--step-tokens {} lowered)", step_budget_,
                     opt_.step_tokens);
      }
    }

    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    // Progress in the log while a large model loads (every 25 %).
    struct Progress {
      std::string name;
      int next = 25;
    } progress{opt_.model_path.filename().string()};
    mp.progress_callback = [](float p, void* user) {
      auto* pr = static_cast<Progress*>(user);
      const int pct = static_cast<int>(p * 100);
      if (pct >= pr->next) {
        spdlog::info("engine: loading {}: {}%", pr->name, pct);
        pr->next = (pct / 25 + 1) * 25;
      }
      return true;
    };
    mp.progress_callback_user_data = &progress;
    model_ = llama_model_load_from_file(opt_.model_path.c_str(), mp);
    if (!model_) return Status::Corruption("llama.cpp could not load model " + opt_.model_path.string());
    vocab_ = llama_model_get_vocab(model_);
    char ramp[32] = {};
    if (llama_model_meta_val_str(model_, kDemoEndRampKey, ramp, sizeof(ramp)) > 0) {
      end_ramp_ = std::strtof(ramp, nullptr);
      end_token_ = llama_vocab_eot(vocab_) != LLAMA_TOKEN_NULL ? llama_vocab_eot(vocab_) : llama_vocab_eos(vocab_);
      spdlog::info("engine: demo chat model: end-of-turn logit + {} per generated token", end_ramp_);
    }

    // Pool size: from --pool-tokens, else from the memory budget and the model's KV row sizes.
    const uint64_t bytes_per_token = KvBytesPerToken(*cache_type);
    uint64_t pool_tokens = opt_.pool_tokens;
    if (pool_tokens == 0) {
      pool_tokens = (static_cast<uint64_t>(opt_.kv_memory_mib) << 20) / std::max<uint64_t>(1, bytes_per_token);
      pool_tokens = std::min<uint64_t>(pool_tokens, kMaxDefaultPoolTokens);
    }
    pool_tokens = std::max<uint64_t>(256, pool_tokens / 256 * 256);  // llama.cpp pads to 256

    if (!llama_model_is_recurrent(model_) && !llama_model_is_hybrid(model_)) {
      // Block buffers for the KV store, one context's worth (at most the RAM tier) faulted in on a
      // helper thread while the context is created (which takes a while: llama.cpp clears the
      // pool's memory) — so that the first restore after a restart does not pay for fresh pages
      // (buffer_pool.h). A full block's serialised state: its cells' K and V rows, plus a little
      // metadata per cell and layer (an upper bound: a buffer must hold it).
      const uint64_t block_bytes = bytes_per_token * opt_.block_tokens + 64ull * opt_.block_tokens +
                                   64ull * static_cast<uint64_t>(std::max(0, llama_model_n_layer(model_))) + 4096;
      const uint64_t ctx = std::min<uint64_t>(
          pool_tokens, opt_.ctx_size > 0 ? opt_.ctx_size : std::max(1, llama_model_n_ctx_train(model_)));
      const uint64_t prefault =
          std::min<uint64_t>(opt_.ram_cache_mib << 20, (ctx / opt_.block_tokens + 1) * block_bytes);
      buffers_ = std::make_shared<BufferPool>(std::max<uint64_t>(prefault, 64ull << 20));
      prefault_ = std::thread([pool = buffers_, block_bytes, prefault, stop = &stop_prefault_] {
        setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);  // like the I/O thread: below decoding
        const auto t0 = Clock::now();
        size_t n = 0;
        try {
          n = pool->Prefault(block_bytes, prefault, stop);
        } catch (const std::bad_alloc&) {
          spdlog::warn("kv store: could not allocate block buffers ahead of time; they will be allocated as needed");
        }
        spdlog::info("kv store: {} block buffers ({:.0f} MiB) ready in {:.0f} ms", n,
                     static_cast<double>(n * block_bytes) / (1 << 20),
                     std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      });
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(pool_tokens);
    cp.n_seq_max = opt_.resident_seqs + kScratchSeqs;
    // llama.cpp reserves one output row per sequence at start and asserts that they fit in a
    // batch: a step smaller than the resident sequences gets a batch that large (steps still
    // carry at most step_tokens + parallel tokens).
    cp.n_batch = std::max<uint32_t>(opt_.step_tokens + opt_.parallel, cp.n_seq_max);
    cp.n_ubatch = cp.n_batch;  // one ubatch per step
    cp.kv_unified = true;  // one pool; seq_cp shares cells between sequences
    cp.type_k = *cache_type;
    cp.type_v = *cache_type;
    // Sliding-window layers would drop cells outside the window; keep them so blocks are whole.
    cp.swa_full = llama_model_n_swa(model_) > 0;
    const int32_t threads =
        opt_.n_threads > 0 ? opt_.n_threads : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    // Flash attention decided here, not by llama.cpp's "auto", because it changes the stored V
    // layout and so belongs in the cache fingerprint. Quantized V needs it.
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    ctx_ = llama_init_from_model(model_, cp);
    if (!ctx_ && *cache_type == GGML_TYPE_F16) {
      spdlog::warn("engine: flash attention unavailable for this model; running without it");
      cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
      ctx_ = llama_init_from_model(model_, cp);
    }
    if (!ctx_) {
      return Status::Internal("llama.cpp could not create a context (pool " + std::to_string(pool_tokens) +
                              " tokens, cache type " + opt_.cache_type + ")");
    }
    try {
      templates_ = common_chat_templates_init(model_, "");
      renderer_ = std::make_unique<ChatRenderer>(templates_.get(), vocab_);
    } catch (const std::exception& e) {
      return Status::Corruption(std::string("model chat template is invalid: ") + e.what());
    }

    const uint32_t n_ctx = llama_n_ctx(ctx_);
    // Cells outside the block accounting: the scratch sequences' (padding token, KV store I/O).
    const uint32_t n_blocks = n_ctx / opt_.block_tokens;
    if (n_blocks <= kScratchBlocks) {
      return Status::InvalidArgument("the pool (" + std::to_string(n_ctx) + " tokens) must hold more than " +
                                     std::to_string(kScratchBlocks) + " blocks of " +
                                     std::to_string(opt_.block_tokens) + " tokens");
    }
    kv_ops_ = std::make_unique<LlamaKvOps>(ctx_);
    pool_ = std::make_unique<KvPool>(kv_ops_.get(), opt_.resident_seqs, n_blocks - kScratchBlocks, opt_.block_tokens);
    pad_seq_ = static_cast<int>(opt_.resident_seqs);
    io_seq_ = pad_seq_ + 1;
    batch_ = llama_batch_init(static_cast<int32_t>(cp.n_batch), 0, 1);
    WarmUp();
    n_train_ = llama_model_n_ctx_train(model_);
    ctx_limit_ = opt_.ctx_size > 0 ? opt_.ctx_size : static_cast<uint32_t>(std::max(1, n_train_));
    ctx_limit_ = std::min(ctx_limit_, (n_blocks - kScratchBlocks) * opt_.block_tokens);

    char desc[256] = {};
    llama_model_desc(model_, desc, sizeof(desc));
    info->description = desc;
    info->ctx_size = ctx_limit_;
    info->n_ctx_train = n_train_;
    info->n_params = llama_model_n_params(model_);
    info->size_bytes = llama_model_size(model_);
    info->pool_tokens = n_ctx;
    info->pool_bytes = bytes_per_token * n_ctx;
    info->block_tokens = opt_.block_tokens;
    info->cache_type = opt_.cache_type;
    info->deterministic = opt_.deterministic;
    info->step_tokens = step_budget_;

    // The KV store below the pool. Recurrent and hybrid models keep one state per sequence that
    // cannot be cut into blocks: no store for them.
    if (llama_model_is_recurrent(model_) || llama_model_is_hybrid(model_)) {
      spdlog::warn(
          "engine: recurrent/hybrid model: KV store and prefix reuse off (its per-sequence state cannot "
          "be split into blocks or cut back to a prefix): every request is prefilled in full");
      pool_->set_prefix_reuse(false);
      if (opt_.idle_tokens >= 0) spdlog::info("engine: --idle-tokens has no effect without a KV store");
      info->persistence_off = "recurrent/hybrid model: no KV store, no prefix reuse";
    } else {
      KvConfig kc;
      kc.type_k = kc.type_v = opt_.cache_type;
      kc.flash_attn = cp.flash_attn_type == LLAMA_FLASH_ATTN_TYPE_ENABLED;
      kc.unified = true;
      kc.swa_full = cp.swa_full;
      kc.llama_release = KVAULT_LLAMA_TAG;
      auto hash = ModelContentHash(opt_.model_path, opt_.cache_dir);
      if (!hash.ok()) return hash.status();
      fingerprint_ = ModelFingerprint(*hash, kc);
      KvStoreOptions so;
      so.dir = opt_.cache_dir;
      so.ram_bytes = opt_.ram_cache_mib << 20;
      so.disk_bytes = static_cast<uint64_t>(opt_.disk_cache_gib * (1ull << 30));
      so.fingerprint = fingerprint_;
      so.slow_write_ms = opt_.debug_slow_write_ms;
      so.buffers = buffers_;
      auto store = KvStore::Open(so);
      if (!store.ok() && !so.dir.empty()) {
        spdlog::warn("engine: cache directory unusable ({}); serving without persistence", store.status().message());
        info->persistence_error = store.status().message();
        so.dir.clear();
        store = KvStore::Open(so);
      }
      if (!store.ok()) return store.status();
      store_ = std::move(store.value());
      owner_->store_.store(store_.get());
      if (opt_.idle_tokens >= 0) {
        const uint64_t limit = (static_cast<uint64_t>(opt_.idle_tokens) + opt_.block_tokens - 1) / opt_.block_tokens;
        pool_->set_idle_limit(static_cast<uint32_t>(std::min<uint64_t>(limit, KvPool::kNoIdleLimit - 1)));
      }
      info->fingerprint = fingerprint_;
      info->persistent = store_->persistent();
      if (store_->persistent()) {
        const auto st = store_->stats();
        spdlog::info("kv store: {} ({} blocks, {:.1f} MiB on disk); RAM tier {} MiB", (so.dir / fingerprint_).string(),
                     st.disk.blocks, static_cast<double>(st.disk.bytes) / (1 << 20), opt_.ram_cache_mib);
      }
    }
    PublishStats();
    return Status::Ok();
  }

  // The scheduling loop; returns when the job queue is closed.
  void Loop() {
    Channel<Job>& queue = owner_->queue_;
    while (true) {
      if (running_.empty() && waiting_.empty()) {
        auto job = queue.Pop();  // idle: block until work or shutdown
        if (!job) break;
        Intake(std::move(*job));
      }
      while (auto job = queue.TryPop()) Intake(std::move(*job));
      if (queue.drained()) break;  // jobs pushed just before Close are taken in first
      Reap();
      Admit();
      if (running_.empty()) {
        // Waiting requests but nothing admissible (cannot last: idle sequences are evictable).
        if (auto job = queue.PopFor(std::chrono::milliseconds(10))) Intake(std::move(*job));
        PublishStats();
        continue;
      }
      Step();
      PublishStats();
    }
    Shutdown();
  }

  // Frees the idle pool slots holding this agent's conversation; returns their tokens.
  size_t FreeAgentSlots(const std::string& tenant, const std::string& id) {
    return pool_->FreeIdleOwnedBy(OwnerTag(tenant, id));
  }

 private:
  static constexpr uint64_t kMaxDefaultPoolTokens = 131072;

  struct SamplerDeleter {
    void operator()(llama_sampler* s) const { llama_sampler_free(s); }
  };
  using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

  struct Waiting {
    Job job;
    std::vector<llama_token> prompt;
    SamplerPtr sampler;              // built at intake: a bad grammar is rejected at once
    std::vector<std::string> stops;  // the request's and the chat format's
    std::vector<llama_token> preserved;
    int32_t max_tokens = 0;
    bool to_context_end = false;  // max_tokens is what the context had left
    uint64_t tenant = 0;
    BlockKey salt;                                 // cache salt: model fingerprint + tenant
    std::vector<BlockKey> keys;                    // full blocks of the prompt, its last token excluded
    std::shared_ptr<const PrefetchRequest> fetch;  // what the store was asked for
    std::shared_ptr<Prefetch> prefetch;            // blocks being fetched from RAM/disk
  };

  struct Seq {
    Job job;
    std::vector<llama_token> prompt;
    int slot = -1;
    int32_t n_past = 0;  // tokens with KV in the slot
    int32_t cached = 0;  // prompt tokens reused from the pool
    int32_t cached_ram = 0;
    int32_t cached_disk = 0;
    BlockKey salt;
    std::vector<BlockKey> keys;  // the prompt's full blocks (its last token excluded)
    int32_t max_tokens = 0;
    int32_t reserved_total = 0;  // prompt + answer tokens the pool has reserved cells for
    bool to_context_end = false;
    int32_t n_gen = 0;
    llama_token next = -1;  // sampled, decoded in the next step
    SamplerPtr sampler;
    std::vector<llama_token> preserved;  // output with special=true (tool-call markers)
    TextStream text;
    std::string unsent;  // non-streaming requests: text kept until Finish
    // GenerateRequest::top_logprobs >= 0 only: entries waiting for their text, and a non-streamed
    // request's entries kept until Finish.
    std::unique_ptr<LogprobQueue> logprobs;
    std::vector<TokenLogprob> unsent_logprobs;
    Clock::time_point admitted;
    double ttft_ms = -1;
    std::vector<uint64_t> digests;  // EngineOptions::digest_logits
    bool done = false;
    int32_t prefill_left() const { return static_cast<int32_t>(prompt.size()) - n_past; }
  };

  uint64_t KvBytesPerToken(ggml_type type) const {
    const int64_t n_layer = llama_model_n_layer(model_);
    const int64_t n_head = std::max(1, llama_model_n_head(model_));
    const int64_t n_head_kv = llama_model_n_head_kv(model_);
    int64_t head_k = llama_model_n_embd(model_) / n_head;
    int64_t head_v = head_k;
    char arch[64] = {};
    if (llama_model_meta_val_str(model_, "general.architecture", arch, sizeof(arch)) > 0) {
      char buf[32] = {};
      if (llama_model_meta_val_str(model_, (std::string(arch) + ".attention.key_length").c_str(), buf, sizeof(buf)) >
          0) {
        head_k = std::atoll(buf);
      }
      if (llama_model_meta_val_str(model_, (std::string(arch) + ".attention.value_length").c_str(), buf, sizeof(buf)) >
          0) {
        head_v = std::atoll(buf);
      }
    }
    return static_cast<uint64_t>(n_layer) *
           (ggml_row_size(type, n_head_kv * head_k) + ggml_row_size(type, n_head_kv * head_v));
  }

  void Reject(Job& job, Status s) {
    SendError(job.handle, std::move(s));
    owner_->pending_.fetch_sub(1);
  }

  static std::string OwnerTag(const std::string& tenant, const std::string& id) { return tenant + '\n' + id; }

  // Templates and tokenizes a new request; rejects at once what can never run.
  void Intake(Job job) {
    if (job.control) {  // work for the engine thread itself (admin), between steps
      job.control(*this);
      owner_->pending_.fetch_sub(1);
      return;
    }
    const GenerateRequest& req = job.request;
    Status valid = req.sampling.Validate();
    if (!valid.ok()) return Reject(job, valid);
    auto rendered = renderer_->Render(req);
    if (!rendered.ok()) return Reject(job, rendered.status());
    std::vector<llama_token> tokens =
        common_tokenize(vocab_, rendered->prompt, /*add_special=*/true, /*parse_special=*/!req.raw_prompt);
    if (req.count_only) {
      GenerationEvent done;
      done.kind = GenerationEvent::Kind::kDone;
      done.prompt_tokens = static_cast<int32_t>(tokens.size());
      job.handle->events().Push(std::move(done));
      job.handle->events().Close();
      owner_->pending_.fetch_sub(1);
      return;
    }
    const auto n = static_cast<int64_t>(tokens.size());
    const int64_t limit = ctx_limit_;
    if (n == 0) return Reject(job, Status::InvalidArgument("the prompt is empty"));
    if (n >= limit) {
      // The wording Anthropic's API uses, which clients parse to compact the conversation.
      return Reject(job, Status::ContextLength("prompt is too long: " + std::to_string(n) + " tokens > " +
                                               std::to_string(limit - 1) + " maximum"));
    }
    // A max_tokens beyond what the context has left (or none, with no server default) ends at the
    // end of the context: FinishReason::kContextLength, not an error.
    int64_t max_tokens = req.max_tokens > 0 ? req.max_tokens : opt_.default_max_tokens;
    const bool to_context_end = max_tokens <= 0 || n + max_tokens > limit;
    if (to_context_end) max_tokens = limit - n;
    auto sampler = MakeSampler(req.sampling, vocab_, &rendered->grammar, &rendered->reasoning);
    if (!sampler.ok()) return Reject(job, sampler.status());
    job.handle->set_syntax(std::move(rendered->syntax));
    Waiting w;
    w.sampler.reset(sampler.value());
    w.stops = job.request.stop;
    for (auto& stop : rendered->extra_stops) {
      if (std::find(w.stops.begin(), w.stops.end(), stop) == w.stops.end()) w.stops.push_back(std::move(stop));
    }
    w.preserved = std::move(rendered->preserved);
    w.job = std::move(job);
    w.prompt = std::move(tokens);
    w.max_tokens = static_cast<int32_t>(max_tokens);
    w.to_context_end = to_context_end;
    const std::string& tenant = w.job.request.tenant;
    w.tenant = tenant.empty() ? 0 : Checksum64(tenant.data(), tenant.size()) | 1;
    if (store_) {
      w.salt = CacheSalt(fingerprint_, tenant);
      // The last prompt token is always computed (its logits are sampled from): the rest may be
      // restored. Blocks already resident need no fetching.
      auto head = std::make_shared<std::vector<int32_t>>(w.prompt.begin(), w.prompt.end() - 1);
      w.keys = ComputeBlockKeys(w.salt, *head, opt_.block_tokens);
      auto fetch = std::make_shared<PrefetchRequest>();
      fetch->salt = w.salt;
      fetch->keys = w.keys;
      fetch->tokens = std::move(head);
      fetch->block_tokens = opt_.block_tokens;
      fetch->resident = pool_->LongestPrefix(w.prompt, w.tenant);
      fetch->first = fetch->resident / opt_.block_tokens;
      if (const std::string& id = w.job.request.agent_id; !id.empty() && AgentRegistry::ValidId(id)) {
        for (auto& r : store_->agents().Find(id, tenant)) fetch->hint = std::move(r.chain);
      }
      w.fetch = fetch;
      w.prefetch = store_->StartPrefetch(std::move(fetch));
    }
    waiting_.push_back(std::move(w));
  }

  // Cancelled requests leave; requests that waited too long get a retryable error.
  void Reap() {
    for (auto& s : running_) {
      if (s->job.handle->cancelled()) Finish(*s, FinishReason::kCancelled);
    }
    EraseDone();
    const auto now = Clock::now();
    const auto timeout = std::chrono::milliseconds(opt_.queue_timeout_ms);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->job.handle->cancelled()) {
        GenerationEvent done;
        done.kind = GenerationEvent::Kind::kDone;
        done.finish = FinishReason::kCancelled;
        it->job.handle->events().Push(std::move(done));
        it->job.handle->events().Close();
        owner_->pending_.fetch_sub(1);
        it = waiting_.erase(it);
      } else if (now - it->job.submitted > timeout) {
        Reject(it->job, Status::Overloaded("timed out after " + std::to_string(opt_.queue_timeout_ms) +
                                           " ms waiting for capacity; retry later"));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // FIFO: the head of the queue runs first; nobody overtakes it.
  void Admit() {
    while (!waiting_.empty() && running_.size() < opt_.parallel) {
      Waiting& w = waiting_.front();
      // Its blocks are still being read: it keeps its place (FIFO); running requests go on.
      if (w.prefetch && !w.prefetch->done.load(std::memory_order_acquire)) break;
      const int32_t max_total = static_cast<int32_t>(w.prompt.size()) + ReservedAnswer(w.max_tokens, 0);
      auto lease = pool_->Acquire(w.prompt, max_total, w.tenant);
      if (!lease) break;
      auto s = std::make_unique<Seq>();
      s->job = std::move(w.job);
      s->prompt = std::move(w.prompt);
      s->max_tokens = w.max_tokens;
      s->reserved_total = max_total;
      s->to_context_end = w.to_context_end;
      s->slot = lease->slot;
      s->n_past = lease->reused;
      s->cached = lease->reused;  // resident; Restore may replace a partial block
      s->sampler = std::move(w.sampler);
      s->text = TextStream(w.stops);
      s->preserved = std::move(w.preserved);
      s->salt = w.salt;
      if (store_) Restore(*s, w);
      s->keys = std::move(w.keys);
      s->admitted = Clock::now();
      counters_.prompt_tokens_cached += static_cast<uint64_t>(s->n_past);
      waiting_.pop_front();
      Seq& admitted = *running_.emplace_back(std::move(s));
      // Submit's room check reads these two: running first, so that no moment shows the
      // request in neither count (it would let one request too many in).
      owner_->running_.store(static_cast<uint32_t>(running_.size()));
      owner_->pending_.fetch_sub(1);
      if (admitted.job.request.stream) {  // the stream starts now, not after the prompt is computed
        GenerationEvent started;
        started.kind = GenerationEvent::Kind::kStarted;
        FillPromptCounts(admitted, started);
        admitted.job.handle->events().Push(std::move(started));
      }
    }
  }

  // Extends a newly admitted sequence with the prompt blocks the store has (RAM or disk), from
  // where its resident prefix ends: each block is deserialised into the I/O scratch sequence and
  // shared into the request's sequence, then the scratch is dropped.
  void Restore(Seq& s, const Waiting& w) {
    const uint32_t bt = opt_.block_tokens;
    auto record_for = [&](size_t i) -> std::pair<std::shared_ptr<const BlockRecord>, bool> {
      if (i >= w.keys.size()) return {nullptr, false};
      const Prefetch* p = w.prefetch.get();
      if (p && i >= p->first && i - p->first < p->records.size())
        return {p->records[i - p->first], p->from_disk[i - p->first]};
      auto r = store_->GetRam(w.keys[i]);
      if (r && !std::equal(r->tokens.begin(), r->tokens.end(), s.prompt.begin() + static_cast<long>(i * bt)))
        r = nullptr;
      return {r, false};
    };
    const auto t0 = Clock::now();
    size_t b = static_cast<size_t>(s.n_past) / bt;
    for (auto next = record_for(b); next.first && next.first->tokens.size() == bt; next = record_for(++b)) {
      if (static_cast<size_t>(s.n_past) > b * bt)
        TruncateTo(s, b * bt);  // a partial resident block: the stored one replaces it
      if (!Place(s, *next.first, next.second, bt)) break;
    }
    // Then the conversation's last, partial block, when the store has it and it reaches further
    // than what is resident.
    const size_t pos = b * bt;
    const size_t min_len = static_cast<size_t>(s.n_past) > pos ? static_cast<size_t>(s.n_past) - pos + 1 : 1;
    PartialBlock partial;
    if (const Prefetch* p = w.prefetch.get();
        p && p->partial.record && p->partial.record->first_pos == pos && p->partial.tokens >= min_len) {
      partial = p->partial;  // found after the same blocks
    } else if (w.fetch) {
      partial = store_->FindPartialInRam(*w.fetch, b, min_len);
    }
    if (partial.record && partial.tokens >= min_len && pos + partial.tokens < s.prompt.size() &&
        std::equal(partial.record->tokens.begin(), partial.record->tokens.begin() + static_cast<long>(partial.tokens),
                   s.prompt.begin() + static_cast<long>(pos))) {
      if (static_cast<size_t>(s.n_past) > pos) TruncateTo(s, pos);
      Place(s, *partial.record, partial.from_disk, partial.tokens);
    }
    counters_.restore_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    counters_.restored_tokens_ram += static_cast<uint64_t>(s.cached_ram);
    counters_.restored_tokens_disk += static_cast<uint64_t>(s.cached_disk);
  }

  // Drops a newly admitted sequence's resident tokens from `n` on (a stored block replaces them).
  void TruncateTo(Seq& s, size_t n) {
    pool_->Truncate(s.slot, n);
    s.n_past = static_cast<int32_t>(n);
    s.cached = s.n_past;
  }

  // Places the first `n` tokens of a stored block at the end of the sequence: deserialised into
  // the I/O scratch sequence, cut to `n` tokens (their KV does not depend on the later ones),
  // checked to sit at the right positions, shared into the request's sequence. False (nothing
  // changed) when it does not fit.
  bool Place(Seq& s, const BlockRecord& rec, bool from_disk, size_t n_tokens) {
    llama_memory_t mem = llama_get_memory(ctx_);
    const auto n = static_cast<llama_pos>(n_tokens);
    const size_t read = llama_state_seq_set_data(ctx_, rec.kv.data(), rec.kv.size(), io_seq_);
    bool placed = n > 0 && n_tokens <= rec.tokens.size() && rec.first_pos == static_cast<uint32_t>(s.n_past) &&
                  read == rec.kv.size() && llama_memory_seq_pos_min(mem, io_seq_) == s.n_past &&
                  llama_memory_seq_pos_max(mem, io_seq_) == s.n_past + static_cast<llama_pos>(rec.tokens.size()) - 1;
    if (placed && n_tokens < rec.tokens.size()) {
      placed = llama_memory_seq_rm(mem, io_seq_, s.n_past + n, -1) &&
               llama_memory_seq_pos_max(mem, io_seq_) == s.n_past + n - 1;
    }
    if (placed) llama_memory_seq_cp(mem, io_seq_, s.slot, -1, -1);
    llama_memory_seq_rm(mem, io_seq_, -1, -1);
    if (!placed) {
      spdlog::warn("kv store: block {} could not be restored; computing from there", rec.key.Hex());
      return false;
    }
    pool_->Append(s.slot, rec.tokens.data(), n_tokens);
    s.n_past += n;
    (from_disk ? s.cached_disk : s.cached_ram) += n;
    return true;
  }

  // Hands every block of a finished sequence that the store lacks (its full blocks and the partial
  // last one) to the store (RAM now, disk in the background). Serialising is a copy of the block's cells: share them
  // into the I/O scratch sequence, read its state, drop the scratch.
  void Save(const Seq& s) {
    const uint32_t bt = opt_.block_tokens;
    const std::vector<Token>& toks = pool_->tokens(s.slot);
    // The prompt's keys were computed at intake; only the generated tokens' blocks are new.
    std::vector<BlockKey> keys = s.keys;
    ExtendBlockKeys(s.salt, toks, bt, &keys);
    llama_memory_t mem = llama_get_memory(ctx_);
    const auto t0 = Clock::now();
    const size_t n_full = keys.size();
    // The partial last block too (the next turn would otherwise recompute up to bt - 1 tokens):
    // a tail block, keyed by its parent and its tokens (see TailBlockKeys).
    if (const size_t tail = toks.size() - n_full * bt; tail > 0) {
      keys.push_back(TailBlockKeys(n_full == 0 ? s.salt : keys[n_full - 1], toks.data() + n_full * bt, tail).back());
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      if (store_->Keep(keys[i])) continue;
      const auto p0 = static_cast<llama_pos>(i * bt);
      const auto p1 = static_cast<llama_pos>(std::min(toks.size(), (i + 1) * bt));
      llama_memory_seq_cp(mem, s.slot, io_seq_, p0, p1);
      auto rec = store_->NewRecord(llama_state_seq_get_size(ctx_, io_seq_));
      rec->kv.resize(llama_state_seq_get_data(ctx_, rec->kv.data(), rec->kv.size(), io_seq_));
      llama_memory_seq_rm(mem, io_seq_, -1, -1);
      rec->key = keys[i];
      rec->parent = i == 0 ? s.salt : keys[i - 1];
      rec->fingerprint = fingerprint_;
      rec->kv_type = opt_.cache_type;
      rec->first_pos = static_cast<uint32_t>(p0);
      rec->tokens.assign(toks.begin() + p0, toks.begin() + p1);
      store_->Put(std::move(rec));
      ++counters_.blocks_saved;
    }
    counters_.save_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    const GenerateRequest& req = s.job.request;
    if (!req.agent_id.empty() && AgentRegistry::ValidId(req.agent_id)) {
      AgentRecord r;
      r.tenant = req.tenant;
      r.id = req.agent_id;
      r.chain = std::move(keys);
      r.tokens = static_cast<uint32_t>(toks.size());
      r.turns = 1;
      r.last_use_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      store_->RecordAgent(std::move(r));
    }
  }

  // One throw-away decode while /health still says "loading", as llama-server does: the first
  // request would otherwise pay for paging the model's weights in and for llama.cpp's first
  // graph and buffers. Two tokens, so that the batched kernels are touched too.
  void WarmUp() {
    const auto t0 = Clock::now();
    llama_token tok = llama_vocab_bos(vocab_);
    if (tok == LLAMA_TOKEN_NULL) tok = 0;
    batch_.n_tokens = 0;
    AddToBatch(tok, 0, pad_seq_, false);
    AddToBatch(tok, 1, pad_seq_, true);
    const int rc = llama_decode(ctx_, batch_);
    llama_synchronize(ctx_);
    llama_memory_seq_rm(llama_get_memory(ctx_), pad_seq_, -1, -1);
    batch_.n_tokens = 0;
    if (rc != 0) spdlog::warn("engine: warm-up decode failed (code {}); the first request will pay for it", rc);
    spdlog::info("engine: warm-up decode took {:.0f} ms", MsBetween(t0, Clock::now()));
  }

  void AddToBatch(llama_token tok, llama_pos pos, int seq, bool logits) {
    const int i = batch_.n_tokens++;
    batch_.token[i] = tok;
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = seq;
    batch_.logits[i] = logits;
  }

  // One continuous-batching step: build, decode, sample.
  // Answer tokens to reserve cells for, beyond the `have` already reserved (opt_.reserve_tokens).
  int32_t ReservedAnswer(int32_t max_tokens, int32_t have) const {
    if (opt_.reserve_tokens <= 0) return max_tokens;
    return std::min(max_tokens, have + opt_.reserve_tokens);
  }

  // A generating sequence whose next token has no reserved cell takes more (EngineOptions::
  // reserve_tokens); false when the pool cannot give them now (it waits this step).
  bool HasRoom(Seq& s) {
    if (s.prefill_left() > 0 || s.n_past + 1 <= s.reserved_total) return true;
    const int32_t prompt = static_cast<int32_t>(s.prompt.size());
    const int32_t total = prompt + ReservedAnswer(s.max_tokens, s.reserved_total - prompt);
    if (!pool_->Grow(s.slot, total)) return false;
    s.reserved_total = total;
    return true;
  }

  void Step() {
    std::vector<RunningSeq> view;
    view.reserve(running_.size());
    for (size_t i = 0; i < running_.size(); ++i) {
      if (HasRoom(*running_[i])) view.push_back({static_cast<int>(i), running_[i]->prefill_left()});
    }
    if (view.empty()) {
      // Every running answer waits for cells that only the others hold: the most recently
      // admitted one ends (retryable), and its cells let the others go on.
      spdlog::warn("engine: the KV pool is full of running answers; ending the most recent one");
      Fail(*running_.back(), Status::Overloaded("the KV pool filled up with running requests before this answer "
                                                "ended; retry later"));
      EraseDone();
      return;
    }
    const std::vector<StepEntry> plan = PlanStep(view, static_cast<int32_t>(step_budget_), &cursor_);
    batch_.n_tokens = 0;
    std::vector<std::pair<Seq*, int32_t>> to_sample;  // sequence, batch index of its logits
    for (const StepEntry& e : plan) {
      Seq& s = *running_[e.id];
      if (e.decode) {
        to_sample.emplace_back(&s, batch_.n_tokens);
        AddToBatch(s.next, s.n_past, s.slot, true);
        continue;
      }
      for (int32_t k = 0; k < e.n_tokens; ++k) {
        const int32_t pos = s.n_past + k;
        const bool last = pos == static_cast<int32_t>(s.prompt.size()) - 1;
        if (last) to_sample.emplace_back(&s, batch_.n_tokens);
        AddToBatch(s.prompt[pos], pos, s.slot, last);
      }
    }
    ++counters_.steps;
    // Exactness: llama.cpp's CPU matmul takes a different kernel for a single-token batch (ggml
    // vec_dot) than for two or more (llamafile sgemm), with a different summation order. A lone
    // decode token therefore gets a throw-away companion in a scratch sequence, so that every
    // step uses the same kernels and a request's output does not depend on what else is running.
    // The same holds for the output projection, which runs over the step's output rows only: a
    // step with one output row takes vec_dot there too, so deterministic mode asks for a second,
    // unused row (the companion's, or any prompt token's).
    const bool padded = batch_.n_tokens == 1 && opt_.deterministic;
    if (padded) AddToBatch(batch_.token[0], 0, pad_seq_, true);
    if (opt_.deterministic && to_sample.size() == 1 && !padded) {
      const int32_t other = to_sample[0].second == 0 ? 1 : 0;
      batch_.logits[other] = true;
    }
    const auto t0 = Clock::now();
    const int rc = llama_decode(ctx_, batch_);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (padded) llama_memory_seq_rm(llama_get_memory(ctx_), pad_seq_, -1, -1);
    counters_.busy_seconds += secs;
    uint64_t n_decode = 0, n_prompt = 0;
    for (const StepEntry& e : plan) (e.decode ? n_decode : n_prompt) += static_cast<uint64_t>(e.n_tokens);
    counters_.prompt_tokens_computed += n_prompt;
    if (n_prompt == 0) {
      ++counters_.decode_only_steps;
      counters_.decode_only_tokens += n_decode;
      counters_.decode_only_seconds += secs;
    }
    if (rc != 0) {
      spdlog::error("engine: llama_decode failed (code {}) for a batch of {} tokens", rc, batch_.n_tokens);
      for (const StepEntry& e : plan) Fail(*running_[e.id], Status::Internal("the engine failed to decode"));
      EraseDone();
      return;
    }
    for (const StepEntry& e : plan) {
      Seq& s = *running_[e.id];
      const llama_token* toks = e.decode ? &s.next : s.prompt.data() + s.n_past;
      pool_->Append(s.slot, toks, static_cast<size_t>(e.n_tokens));
      s.n_past += e.n_tokens;
    }
    for (auto& [s, idx] : to_sample) Sample(*s, idx);
    EraseDone();
  }

  void Emit(Seq& s, std::string text) {
    if (text.empty()) return;
    std::vector<TokenLogprob> logprobs;
    if (s.logprobs) logprobs = s.logprobs->Sent(text.size());
    if (!s.job.request.stream) {  // delivered whole by Finish
      s.unsent += text;
      std::move(logprobs.begin(), logprobs.end(), std::back_inserter(s.unsent_logprobs));
      return;
    }
    GenerationEvent ev;
    ev.text = std::move(text);
    ev.logprobs = std::move(logprobs);
    FillPromptCounts(s, ev);
    s.job.handle->events().Push(std::move(ev));
  }

  // A sampled token's log-probability and the request's top alternatives, from the raw logits of
  // output row `idx` (the sampler chain works on a copy), queued until its text goes out.
  void AddLogprob(Seq& s, int32_t idx, llama_token tok, const std::string& piece) {
    if (!s.logprobs) s.logprobs = std::make_unique<LogprobQueue>();
    const int32_t n_top = std::min(s.job.request.top_logprobs, kMaxTopLogprobs);
    const TokenDistribution d = LogSoftmaxAt(llama_get_logits_ith(ctx_, idx), llama_vocab_n_tokens(vocab_), tok, n_top);
    TokenLogprob entry{piece, d.logprob, {}};
    for (const auto& [id, logprob] : d.top) entry.top.push_back({common_token_to_piece(ctx_, id, true), logprob});
    s.logprobs->Add(std::move(entry), piece.size());
  }

  void FillPromptCounts(const Seq& s, GenerationEvent& ev) const {
    ev.prompt_tokens = static_cast<int32_t>(s.prompt.size());
    ev.cached_resident = s.cached;
    ev.cached_ram = s.cached_ram;
    ev.cached_disk = s.cached_disk;
    ev.cached_tokens = s.cached + s.cached_ram + s.cached_disk;
  }

  void Sample(Seq& s, int32_t idx) {
    if (opt_.digest_logits) s.digests.push_back(LogitsDigest(idx));
    // A demo chat model's end-of-turn ramp (demo_model.h): its answers end as a trained model's
    // would. Only the sampler sees it: the logits row is restored (logprobs report the model's).
    float* end_logit = end_ramp_ > 0.0f && end_token_ != LLAMA_TOKEN_NULL ? &llama_get_logits_ith(ctx_, idx)[end_token_] : nullptr;
    const float end_logit_was = end_logit ? *end_logit : 0.0f;
    if (end_logit) *end_logit += end_ramp_ * static_cast<float>(s.n_gen);
    const llama_token tok = llama_sampler_sample(s.sampler.get(), ctx_, idx);
    if (end_logit) *end_logit = end_logit_was;
    if (s.ttft_ms < 0) s.ttft_ms = MsBetween(s.job.submitted, Clock::now());
    if (llama_vocab_is_eog(vocab_, tok)) return Finish(s, FinishReason::kStop);
    ++s.n_gen;
    ++counters_.tokens_generated;
    const bool special = std::find(s.preserved.begin(), s.preserved.end(), tok) != s.preserved.end();
    const std::string piece = common_token_to_piece(ctx_, tok, special);
    if (s.job.request.top_logprobs >= 0) AddLogprob(s, idx, tok, piece);
    Emit(s, s.text.Push(piece));
    if (s.text.stopped()) {
      // One of the client's stop sequences, or one the chat template adds (an end of turn).
      const auto& asked = s.job.request.stop;
      const bool client_stop = std::find(asked.begin(), asked.end(), *s.text.matched()) != asked.end();
      return Finish(s, client_stop ? FinishReason::kStopSequence : FinishReason::kStop);
    }
    if (s.n_gen >= s.max_tokens) return Finish(s, s.to_context_end ? FinishReason::kContextLength : FinishReason::kLength);
    s.next = tok;
  }

  // FNV-1a over the raw bytes of one output row's logits.
  uint64_t LogitsDigest(int32_t idx) const {
    const float* logits = llama_get_logits_ith(ctx_, idx);
    const auto* bytes = reinterpret_cast<const unsigned char*>(logits);
    const size_t n = sizeof(float) * static_cast<size_t>(llama_vocab_n_tokens(vocab_));
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    return h;
  }

  void Finish(Seq& s, FinishReason reason) {
    if (reason != FinishReason::kCancelled) Emit(s, s.text.Flush());
    if (s.logprobs && reason != FinishReason::kCancelled) {
      // The tokens whose text was held back to the end (all, or up to a stop sequence's cut).
      std::vector<TokenLogprob> rest = s.logprobs->Rest(s.text.stopped());
      std::move(rest.begin(), rest.end(), std::back_inserter(s.unsent_logprobs));
    }
    if (!s.unsent.empty() || !s.unsent_logprobs.empty()) {
      GenerationEvent ev;
      ev.text = std::move(s.unsent);
      ev.logprobs = std::move(s.unsent_logprobs);
      FillPromptCounts(s, ev);
      s.job.handle->events().Push(std::move(ev));
    }
    GenerationEvent done;
    done.kind = GenerationEvent::Kind::kDone;
    done.finish = reason;
    if (reason == FinishReason::kStopSequence) done.stop_sequence = *s.text.matched();
    FillPromptCounts(s, done);
    done.completion_tokens = s.n_gen;
    done.queue_ms = MsBetween(s.job.submitted, s.admitted);
    done.ttft_ms = s.ttft_ms;
    done.total_ms = MsBetween(s.job.submitted, Clock::now());
    done.logits_digests = std::move(s.digests);
    // A cancelled request's cells are freed; a finished one stays resident for its next turn
    // and its blocks go to the store.
    if (reason == FinishReason::kCancelled) {
      pool_->Free(s.slot);
    } else {
      if (store_) Save(s);
      pool_->Release(s.slot);
      if (!s.job.request.agent_id.empty())
        pool_->SetOwner(s.slot, OwnerTag(s.job.request.tenant, s.job.request.agent_id));
    }
    auto deliver = [handle = s.job.handle, done = std::move(done)]() mutable {
      handle->events().Push(std::move(done));
      handle->events().Close();
    };
    if (store_ && opt_.sync_durability && reason != FinishReason::kCancelled) {
      store_->AfterWrites(std::move(deliver));  // the I/O thread answers once the blocks are on disk
    } else {
      deliver();
    }
    s.done = true;
  }

  void Fail(Seq& s, Status status) {
    SendError(s.job.handle, std::move(status));
    pool_->Free(s.slot);
    s.done = true;
  }

  void EraseDone() {
    running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->done; }),
                   running_.end());
  }

  void PublishStats() {
    const KvPoolStats ps = pool_->stats();
    std::lock_guard<std::mutex> lock(owner_->stats_mu_);
    EngineStats& st = owner_->stats_;
    st = counters_;
    st.pool_blocks_total = ps.total_blocks;
    st.pool_blocks_used = ps.used_blocks;
    st.pool_blocks_reserved = ps.reserved_blocks;
    st.pool_utilization = ps.utilization();
    st.pool_active_utilization = ps.active_utilization();
    st.running = static_cast<uint32_t>(running_.size());
    owner_->running_.store(st.running);
    st.idle_resident = ps.idle_slots;
    st.idle_blocks = ps.idle_blocks;
    st.idle_trims = ps.idle_trims;
    st.evictions = ps.evictions;
  }

  void Shutdown() {
    const Status gone = Status::Unavailable("the server is shutting down");
    for (auto& s : running_) Fail(*s, gone);
    running_.clear();
    for (auto& w : waiting_) Reject(w.job, gone);
    waiting_.clear();
    while (auto job = owner_->queue_.TryPop()) {
      if (job->control) {  // admin work still answers (its caller waits for it)
        job->control(*this);
        owner_->pending_.fetch_sub(1);
      } else {
        Reject(*job, gone);
      }
    }
  }

  Engine* owner_;
  const EngineOptions& opt_;
  llama_model* model_ = nullptr;
  llama_context* ctx_ = nullptr;
  const llama_vocab* vocab_ = nullptr;
  common_chat_templates_ptr templates_;
  std::unique_ptr<ChatRenderer> renderer_;
  float end_ramp_ = 0.0f;  // kDemoEndRampKey of a demo chat model; 0 = none
  llama_token end_token_ = LLAMA_TOKEN_NULL;
  std::unique_ptr<LlamaKvOps> kv_ops_;
  std::unique_ptr<KvPool> pool_;
  llama_batch batch_{};
  int32_t n_train_ = 0;
  uint32_t ctx_limit_ = 0;
  std::deque<Waiting> waiting_;
  std::vector<std::unique_ptr<Seq>> running_;
  size_t cursor_ = 0;
  EngineStats counters_;      // throughput counters; PublishStats copies them with the rest
  int pad_seq_ = 0;           // scratch sequence for padding single-token batches
  uint32_t step_budget_ = 0;  // tokens per step: --step-tokens, capped in deterministic mode
  int io_seq_ = 0;            // scratch sequence for saving and restoring blocks
  std::string fingerprint_;
  std::shared_ptr<BufferPool> buffers_;  // the KV store's block buffers
  std::thread prefault_;                 // fills buffers_ at load
  std::atomic<bool> stop_prefault_{false};
  std::unique_ptr<KvStore> store_;
};

Engine::Engine(const EngineOptions& options) : options_(options) {
  info_.id = options.model_id.empty() ? options.model_path.stem().string() : options.model_id;
  info_.path = options.model_path.string();
}

Engine::~Engine() {
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

StatusOr<std::unique_ptr<Engine>> Engine::Start(const EngineOptions& options) {
  std::unique_ptr<Engine> engine(new Engine(options));
  std::promise<Status> ready;
  std::future<Status> loaded = ready.get_future();
  engine->thread_ = std::thread([e = engine.get(), &ready] { e->Run(&ready); });
  Status s = loaded.get();
  if (!s.ok()) {
    engine->queue_.Close();
    engine->thread_.join();
    return s;
  }
  return engine;
}

size_t Engine::EvictAgentFromPool(const std::string& tenant, const std::string& agent_id) {
  auto done = std::make_shared<std::promise<size_t>>();
  auto result = done->get_future();
  Job job;
  job.control = [done, tenant, agent_id](Impl& impl) { done->set_value(impl.FreeAgentSlots(tenant, agent_id)); };
  pending_.fetch_add(1);
  if (!queue_.Push(std::move(job))) {
    pending_.fetch_sub(1);
    return 0;
  }
  return result.get();
}

KvStore* Engine::store() const {
  return store_.load();
}

std::shared_ptr<RequestHandle> Engine::Submit(GenerateRequest request) {
  auto handle = std::make_shared<RequestHandle>();
  // A request that sets no temperature gets the server's (--temperature; 1 as in both APIs).
  if (!request.sampling.temperature) request.sampling.temperature = options_.default_temperature;
  // Room: the free decoding slots (a request there starts at the next step) plus the queue.
  // `pending_` before `running_`: Admit raises running before it lowers pending, so a request
  // being admitted is counted in one of the two.
  const uint32_t pending = pending_.fetch_add(1);
  const uint32_t running = running_.load();
  const uint32_t room = options_.max_queue + (options_.parallel > running ? options_.parallel - running : 0);
  if (pending >= room) {
    pending_.fetch_sub(1);
    SendError(handle, Status::Overloaded("the server is at capacity (" + std::to_string(options_.max_queue) +
                                         " requests waiting); retry later"));
    return handle;
  }
  if (!queue_.Push(Job{std::move(request), handle, Clock::now(), nullptr})) {
    pending_.fetch_sub(1);
    SendError(handle, Status::Unavailable("the server is shutting down"));
  }
  return handle;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  EngineStats st = stats_;
  st.waiting = pending_.load();
  return st;
}

KvStoreStats Engine::store_stats() const {
  KvStore* store = store_.load();
  return store ? store->stats() : KvStoreStats{};
}

void Engine::Run(std::promise<Status>* ready) {
  impl_ = std::make_unique<Impl>(this);
  Status s = impl_->Load(&info_);
  if (!s.ok()) impl_.reset();  // free llama state on this thread
  ready->set_value(s);
  if (!s.ok()) return;
  spdlog::info(
      "engine: model {} loaded ({}, {} params); pool {} tokens ({:.1f} MiB {} KV, blocks of {}), "
      "request context {} tokens, {} parallel, {} resident",
      info_.id, info_.description, info_.n_params, info_.pool_tokens, static_cast<double>(info_.pool_bytes) / (1 << 20),
      info_.cache_type, info_.block_tokens, info_.ctx_size, options_.parallel, options_.resident_seqs);
  impl_->Loop();
  impl_.reset();
}

}  // namespace kvault

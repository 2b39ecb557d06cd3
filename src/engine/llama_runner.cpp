#include "engine/llama_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <thread>

#include "common.h"
#include "engine/logprobs.h"
#include "llama.h"
#include "model/demo_model.h"

namespace kvault {

namespace {

using Clock = std::chrono::steady_clock;

std::optional<ggml_type> ParseCacheType(const std::string& name) {
  if (name == "f16") return GGML_TYPE_F16;
  if (name == "q8_0") return GGML_TYPE_Q8_0;
  if (name == "q4_0") return GGML_TYPE_Q4_0;
  return std::nullopt;
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

const char* DeviceTypeName(enum ggml_backend_dev_type t) {
  switch (t) {
    case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
    case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
    case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
    case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accel";
    default: return "other";
  }
}

bool IsGpu(ggml_backend_dev_t dev) {
  const auto t = ggml_backend_dev_type(dev);
  return t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU;
}

}  // namespace

std::vector<DeviceInfo> LlamaRunner::Devices() {
  llama_backend_init();
  std::vector<DeviceInfo> out;
  for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
    ggml_backend_dev_t dev = ggml_backend_dev_get(i);
    DeviceInfo d;
    d.name = ggml_backend_dev_name(dev);
    d.description = ggml_backend_dev_description(dev);
    d.type = DeviceTypeName(ggml_backend_dev_type(dev));
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    d.backend = reg ? ggml_backend_reg_name(reg) : "";
    size_t free = 0, total = 0;
    ggml_backend_dev_memory(dev, &free, &total);
    d.memory_free_bytes = free;
    d.memory_total_bytes = total;
    out.push_back(std::move(d));
  }
  return out;
}

std::string LlamaRunner::KvBackend() {
  llama_backend_init();
  std::vector<std::string> names;
  for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
    ggml_backend_dev_t dev = ggml_backend_dev_get(i);
    if (!IsGpu(dev)) continue;
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    const std::string name = reg ? ggml_backend_reg_name(reg) : "GPU";
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::string tag;
  for (const auto& n : names) tag += (tag.empty() ? "" : "+") + n;
  return tag;
}

struct LlamaRunner::Batch {
  llama_batch b{};
  ~Batch() {
    if (b.token) llama_batch_free(b);
  }
};

LlamaRunner::~LlamaRunner() {
  renderer_.reset();
  templates_.reset();
  batch_.reset();
  if (ctx_) llama_free(ctx_);
  if (model_) llama_model_free(model_);
}

StatusOr<std::unique_ptr<LlamaRunner>> LlamaRunner::LoadModel(const std::filesystem::path& path,
                                                              const OffloadSpec& offload) {
  llama_backend_init();
  std::unique_ptr<LlamaRunner> r(new LlamaRunner());
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = offload.gpu_layers < 0 ? -1 : offload.gpu_layers;
  if (offload.main_gpu >= 0) {
    int gpus = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) gpus += IsGpu(ggml_backend_dev_get(i)) ? 1 : 0;
    if (gpus == 0) {
      spdlog::warn("engine: --main-gpu {} ignored: no GPU device (a CPU-only build, or none visible)",
                   offload.main_gpu);
    } else if (offload.main_gpu >= gpus) {
      return Status::InvalidArgument("--main-gpu " + std::to_string(offload.main_gpu) + ": there are " +
                                     std::to_string(gpus) + " GPU devices (0.." + std::to_string(gpus - 1) + ")");
    } else {
      mp.split_mode = LLAMA_SPLIT_MODE_NONE;  // the whole model on that one GPU
      mp.main_gpu = offload.main_gpu;
    }
  }
  // Progress in the log while a large model loads (every 25 %).
  struct Progress {
    std::string name;
    int next = 25;
  } progress{path.filename().string()};
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
  r->model_ = llama_model_load_from_file(path.c_str(), mp);
  if (!r->model_) return Status::Corruption("llama.cpp could not load model " + path.string());
  r->vocab_ = llama_model_get_vocab(r->model_);
  char ramp[32] = {};
  if (llama_model_meta_val_str(r->model_, kDemoEndRampKey, ramp, sizeof(ramp)) > 0) {
    r->end_ramp_ = std::strtof(ramp, nullptr);
    r->end_token_ =
        llama_vocab_eot(r->vocab_) != LLAMA_TOKEN_NULL ? llama_vocab_eot(r->vocab_) : llama_vocab_eos(r->vocab_);
    spdlog::info("engine: demo chat model: end-of-turn logit + {} per generated token", r->end_ramp_);
  }
  char desc[256] = {};
  llama_model_desc(r->model_, desc, sizeof(desc));
  ModelFacts& f = r->facts_;
  f.description = desc;
  f.n_ctx_train = llama_model_n_ctx_train(r->model_);
  f.n_layer = llama_model_n_layer(r->model_);
  f.n_params = llama_model_n_params(r->model_);
  f.size_bytes = llama_model_size(r->model_);
  f.recurrent = llama_model_is_recurrent(r->model_) || llama_model_is_hybrid(r->model_);
  f.sliding_window = llama_model_n_swa(r->model_) > 0;
  return r;
}

uint64_t LlamaRunner::KvBytesPerToken(const std::string& cache_type) const {
  const auto type = ParseCacheType(cache_type);
  if (!type) return 0;
  const int64_t n_layer = llama_model_n_layer(model_);
  const int64_t n_head = std::max(1, llama_model_n_head(model_));
  const int64_t n_head_kv = llama_model_n_head_kv(model_);
  int64_t head_k = llama_model_n_embd(model_) / n_head;
  int64_t head_v = head_k;
  char arch[64] = {};
  if (llama_model_meta_val_str(model_, "general.architecture", arch, sizeof(arch)) > 0) {
    char buf[32] = {};
    if (llama_model_meta_val_str(model_, (std::string(arch) + ".attention.key_length").c_str(), buf, sizeof(buf)) > 0) {
      head_k = std::atoll(buf);
    }
    if (llama_model_meta_val_str(model_, (std::string(arch) + ".attention.value_length").c_str(), buf, sizeof(buf)) >
        0) {
      head_v = std::atoll(buf);
    }
  }
  return static_cast<uint64_t>(n_layer) *
         (ggml_row_size(*type, n_head_kv * head_k) + ggml_row_size(*type, n_head_kv * head_v));
}

Status LlamaRunner::CreateContext(const ContextSpec& spec) {
  const auto type = ParseCacheType(spec.cache_type);
  if (!type) return Status::InvalidArgument("unknown KV cache type '" + spec.cache_type + "' (f16, q8_0, q4_0)");
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = spec.pool_tokens;
  cp.n_seq_max = spec.n_seq_max;
  cp.n_batch = spec.n_batch;
  cp.n_ubatch = cp.n_batch;  // one ubatch per step
  cp.kv_unified = true;      // one pool; seq_cp shares cells between sequences
  cp.type_k = *type;
  cp.type_v = *type;
  // Sliding-window layers would drop cells outside the window; keep them so blocks are whole.
  cp.swa_full = facts_.sliding_window;
  const int32_t threads =
      spec.n_threads > 0 ? spec.n_threads : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.no_perf = true;
  // Flash attention decided here, not by llama.cpp's "auto", because it changes the stored V
  // layout and so belongs in the cache fingerprint. Quantized V needs it.
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
  ctx_ = llama_init_from_model(model_, cp);
  if (!ctx_ && *type == GGML_TYPE_F16) {
    spdlog::warn("engine: flash attention unavailable for this model; running without it");
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    ctx_ = llama_init_from_model(model_, cp);
  }
  if (!ctx_) {
    return Status::Internal("llama.cpp could not create a context (pool " + std::to_string(spec.pool_tokens) +
                            " tokens, cache type " + spec.cache_type + ")");
  }
  layout_.flash_attn = cp.flash_attn_type == LLAMA_FLASH_ATTN_TYPE_ENABLED;
  layout_.swa_full = cp.swa_full;
  try {
    templates_ = common_chat_templates_init(model_, "");
    renderer_ = std::make_unique<ChatRenderer>(templates_.get(), vocab_);
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("model chat template is invalid: ") + e.what());
  }
  deterministic_ = spec.deterministic;
  pad_seq_ = static_cast<int>(spec.n_seq_max) - 2;
  io_seq_ = pad_seq_ + 1;
  kv_ops_ = std::make_unique<LlamaKvOps>(ctx_);
  batch_ = std::make_unique<Batch>();
  batch_->b = llama_batch_init(static_cast<int32_t>(cp.n_batch), 0, 1);
  WarmUp();
  return Status::Ok();
}

uint32_t LlamaRunner::pool_tokens() const {
  return ctx_ ? llama_n_ctx(ctx_) : 0;
}

std::vector<Token> LlamaRunner::Tokenize(const std::string& text, bool parse_special) const {
  return common_tokenize(vocab_, text, /*add_special=*/true, parse_special);
}

StatusOr<SamplerPtr> LlamaRunner::NewSampler(const SamplingParams& p, const GrammarSpec* grammar,
                                             const ReasoningBudget* reasoning) const {
  auto s = MakeSampler(p, vocab_, grammar, reasoning);
  if (!s.ok()) return s.status();
  return SamplerPtr(s.value());
}

void LlamaRunner::Add(const BatchToken& t) {
  llama_batch& b = batch_->b;
  const int i = b.n_tokens++;
  b.token[i] = t.token;
  b.pos[i] = t.pos;
  b.n_seq_id[i] = 1;
  b.seq_id[i][0] = t.seq;
  b.logits[i] = t.logits;
}

// One throw-away decode while /health still says "loading", as llama-server does: the first
// request would otherwise pay for paging the model's weights in and for llama.cpp's first graph
// and buffers. Two tokens, so that the batched kernels are touched too.
void LlamaRunner::WarmUp() {
  const auto t0 = Clock::now();
  Token tok = llama_vocab_bos(vocab_);
  if (tok == LLAMA_TOKEN_NULL) tok = 0;
  batch_->b.n_tokens = 0;
  Add({tok, 0, pad_seq_, false});
  Add({tok, 1, pad_seq_, true});
  const int rc = llama_decode(ctx_, batch_->b);
  llama_synchronize(ctx_);
  llama_memory_seq_rm(llama_get_memory(ctx_), pad_seq_, -1, -1);
  batch_->b.n_tokens = 0;
  if (rc != 0) spdlog::warn("engine: warm-up decode failed (code {}); the first request will pay for it", rc);
  spdlog::info("engine: warm-up decode took {:.0f} ms",
               std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
}

LlamaRunner::StepResult LlamaRunner::Decode(const std::vector<BatchToken>& tokens) {
  llama_batch& b = batch_->b;
  b.n_tokens = 0;
  int rows = 0;
  for (const BatchToken& t : tokens) {
    Add(t);
    rows += t.logits ? 1 : 0;
  }
  // Exactness: llama.cpp's CPU matmul takes a different kernel for a single-token batch (ggml
  // vec_dot) than for two or more (llamafile sgemm), with a different summation order. A lone
  // token therefore gets a throw-away companion in a scratch sequence, so that every step uses
  // the same kernels and a request's output does not depend on what else is running. The same
  // holds for the output projection, which runs over the step's output rows only: a step with
  // one output row takes vec_dot there too, so deterministic mode asks for a second, unused row
  // (the companion's, or any other token's).
  const bool padded = deterministic_ && b.n_tokens == 1;
  if (padded) Add({b.token[0], 0, pad_seq_, true});
  if (deterministic_ && !padded && rows == 1 && b.n_tokens > 1) {
    for (int i = 0; i < b.n_tokens; ++i) {
      if (!b.logits[i]) {
        b.logits[i] = true;
        break;
      }
    }
  }
  StepResult r;
  const auto t0 = Clock::now();
  const int rc = llama_decode(ctx_, b);
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (padded) llama_memory_seq_rm(llama_get_memory(ctx_), pad_seq_, -1, -1);
  r.ok = rc == 0;
  if (!r.ok) spdlog::error("engine: llama_decode failed (code {}) for a batch of {} tokens", rc, b.n_tokens);
  return r;
}

Token LlamaRunner::Sample(llama_sampler* sampler, int32_t row, int32_t ramp_steps) {
  // A demo chat model's end-of-turn ramp (demo_model.h): its answers end as a trained model's
  // would. Only the sampler sees it: the logits row is restored (logprobs report the model's).
  float* end_logit =
      end_ramp_ > 0.0f && end_token_ != LLAMA_TOKEN_NULL ? &llama_get_logits_ith(ctx_, row)[end_token_] : nullptr;
  const float end_logit_was = end_logit ? *end_logit : 0.0f;
  if (end_logit) *end_logit += end_ramp_ * static_cast<float>(ramp_steps);
  const Token tok = llama_sampler_sample(sampler, ctx_, row);
  if (end_logit) *end_logit = end_logit_was;
  return tok;
}

bool LlamaRunner::IsEndOfGeneration(Token tok) const {
  return llama_vocab_is_eog(vocab_, tok);
}

std::string LlamaRunner::Piece(Token tok, bool special) const {
  return common_token_to_piece(ctx_, tok, special);
}

TokenLogprob LlamaRunner::Logprob(int32_t row, Token tok, const std::string& piece, int32_t n_top) const {
  const TokenDistribution d = LogSoftmaxAt(llama_get_logits_ith(ctx_, row), llama_vocab_n_tokens(vocab_), tok, n_top);
  TokenLogprob entry{piece, d.logprob, {}};
  for (const auto& [id, logprob] : d.top) entry.top.push_back({common_token_to_piece(ctx_, id, true), logprob});
  return entry;
}

uint64_t LlamaRunner::LogitsDigest(int32_t row) const {
  const float* logits = llama_get_logits_ith(ctx_, row);
  const auto* bytes = reinterpret_cast<const unsigned char*>(logits);
  const size_t n = sizeof(float) * static_cast<size_t>(llama_vocab_n_tokens(vocab_));
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  return h;
}

size_t LlamaRunner::SaveBlock(int seq, int32_t p0, int32_t p1, const std::function<std::span<uint8_t>(size_t)>& alloc) {
  llama_memory_t mem = llama_get_memory(ctx_);
  llama_memory_seq_cp(mem, seq, io_seq_, p0, p1);
  const std::span<uint8_t> out = alloc(llama_state_seq_get_size(ctx_, io_seq_));
  const size_t written = llama_state_seq_get_data(ctx_, out.data(), out.size(), io_seq_);
  llama_memory_seq_rm(mem, io_seq_, -1, -1);
  return written;
}

bool LlamaRunner::LoadBlock(int seq, int32_t first_pos, std::span<const uint8_t> kv, size_t n_tokens, size_t n_keep) {
  llama_memory_t mem = llama_get_memory(ctx_);
  const auto n = static_cast<llama_pos>(n_keep);
  const size_t read = llama_state_seq_set_data(ctx_, kv.data(), kv.size(), io_seq_);
  bool placed = n > 0 && n_keep <= n_tokens && read == kv.size() &&
                llama_memory_seq_pos_min(mem, io_seq_) == first_pos &&
                llama_memory_seq_pos_max(mem, io_seq_) == first_pos + static_cast<llama_pos>(n_tokens) - 1;
  if (placed && n_keep < n_tokens) {
    placed = llama_memory_seq_rm(mem, io_seq_, first_pos + n, -1) &&
             llama_memory_seq_pos_max(mem, io_seq_) == first_pos + n - 1;
  }
  if (placed) llama_memory_seq_cp(mem, io_seq_, seq, -1, -1);
  llama_memory_seq_rm(mem, io_seq_, -1, -1);
  return placed;
}

}  // namespace kvault

// LlamaRunner: everything kvault asks of llama.cpp for one loaded model — the model, its one
// context (the KV pool), the batch, the scratch sequences — behind calls that speak kvault's
// terms: load, size the pool, run a step's tokens, sample a row, serialise and place a block.
//
// With engine/sampling and engine/chat_render it is the only engine code that includes llama.h:
// the seam where another backend (a GPU build's offload, another runtime) plugs in. The
// Scheduler and KvTransfer never see llama objects.
//
// Created, used and destroyed on the engine thread only; not thread-safe. Read-only facts
// (ModelFacts) may be copied out.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/chat_render.h"
#include "engine/device_info.h"
#include "engine/kv_pool.h"
#include "engine/request.h"
#include "engine/sampling.h"
#include "engine/step_planner.h"

struct llama_model;
struct llama_context;
struct llama_vocab;

namespace kvault {

// What the model file says, known once it is loaded.
struct ModelFacts {
  std::string description;  // e.g. "llama 8B F16"
  int32_t n_ctx_train = 0;
  int32_t n_layer = 0;
  uint64_t n_params = 0;
  uint64_t size_bytes = 0;
  bool recurrent = false;  // recurrent or hybrid: one state per sequence, not cut into blocks
  bool sliding_window = false;
};

// Where the model's layers go (llama_model_params). gpu_layers -1: all (llama.cpp's default; a
// build without a GPU backend has nowhere to put them, so it is CPU-only either way), 0: none.
// main_gpu -1: layers spread over every GPU; I >= 0: the whole model on GPU I.
struct OffloadSpec {
  int32_t gpu_layers = -1;
  int32_t main_gpu = -1;
};

// How the context (the pool) is made.
struct ContextSpec {
  uint32_t pool_tokens = 0;    // cells, a multiple of 256
  uint32_t n_seq_max = 0;      // resident sequences + scratch ones
  uint32_t n_batch = 0;        // the largest step
  std::string cache_type;      // f16, q8_0, q4_0 (K and V)
  int32_t n_threads = 0;       // 0: all cores
  bool deterministic = false;  // pad steps so that CPU kernels do not change with the batch
};

// The KV layout the context ended up with (part of the cache fingerprint).
struct KvLayout {
  bool flash_attn = false;
  bool swa_full = false;
};

class LlamaRunner {
 public:
  // Loads the model file (weights mapped, progress in the log every 25 %), its layers offloaded
  // as `offload` says. InvalidArgument for a --main-gpu that names no GPU.
  static StatusOr<std::unique_ptr<LlamaRunner>> LoadModel(const std::filesystem::path& path,
                                                          const OffloadSpec& offload = {});
  // Every backend device ggml enumerates (the CPU always), with its memory now.
  static std::vector<DeviceInfo> Devices();
  // The KV bytes' producer for the cache fingerprint: the backends of the GPU devices present
  // ("CUDA"; several joined by '+'), or "" when only the CPU computes. Conservative: a GPU
  // present counts even with --gpu-layers 0, as llama.cpp may still run large batches' matrix
  // products on it (op offload).
  static std::string KvBackend();
  ~LlamaRunner();
  LlamaRunner(const LlamaRunner&) = delete;
  LlamaRunner& operator=(const LlamaRunner&) = delete;

  const ModelFacts& facts() const { return facts_; }
  // Bytes of K and V per token in the pool for `cache_type` (0 for an unknown type; 0 also for a
  // model without attention layers' KV, e.g. recurrent).
  uint64_t KvBytesPerToken(const std::string& cache_type) const;

  // Creates the context, the batch and the chat renderer, and runs one warm-up decode. Flash
  // attention is on where the model allows it (required by quantized V). The two scratch
  // sequences are the last two of `n_seq_max`.
  Status CreateContext(const ContextSpec& spec);
  uint32_t pool_tokens() const;  // cells the context has (after llama.cpp's rounding)
  const KvLayout& layout() const { return layout_; }
  KvOps& kv_ops() { return *kv_ops_; }

  // The request's chat as prompt text, grammar, stops and parser (engine/chat_render).
  StatusOr<RenderedPrompt> Render(const GenerateRequest& req) const { return renderer_->Render(req); }
  std::vector<Token> Tokenize(const std::string& text, bool parse_special) const;
  StatusOr<SamplerPtr> NewSampler(const SamplingParams& p, const GrammarSpec* grammar,
                                  const ReasoningBudget* reasoning) const;

  struct StepResult {
    bool ok = false;
    double seconds = 0;  // in llama_decode
  };
  // Decodes one step. In deterministic mode a one-token step gets a throw-away companion in the
  // padding sequence and a step with one logits row asks for a second, so that ggml never takes
  // its one-row kernels (docs/architecture.md, "Exactness").
  StepResult Decode(const std::vector<BatchToken>& tokens);

  // Samples from logits row `row` of the last step. A demo chat model's end-of-turn ramp adds
  // `ramp_steps` × its slope to the end-of-turn logit for the sampler only.
  Token Sample(llama_sampler* sampler, int32_t row, int32_t ramp_steps);
  bool IsEndOfGeneration(Token tok) const;
  std::string Piece(Token tok, bool special) const;
  // The token's log-probability and the `n_top` most likely alternatives, from the raw logits.
  TokenLogprob Logprob(int32_t row, Token tok, const std::string& piece, int32_t n_top) const;
  // FNV-1a over the raw bytes of one row's logits (tests compare runs bit for bit).
  uint64_t LogitsDigest(int32_t row) const;

  // Serialises the cells of `seq` at positions [p0, p1) (llama_state_seq_get_data through the
  // I/O scratch sequence) into the buffer `alloc(size)` returns; returns the bytes written.
  size_t SaveBlock(int seq, int32_t p0, int32_t p1, const std::function<std::span<uint8_t>(size_t)>& alloc);
  // Places the first `n_keep` tokens of a serialised block (`n_tokens` tokens from position
  // `first_pos`) at the end of `seq`, which must hold exactly `first_pos` tokens: deserialised
  // into the I/O scratch sequence, cut, checked to sit at the right positions, shared into `seq`.
  // False, with nothing changed, when it does not fit.
  bool LoadBlock(int seq, int32_t first_pos, std::span<const uint8_t> kv, size_t n_tokens, size_t n_keep);

 private:
  LlamaRunner() = default;
  void WarmUp();
  void Add(const BatchToken& t);

  llama_model* model_ = nullptr;
  llama_context* ctx_ = nullptr;
  const llama_vocab* vocab_ = nullptr;
  ModelFacts facts_;
  KvLayout layout_;
  struct Batch;
  std::unique_ptr<Batch> batch_;
  std::unique_ptr<KvOps> kv_ops_;
  common_chat_templates_ptr templates_;
  std::unique_ptr<ChatRenderer> renderer_;
  bool deterministic_ = false;
  int pad_seq_ = 0;        // scratch: the padding companion of one-token steps
  int io_seq_ = 0;         // scratch: blocks on their way to and from the KV store
  float end_ramp_ = 0.0f;  // kDemoEndRampKey of a demo chat model; 0 = none
  Token end_token_ = -1;
};

}  // namespace kvault

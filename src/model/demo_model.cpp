#include "model/demo_model.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <system_error>

#include "core/fs_sync.h"
#include "ggml.h"
#include "gguf.h"
#include "model/demo_chat_template.h"

namespace kvault {

namespace fs = std::filesystem;

namespace {

// SplitMix64: tiny, well-known, and fully specified, so the same seed gives the same weights
// with any compiler and standard library (std::*_distribution are implementation-defined).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1), exact in binary32 (24 random bits).
  float NextSymmetric() { return static_cast<float>(static_cast<int64_t>(Next() >> 40) - (1 << 23)) / (1 << 23); }

 private:
  uint64_t state_;
};

struct TensorPlan {
  std::string name;
  ggml_type type;
  int64_t ne0;
  int64_t ne1;  // 1 for vectors
  float scale;  // uniform(-scale, scale); 0 means all ones (norm weights), kMinusOnes all -1
};
constexpr float kMinusOnes = -1.0f;  // Mamba's A: negative, so the state decays and stays finite

// Mamba (tiny-mamba): inner size 2 × n_embd (the only expansion llama.cpp supports).
constexpr int64_t kMambaConv = 4, kMambaState = 16, kMambaDtRank = 4;

std::vector<TensorPlan> PlanMambaLayer(const DemoModelSpec& s, const std::string& p) {
  const int64_t d_inner = 2 * s.n_embd;
  const float in_scale = 1.0f / std::sqrt(static_cast<float>(s.n_embd));
  const float inner_scale = 1.0f / std::sqrt(static_cast<float>(d_inner));
  return {{p + "attn_norm.weight", GGML_TYPE_F32, s.n_embd, 1, 0.0f},
          {p + "ssm_in.weight", GGML_TYPE_F16, s.n_embd, 2 * d_inner, in_scale},
          {p + "ssm_conv1d.weight", GGML_TYPE_F32, kMambaConv, d_inner, 0.5f},
          {p + "ssm_conv1d.bias", GGML_TYPE_F32, d_inner, 1, 0.1f},
          {p + "ssm_x.weight", GGML_TYPE_F16, d_inner, kMambaDtRank + 2 * kMambaState, inner_scale},
          {p + "ssm_dt.weight", GGML_TYPE_F16, kMambaDtRank, d_inner, 0.5f},
          {p + "ssm_dt.bias", GGML_TYPE_F32, d_inner, 1, 0.1f},
          {p + "ssm_a", GGML_TYPE_F32, kMambaState, d_inner, kMinusOnes},
          {p + "ssm_d", GGML_TYPE_F32, d_inner, 1, 0.0f},
          {p + "ssm_out.weight", GGML_TYPE_F16, d_inner, s.n_embd, inner_scale}};
}

std::vector<TensorPlan> PlanTensors(const DemoModelSpec& s, int64_t n_vocab) {
  const int64_t head_dim = s.n_head > 0 ? s.n_embd / s.n_head : 0;  // 0: no attention (mamba)
  const int64_t n_embd_kv = head_dim * s.n_head_kv;
  const float attn_scale = 1.0f / std::sqrt(static_cast<float>(s.n_embd));
  const float down_scale = s.n_ff > 0 ? 1.0f / std::sqrt(static_cast<float>(s.n_ff)) : 0.0f;
  std::vector<TensorPlan> plan;
  plan.push_back({"token_embd.weight", GGML_TYPE_F16, s.n_embd, n_vocab, 1.0f});
  plan.push_back({"output_norm.weight", GGML_TYPE_F32, s.n_embd, 1, 0.0f});
  // With a tied output, a random model mostly echoes the current token (a token's logit is the
  // dot product with its own embedding, which dominates the residual stream). A separate random
  // output projection makes the next token a pseudo-random function of the context, so different
  // prompts give different outputs and exactness tests can fail when they should.
  if (!s.tied_output) plan.push_back({"output.weight", GGML_TYPE_F16, s.n_embd, n_vocab, attn_scale});
  for (uint32_t i = 0; i < s.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    if (s.arch == "mamba") {
      for (auto& t : PlanMambaLayer(s, p)) plan.push_back(std::move(t));
      continue;
    }
    plan.push_back({p + "attn_norm.weight", GGML_TYPE_F32, s.n_embd, 1, 0.0f});
    plan.push_back({p + "attn_q.weight", GGML_TYPE_F16, s.n_embd, s.n_embd, attn_scale});
    plan.push_back({p + "attn_k.weight", GGML_TYPE_F16, s.n_embd, n_embd_kv, attn_scale});
    plan.push_back({p + "attn_v.weight", GGML_TYPE_F16, s.n_embd, n_embd_kv, attn_scale});
    plan.push_back({p + "attn_output.weight", GGML_TYPE_F16, s.n_embd, s.n_embd, attn_scale});
    if (s.arch == "gemma3") {
      plan.push_back({p + "attn_q_norm.weight", GGML_TYPE_F32, head_dim, 1, 0.0f});
      plan.push_back({p + "attn_k_norm.weight", GGML_TYPE_F32, head_dim, 1, 0.0f});
      plan.push_back({p + "post_attention_norm.weight", GGML_TYPE_F32, s.n_embd, 1, 0.0f});
      plan.push_back({p + "post_ffw_norm.weight", GGML_TYPE_F32, s.n_embd, 1, 0.0f});
    }
    plan.push_back({p + "ffn_norm.weight", GGML_TYPE_F32, s.n_embd, 1, 0.0f});
    plan.push_back({p + "ffn_gate.weight", GGML_TYPE_F16, s.n_embd, s.n_ff, attn_scale});
    plan.push_back({p + "ffn_up.weight", GGML_TYPE_F16, s.n_embd, s.n_ff, attn_scale});
    plan.push_back({p + "ffn_down.weight", GGML_TYPE_F16, s.n_ff, s.n_embd, down_scale});
  }
  return plan;
}

struct GgufDeleter {
  void operator()(gguf_context* c) const { gguf_free(c); }
};
struct GgmlDeleter {
  void operator()(ggml_context* c) const { ggml_free(c); }
};
struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

bool WriteZeros(FILE* f, size_t n) {
  static const char zeros[256] = {};
  while (n > 0) {
    size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
    if (std::fwrite(zeros, 1, k, f) != k) return false;
    n -= k;
  }
  return true;
}

// Generates one tensor's values row by row and writes them in its GGUF type.
bool WriteTensorData(FILE* f, const TensorPlan& t, SplitMix64& rng) {
  std::vector<float> row(static_cast<size_t>(t.ne0));
  std::vector<ggml_fp16_t> row16(static_cast<size_t>(t.ne0));
  for (int64_t r = 0; r < t.ne1; ++r) {
    for (auto& v : row) {
      v = t.scale == 0.0f ? 1.0f : t.scale == kMinusOnes ? -1.0f : rng.NextSymmetric() * t.scale;
    }
    if (t.type == GGML_TYPE_F16) {
      ggml_fp32_to_fp16_row(row.data(), row16.data(), t.ne0);
      if (std::fwrite(row16.data(), sizeof(ggml_fp16_t), row16.size(), f) != row16.size()) return false;
    } else {
      if (std::fwrite(row.data(), sizeof(float), row.size(), f) != row.size()) return false;
    }
  }
  return true;
}

}  // namespace

std::vector<std::string> DemoModelSizes() {
  return {"tiny", "small", "bench", "8b", "tiny-swa", "tiny-mamba"};
}

StatusOr<DemoModelSpec> DemoModelSpecFor(const std::string& size) {
  if (size == "tiny") return DemoModelSpec{"tiny", 64, 2, 2, 1, 256, 4096, false};
  if (size == "small") {
    DemoModelSpec s{"small", 256, 4, 8, 4, 1024, 65536, false};
    s.chat_template = "qwen3";
    s.end_ramp = 0.25f;
    return s;
  }
  if (size == "bench") return DemoModelSpec{"bench", 1024, 16, 16, 4, 4096, 32768};
  // An 8B-class shape (Llama 3 8B's: GQA 8, F16, about 15 GB) with random weights, for GPUs
  // (scripts/gpu-check.sh): prefill and KV sizes of a real 8B model; the output is noise.
  if (size == "8b") return DemoModelSpec{"8b", 4096, 32, 32, 8, 14336, 65536};
  if (size == "tiny-swa") return DemoModelSpec{"tiny-swa", 64, 2, 2, 1, 256, 4096, false, "gemma3", 32, 2};
  if (size == "tiny-mamba") return DemoModelSpec{"tiny-mamba", 64, 2, 0, 0, 0, 4096, false, "mamba"};
  return Status::InvalidArgument("unknown demo model size '" + size +
                                 "' (tiny, small, bench, 8b, tiny-swa, tiny-mamba)");
}

uint64_t DemoModelParameterCount(const DemoModelSpec& spec, uint64_t n_vocab) {
  uint64_t total = 0;
  for (const auto& t : PlanTensors(spec, static_cast<int64_t>(n_vocab))) {
    total += static_cast<uint64_t>(t.ne0) * static_cast<uint64_t>(t.ne1);
  }
  return total;
}

std::vector<std::string> DemoChatTemplates() {
  return {"llama3", "qwen3"};
}

std::string DemoVocabFile(const std::string& chat_template) {
  return chat_template == "qwen3" ? "ggml-vocab-qwen2.gguf" : "ggml-vocab-llama-bpe.gguf";
}

StatusOr<std::string> DemoChatTemplate(const std::string& name) {
  if (name == "llama3") return std::string(kDemoChatTemplate);
  if (name == "qwen3") return std::string(kDemoChatTemplateQwen3);
  return Status::InvalidArgument("unknown demo chat template '" + name + "' (llama3, qwen3)");
}

Status WriteDemoModel(const DemoModelSpec& spec, const fs::path& vocab_gguf, const fs::path& out, uint64_t seed) {
  auto chat_template = DemoChatTemplate(spec.chat_template);
  if (!chat_template.ok()) return chat_template.status();
  gguf_init_params vp{/*no_alloc=*/true, /*ctx=*/nullptr};
  std::unique_ptr<gguf_context, GgufDeleter> vocab(gguf_init_from_file(vocab_gguf.c_str(), vp));
  if (!vocab) return Status::IOError("cannot read tokenizer file " + vocab_gguf.string());
  const int64_t tokens_key = gguf_find_key(vocab.get(), "tokenizer.ggml.tokens");
  if (tokens_key < 0) return Status::Corruption(vocab_gguf.string() + " has no tokenizer.ggml.tokens");
  const auto n_vocab = static_cast<int64_t>(gguf_get_arr_n(vocab.get(), tokens_key));

  std::unique_ptr<gguf_context, GgufDeleter> ctx(gguf_init_empty());
  gguf_set_kv(ctx.get(), vocab.get());  // tokenizer.* and placeholder llama.* keys, overridden below
  const std::string a = spec.arch;      // key prefix
  gguf_set_val_str(ctx.get(), "general.architecture", a.c_str());
  gguf_set_val_str(ctx.get(), "general.name", ("kvault-demo-" + spec.size).c_str());
  gguf_set_val_u32(ctx.get(), "general.file_type", 1);  // LLAMA_FTYPE_MOSTLY_F16
  gguf_set_val_u32(ctx.get(), (a + ".context_length").c_str(), spec.n_ctx_train);
  gguf_set_val_u32(ctx.get(), (a + ".embedding_length").c_str(), spec.n_embd);
  gguf_set_val_u32(ctx.get(), (a + ".block_count").c_str(), spec.n_layer);
  gguf_set_val_u32(ctx.get(), (a + ".feed_forward_length").c_str(), spec.n_ff);
  gguf_set_val_u32(ctx.get(), (a + ".attention.head_count").c_str(), spec.n_head);
  gguf_set_val_u32(ctx.get(), (a + ".attention.head_count_kv").c_str(), spec.n_head_kv);
  if (spec.n_head > 0) gguf_set_val_u32(ctx.get(), (a + ".rope.dimension_count").c_str(), spec.n_embd / spec.n_head);
  if (spec.arch == "mamba") {
    gguf_set_val_u32(ctx.get(), (a + ".ssm.conv_kernel").c_str(), kMambaConv);
    gguf_set_val_u32(ctx.get(), (a + ".ssm.inner_size").c_str(), 2 * spec.n_embd);
    gguf_set_val_u32(ctx.get(), (a + ".ssm.state_size").c_str(), kMambaState);
    gguf_set_val_u32(ctx.get(), (a + ".ssm.time_step_rank").c_str(), kMambaDtRank);
  }
  gguf_set_val_u32(ctx.get(), (a + ".vocab_size").c_str(), static_cast<uint32_t>(n_vocab));
  gguf_set_val_f32(ctx.get(), (a + ".rope.freq_base").c_str(), 500000.0f);
  gguf_set_val_f32(ctx.get(), (a + ".attention.layer_norm_rms_epsilon").c_str(), 1e-5f);
  if (spec.n_swa > 0) {
    gguf_set_val_u32(ctx.get(), (a + ".attention.sliding_window").c_str(), spec.n_swa);
    gguf_set_val_u32(ctx.get(), (a + ".attention.sliding_window_pattern").c_str(), spec.swa_pattern);
  }
  gguf_set_val_str(ctx.get(), "tokenizer.chat_template", chat_template->c_str());
  gguf_set_val_str(ctx.get(), "kvault.demo.size", spec.size.c_str());
  gguf_set_val_u32(ctx.get(), "kvault.demo.format", kDemoFormat);
  if (spec.end_ramp > 0.0f) gguf_set_val_f32(ctx.get(), kDemoEndRampKey, spec.end_ramp);
  gguf_set_val_u64(ctx.get(), "kvault.demo.seed", seed);

  const std::vector<TensorPlan> plan = PlanTensors(spec, n_vocab);
  ggml_init_params gp{/*mem_size=*/plan.size() * ggml_tensor_overhead(), /*mem_buffer=*/nullptr,
                      /*no_alloc=*/true};
  std::unique_ptr<ggml_context, GgmlDeleter> gctx(ggml_init(gp));
  for (const auto& t : plan) {
    ggml_tensor* tensor = t.ne1 == 1 ? ggml_new_tensor_1d(gctx.get(), t.type, t.ne0)
                                     : ggml_new_tensor_2d(gctx.get(), t.type, t.ne0, t.ne1);
    ggml_set_name(tensor, t.name.c_str());
    gguf_add_tensor(ctx.get(), tensor);
  }

  std::error_code ec;
  // The data directory is often made here first (the default model, in <data-dir>/models), and
  // the KV cache lives in it: made durably (core/fs_sync.h), not left to the cache's own check.
  if (out.has_parent_path()) {
    if (auto made = CreateDirsDurably(out.parent_path()); !made.ok()) return made.status();
  }
  const fs::path tmp = out.string() + ".tmp";
  {
    std::unique_ptr<FILE, FileCloser> f(std::fopen(tmp.c_str(), "wb"));
    if (!f) return Status::IOError("cannot create " + tmp.string() + ": " + std::strerror(errno));
    bool ok = gguf_write_to_file_ptr(ctx.get(), f.get(), /*only_meta=*/true);
    const size_t data_start = gguf_get_meta_size(ctx.get());
    const size_t alignment = gguf_get_alignment(ctx.get());
    SplitMix64 rng(seed);
    size_t written = 0;  // bytes of the data section so far
    for (size_t i = 0; ok && i < plan.size(); ++i) {
      const size_t offset = gguf_get_tensor_offset(ctx.get(), static_cast<int64_t>(i));
      ok = WriteZeros(f.get(), offset - written) && WriteTensorData(f.get(), plan[i], rng);
      written = offset + gguf_get_tensor_size(ctx.get(), static_cast<int64_t>(i));
    }
    ok = ok && WriteZeros(f.get(), GGML_PAD(written, alignment) - written);
    ok = ok && std::fflush(f.get()) == 0 &&
         static_cast<size_t>(std::ftell(f.get())) == data_start + GGML_PAD(written, alignment);
    if (!ok) {
      fs::remove(tmp, ec);
      return Status::IOError("failed writing " + tmp.string());
    }
  }
  fs::rename(tmp, out, ec);
  if (ec) return Status::IOError("cannot rename " + tmp.string() + " to " + out.string() + ": " + ec.message());
  return Status::Ok();
}

}  // namespace kvault

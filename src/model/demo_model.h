// Demo models: real Llama (or Gemma 3, Mamba) architecture, a real tokenizer and chat template
// (Llama 3, or Qwen3 with its thinking switch), seeded random weights.
//
// `kvault model make-demo` and `kvault serve` (when no --model is given) call WriteDemoModel.
// The output is deterministic: the same size and seed give a byte-identical file. The text such
// a model writes is meaningless; it exists so that tests and benchmarks exercise the real engine
// at a known shape without downloading weights.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/status.h"

namespace kvault {

struct DemoModelSpec {
  std::string size;  // "tiny", "small", "bench"
  uint32_t n_embd = 0;
  uint32_t n_layer = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t n_ff = 0;
  uint32_t n_ctx_train = 0;
  bool tied_output = true;  // output projection shares the token embedding
  std::string arch = "llama";  // "llama", "gemma3" (sliding-window attention) or "mamba" (recurrent)
  uint32_t n_swa = 0;          // gemma3: sliding window in tokens
  uint32_t swa_pattern = 0;    // gemma3: every swa_pattern-th layer is full attention, the rest SWA
  // "llama3": Llama 3.1's chat template and the Llama 3 tokenizer; "qwen3": Qwen3's template
  // (thinking switch, <tool_call> syntax) and the Qwen2 BPE tokenizer (llama.cpp's
  // ggml-vocab-qwen2.gguf: Qwen3's vocabulary without its added tokens such as <think>).
  std::string chat_template = "llama3";
  // End-of-turn ramp, written as `kvault.demo.end_ramp`: kvault adds end_ramp × (tokens generated
  // so far) to the end-of-turn token's logit, so that a random-weight chat model ends its answers
  // within a few dozen tokens as a trained one would (0 = off: the model writes until
  // max_tokens, which tests and benchmarks that count tokens rely on).
  float end_ramp = 0.0f;
};

// The GGUF metadata key of DemoModelSpec::end_ramp, read by the engine at load.
inline constexpr const char* kDemoEndRampKey = "kvault.demo.end_ramp";
// Demo files carry `kvault.demo.format`; `serve` regenerates its default model when it differs.
inline constexpr uint32_t kDemoFormat = 2;

// The chat templates make-demo offers.
std::vector<std::string> DemoChatTemplates();
// The tokenizer file (shipped in share/kvault) that goes with a chat template.
std::string DemoVocabFile(const std::string& chat_template);

// The known sizes. small: Qwen3 template, 64K context, end ramp 0.25 (a chat model for
// `make serve` and agents); the others: Llama 3 template, no end ramp. tiny: tests (41 MB, fast; head size 32 so that quantized KV types work); small: the default `serve` model; both have a
// separate output projection so their greedy output depends on the prompt. bench: the benchmark
// shape (n_embd 1024, 16 layers, 16 heads, 4 KV heads, ff 4096, F16), output tied to the
// embedding so that it has ~370M parameters; its greedy text is repetitive. tiny-swa: the tiny
// shape as Gemma 3 (arch gemma3, q/k norms, post-norms), a 32-token sliding window on layer 0 and
// full attention on layer 1 — for testing the KV store with SWA models. tiny-mamba: a 2-layer
// Mamba (recurrent: no KV cache, a state per sequence) for testing that kvault serves it with the
// store off.
StatusOr<DemoModelSpec> DemoModelSpecFor(const std::string& size);
std::vector<std::string> DemoModelSizes();

// Parameter count of the model WriteDemoModel would write.
uint64_t DemoModelParameterCount(const DemoModelSpec& spec, uint64_t n_vocab);

// Writes the model to `out` atomically (temp file + rename). `vocab_gguf` is llama.cpp's
// models/DemoVocabFile(spec.chat_template), whose tokenizer keys are copied verbatim.
Status WriteDemoModel(const DemoModelSpec& spec, const std::filesystem::path& vocab_gguf,
                      const std::filesystem::path& out, uint64_t seed);

// The chat template written into demo models (from llama.cpp's models/templates): "llama3"
// (Llama 3.1) or "qwen3" (Qwen3). InvalidArgument for another name.
StatusOr<std::string> DemoChatTemplate(const std::string& name);

}  // namespace kvault

// Demo models: real Llama architecture and Llama 3 tokenizer, seeded random weights.
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
};

// The known sizes. tiny: tests (41 MB, fast; head size 32 so that quantized KV types work); small: the default `serve` model; both have a
// separate output projection so their greedy output depends on the prompt. bench: the benchmark
// shape (n_embd 1024, 16 layers, 16 heads, 4 KV heads, ff 4096, F16), output tied to the
// embedding so that it has ~370M parameters; its greedy text is repetitive.
StatusOr<DemoModelSpec> DemoModelSpecFor(const std::string& size);
std::vector<std::string> DemoModelSizes();

// Parameter count of the model WriteDemoModel would write.
uint64_t DemoModelParameterCount(const DemoModelSpec& spec, uint64_t n_vocab);

// Writes the model to `out` atomically (temp file + rename). `vocab_gguf` is llama.cpp's
// models/ggml-vocab-llama-bpe.gguf, whose tokenizer keys are copied verbatim.
Status WriteDemoModel(const DemoModelSpec& spec, const std::filesystem::path& vocab_gguf,
                      const std::filesystem::path& out, uint64_t seed);

// The Llama 3.1 chat template written into demo models (from llama.cpp's models/templates).
const std::string& DemoChatTemplate();

}  // namespace kvault

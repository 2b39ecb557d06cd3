// The model fingerprint: everything that changes the bytes of a KV block. Blocks are keyed and
// stored under it, so a cache can never be loaded into another model or configuration.
//
// Covers the GGUF file's content (XXH3-128, computed once and remembered by path, size and
// modification, status-change time and inode in <cache-dir>/model-hashes.tsv), the K and V cache types, flash attention
// on/off (it changes the V layout), the unified cache, SWA full-size cache, the llama.cpp
// release, and the backend that computes the KV bytes when it is not the CPU (a CUDA build's
// blocks are restored only by a CUDA build; a CPU build's fingerprint is what it was before the
// field existed). Called once per model load, on the engine thread.
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"

namespace kvault {

struct KvConfig {
  std::string type_k = "f16";
  std::string type_v = "f16";
  bool flash_attn = true;
  bool unified = true;
  bool swa_full = false;
  std::string llama_release;
  // The KV bytes' producer: "" for the CPU (left out of the fingerprint, so CPU caches written
  // before this field existed stay valid), else e.g. "CUDA" (LlamaRunner::KvBackend).
  std::string backend;
};

// XXH3-128 of the model file, from the memo in `cache_dir` when its path, size and mtime match.
StatusOr<std::string> ModelContentHash(const std::filesystem::path& model, const std::filesystem::path& cache_dir);

// 32 hex digits naming the model + KV configuration.
std::string ModelFingerprint(const std::string& content_hash, const KvConfig& config);

}  // namespace kvault

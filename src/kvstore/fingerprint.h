// The model fingerprint: everything that changes the bytes of a KV block. Blocks are keyed and
// stored under it, so a cache can never be loaded into another model or configuration.
//
// Covers the GGUF file's content (XXH3-128, computed once and remembered by path, size and
// modification, status-change time and inode in <cache-dir>/model-hashes.tsv), the K and V cache types, flash attention
// on/off (it changes the V layout), the unified cache, SWA full-size cache, and the llama.cpp
// release. Called once per model load, on the engine thread.
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
};

// XXH3-128 of the model file, from the memo in `cache_dir` when its path, size and mtime match.
StatusOr<std::string> ModelContentHash(const std::filesystem::path& model, const std::filesystem::path& cache_dir);

// 32 hex digits naming the model + KV configuration.
std::string ModelFingerprint(const std::string& content_hash, const KvConfig& config);

}  // namespace kvault

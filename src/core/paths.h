// Where kvault keeps its files and finds the ones it ships.
//
//   data directory: --data-dir, else $KVAULT_DATA_DIR, else $XDG_DATA_HOME/kvault, else
//                   ~/.local/share/kvault. Holds generated demo models (models/) and, later,
//                   the KV cache.
//   shared files:   <binary dir>/../share/kvault (build tree and install prefix alike), then the
//                   llama.cpp source tree the binary was built from.
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"

namespace kvault {

std::filesystem::path DefaultDataDir();

// Path of the running executable's directory (from /proc/self/exe).
std::filesystem::path ExecutableDir();

// Finds a file kvault ships (e.g. "ggml-vocab-llama-bpe.gguf"); NotFound lists where it looked.
StatusOr<std::filesystem::path> FindSharedFile(const std::string& name);

}  // namespace kvault

// Where kvault keeps its files and finds the ones it ships.
//
//   data directory: `kvault serve --data-dir`, else DefaultDataDir(): $KVAULT_DATA_DIR, else
//                   $XDG_DATA_HOME/kvault, else ~/.local/share/kvault, else ./.kvault (no
//                   $HOME). `kvault serve` keeps there the generated demo model (models/), the KV
//                   cache unless --cache-dir says otherwise (kv-cache/: blocks, agent records,
//                   the tenant secret) and stored Responses (responses/); see
//                   cli/serve_command.cpp.
//   shared files:   <binary dir>/../share/kvault (build tree and install prefix alike), then the
//                   vocabulary directory (models/) of the llama.cpp source tree the binary was
//                   built from (KVAULT_BUILD_VOCAB_DIR).
//
// Stateless functions (they read the environment); any thread.
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"

namespace kvault {

std::filesystem::path DefaultDataDir();

// Path of the running executable's directory (from /proc/self/exe; the working directory if
// that cannot be read).
std::filesystem::path ExecutableDir();

// Finds a file kvault ships (e.g. "ggml-vocab-llama-bpe.gguf"); NotFound lists where it looked.
StatusOr<std::filesystem::path> FindSharedFile(const std::string& name);

}  // namespace kvault

// Checks a model path before llama.cpp sees it, so that a wrong path gives a clear message
// (missing, unreadable, a directory, not GGUF, damaged or truncated) instead of llama.cpp's
// generic load failure. Called by the CLI, by the model manager before it unloads anything to
// make room for a model, and by the engine before loading.
#pragma once

#include <filesystem>

#include "core/status.h"

namespace kvault {

// Ok if `path` is a readable regular file that starts with the GGUF magic, whose header,
// metadata and tensor table parse, and which holds every tensor's data (a truncated copy fails).
// Reads the header and metadata only (milliseconds), not the weights. Not a guarantee that
// llama.cpp accepts the model (an unknown architecture, missing tensors or too little memory
// are found by the load itself).
Status CheckModelFile(const std::filesystem::path& path);

}  // namespace kvault

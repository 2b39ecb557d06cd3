// Checks a model path before llama.cpp sees it, so that a wrong path gives a clear message
// (missing, unreadable, a directory, not GGUF) instead of llama.cpp's generic load failure.
// Called by the CLI and the engine before loading.
#pragma once

#include <filesystem>

#include "core/status.h"

namespace kvault {

// Ok if `path` is a readable regular file that starts with the GGUF magic.
Status CheckModelFile(const std::filesystem::path& path);

}  // namespace kvault

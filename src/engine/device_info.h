// DeviceInfo: one ggml backend device llama.cpp can use, as /health reports it. Filled on the
// engine thread when a model loads (LlamaRunner::Devices) and read-only afterwards (ModelInfo),
// so any thread may read a copy.
#pragma once

#include <cstdint>
#include <string>

namespace kvault {

// One ggml backend device llama.cpp can use (CPU, a CUDA GPU, ...), as /health shows it. Memory
// as ggml_backend_dev_memory reported it when the model was loaded.
struct DeviceInfo {
  std::string name;         // ggml's device name, e.g. "CPU", "CUDA0"
  std::string description;  // e.g. the CPU model, "NVIDIA H200"
  std::string type;         // cpu, gpu, igpu, accel
  std::string backend;      // the backend registry's name, e.g. "CPU", "CUDA"
  uint64_t memory_total_bytes = 0;
  uint64_t memory_free_bytes = 0;  // at load
};

}  // namespace kvault

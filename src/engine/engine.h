// Engine: the one thread that owns a loaded model and its llama_context.
//
// Start() loads the model on the engine thread and returns once it is ready (or failed).
// Submit() may be called from any thread; it queues the request and returns a handle whose
// channel delivers the output. Nothing outside this class touches llama objects.
//
// Foundation version: requests run one at a time, greedy, with prefill in n_batch chunks.
// Continuous batching over a shared KV pool replaces the internals (issue "Engine").
#pragma once

#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "core/status.h"
#include "engine/channel.h"
#include "engine/request.h"

namespace kvault {

struct EngineOptions {
  std::filesystem::path model_path;
  std::string model_id;               // the name clients use; default: file stem
  uint32_t n_ctx = 4096;              // context size (tokens); 0 = the model's training context
  uint32_t n_batch = 512;             // prefill chunk size
  int32_t n_threads = 0;              // 0 = all cores
  int32_t default_max_tokens = 512;   // used when a request gives none
};

// Read-only facts about the loaded model, safe to read from any thread.
struct ModelInfo {
  std::string id;
  std::string path;
  std::string description;  // llama.cpp's model description, e.g. "llama 8B F16"
  uint32_t n_ctx = 0;
  int32_t n_ctx_train = 0;
  uint64_t n_params = 0;
  uint64_t size_bytes = 0;
};

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> Start(const EngineOptions& options);
  ~Engine();  // stops the thread; pending requests get an Unavailable error

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  std::shared_ptr<RequestHandle> Submit(GenerateRequest request);
  const ModelInfo& info() const { return info_; }
  size_t queue_depth() const { return queue_.size(); }

 private:
  struct Job {
    GenerateRequest request;
    std::shared_ptr<RequestHandle> handle;
  };
  class Impl;  // llama state, touched only by the engine thread

  explicit Engine(const EngineOptions& options);
  void Run(std::promise<Status>* ready);

  EngineOptions options_;
  ModelInfo info_;
  Channel<Job> queue_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace kvault

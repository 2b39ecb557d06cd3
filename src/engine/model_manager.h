// ModelManager: the models a server offers, by name, and the engines loaded for them.
//
// At most `max_loaded` engines exist at once. A request names a model; Acquire returns a lease
// on its engine, loading it first if needed — after unloading the least recently used engine
// when the limit is reached, once that engine's running requests have finished (they drain;
// new requests for it wait). Requests that arrive during a load or unload wait (bounded) and
// then get Unavailable. A failed load leaves the previous engines serving: the model file is
// checked (model/model_file.h: present, GGUF, not truncated) before anything is unloaded, so a
// bad file costs nothing; a load that fails after that (llama.cpp refuses the model, memory runs
// out) loads again the engines unloaded for it, as many as --max-loaded-models leaves room for (a
// reload: their RAM tier and pool start cold, their agents resume from disk). Such a refusal is
// remembered with the file's identity (path, size, mtime, inode): while the file is unchanged,
// requests for the model fail at once without unloading anything, until the file changes or an
// admin load/swap tries again. Requests that waited for a load that failed get its error (they do
// not start another). A load failure is Internal (HTTP 500: retrying soon does not help). Each
// model's KV cache lives on disk under its own fingerprint, so swapping back resumes agents from
// disk; a reload waits (up to the drain timeout) for requests still holding the previous engine
// after a drain timeout, since that engine keeps its cache directory locked.
//
// Thread-safe; loading and unloading run on the calling (HTTP or admin) thread, never on an
// engine thread. Leases keep their engine alive.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"

namespace kvault {

struct ModelSpec {
  std::string name;
  std::filesystem::path path;
};

struct ModelStatus {
  std::string name;
  std::string path;
  std::string state;  // "unloaded", "loading", "loaded", "unloading"
  int in_flight = 0;
  uint64_t loads = 0;
  double last_load_seconds = 0;
  std::string last_error;  // why the last load failed ("" if it did not)
};

class ModelManager {
 public:
  class Lease {
   public:
    Lease() = default;
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Engine* engine() const { return engine_.get(); }
    const std::string& name() const { return name_; }

   private:
    friend class ModelManager;
    ModelManager* owner_ = nullptr;
    std::shared_ptr<Engine> engine_;
    std::string name_;
  };

  // `models` non-empty; the first is the default. `base` is used for every engine (model_path
  // and model_id are set per model).
  ModelManager(std::vector<ModelSpec> models, EngineOptions base, size_t max_loaded,
               std::chrono::milliseconds drain_timeout);
  ~ModelManager();

  // The model a request's `model` field selects: a configured name, else the default (clients
  // such as Claude Code send their own model names).
  const std::string& Resolve(const std::string& requested) const;
  // A lease on the engine serving `name` (resolved), loading it if needed.
  StatusOr<std::shared_ptr<Lease>> Acquire(const std::string& name, std::chrono::milliseconds wait);

  // Admin: load (unloading the least recently used if at the limit), unload, or swap (unload
  // every other model, then load this one).
  Status Load(const std::string& name, std::chrono::milliseconds wait);
  Status Unload(const std::string& name);
  Status Swap(const std::string& name, std::chrono::milliseconds wait);

  std::vector<ModelStatus> List() const;
  // The most recently used loaded engine (health and metrics); may be null.
  std::shared_ptr<Engine> Primary() const;
  std::vector<std::shared_ptr<Engine>> Loaded() const;
  bool has(const std::string& name) const;
  uint64_t loads() const;
  uint64_t unloads() const;
  const std::string& default_name() const { return models_.front().spec.name; }

 private:
  enum class State { kUnloaded, kLoading, kLoaded, kUnloading };
  // A model file's identity: a refused file is not tried again until this changes.
  struct FileId {
    std::string path;
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  static std::optional<FileId> IdentifyFile(const std::filesystem::path& path);
  struct Model {
    ModelSpec spec;
    State state = State::kUnloaded;
    std::shared_ptr<Engine> engine;
    int in_flight = 0;  // leases; while not kLoaded, leases still on an engine unloaded after a drain timeout
    uint64_t last_used = 0;
    uint64_t loads = 0;
    double last_load_seconds = 0;
    Status last_error;          // the cause of the last failed load (ok: none)
    uint64_t load_gen = 0;      // loads started
    uint64_t failed_gen = 0;    // the load_gen of the last load that failed
    std::optional<FileId> refused;  // the file llama.cpp last refused (see the header comment)
  };
  Model* FindLocked(const std::string& name);
  // Loads `m` (the lock is released while the file is checked and the engine starts): fails at
  // once on a refused file, checks the file, then unloads LRU engines while more than `keep`
  // others are loaded, then starts the engine; if that fails, remembers the refusal and loads
  // again the engines it unloaded while there is room.
  Status LoadLocked(std::unique_lock<std::mutex>& lock, Model& m, size_t keep);
  // Starts `m`'s engine (`m` is kLoading); kLoaded, or kUnloaded and the error.
  Status StartLocked(std::unique_lock<std::mutex>& lock, Model& m);
  // `m` could not be loaded: kUnloaded, waiters woken, the error logged and returned.
  Status FailLoadLocked(Model& m, const Status& why, bool log = true);
  // The error a failed load of `m` answers (Internal, naming the model and the cause).
  static Status LoadError(const Model& m);
  Status UnloadLocked(std::unique_lock<std::mutex>& lock, Model& m);
  void Release(const std::string& name);

  std::vector<Model> models_;
  EngineOptions base_;
  size_t max_loaded_;
  std::chrono::milliseconds drain_timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t clock_ = 0;
  uint64_t loads_ = 0, unloads_ = 0;
};

}  // namespace kvault

#include "engine/model_manager.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>

#include "model/model_file.h"

namespace kvault {

using Clock = std::chrono::steady_clock;

ModelManager::Lease::~Lease() {
  // The reference goes first: once the manager hears the model has no requests left, it may
  // unload it and load it again, and the new engine needs the old one's cache directory (a
  // directory has one owner at a time: disk_tier.h).
  engine_.reset();
  if (owner_) owner_->Release(name_);
}

ModelManager::ModelManager(std::vector<ModelSpec> models, EngineOptions base, size_t max_loaded,
                           std::chrono::milliseconds drain_timeout)
    : base_(std::move(base)), max_loaded_(std::max<size_t>(1, max_loaded)), drain_timeout_(drain_timeout) {
  for (auto& spec : models) {
    Model m;
    m.spec = std::move(spec);
    models_.push_back(std::move(m));
  }
}

ModelManager::~ModelManager() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& m : models_) m.engine.reset();  // leases are gone by now (the server stopped)
}

ModelManager::Model* ModelManager::FindLocked(const std::string& name) {
  for (auto& m : models_) {
    if (m.spec.name == name) return &m;
  }
  return nullptr;
}

bool ModelManager::has(const std::string& name) const {
  return std::any_of(models_.begin(), models_.end(), [&](const Model& m) { return m.spec.name == name; });
}

const std::string& ModelManager::Resolve(const std::string& requested) const {
  for (const auto& m : models_) {
    if (m.spec.name == requested) return m.spec.name;
  }
  return models_.front().spec.name;
}

Status ModelManager::UnloadLocked(std::unique_lock<std::mutex>& lock, Model& m) {
  if (m.state != State::kLoaded) return Status::Ok();
  m.state = State::kUnloading;  // new requests for it wait
  const auto deadline = Clock::now() + drain_timeout_;
  if (!cv_.wait_until(lock, deadline, [&] { return m.in_flight == 0; })) {
    spdlog::warn("models: {} still has {} request(s) after the drain timeout; unloading anyway", m.spec.name,
                 m.in_flight);
  }
  std::shared_ptr<Engine> engine = std::move(m.engine);
  lock.unlock();
  spdlog::info("models: unloading {}", m.spec.name);
  engine.reset();  // stops its thread and flushes its KV store (or a lease still holds it)
  lock.lock();
  m.state = State::kUnloaded;
  ++unloads_;
  cv_.notify_all();
  return Status::Ok();
}

std::optional<ModelManager::FileId> ModelManager::IdentifyFile(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  FileId id;
  id.path = path.string();
  id.dev = static_cast<uint64_t>(st.st_dev);
  id.ino = static_cast<uint64_t>(st.st_ino);
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

Status ModelManager::LoadLocked(std::unique_lock<std::mutex>& lock, Model& m, size_t keep) {
  m.state = State::kLoading;  // others asking for it now wait for this load
  ++m.load_gen;
  const std::optional<FileId> refused = m.refused;
  // First the file: one that is missing, not GGUF, damaged or truncated must not cost a model
  // that serves now (nothing is unloaded for it). Nor must one that llama.cpp refused already
  // and that has not changed since: every request for it would unload the serving models, fail
  // and load them again.
  lock.unlock();
  const std::optional<FileId> id = IdentifyFile(m.spec.path);
  const bool known_bad = refused && id && *refused == *id;
  Status check = known_bad ? Status::Ok() : CheckModelFile(m.spec.path);
  lock.lock();
  if (known_bad) return FailLoadLocked(m, m.last_error, /*log=*/false);
  if (!check.ok()) return FailLoadLocked(m, check);
  // Make room: unload the least recently used loaded models.
  std::vector<Model*> unloaded;
  while (true) {
    std::vector<Model*> loaded;
    for (auto& o : models_) {
      if (&o != &m && (o.state == State::kLoaded || o.state == State::kLoading)) loaded.push_back(&o);
    }
    if (loaded.size() <= keep) break;
    Model* victim = nullptr;
    for (Model* o : loaded) {
      if (o->state == State::kLoaded && (!victim || o->last_used < victim->last_used)) victim = o;
    }
    if (!victim) {  // only loads in progress: wait for them
      cv_.wait(lock);
      continue;
    }
    UnloadLocked(lock, *victim);
    unloaded.push_back(victim);
  }
  Status s = StartLocked(lock, m);
  if (s.ok()) return s;
  m.refused = id;  // not tried again while the file stays the same
  // The load itself failed (llama.cpp refused the model, or memory ran out): bring back what was
  // unloaded for it, unless a request has asked for it meanwhile (then it is loading already), and
  // only while there is room (loads of other models may have started meanwhile).
  for (Model* o : unloaded) {
    if (o->state != State::kUnloaded) continue;
    const size_t others = static_cast<size_t>(std::count_if(models_.begin(), models_.end(), [&](const Model& x) {
      return &x != o && (x.state == State::kLoaded || x.state == State::kLoading);
    }));
    if (others >= max_loaded_) {
      spdlog::info("models: not loading {} again after {} failed to load: {} model(s) loaded or loading",
                   o->spec.name, m.spec.name, others);
      break;
    }
    spdlog::info("models: loading {} again after {} failed to load", o->spec.name, m.spec.name);
    o->state = State::kLoading;
    ++o->load_gen;
    if (Status again = StartLocked(lock, *o); !again.ok()) {
      spdlog::error("models: cannot load {} again: {}", o->spec.name, again.message());
    }
  }
  return s;
}

Status ModelManager::LoadError(const Model& m) {
  return Status::Internal("cannot load model '" + m.spec.name + "': " + m.last_error.message());
}

Status ModelManager::FailLoadLocked(Model& m, const Status& why, bool log) {
  m.state = State::kUnloaded;
  m.last_error = why;
  m.failed_gen = m.load_gen;
  cv_.notify_all();
  if (log) spdlog::error("models: cannot load {}: {}", m.spec.name, why.message());
  return LoadError(m);
}

Status ModelManager::StartLocked(std::unique_lock<std::mutex>& lock, Model& m) {
  // After a drain timeout, requests may still hold the previous engine, and with it the lock on
  // its cache directory: the new engine would then serve without persistence. Wait for them
  // (bounded).
  if (m.in_flight > 0) {
    spdlog::warn("models: {}: waiting up to {} s for {} request(s) still on its previous engine", m.spec.name,
                 std::chrono::duration<double>(drain_timeout_).count(), m.in_flight);
    if (!cv_.wait_for(lock, drain_timeout_, [&] { return m.in_flight == 0; })) {
      spdlog::error("models: {}: {} request(s) still hold its previous engine, which keeps its cache directory "
                    "locked: loading it anyway, without a persistent KV cache (see /health kv_store)",
                    m.spec.name, m.in_flight);
    }
  }
  EngineOptions o = base_;
  o.model_path = m.spec.path;
  o.model_id = m.spec.name;
  lock.unlock();
  spdlog::info("models: loading {} from {}", m.spec.name, m.spec.path.string());
  const auto t0 = Clock::now();
  auto started = Engine::Start(o);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  lock.lock();
  if (!started.ok()) return FailLoadLocked(m, started.status());
  m.engine = std::shared_ptr<Engine>(std::move(started.value()));
  m.state = State::kLoaded;
  m.last_used = ++clock_;
  m.last_load_seconds = seconds;
  m.last_error = Status::Ok();
  m.refused.reset();
  ++m.loads;
  ++loads_;
  cv_.notify_all();
  spdlog::info("models: {} loaded in {:.2f} s", m.spec.name, seconds);
  return Status::Ok();
}

StatusOr<std::shared_ptr<ModelManager::Lease>> ModelManager::Acquire(const std::string& requested,
                                                                     std::chrono::milliseconds wait) {
  const std::string name = Resolve(requested);
  const auto deadline = Clock::now() + wait;
  std::unique_lock<std::mutex> lock(mu_);
  Model& m = *FindLocked(name);
  uint64_t waited_for = 0;  // the load this request waited for
  while (true) {
    if (m.state == State::kLoaded) {
      ++m.in_flight;
      m.last_used = ++clock_;
      auto lease = std::make_shared<Lease>();
      lease->owner_ = this;
      lease->engine_ = m.engine;
      lease->name_ = name;
      return lease;
    }
    if (m.state == State::kUnloaded) {
      // The load it waited for failed: its error, not another try.
      if (waited_for != 0 && m.failed_gen >= waited_for) return LoadError(m);
      Status s = LoadLocked(lock, m, max_loaded_ - 1);
      if (!s.ok()) return s;
      continue;
    }
    // Loading or unloading: wait for it to settle.
    if (m.state == State::kLoading) waited_for = m.load_gen;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && m.state != State::kLoaded &&
        m.state != State::kUnloaded) {
      return Status::Unavailable("model '" + name + "' is being " +
                                 (m.state == State::kLoading ? std::string("loaded") : std::string("unloaded")) +
                                 "; retry later");
    }
  }
}

void ModelManager::Release(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Model* m = FindLocked(name)) --m->in_flight;
  cv_.notify_all();
}

Status ModelManager::Load(const std::string& name, std::chrono::milliseconds wait) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (Model* m = FindLocked(name)) m->refused.reset();  // an operator's load tries again
  }
  auto lease = Acquire(name, wait);
  return lease.ok() ? Status::Ok() : lease.status();
}

Status ModelManager::Unload(const std::string& name) {
  std::unique_lock<std::mutex> lock(mu_);
  Model* m = FindLocked(name);
  if (!m) return Status::NotFound("no model '" + name + "'");
  return UnloadLocked(lock, *m);
}

Status ModelManager::Swap(const std::string& name, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  Model* m = FindLocked(name);
  if (!m) return Status::NotFound("no model '" + name + "'");
  m->refused.reset();  // an operator's swap tries again
  const auto deadline = Clock::now() + wait;
  while (m->state == State::kLoading || m->state == State::kUnloading) {
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return Status::Unavailable("model '" + name + "' is busy loading or unloading; retry later");
    }
  }
  if (m->state == State::kLoaded) {
    // Already serving: unload the others.
    for (auto& o : models_) {
      if (&o != m) UnloadLocked(lock, o);
    }
    m->last_used = ++clock_;
    return Status::Ok();
  }
  return LoadLocked(lock, *m, 0);
}

std::vector<ModelStatus> ModelManager::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ModelStatus> out;
  for (const auto& m : models_) {
    static const char* kNames[] = {"unloaded", "loading", "loaded", "unloading"};
    out.push_back({m.spec.name, m.spec.path.string(), kNames[static_cast<int>(m.state)], m.in_flight, m.loads,
                   m.last_load_seconds, m.last_error.message()});
  }
  return out;
}

std::shared_ptr<Engine> ModelManager::Primary() const {
  std::lock_guard<std::mutex> lock(mu_);
  const Model* best = nullptr;
  for (const auto& m : models_) {
    if (m.state == State::kLoaded && (!best || m.last_used > best->last_used)) best = &m;
  }
  return best ? best->engine : nullptr;
}

std::vector<std::shared_ptr<Engine>> ModelManager::Loaded() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Engine>> out;
  for (const auto& m : models_) {
    if (m.state == State::kLoaded) out.push_back(m.engine);
  }
  return out;
}

uint64_t ModelManager::loads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return loads_;
}

uint64_t ModelManager::unloads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unloads_;
}

}  // namespace kvault

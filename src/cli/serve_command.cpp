// `kvault serve` at run time (RunServe, called by main() on its thread once the flags are parsed,
// cli/serve_flags.cpp): logging, the model file (the demo model when none is given), the engine
// and server options derived from the flags, tenant ids' secret, binding the port, loading the
// models, then serving until SIGTERM/SIGINT drains and stops the server (a dedicated thread waits
// for the signals; every other thread blocks them).
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <set>
#include <thread>

#include "cli/commands.h"
#include "core/logging.h"
#include "core/paths.h"
#include "engine/engine.h"
#include "engine/model_manager.h"
#include "gguf.h"
#include "model/demo_model.h"
#include "model/model_file.h"
#include "server/http_server.h"
#include "server/tenant_secret.h"

namespace kvault {

namespace fs = std::filesystem;

namespace {

// The demo `small` model, made on first use, and made again when kvault's demo format changed
// (a file from an older kvault: another context length or chat template).
StatusOr<fs::path> EnsureDefaultModel(const fs::path& data_dir) {
  const fs::path path = data_dir / "models" / "demo-small.gguf";
  std::error_code ec;
  if (fs::exists(path, ec)) {
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    gguf_context* meta = gguf_init_from_file(path.c_str(), params);
    uint32_t format = 0;
    if (meta) {
      const int64_t key = gguf_find_key(meta, "kvault.demo.format");
      if (key >= 0 && gguf_get_kv_type(meta, key) == GGUF_TYPE_UINT32) format = gguf_get_val_u32(meta, key);
      gguf_free(meta);
    }
    if (format == kDemoFormat) return path;
    spdlog::info("{} is from an older kvault (demo format {}, now {}): making it again", path.string(), format,
                 kDemoFormat);
  }
  auto spec = DemoModelSpecFor("small");
  auto vocab = FindSharedFile(DemoVocabFile(spec->chat_template));
  if (!vocab.ok()) return vocab.status();
  spdlog::info("no --model given: generating the demo 'small' model at {} (random weights, meaningless text)",
               path.string());
  Status s = WriteDemoModel(*spec, *vocab, path, 42);
  if (!s.ok()) return s;
  return path;
}

}  // namespace

int RunServe(const ServeArgs& a) {
  Status s = InitLogging(a.log_level, a.log_format);
  if (!s.ok()) {
    std::cerr << "kvault: " << s.message() << "\n";
    return kExitUsage;
  }
  // Block SIGINT/SIGTERM in every thread; a dedicated thread waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const fs::path data_dir = a.data_dir.empty() ? DefaultDataDir() : fs::path(a.data_dir);
  fs::path model_path = a.model;
  if (model_path.empty()) {
    auto made = EnsureDefaultModel(data_dir);
    if (!made.ok()) {
      spdlog::error("{}", made.status().message());
      return kExitFailure;
    }
    model_path = *made;
  }
  s = CheckModelFile(model_path);
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    return kExitUsage;
  }

  // The flags' values (ServeArgs), and what is derived from them.
  EngineOptions eo = a.engine;
  eo.model_path = model_path;
  eo.resident_seqs = std::max(eo.resident_seqs, eo.parallel);
  if (!a.no_persist) eo.cache_dir = a.cache_dir.empty() ? data_dir / "kv-cache" : fs::path(a.cache_dir);

  // Bind before loading so that a port in use fails fast, and serve /health ("loading") while
  // the model loads.
  ServerOptions so = a.server;
  so.http_threads_max = static_cast<int>(eo.parallel + eo.max_queue) + so.http_threads;
  // API keys: KEY or NAME=KEY (server/api_keys.h). Bare keys' tenant ids are keyed by the
  // installation's secret, kept in the cache directory so that the ids (and the tenants'
  // caches) survive restarts.
  s = ApiKeys::Check(so.api_keys);
  if (!s.ok()) {
    spdlog::error("--api-key: {}", s.message());
    return kExitUsage;
  }
  if (!so.api_keys.empty()) {
    for (const auto& entry : so.api_keys) {
      const ApiKeyEntry e = ApiKeys::ParseEntry(entry);
      if (e.tenant_name.empty()) continue;
      // Before named tenants, such an entry was one bare key: its clients now send only the part
      // after '=' (the key itself is never logged).
      spdlog::warn(
          "--api-key: an entry is read as NAME=KEY: tenant '{}', the key being the text after the first "
          "'='",
          e.tenant_name);
    }
    if (eo.cache_dir.empty()) {
      spdlog::info("tenant ids: keyed by a random secret for this run (--no-persist keeps no cache to find again)");
    } else {
      const fs::path file = eo.cache_dir / kTenantSecretFile;
      auto secret = LoadOrCreateTenantSecret(file);
      struct stat st {};
      if (secret.ok()) {
        so.tenant_secret = *secret;
      } else if (secret.status().code() != Status::Code::kIOError || ::lstat(file.c_str(), &st) == 0) {
        // A secret file exists but is not usable: another secret would silently change every
        // tenant id (and lose the tenants' caches).
        spdlog::error("tenant secret: {}", secret.status().message());
        return kExitFailure;
      } else {
        spdlog::warn(
            "tenant ids: cannot keep the tenant secret ({}); keyed by a random secret for this run, so "
            "the tenants' caches are not found again after a restart",
            secret.status().message());
      }
    }
    if (so.tenant_secret.empty()) {
      auto random = RandomBytes(kTenantSecretBytes);
      if (!random.ok()) {
        spdlog::error("tenant ids: no secret to key them: {}", random.status().message());
        return kExitFailure;
      }
      so.tenant_secret = *random;
    }
  }
  // Stored Responses: durable like the agent records, in the data directory; in memory with --no-persist.
  if (!a.no_persist) so.responses_dir = (data_dir / "responses").string();
  HttpServer server(so, nullptr);
  if (so.api_keys.empty()) {
    spdlog::info("authentication: off (no --api-key): the API is open");
  } else {
    std::set<std::string> named;  // the names only: keys are never logged
    for (const auto& entry : so.api_keys) named.insert(ApiKeys::ParseEntry(entry).tenant_name);
    named.erase("");
    std::string names;
    for (const auto& n : named) names += (names.empty() ? "" : ", ") + n;
    spdlog::info("authentication: {} API key(s){}", so.api_keys.size(),
                 names.empty() ? "" : "; named tenants: " + names);
  }
  s = server.Bind();
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    return kExitUsage;
  }

  // Signals: the first drains (new requests 503, running ones finish up to --drain-timeout),
  // then stops the server; the engine's shutdown flushes every pending block to disk. A second
  // signal exits at once: block files are written to a temp name and renamed, so the cache
  // directory stays consistent (an interrupted write leaves a temp file, removed at next start).
  std::atomic<bool> finished{false};
  std::thread signal_thread([&server, &finished, signals, drain_s = a.drain_timeout_s] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (finished.load()) return;
    spdlog::info("received {}: draining ({} request(s) in flight, waiting up to {} s)",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", server.in_flight(), drain_s);
    server.StartDraining();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(drain_s);
    const timespec tick{0, 50 * 1000 * 1000};
    while (server.in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
      if (sigtimedwait(&signals, nullptr, &tick) > 0) {
        spdlog::warn("second signal: exiting now");
        std::_Exit(kExitFailure);
      }
    }
    if (server.in_flight() > 0) spdlog::warn("drain timeout: {} request(s) cut short", server.in_flight());
    server.Stop();
    sigwait(&signals, &sig);  // a second signal during the final flush
    if (finished.load()) return;
    spdlog::warn("second signal: exiting now");
    std::_Exit(kExitFailure);
  });
  // Ends the signal thread when shutdown is complete (or was not caused by a signal).
  auto finish_signal_thread = [&] {
    finished.store(true);
    pthread_kill(signal_thread.native_handle(), SIGTERM);
    signal_thread.join();
  };
  std::thread http_thread([&server] { server.Run(); });
  server.WaitUntilReady();

  // The models: --model is the default (its name: --model-id, else the file name); --models
  // adds more by name. Each is checked before anything loads.
  std::vector<ModelSpec> specs;
  specs.push_back({eo.model_id.empty() ? model_path.stem().string() : eo.model_id, model_path});
  for (const auto& entry : a.models) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == entry.size()) {
      spdlog::error("--models takes NAME=PATH; got '{}'", entry);
      server.Stop();
      http_thread.join();
      finish_signal_thread();
      return kExitUsage;
    }
    ModelSpec spec{entry.substr(0, eq), entry.substr(eq + 1)};
    s = CheckModelFile(spec.path);
    const bool dup = std::any_of(specs.begin(), specs.end(), [&](const ModelSpec& o) { return o.name == spec.name; });
    if (!s.ok() || dup) {
      spdlog::error("{}", dup ? "model name '" + spec.name + "' is used twice" : s.message());
      server.Stop();
      http_thread.join();
      finish_signal_thread();
      return kExitUsage;
    }
    specs.push_back(std::move(spec));
  }
  ModelManager models(specs, eo, a.max_loaded_models, std::chrono::seconds(a.drain_timeout_s));
  s = models.Load(models.default_name(), std::chrono::seconds(0));
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    server.Stop();
    http_thread.join();
    finish_signal_thread();
    return kExitUsage;
  }
  server.SetModels(&models);
  spdlog::info("kvault listening on http://{}:{} (model {}{})", so.host, server.port(), models.default_name(),
               specs.size() > 1 ? ", " + std::to_string(specs.size() - 1) + " more on demand" : std::string());

  http_thread.join();  // until a signal stops the server
  server.SetModels(nullptr);
  uint64_t pending = 0;
  for (const auto& engine : models.Loaded()) pending += engine->store_stats().pending_writes;
  for (const auto& m : models.List()) models.Unload(m.name);  // stops the engines; their stores write what is pending
  finish_signal_thread();
  spdlog::info("stopped ({} pending block write(s) flushed)", pending);
  return kExitOk;
}

}  // namespace kvault

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <spdlog/spdlog.h>

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

// The environment variable of a serve option: KVAULT_ + its long name in capitals, '_' for '-'.
std::string EnvName(const std::string& option) {
  if (option == "api-key") return "KVAULT_API_KEYS";  // comma-separated lists
  if (option == "admin-key") return "KVAULT_ADMIN_KEYS";
  std::string env = "KVAULT_";
  for (char c : option) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return env;
}

}  // namespace

void AddServeCommand(CLI::App& app, ServeArgs* a) {
  CLI::App* serve = app.add_subcommand("serve", "Run the inference server");
  serve->add_option("-m,--model", a->model,
                    "GGUF model file (default: the demo 'small' model, generated into the data directory)");
  serve->add_option("--model-id", a->model_id, "model name reported to clients (default: file name)");
  serve->add_option("--host", a->host, "address to listen on")->capture_default_str();
  serve->add_option("--port", a->port, "port to listen on")->check(CLI::Range(0, 65535))->capture_default_str();
  serve->add_option("-c,--ctx-size", a->ctx_size,
                    "max tokens of one request, prompt + completion (0 = the model's training context, capped by "
                    "the pool)")
      ->capture_default_str();
  serve->add_option("--pool-tokens", a->pool_tokens, "KV pool size in tokens (0 = from --kv-memory)")
      ->capture_default_str();
  serve->add_option("--kv-memory", a->kv_memory_mib, "KV pool size in MiB, when --pool-tokens is 0")
      ->check(CLI::Range(1u, 1u << 20))
      ->capture_default_str();
  serve->add_option("--block-tokens", a->block_tokens, "pool block size in tokens (accounting and prefix sharing)")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  serve->add_option("--cache-type", a->cache_type, "KV cache type")
      ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}))
      ->capture_default_str();
  serve->add_option("--parallel", a->parallel, "requests decoded together at most")
      ->check(CLI::Range(1u, 254u))
      ->capture_default_str();
  serve->add_option("--resident-seqs", a->resident_seqs, "sequences kept in the pool, running + idle")
      ->check(CLI::Range(1u, 254u))
      ->capture_default_str();
  serve->add_option("--idle-tokens", a->idle_tokens,
                    "tokens finished conversations may keep in the pool while others run; beyond, the least "
                    "recently used move to the KV store (-1 = until their cells are needed)")
      ->check(CLI::Range(int64_t{-1}, int64_t{1} << 40))
      ->capture_default_str();
  serve->add_option("--step-tokens", a->step_tokens, "tokens per engine step (decode tokens + prefill chunks)")
      ->check(CLI::Range(1u, 65536u))
      ->capture_default_str();
  serve->add_option("--max-queue", a->max_queue, "requests waiting for capacity before answering 429")
      ->check(CLI::Range(0u, 1000000u))
      ->capture_default_str();
  serve->add_option("--queue-timeout", a->queue_timeout_s, "seconds a request may wait for capacity before 429")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  serve->add_option("-t,--threads", a->threads, "compute threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  serve->add_option("--http-threads", a->http_threads,
                    "HTTP worker threads started at once (more are started on demand, up to --parallel + "
                    "--max-queue + this)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  serve->add_option("--max-connections", a->max_connections,
                    "open connections at most (being served or waiting for an HTTP thread); more are closed at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  serve->add_option("--read-timeout", a->read_timeout_s,
                    "seconds a client may stay silent while sending its request before it is dropped")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  serve->add_option("--request-read-timeout", a->request_read_timeout_s,
                    "seconds a request's head and body may take to arrive, from its first byte, before the "
                    "client is dropped (slow senders; 0: only --read-timeout applies)")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  serve->add_option("--write-timeout", a->write_timeout_s,
                    "seconds a client may leave its answer unread before it is dropped (its request is cancelled)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  serve->add_option("--idle-timeout", a->idle_timeout_s, "seconds an idle keep-alive connection stays open")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  serve->add_option("--max-body", a->max_body_mib, "largest request body in MiB (larger: 413)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  serve->add_option("--default-max-tokens", a->default_max_tokens,
                    "completion limit for requests that set none (0 = until the context ends, as OpenAI)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  serve->add_option("--reserve-tokens", a->reserve_tokens,
                    "KV cells reserved for a request's answer when it starts; it takes more as it grows (0 = all of "
                    "max_tokens up front)")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  serve->add_option("--temperature", a->temperature, "temperature for requests that set none (both APIs; 0 = greedy)")
      ->check(CLI::Range(0.0, 2.0))
      ->capture_default_str();
  serve->add_option("--data-dir", a->data_dir, "where demo models and (by default) the KV cache live");
  serve->add_option("--cache-dir", a->cache_dir, "KV cache directory (default: <data-dir>/kv-cache)");
  serve->add_flag("--no-persist", a->no_persist, "keep KV blocks in RAM only: nothing survives a restart");
  auto* det = serve->add_flag("--deterministic", a->deterministic,
                              "pin llama.cpp's shape-dependent CPU kernels (no one-token batches or one-output "
                              "steps, steps under 64 tokens) so that greedy output does not depend on what else runs; "
                              "costs about a quarter of single-stream decode speed on "
                              "CPU (see docs/architecture.md, \"Exactness\")");
  serve->add_flag("--no-deterministic", a->no_deterministic, "the default (kept for existing scripts)")
      ->excludes(det);
  serve->add_option("--ram-cache", a->ram_cache_mib, "RAM tier for KV blocks below the pool, MiB")
      ->capture_default_str();
  serve->add_option("--disk-cache", a->disk_cache_gib,
                    "disk tier limit, GiB, fractions allowed (least recently used blocks go)")
      ->check(CLI::Range(0.001, 1048576.0))
      ->capture_default_str();
  serve->add_option("--log-level", a->log_level, "trace, debug, info, warn, error, off")->capture_default_str();
  serve->add_option("--durability", a->durability,
                    "async: a response ends at once and its KV blocks reach disk right after; sync: the "
                    "response's final event waits until its blocks are on disk")
      ->check(CLI::IsMember({"async", "sync"}))
      ->capture_default_str();
  serve
      ->add_option("--debug-slow-disk-ms", a->debug_slow_disk_ms,
                   "fault injection: pause every block write halfway through its file")
      ->group("");  // hidden: for tests
  serve->add_option("--models", a->models,
                    "more models by name, NAME=PATH (repeatable; in the config file: models = [\"a=/m/a.gguf\"]); "
                    "requests pick one with their model field, other names go to --model")
      ->delimiter(',');
  serve->add_option("--max-loaded-models", a->max_loaded_models,
                    "models loaded at once; asking for another unloads the least recently used")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  serve->add_option("--drain-timeout", a->drain_timeout_s,
                    "on SIGTERM/SIGINT, seconds running requests may take to finish")
      ->capture_default_str();
  serve->add_option("--key-concurrency", a->key_concurrency,
                    "API requests in flight per key at most; more get 429 (0: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  serve->add_option("--cors-origins", a->cors_origins,
                    "browser origins allowed to call the API, comma-separated ('*': any; default: none)")
      ->delimiter(',');
  serve->add_option("--degraded-utilization", a->degraded_utilization,
                    "/health answers 503 \"degraded\" when running requests hold more of the pool than this")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  serve->add_flag("!--private-health", a->public_health, "/health needs an API key (/health/live never does)");
  serve->add_flag("!--private-metrics", a->public_metrics, "/metrics needs an API key");
  serve->add_option("--log-format", a->log_format, "text, or json (one JSON object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  serve
      ->add_option("--api-key", a->api_keys,
                   "accept this API key, KEY or NAME=KEY (repeatable; also KVAULT_API_KEYS=k1,name=k2); each "
                   "bare key is its own cache tenant, NAME=KEY keys share tenant NAME ([A-Za-z0-9._-], 1-64 "
                   "characters); without keys the API is open")
      ->delimiter(',');
  serve->add_option("--admin-key", a->admin_keys,
                    "key for the /admin endpoints (agents API; repeatable; KVAULT_ADMIN_KEYS=k1,k2); without one "
                    "they are off")
      ->delimiter(',');
  serve->add_flag("--print-config", a->print_config,
                  "print the configuration in effect (file, environment and flags merged; keys hidden) and exit");
  // Configuration: flags > KVAULT_* environment variables > the --config TOML file > defaults.
  // Every option's variable is KVAULT_ + its long name in capitals with '_' for '-'
  // (KVAULT_CTX_SIZE); the keys are KVAULT_API_KEYS (comma-separated).
  for (CLI::Option* opt : serve->get_options()) {
    std::string name = opt->get_single_name();
    if (name.empty() || name == "help" || name == "print-config") continue;
    opt->envname(EnvName(name));
  }
  // CLI11 reads config files only on the top-level app: the file is attached there (reachable
  // as `kvault serve --config F` through fallthrough), and its top-level keys are given to
  // `serve`, so the file reads `port = 8080`, not `[serve] port = 8080`.
  struct ServeKeysToml : CLI::ConfigTOML {
    std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
      std::vector<CLI::ConfigItem> items;
      for (auto& item : CLI::ConfigTOML::from_config(input)) {
        if (item.parents.empty()) item.parents = {"serve"};
        // CLI11 applies a file before the environment; the environment must win, so a key
        // whose KVAULT_* variable is set is left to it.
        if (item.parents == std::vector<std::string>{"serve"} && std::getenv(EnvName(item.name).c_str())) continue;
        items.push_back(std::move(item));
      }
      return items;
    }
  };
  app.config_formatter(std::make_shared<ServeKeysToml>());
  app.set_config("--config", "", "TOML configuration file for serve; keys are the long option names (port = 8080)");
  app.allow_config_extras(CLI::config_extras_mode::error);
  serve->allow_config_extras(CLI::config_extras_mode::error);
  serve->fallthrough();
}

std::string EffectiveConfig(const CLI::App& serve) {
  // CLI11 writes TOML; API keys are secrets and are never printed.
  std::string text = serve.config_to_str(/*default_also=*/true, /*write_description=*/false);
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (line.rfind("api-key", 0) == 0) line = "api-key=\"<hidden>\"";
    if (line.rfind("admin-key", 0) == 0) line = "admin-key=\"<hidden>\"";
    if (line.rfind("print-config", 0) != 0 && line.rfind("config", 0) != 0) out += line + "\n";
    pos = end + 1;
  }
  return out;
}

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

  EngineOptions eo;
  eo.model_path = model_path;
  eo.model_id = a.model_id;
  eo.ctx_size = a.ctx_size;
  eo.pool_tokens = a.pool_tokens;
  eo.kv_memory_mib = a.kv_memory_mib;
  eo.block_tokens = a.block_tokens;
  eo.cache_type = a.cache_type;
  eo.parallel = a.parallel;
  eo.resident_seqs = std::max(a.resident_seqs, a.parallel);
  eo.idle_tokens = a.idle_tokens;
  eo.step_tokens = a.step_tokens;
  eo.max_queue = a.max_queue;
  eo.queue_timeout_ms = a.queue_timeout_s * 1000;
  eo.sync_durability = a.durability == "sync";
  eo.debug_slow_write_ms = a.debug_slow_disk_ms;
  if (!a.no_persist) eo.cache_dir = a.cache_dir.empty() ? data_dir / "kv-cache" : fs::path(a.cache_dir);
  eo.ram_cache_mib = a.ram_cache_mib;
  eo.deterministic = a.deterministic;
  eo.disk_cache_gib = a.disk_cache_gib;
  eo.n_threads = a.threads;
  eo.default_max_tokens = a.default_max_tokens;
  eo.reserve_tokens = a.reserve_tokens;
  eo.default_temperature = static_cast<float>(a.temperature);

  // Bind before loading so that a port in use fails fast, and serve /health ("loading") while
  // the model loads.
  ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  so.http_threads = a.http_threads;
  so.http_threads_max = static_cast<int>(a.parallel + a.max_queue) + a.http_threads;
  so.max_connections = a.max_connections;
  so.read_timeout_s = a.read_timeout_s;
  so.request_read_timeout_s = a.request_read_timeout_s;
  so.write_timeout_s = a.write_timeout_s;
  so.idle_timeout_s = a.idle_timeout_s;
  so.max_body_bytes = static_cast<size_t>(a.max_body_mib) << 20;
  so.api_keys = a.api_keys;
  // API keys: KEY or NAME=KEY (server/api_keys.h). Bare keys' tenant ids are keyed by the
  // installation's secret, kept in the cache directory so that the ids (and the tenants'
  // caches) survive restarts.
  s = ApiKeys::Check(a.api_keys);
  if (!s.ok()) {
    spdlog::error("--api-key: {}", s.message());
    return kExitUsage;
  }
  if (!a.api_keys.empty()) {
    for (const auto& entry : a.api_keys) {
      const ApiKeyEntry e = ApiKeys::ParseEntry(entry);
      if (e.tenant_name.empty()) continue;
      // Before named tenants, such an entry was one bare key: its clients now send only the part
      // after '=' (the key itself is never logged).
      spdlog::warn("--api-key: an entry is read as NAME=KEY: tenant '{}', the key being the text after the first "
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
  so.cors_origins = a.cors_origins;
  // Stored Responses: durable like the agent records, in the data directory; in memory with --no-persist.
  if (!a.no_persist) so.responses_dir = (data_dir / "responses").string();
  so.admin_keys = a.admin_keys;
  so.key_concurrency = a.key_concurrency;
  so.degraded_utilization = a.degraded_utilization;
  so.public_health = a.public_health;
  so.public_metrics = a.public_metrics;
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
  specs.push_back({a.model_id.empty() ? model_path.stem().string() : a.model_id, model_path});
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
  spdlog::info("kvault listening on http://{}:{} (model {}{})", a.host, server.port(), models.default_name(),
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

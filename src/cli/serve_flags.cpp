// `kvault serve`'s flags, bound directly to ServeArgs (its EngineOptions, its ServerOptions and
// the command's own fields: cli/commands.h), each also read from its KVAULT_* environment variable
// and the --config TOML file; and --print-config's view of the result. Called by main() before
// parsing; single-threaded.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>

#include "cli/commands.h"
#include "kvstore/redis_url.h"

namespace kvault {

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
  serve->add_option("--model-id", a->engine.model_id, "model name reported to clients (default: file name)");
  serve->add_option("--host", a->server.host, "address to listen on")->capture_default_str();
  serve->add_option("--port", a->server.port, "port to listen on")->check(CLI::Range(0, 65535))->capture_default_str();
  serve
      ->add_option("-c,--ctx-size", a->engine.ctx_size,
                   "max tokens of one request, prompt + completion (0 = the model's training context, capped by "
                   "the pool)")
      ->capture_default_str();
  serve->add_option("--pool-tokens", a->engine.pool_tokens, "KV pool size in tokens (0 = from --kv-memory)")
      ->capture_default_str();
  serve->add_option("--kv-memory", a->engine.kv_memory_mib, "KV pool size in MiB, when --pool-tokens is 0")
      ->check(CLI::Range(1u, 1u << 20))
      ->capture_default_str();
  serve
      ->add_option("--block-tokens", a->engine.block_tokens,
                   "pool block size in tokens (accounting and prefix sharing)")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  serve->add_option("--cache-type", a->engine.cache_type, "KV cache type")
      ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}))
      ->capture_default_str();
  serve->add_option("--parallel", a->engine.parallel, "requests decoded together at most")
      ->check(CLI::Range(1u, 254u))
      ->capture_default_str();
  serve->add_option("--resident-seqs", a->engine.resident_seqs, "sequences kept in the pool, running + idle")
      ->check(CLI::Range(1u, 254u))
      ->capture_default_str();
  serve
      ->add_option("--idle-tokens", a->engine.idle_tokens,
                   "tokens finished conversations may keep in the pool while others run; beyond, the least "
                   "recently used move to the KV store (-1 = until their cells are needed)")
      ->check(CLI::Range(int64_t{-1}, int64_t{1} << 40))
      ->capture_default_str();
  serve->add_option("--step-tokens", a->engine.step_tokens, "tokens per engine step (decode tokens + prefill chunks)")
      ->check(CLI::Range(1u, 65536u))
      ->capture_default_str();
  serve->add_option("--max-queue", a->engine.max_queue, "requests waiting for capacity before answering 429")
      ->check(CLI::Range(0u, 1000000u))
      ->capture_default_str();
  // Seconds on the command line, milliseconds in EngineOptions.
  serve
      ->add_option_function<uint32_t>(
          "--queue-timeout", [eo = &a->engine](uint32_t s) { eo->queue_timeout_ms = s * 1000; },
          "seconds a request may wait for capacity before 429")
      ->check(CLI::Range(1u, 86400u))
      ->default_str(std::to_string(a->engine.queue_timeout_ms / 1000));
  serve->add_option("-t,--threads", a->engine.n_threads, "compute threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  serve
      ->add_option("--gpu-layers", a->engine.gpu_layers,
                   "layers offloaded to the GPU(s) with their KV (-1 = all; 0 = none, CPU only; no effect in a "
                   "build without a GPU backend)")
      ->check(CLI::Range(-1, 100000))
      ->capture_default_str();
  serve
      ->add_option("--main-gpu", a->engine.main_gpu,
                   "put the whole model on this GPU (0-based) instead of spreading its layers over every GPU "
                   "(-1)")
      ->check(CLI::Range(-1, 255))
      ->capture_default_str();
  serve
      ->add_option("--http-threads", a->server.http_threads,
                   "HTTP worker threads started at once (more are started on demand, up to --parallel + "
                   "--max-queue + this)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  serve
      ->add_option("--max-connections", a->server.max_connections,
                   "open connections at most (being served or waiting for an HTTP thread); more are closed at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  serve
      ->add_option("--read-timeout", a->server.read_timeout_s,
                   "seconds a client may stay silent while sending its request before it is dropped")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  serve
      ->add_option("--request-read-timeout", a->server.request_read_timeout_s,
                   "seconds a request's head and body may take to arrive, from its first byte, before the "
                   "client is dropped (slow senders; 0: only --read-timeout applies)")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  serve
      ->add_option("--write-timeout", a->server.write_timeout_s,
                   "seconds a client may leave its answer unread before it is dropped (its request is cancelled)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  serve->add_option("--idle-timeout", a->server.idle_timeout_s, "seconds an idle keep-alive connection stays open")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  serve->add_option("--max-body", a->server.max_body_mib, "largest request body in MiB (larger: 413)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  serve
      ->add_option("--default-max-tokens", a->engine.default_max_tokens,
                   "completion limit for requests that set none (0 = until the context ends, as OpenAI)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  serve
      ->add_option("--reserve-tokens", a->engine.reserve_tokens,
                   "KV cells reserved for a request's answer when it starts; it takes more as it grows (0 = all of "
                   "max_tokens up front)")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  serve
      ->add_option("--temperature", a->engine.default_temperature,
                   "temperature for requests that set none (both APIs; 0 = greedy)")
      ->check(CLI::Range(0.0, 2.0))
      ->capture_default_str();
  serve->add_option("--data-dir", a->data_dir, "where demo models and (by default) the KV cache live");
  serve->add_option("--cache-dir", a->cache_dir, "KV cache directory (default: <data-dir>/kv-cache)");
  serve->add_flag("--no-persist", a->no_persist, "keep KV blocks in RAM only: nothing survives a restart");
  auto* det = serve->add_flag("--deterministic", a->engine.deterministic,
                              "pin llama.cpp's shape-dependent CPU kernels (no one-token batches or one-output "
                              "steps, steps under 64 tokens) so that greedy output does not depend on what else runs; "
                              "costs about a quarter of single-stream decode speed on "
                              "CPU (see docs/architecture.md, \"Exactness\")");
  serve->add_flag("--no-deterministic", a->no_deterministic, "the default (kept for existing scripts)")->excludes(det);
  serve->add_option("--ram-cache", a->engine.ram_cache_mib, "RAM tier for KV blocks below the pool, MiB")
      ->capture_default_str();
  serve
      ->add_option("--disk-cache", a->engine.disk_cache_gib,
                   "disk tier limit, GiB, fractions allowed (least recently used blocks go)")
      ->check(CLI::Range(0.001, 1048576.0))
      ->capture_default_str();
  serve
      ->add_option("--remote-cache", a->engine.remote_cache,
                   "a Redis shared by kvault instances as a KV tier below the disk, "
                   "redis://[user:password@]host:port[/db] (run it with maxmemory and allkeys-lru)")
      ->check([](const std::string& url) {
        auto parsed = ParseRedisUrl(url);
        return parsed.ok() ? std::string() : parsed.status().message();
      });
  serve->add_option("--log-level", a->log_level, "trace, debug, info, warn, error, off")->capture_default_str();
  serve
      ->add_option_function<std::string>(
          "--durability", [eo = &a->engine](const std::string& d) { eo->sync_durability = d == "sync"; },
          "async: a response ends at once and its KV blocks reach disk right after; sync: the "
          "response's final event waits until its blocks are on disk")
      ->check(CLI::IsMember({"async", "sync"}))
      ->default_str(a->engine.sync_durability ? "sync" : "async");
  serve
      ->add_option("--debug-slow-disk-ms", a->engine.debug_slow_write_ms,
                   "fault injection: pause every block write halfway through its file")
      ->group("");  // hidden: for tests
  serve
      ->add_option("--models", a->models,
                   "more models by name, NAME=PATH (repeatable; in the config file: models = [\"a=/m/a.gguf\"]); "
                   "requests pick one with their model field, other names go to --model")
      ->delimiter(',');
  serve
      ->add_option("--max-loaded-models", a->max_loaded_models,
                   "models loaded at once; asking for another unloads the least recently used")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  serve
      ->add_option("--drain-timeout", a->drain_timeout_s,
                   "on SIGTERM/SIGINT, seconds running requests may take to finish")
      ->capture_default_str();
  serve
      ->add_option("--key-concurrency", a->server.key_concurrency,
                   "API requests in flight per key at most; more get 429 (0: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  serve
      ->add_option("--cors-origins", a->server.cors_origins,
                   "browser origins allowed to call the API, comma-separated ('*': any; default: none)")
      ->delimiter(',');
  serve
      ->add_option("--degraded-utilization", a->server.degraded_utilization,
                   "/health answers 503 \"degraded\" when running requests hold more of the pool than this")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  serve->add_flag("!--private-health", a->server.public_health, "/health needs an API key (/health/live never does)");
  serve->add_flag("!--private-metrics", a->server.public_metrics, "/metrics needs an API key");
  serve->add_option("--log-format", a->log_format, "text, or json (one JSON object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  serve
      ->add_option("--api-key", a->server.api_keys,
                   "accept this API key, KEY or NAME=KEY (repeatable; also KVAULT_API_KEYS=k1,name=k2); each "
                   "bare key is its own cache tenant, NAME=KEY keys share tenant NAME ([A-Za-z0-9._-], 1-64 "
                   "characters); without keys the API is open")
      ->delimiter(',');
  serve
      ->add_option("--admin-key", a->server.admin_keys,
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
    if (line.rfind("remote-cache", 0) == 0) line = RedactRedisUrl(line);
    if (line.rfind("print-config", 0) != 0 && line.rfind("config", 0) != 0) out += line + "\n";
    pos = end + 1;
  }
  return out;
}

}  // namespace kvault

// The `kvault` subcommands. main() builds the CLI11 app from these and runs the chosen one.
// Each Run* function returns the process exit code: 0 success, 1 runtime failure,
// 2 bad usage or configuration (missing or invalid model, port in use).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/server_options.h"

namespace kvault {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// `kvault serve`'s configuration. Every flag binds directly to one field (cli/serve_flags.cpp):
// the engine's to `engine`, the HTTP server's to `server`, so a flag's default is that struct's
// default and lives there only. The rest are the command's own. RunServe derives what no flag
// sets directly (the model path, the KV cache and responses directories, the tenant secret, the
// HTTP thread ceiling; --resident-seqs is raised to --parallel).
struct ServeArgs {
  EngineOptions engine;           // --model-id, --ctx-size, --pool-tokens, … --durability (engine/engine.h)
  ServerOptions server;           // --host, --port, --http-threads, … --api-key (server/server_options.h)
  std::string model;              // --model; empty: the demo `small` model in the data directory
  std::string data_dir;           // --data-dir; empty: DefaultDataDir()
  std::string cache_dir;          // --cache-dir; empty: <data-dir>/kv-cache
  bool no_persist = false;        // --no-persist: no disk tier, stored Responses in memory only
  bool no_deterministic = false;  // the default; the flag is kept for existing scripts (not read)
  std::string log_level = "info";
  std::string log_format = "text";
  std::vector<std::string> models;  // --models NAME=PATH
  uint32_t max_loaded_models = 1;
  int drain_timeout_s = 30;
  bool print_config = false;
};
// The `serve` subcommand, its flags bound to `args`, with KVAULT_* environment variables and the
// --config TOML file (cli/serve_flags.cpp).
void AddServeCommand(CLI::App& app, ServeArgs* args);
// The serve command's configuration in effect, as TOML (API keys hidden).
std::string EffectiveConfig(const CLI::App& serve);
// Runs the server until SIGTERM/SIGINT (cli/serve_command.cpp).
int RunServe(const ServeArgs& args);

struct MakeDemoArgs {
  std::string size = "small";
  std::string out;
  uint64_t seed = 42;
  std::string chat_template;  // empty: the size's own (DemoModelSpec::chat_template)
  float end_ramp = -1.0f;     // < 0: the size's own (DemoModelSpec::end_ramp)
};
void AddModelCommand(CLI::App& app, MakeDemoArgs* args);
int RunMakeDemo(const MakeDemoArgs& args);

struct CacheArgs {
  std::string action;  // ls, stats, verify, gc
  std::string cache_dir;
  std::string remote_cache;  // stats: a fleet's Redis (redis_inventory.h), with or without cache_dir
  double max_gib = 0;
};
void AddCacheCommand(CLI::App& app, CacheArgs* args);
int RunCache(const CacheArgs& args);

}  // namespace kvault

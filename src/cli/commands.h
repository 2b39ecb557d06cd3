// The `kvault` subcommands. main() builds the CLI11 app from these and runs the chosen one.
// Each Run* function returns the process exit code: 0 success, 1 runtime failure,
// 2 bad usage or configuration (missing or invalid model, port in use).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace kvault {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct ServeArgs {
  std::string model;        // empty: the demo `small` model in the data directory
  std::string model_id;
  std::string host = "127.0.0.1";
  int port = 8080;
  uint32_t ctx_size = 0;
  uint32_t pool_tokens = 0;
  uint32_t kv_memory_mib = 1024;
  uint32_t block_tokens = 64;
  std::string cache_type = "f16";
  uint32_t parallel = 8;
  uint32_t resident_seqs = 32;
  int64_t idle_tokens = 0;
  uint32_t step_tokens = 256;
  uint32_t max_queue = 64;
  uint32_t queue_timeout_s = 60;
  std::string cache_dir;    // empty: <data-dir>/kv-cache
  bool no_persist = false;
  bool deterministic = false;     // --deterministic: pin llama.cpp's shape-dependent kernels (slower)
  bool no_deterministic = false;  // the default; the flag is kept for existing scripts (not read)
  uint64_t ram_cache_mib = 1024;
  double disk_cache_gib = 10;
  int threads = 0;
  int http_threads = 8;
  int max_connections = 256;
  int read_timeout_s = 10;
  int request_read_timeout_s = 60;
  int write_timeout_s = 30;
  int idle_timeout_s = 5;
  uint32_t max_body_mib = 32;
  int default_max_tokens = 0;  // 0: until the context ends
  int reserve_tokens = 4096;   // answer cells reserved at admission (0: all of max_tokens)
  double temperature = 1.0;    // for requests that set none
  std::string data_dir;     // empty: DefaultDataDir()
  std::string log_level = "info";
  std::string log_format = "text";
  std::vector<std::string> api_keys;  // --api-key (repeatable) and KVAULT_API_KEYS (comma-separated)
  std::vector<std::string> cors_origins;
  std::vector<std::string> admin_keys;
  int key_concurrency = 0;
  std::vector<std::string> models;  // NAME=PATH
  uint32_t max_loaded_models = 1;
  double degraded_utilization = 0.9;
  bool public_health = true;
  bool public_metrics = true;
  int drain_timeout_s = 30;
  std::string durability = "async";
  uint32_t debug_slow_disk_ms = 0;
  bool print_config = false;
};
void AddServeCommand(CLI::App& app, ServeArgs* args);
int RunServe(const ServeArgs& args);
// The serve command's configuration in effect, as TOML (API keys hidden).
std::string EffectiveConfig(const CLI::App& serve);

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
  double max_gib = 0;
};
void AddCacheCommand(CLI::App& app, CacheArgs* args);
int RunCache(const CacheArgs& args);

}  // namespace kvault

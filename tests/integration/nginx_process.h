// Test helper: a real nginx (Debian's, installed by `make deps`) in front of kvault instances,
// with the configuration that scripts/fleet.sh derives from deploy/nginx/kvault.conf, on a free
// loopback port, as a child of the test (`daemon off`). Also runs other programs (the fleet script,
// `nginx -t`) to completion with their output. One test thread drives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kvault::testing {

// The source tree (scripts/, deploy/), compiled in by tests/CMakeLists.txt.
std::filesystem::path SourceDir();

// Runs argv (argv[0] looked up in PATH) with `env` added to the environment, stdout and stderr
// to one file; returns its exit code (128+signal; -1 if it did not start or ran past `timeout`,
// then it is killed) and its output in *output.
int RunProgram(const std::vector<std::string>& argv, std::string* output,
               const std::map<std::string, std::string>& env = {},
               std::chrono::seconds timeout = std::chrono::seconds(120));

// True when nginx is on PATH.
bool HaveNginx();

// `scripts/fleet.sh nginx-conf dir port upstreams...`: dir/nginx.conf for `nginx -p dir/`.
int WriteNginxConf(const std::filesystem::path& dir, int port, const std::vector<std::string>& upstreams,
                   std::string* output);

class NginxProcess {
 public:
  // Writes the configuration into `dir` and starts nginx on a free port routing to `upstreams`
  // (host:port); null, with the reason in *error, if it does not accept connections within 10 s.
  static std::unique_ptr<NginxProcess> Start(const std::filesystem::path& dir,
                                             const std::vector<std::string>& upstreams, std::string* error);
  ~NginxProcess();  // SIGTERM (nginx's fast shutdown: its workers go too), then waits

  int port() const { return port_; }
  // The access log (deploy/nginx/kvault.conf's `kvault` format) and error log, as written so far.
  std::string AccessLog() const;
  std::string ErrorLog() const;

 private:
  bool Spawn();

  std::filesystem::path dir_;
  std::vector<std::string> upstreams_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace kvault::testing

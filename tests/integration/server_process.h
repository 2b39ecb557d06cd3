// Test helper: runs the real `kvault` binary as a child process (server or one-shot command),
// with its output captured to a file, and talks to it over real HTTP on loopback.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvault::testing {

// A loopback TCP port that was free a moment ago.
int FreePort();

// Runs `kvault args...` to completion (killed after `timeout`); returns its exit code and fills
// `output` with stdout+stderr.
int RunKvault(const std::vector<std::string>& args, std::string* output,
              std::chrono::seconds timeout = std::chrono::seconds(60));

// GET /health on loopback as JSON; null when the server gave no answer. `status`, if given,
// gets the HTTP status.
nlohmann::json GetHealth(int port, int* status = nullptr);

// Polls GET /health every `every` until `done` holds for its answer or `timeout` passes, and
// returns the last answer. (The engine publishes its counters after each step, so they can lag
// the response that a test just received.)
nlohmann::json HealthWhen(int port, const std::function<bool(const nlohmann::json&)>& done,
                          std::chrono::milliseconds timeout = std::chrono::seconds(5),
                          std::chrono::milliseconds every = std::chrono::milliseconds(50));

// The number of file descriptors process `pid` has open (from /proc), to check for leaks.
int OpenFds(pid_t pid);

// The engine is idle and holds no cells but idle sequences' (finished conversations kept
// resident): nothing running or queued, nothing reserved, every used pool block an idle one's.
bool PoolIsIdle(const nlohmann::json& health);

// Polls /health until PoolIsIdle (or `timeout`); returns the last answer.
nlohmann::json WaitPoolIdle(int port, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// On an idle server: `n` streamed chat requests of `max_tokens` tokens each hang up after their
// first chunk (they are admitted then). Checks (gtest) that the server cancelled them and freed
// their cells: the pool goes back to empty (a cancelled request's cells are freed, not kept as an
// idle sequence; the earlier idle ones left when the streams were admitted, --idle-tokens 0 with a
// KV store), far fewer tokens were generated than asked for, and a new request is served.
// `headers`: the key, if the server wants one.
void ExpectHungUpStreamsAreFreed(int port, const std::vector<std::pair<std::string, std::string>>& headers, int n,
                                 int max_tokens = 400);

class ServerProcess {
 public:
  // Starts `kvault serve --port <free port> args...` (`first_port`, if given, is tried first).
  // Should another process take the port before the server binds it (ctest -j), the server is
  // started again on another port by WaitHealthy / WaitAnswering: read port() after them.
  static std::unique_ptr<ServerProcess> Start(const std::vector<std::string>& args, int first_port = 0);
  ~ServerProcess();  // SIGKILLs the server if still running

  // Polls GET /health until it answers 200 or the process exits.
  bool WaitHealthy(std::chrono::seconds timeout);
  // The same for another path, with headers (a key, when /health is private).
  bool WaitAnswering(std::chrono::seconds timeout, const std::string& path,
                     const std::vector<std::pair<std::string, std::string>>& headers);
  // Sends `sig` and waits; returns the exit code (128+signal if killed by one), -1 on timeout.
  int Stop(int sig, std::chrono::seconds timeout = std::chrono::seconds(30));

  // Waits for the process to exit by itself; its exit code, or -1 on timeout.
  int Wait(std::chrono::seconds timeout);

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string Log() const;

 private:
  void SpawnOn(int port);
  // After the process exited with `exit_status`: if it was because its port was taken, starts it
  // again on another one and returns true.
  bool RespawnIfPortWasTaken(int exit_status);

  std::vector<std::string> args_;  // after "serve --port N"
  int port_retries_ = 0;
  pid_t pid_ = -1;
  int port_ = 0;
  std::filesystem::path log_;
};

}  // namespace kvault::testing

#include "server_process.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <thread>

#include "test_env.h"

extern char** environ;

namespace kvault::testing {

nlohmann::json GetHealth(int port, int* status) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/health");
  if (!r) return nlohmann::json();
  if (status) *status = r->status;
  return nlohmann::json::parse(r->body);
}

nlohmann::json HealthWhen(int port, const std::function<bool(const nlohmann::json&)>& done,
                          std::chrono::milliseconds timeout, std::chrono::milliseconds every) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  nlohmann::json h = GetHealth(port);
  while (!done(h) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(every);
    h = GetHealth(port);
  }
  return h;
}

int OpenFds(pid_t pid) {
  int n = 0;
  if (DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n - 2;
}

bool PoolIsIdle(const nlohmann::json& h) {
  if (!h.is_object() || !h.contains("pool")) return false;
  const auto& p = h["pool"];
  return h["running"] == 0 && h["queue_depth"] == 0 && p["blocks_reserved"] == 0 &&
         p["blocks_used"] == p["idle_blocks"];
}

nlohmann::json WaitPoolIdle(int port, std::chrono::milliseconds timeout) {
  return HealthWhen(port, PoolIsIdle, timeout, std::chrono::milliseconds(20));
}

void ExpectHungUpStreamsAreFreed(int port, const std::vector<std::pair<std::string, std::string>>& headers, int n,
                                 int max_tokens) {
  httplib::Headers h(headers.begin(), headers.end());
  const nlohmann::json before = WaitPoolIdle(port);
  ASSERT_TRUE(PoolIsIdle(before)) << "not idle before the hang-ups: " << before.dump();
  const uint64_t generated_before = before["engine"]["tokens_generated"];
  std::vector<std::thread> streams;
  std::atomic<int> started{0};
  for (int i = 0; i < n; ++i) {
    streams.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(std::chrono::seconds(600));
      nlohmann::json body = {
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"stream", true},
          {"messages", {{{"role", "user"}, {"content", "Stream " + std::to_string(i) + " will hang up soon."}}}}};
      auto r = c.Post("/v1/chat/completions", h, body.dump(), "application/json", [&](const char*, size_t) {
        ++started;
        return false;  // hang up at the first chunk
      });
      (void)r;
    });
  }
  for (auto& t : streams) t.join();
  EXPECT_EQ(started.load(), n) << "every stream was admitted and sent a first chunk";
  const nlohmann::json after = HealthWhen(
      port, [](const nlohmann::json& j) { return PoolIsIdle(j) && j["pool"]["blocks_used"] == 0; },
      std::chrono::seconds(60), std::chrono::milliseconds(20));
  EXPECT_TRUE(PoolIsIdle(after)) << after.dump();
  EXPECT_EQ(after["pool"]["blocks_used"], 0) << "hung-up streams kept cells: " << after.dump();
  EXPECT_EQ(after["pool"]["idle_sequences"], 0) << "a hung-up stream was kept as a finished one: " << after.dump();
  const uint64_t generated = after["engine"]["tokens_generated"].get<uint64_t>() - generated_before;
  EXPECT_LT(generated, static_cast<uint64_t>(n) * max_tokens / 2) << "the hung-up streams were not cancelled";
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(600));
  auto r = c.Post("/v1/chat/completions", h,
                  R"({"messages":[{"role":"user","content":"still there?"}],"max_tokens":4,"temperature":0})",
                  "application/json");
  ASSERT_TRUE(r) << "no answer after the hang-ups";
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_GT(nlohmann::json::parse(r->body)["usage"]["completion_tokens"].get<int>(), 0) << r->body;
}

namespace fs = std::filesystem;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

namespace {

pid_t Spawn(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<std::string> argv_s = {KvaultBinary()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Waits for `pid` up to `timeout`; returns its exit code (128+signal), or -1 on timeout.
int WaitFor(pid_t pid, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

fs::path NewLogPath() {
  static int counter = 0;
  fs::path dir = Env("KVAULT_TEST_TMP", KVAULT_TEST_TMP_DEFAULT);
  if (dir.empty()) dir = fs::temp_directory_path();
  fs::create_directories(dir);
  return dir / ("kvault-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".log");
}

// A sanitizer build of the server (make test-asan / test-tsan) prints its reports to the log
// that the tests read. A report aborts the server, which usually fails the test that was talking
// to it, but not always: a report while it shuts down, or in a server the test kills anyway, would
// go unseen. Every server's and command's log is checked here, once it is done with.
void ExpectNoSanitizerReport(const std::string& log, const std::string& what) {
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                             "WARNING: ThreadSanitizer"}) {
    const size_t at = log.find(marker);
    if (at != std::string::npos) {
      ADD_FAILURE() << what << " printed a sanitizer report:\n" << log.substr(at > 2000 ? at - 2000 : 0, 6000);
      return;
    }
  }
}

}  // namespace

int RunKvault(const std::vector<std::string>& args, std::string* output, std::chrono::seconds timeout) {
  const fs::path log = NewLogPath();
  pid_t pid = Spawn(args, log);
  if (pid < 0) return -1;
  int code = WaitFor(pid, timeout);
  if (code < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  const std::string text = ReadFile(log);
  ExpectNoSanitizerReport(text, "kvault " + (args.empty() ? std::string() : args[0]));
  if (output) *output = text;
  return code;
}

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::vector<std::string>& args, int first_port) {
  auto p = std::unique_ptr<ServerProcess>(new ServerProcess());
  static int counter = 0;
  p->args_ = args;
  // Never the user's data directory: each server gets its own, unless the test names one.
  if (std::find(args.begin(), args.end(), "--data-dir") == args.end()) {
    p->args_.push_back("--data-dir");
    p->args_.push_back(ScratchDir("server-" + std::to_string(getpid()) + "-" + std::to_string(counter++)).string());
  }
  p->SpawnOn(first_port > 0 ? first_port : FreePort());
  return p;
}

void ServerProcess::SpawnOn(int port) {
  port_ = port;
  log_ = NewLogPath();
  std::vector<std::string> full = {"serve", "--port", std::to_string(port_)};
  full.insert(full.end(), args_.begin(), args_.end());
  pid_ = Spawn(full, log_);
}

bool ServerProcess::RespawnIfPortWasTaken(int exit_status) {
  // FreePort's port was free when it was picked; another test process (ctest -j) or a client's
  // ephemeral port can take it before the server binds it. The server then exits 2 saying so.
  if (!WIFEXITED(exit_status) || WEXITSTATUS(exit_status) != 2 || ++port_retries_ > 20) return false;
  if (Log().find("cannot listen on 127.0.0.1:" + std::to_string(port_)) == std::string::npos) return false;
  SpawnOn(FreePort());
  return true;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (!log_.empty()) ExpectNoSanitizerReport(Log(), "the server on port " + std::to_string(port_));
}

bool ServerProcess::WaitHealthy(std::chrono::seconds timeout) {
  return WaitAnswering(timeout, "/health", {});
}

bool ServerProcess::WaitAnswering(std::chrono::seconds timeout, const std::string& path,
                                  const std::vector<std::pair<std::string, std::string>>& headers) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const httplib::Headers h(headers.begin(), headers.end());
  while (std::chrono::steady_clock::now() < deadline) {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      if (!RespawnIfPortWasTaken(status)) return false;
      continue;
    }
    httplib::Client cli("127.0.0.1", port_);
    cli.set_connection_timeout(std::chrono::milliseconds(200));
    // Short: what answers on the port may not be our server (another process's listener).
    cli.set_read_timeout(std::chrono::seconds(5));
    auto res = cli.Get(path, h);
    if (res && res->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

int ServerProcess::Stop(int sig, std::chrono::seconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  int code = WaitFor(pid_, timeout);
  if (code >= 0) pid_ = -1;
  return code;
}

int ServerProcess::Wait(std::chrono::seconds timeout) {
  if (pid_ <= 0) return -1;
  int code = WaitFor(pid_, timeout);
  if (code >= 0) pid_ = -1;
  return code;
}

std::string ServerProcess::Log() const { return ReadFile(log_); }

}  // namespace kvault::testing

#include "nginx_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

extern char** environ;

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {

namespace fs = std::filesystem;

namespace {

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

// Exit code (128+signal) once `pid` exits, -1 if it still runs after `timeout`.
int WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  return -1;
}

pid_t SpawnTo(const std::vector<std::string>& argv_s, const std::map<std::string, std::string>& env,
              const fs::path& out) {
  // Everything the child needs is made before fork (other test threads may hold malloc's lock).
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (!env.contains(kv.substr(0, kv.find('=')))) env_s.push_back(kv);
  }
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env_s) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    execvpe(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(fd);
  return pid;
}

fs::path OutputFile(const std::string& what) {
  static int counter = 0;
  fs::path dir = Env("KVAULT_TEST_TMP", KVAULT_TEST_TMP_DEFAULT);
  fs::create_directories(dir);
  return dir / (what + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".out");
}

}  // namespace

fs::path SourceDir() {
  return Env("KVAULT_SOURCE_DIR", KVAULT_SOURCE_DIR_DEFAULT);
}

int RunProgram(const std::vector<std::string>& argv, std::string* output, const std::map<std::string, std::string>& env,
               std::chrono::seconds timeout) {
  const fs::path out = OutputFile("run");
  const pid_t pid = SpawnTo(argv, env, out);
  if (pid < 0) return -1;
  int code = WaitExit(pid, timeout);
  if (code < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  if (output) *output = ReadAll(out);
  fs::remove(out);
  return code;
}

bool HaveNginx() {
  std::string out;
  return RunProgram({"nginx", "-v"}, &out) == 0;
}

int WriteNginxConf(const fs::path& dir, int port, const std::vector<std::string>& upstreams, std::string* output) {
  std::vector<std::string> argv = {"bash", (SourceDir() / "scripts" / "fleet.sh").string(), "nginx-conf", dir.string(),
                                   std::to_string(port)};
  argv.insert(argv.end(), upstreams.begin(), upstreams.end());
  return RunProgram(argv, output);
}

std::unique_ptr<NginxProcess> NginxProcess::Start(const fs::path& dir, const std::vector<std::string>& upstreams,
                                                  std::string* error) {
  if (!HaveNginx()) {
    *error = "nginx is not installed: make deps installs it (Debian package nginx)";
    return nullptr;
  }
  std::unique_ptr<NginxProcess> n(new NginxProcess());
  n->dir_ = dir;
  n->upstreams_ = upstreams;
  for (int attempt = 0; attempt < 5; ++attempt) {  // another test may take the port meanwhile
    n->port_ = FreePort();
    std::string out;
    if (WriteNginxConf(dir, n->port_, upstreams, &out) != 0) {
      *error = "scripts/fleet.sh nginx-conf failed: " + out;
      return nullptr;
    }
    if (n->Spawn()) return n;
  }
  *error = "nginx did not start: " + n->ErrorLog() + ReadAll(dir / "nginx.out");
  return nullptr;
}

bool NginxProcess::Spawn() {
  const std::string prefix = dir_.string() + "/";
  pid_ = SpawnTo({"nginx", "-p", prefix, "-c", (dir_ / "nginx.conf").string(), "-g", "daemon off;"}, {},
                 dir_ / "nginx.out");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (WaitExit(pid_, std::chrono::milliseconds(0)) >= 0) {  // exited: the port was taken
      pid_ = -1;
      return false;
    }
    if (Accepts(port_)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  return false;
}

NginxProcess::~NginxProcess() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  if (WaitExit(pid_, std::chrono::seconds(10)) < 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

std::string NginxProcess::AccessLog() const {
  return ReadAll(dir_ / "logs" / "access.log");
}
std::string NginxProcess::ErrorLog() const {
  return ReadAll(dir_ / "logs" / "error.log");
}

}  // namespace kvault::testing

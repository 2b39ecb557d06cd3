#include "redis_process.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace kvault::testing {

namespace {

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

using Ctx = std::unique_ptr<redisContext, void (*)(redisContext*)>;
using Reply = std::unique_ptr<redisReply, void (*)(void*)>;

Ctx Connect(int port) {
  timeval tv{1, 0};
  Ctx c(redisConnectWithTimeout("127.0.0.1", port, tv), redisFree);
  if (c && c->err) c.reset();
  if (c) redisSetTimeout(c.get(), tv);
  return c;
}

Reply Run(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return Reply(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())),
               freeReplyObject);
}

}  // namespace

std::unique_ptr<RedisProcess> RedisProcess::Start(const std::filesystem::path& dir, std::string* error) {
  std::unique_ptr<RedisProcess> r(new RedisProcess());
  r->dir_ = dir;
  for (int attempt = 0; attempt < 5; ++attempt) {  // another test may take the port meanwhile
    r->port_ = FreeLoopbackPort();
    if (r->Spawn()) return r;
  }
  *error = "redis-server did not start (is it installed? make deps installs it); see " + (dir / "redis.log").string();
  return nullptr;
}

RedisProcess::~RedisProcess() {
  Stop();
}

bool RedisProcess::Spawn() {
  const std::string port = std::to_string(port_);
  const std::string log = (dir_ / "redis.log").string();
  const std::string dir = dir_.string();
  pid_ = fork();
  if (pid_ == 0) {
    execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly",
           "no", "--dir", dir.c_str(), "--logfile", log.c_str(), "--maxmemory", "256mb", "--maxmemory-policy",
           "allkeys-lru", static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: port taken, or no redis-server
      pid_ = -1;
      return false;
    }
    if (Command({"PING"}) == "PONG") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Stop();
  return false;
}

void RedisProcess::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool RedisProcess::Restart() {
  Stop();
  for (int attempt = 0; attempt < 50; ++attempt) {  // the port may linger a moment
    if (Spawn()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::optional<std::string> RedisProcess::Command(const std::vector<std::string>& args) const {
  Ctx c = Connect(port_);
  if (!c) return std::nullopt;
  Reply r = Run(c.get(), args);
  if (!r) return std::nullopt;
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: return std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER: return std::to_string(r->integer);
    default: return std::nullopt;
  }
}

std::vector<std::string> RedisProcess::Keys(const std::string& pattern) const {
  std::vector<std::string> out;
  Ctx c = Connect(port_);
  if (!c) return out;
  Reply r = Run(c.get(), {"KEYS", pattern});
  if (r && r->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < r->elements; ++i) out.emplace_back(r->element[i]->str, r->element[i]->len);
  }
  return out;
}

}  // namespace kvault::testing

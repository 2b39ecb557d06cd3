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

std::unique_ptr<RedisProcess> RedisProcess::StartClusterNode(const std::filesystem::path& dir, std::string* error) {
  std::filesystem::create_directories(dir);
  std::unique_ptr<RedisProcess> r(new RedisProcess());
  r->dir_ = dir;
  r->cluster_ = true;
  for (int attempt = 0; attempt < 20; ++attempt) {  // the port and its bus port (+10000) must be free
    r->port_ = FreeLoopbackPort();
    if (r->port_ > 55000) continue;
    if (r->Spawn()) return r;
  }
  *error = "redis-server did not start as a cluster node; see " + (dir / "redis.log").string();
  return nullptr;
}

RedisProcess::~RedisProcess() {
  Stop();
}

bool RedisProcess::Spawn() {
  const std::string port = std::to_string(port_);
  const std::string log = (dir_ / "redis.log").string();
  const std::string dir = dir_.string();
  std::vector<std::string> args = {
      "redis-server", "--port", port, "--bind",    "127.0.0.1", "--save",      "",      "--appendonly",
      "no",           "--dir",  dir,  "--logfile", log,         "--maxmemory", "256mb", "--maxmemory-policy",
      "allkeys-lru"};
  if (cluster_) {
    std::filesystem::remove(dir_ / "nodes.conf");  // a fresh node each start
    for (const char* a :
         {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "3000"})
      args.push_back(a);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    execvp("redis-server", argv.data());
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

std::unique_ptr<RedisCluster> RedisCluster::Start(const std::filesystem::path& dir, int n, std::string* error) {
  std::unique_ptr<RedisCluster> c(new RedisCluster());
  for (int i = 0; i < n; ++i) {
    auto node = RedisProcess::StartClusterNode(dir / ("node" + std::to_string(i)), error);
    if (!node) return nullptr;
    c->nodes_.push_back(std::move(node));
  }
  // The slots split evenly, then every node meets the first.
  const int per = 16384 / n;
  for (int i = 0; i < n; ++i) {
    const int lo = i * per, hi = i == n - 1 ? 16383 : (i + 1) * per - 1;
    if (c->node(static_cast<size_t>(i)).Command({"CLUSTER", "ADDSLOTSRANGE", std::to_string(lo), std::to_string(hi)}) !=
        "OK") {
      *error = "CLUSTER ADDSLOTSRANGE failed on node " + std::to_string(i);
      return nullptr;
    }
    if (i > 0 &&
        c->node(static_cast<size_t>(i)).Command({"CLUSTER", "MEET", "127.0.0.1", std::to_string(c->node(0).port())}) !=
            "OK") {
      *error = "CLUSTER MEET failed on node " + std::to_string(i);
      return nullptr;
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (size_t i = 0; i < c->size();) {
    const std::string info = c->node(i).Command({"CLUSTER", "INFO"}).value_or("");
    if (info.find("cluster_state:ok") != std::string::npos &&
        info.find("cluster_known_nodes:" + std::to_string(n)) != std::string::npos) {
      ++i;
      continue;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      *error = "the cluster did not reach cluster_state:ok: " + info;
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return c;
}

std::string RedisCluster::url() const {
  std::string u = "redis-cluster://";
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (i) u += ",";
    u += "127.0.0.1:" + std::to_string(nodes_[i]->port());
  }
  return u;
}

std::string RedisCluster::Id(size_t i) const {
  return nodes_[i]->Command({"CLUSTER", "MYID"}).value_or("");
}

}  // namespace kvault::testing

// Test helper: a real redis-server (Debian's, installed by `make deps`) run by a test on a free
// loopback port, without persistence, and a small client to look at and tamper with its keys.
// Used by the remote tier's unit tests and the fleet integration tests. Not thread-safe: one test
// thread drives it.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kvault::testing {

class RedisProcess {
 public:
  // Starts redis-server in `dir` (its log: dir/redis.log) on a free port; null (with the reason
  // in *error) when it does not answer PING within 10 s.
  static std::unique_ptr<RedisProcess> Start(const std::filesystem::path& dir, std::string* error);
  // The same as a Redis Cluster node (cluster-enabled; its bus on port + 10000), not yet in a
  // cluster: RedisCluster (below) joins nodes.
  static std::unique_ptr<RedisProcess> StartClusterNode(const std::filesystem::path& dir, std::string* error);
  ~RedisProcess();  // kills it

  // Kills the server (SIGKILL: what a crash or a lost host looks like) and waits for it.
  void Stop();
  // Starts it again on the same port (empty: no persistence); false if it does not answer.
  bool Restart();

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  // One command on a fresh connection: the reply's string (GET; nullopt for nil or an error),
  // its integer as text (DBSIZE, DEL), or its status (SET, FLUSHALL).
  std::optional<std::string> Command(const std::vector<std::string>& args) const;
  // KEYS pattern.
  std::vector<std::string> Keys(const std::string& pattern) const;

 private:
  bool Spawn();

  bool cluster_ = false;
  std::filesystem::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A Redis Cluster of `n` masters (no replicas) on loopback ports, the 16384 slots split evenly,
// started by a test: Start returns once every node reports cluster_state:ok.
class RedisCluster {
 public:
  static std::unique_ptr<RedisCluster> Start(const std::filesystem::path& dir, int n, std::string* error);
  // redis-cluster://127.0.0.1:<first>,127.0.0.1:<second>,… (all the nodes as seeds).
  std::string url() const;
  RedisProcess& node(size_t i) { return *nodes_[i]; }
  size_t size() const { return nodes_.size(); }
  // The node id of node i (CLUSTER MYID).
  std::string Id(size_t i) const;

 private:
  std::vector<std::unique_ptr<RedisProcess>> nodes_;
};

}  // namespace kvault::testing

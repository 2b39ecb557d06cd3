// RedisRouter: the connections one thread uses to reach kvault's keys in Redis — one server
// (redis://), or a Redis Cluster's masters by hash slot (redis-cluster://): the slot map from
// CLUSTER SLOTS, a connection per master made when first needed, MOVED redirections followed (the
// slot moves in the map, which is read again before the next batch) and ASK redirections followed
// for the one command (ASKING first). Debian has no maintained C cluster client (hiredis 0.14 has
// none), so this is the small part of one kvault needs: single-key commands, pipelined per node.
//
// Used by the remote tier (redis_tier.h): one router per thread (its I/O thread's reads, its
// writer's writes). Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvstore/redis_connection.h"
#include "kvstore/redis_url.h"

namespace kvault {

class RedisRouter {
 public:
  RedisRouter(RedisUrl url, uint32_t timeout_ms);

  // The hash slot of a key (CRC16-CCITT mod 16384, of the {hash tag} when there is one).
  static uint16_t Slot(std::string_view key);

  // Connects (a cluster: reads the slot map from a seed, then connects to every master).
  // "" or the error (never the password).
  std::string Connect();
  bool connected() const { return connected_; }
  // Drops every connection (after an error: replies may be out of step).
  void Reset();

  // One command and the key that routes it (its first key).
  struct Command {
    std::string key;
    std::vector<std::string> args;
  };
  // Runs the commands pipelined (per node, in a cluster) and puts their replies, in order, in
  // `replies` (an error reply is a reply). "" when every command was answered; else the
  // connection error, and the router is Reset.
  std::string Run(const std::vector<Command>& commands, std::vector<RedisReplyPtr>* replies);
  // PING on every connected node; "" or the error (and Reset).
  std::string Ping();
  // The connections of every master (a cluster's; the server's), connecting to each; for reads
  // over the whole keyspace (SCAN). Empty and `*error` on failure.
  std::vector<redisContext*> Masters(std::string* error);

 private:
  struct Node {
    std::string host;
    int port = 0;
    RedisConn conn{nullptr, nullptr};
  };
  // Index of the node at host:port, added when new.
  size_t NodeAt(const std::string& host, int port);
  // The node's connection, connecting when there is none; null and *error on failure.
  redisContext* ConnOf(size_t node, std::string* error);
  // Reads CLUSTER SLOTS from any node that answers; "" or the error.
  std::string LoadSlots();
  size_t NodeFor(const std::string& key) const { return url_.cluster ? slots_[Slot(key)] : 0; }
  // A redirection in `reply`, which node `sender` gave (MOVED or ASK): the node to ask and whether
  // it is an ASK.
  bool Redirect(const redisReply* reply, size_t sender, size_t* node, bool* ask);

  const RedisUrl url_;
  const uint32_t timeout_ms_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> slots_;  // cluster: slot → index in nodes_
  bool connected_ = false;
  bool reload_slots_ = false;  // a MOVED was seen: read the map again before the next batch
};

}  // namespace kvault

// RedisUrl: where the shared remote KV tier lives — `redis://[user:password@]host:port[/db]`, or a
// Redis Cluster `redis-cluster://[user:password@]host:port[,host:port…]` (its seed nodes)
// (--remote-cache), parsed and validated. The serve command checks the option with it at start
// (a bad URL stops the start with the reason); RedisTier (redis_tier.h) connects with it. Pure
// functions, any thread.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace kvault {

struct RedisUrl {
  std::string host;  // the server, or a cluster's first seed node
  int port = 6379;
  bool cluster = false;
  std::vector<std::pair<std::string, int>> seeds;  // a cluster's seed nodes (host, port), the first = host:port
  std::string user;                                // empty: AUTH with the password alone (or no AUTH without one)
  std::string password;                            // empty: no AUTH
  int db = 0;                                      // always 0 in a cluster

  // The URL with the password hidden, for logs, /health and --print-config.
  std::string Redacted() const;
};

// InvalidArgument, naming what is wrong, for anything but the forms above: another scheme, no
// host, a port outside 1-65535, a db outside 0-65535 (none in a cluster), anything after the db.
StatusOr<RedisUrl> ParseRedisUrl(const std::string& url);

// The URL with any password replaced by "<hidden>" (the text as given when it does not parse).
std::string RedactRedisUrl(const std::string& url);

}  // namespace kvault

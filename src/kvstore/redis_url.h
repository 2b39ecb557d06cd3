// RedisUrl: where the shared remote KV tier lives — `redis://[user:password@]host:port[/db]`
// (--remote-cache), parsed and validated. The serve command checks the option with it at start
// (a bad URL stops the start with the reason); RedisTier (redis_tier.h) connects with it. Pure
// functions, any thread.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace kvault {

struct RedisUrl {
  std::string host;
  int port = 6379;
  std::string user;      // empty: AUTH with the password alone (or no AUTH without one)
  std::string password;  // empty: no AUTH
  int db = 0;

  // The URL with the password hidden, for logs, /health and --print-config.
  std::string Redacted() const;
};

// InvalidArgument, naming what is wrong, for anything but the form above: another scheme
// (redis-cluster:// is not supported yet), no host, a port outside 1-65535, a db outside 0-65535,
// anything after the db.
StatusOr<RedisUrl> ParseRedisUrl(const std::string& url);

// The URL with any password replaced by "<hidden>" (the text as given when it does not parse).
std::string RedactRedisUrl(const std::string& url);

}  // namespace kvault

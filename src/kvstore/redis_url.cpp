#include "kvstore/redis_url.h"

#include <charconv>

namespace kvault {

namespace {

// A decimal number in [lo, hi] that is all of `s`.
bool ParseInt(const std::string& s, int lo, int hi, int* out) {
  if (s.empty() || s.size() > 6) return false;
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) return false;
  *out = v;
  return true;
}

Status Bad(const std::string& url, const std::string& why) {
  return Status::InvalidArgument(
      "remote cache URL " + RedactRedisUrl(url) + ": " + why +
      " (expected redis://[user:password@]host:port[/db] or redis-cluster://[user:password@]host:port[,host:port...])");
}

// host:port, [v6]:port.
Status ParseHostPort(const std::string& url, const std::string& hostport, std::string* host, int* port) {
  const size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) return Bad(url, "no port");
  *host = hostport.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  if (host->empty()) return Bad(url, "no host");
  if (!ParseInt(hostport.substr(colon + 1), 1, 65535, port)) return Bad(url, "the port must be a number 1-65535");
  return Status::Ok();
}

}  // namespace

std::string RedisUrl::Redacted() const {
  std::string s = cluster ? "redis-cluster://" : "redis://";
  if (!user.empty() || !password.empty()) {
    s.append(user);
    if (!password.empty()) s.append(user.empty() ? "<hidden>" : ":<hidden>");
    s.push_back('@');
  }
  if (cluster) {
    for (size_t i = 0; i < seeds.size(); ++i) {
      if (i) s.push_back(',');
      s.append(seeds[i].first + ":" + std::to_string(seeds[i].second));
    }
    return s;
  }
  s.append(host);
  s.push_back(':');
  s.append(std::to_string(port));
  if (db != 0) {
    s.push_back('/');
    s.append(std::to_string(db));
  }
  return s;
}

std::string RedactRedisUrl(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t at = url.rfind('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
  const size_t start = scheme + 3;
  const size_t colon = url.find(':', start);
  // user:password@ keeps the user; password@ (no user) hides all of it.
  const size_t from = colon != std::string::npos && colon < at ? colon + 1 : start;
  return url.substr(0, from) + "<hidden>" + url.substr(at);
}

StatusOr<RedisUrl> ParseRedisUrl(const std::string& url) {
  RedisUrl u;
  std::string rest;
  if (url.rfind("redis-cluster://", 0) == 0) {
    u.cluster = true;
    rest = url.substr(16);
  } else if (url.rfind("redis://", 0) == 0) {
    rest = url.substr(8);
  } else {
    return Bad(url, "the scheme must be redis:// or redis-cluster://");
  }
  // user:password@ (the last '@': a password may contain one)
  if (const size_t at = rest.rfind('@'); at != std::string::npos) {
    const std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = cred.find(':');
    if (colon == std::string::npos) {
      u.password = cred;  // redis://password@host: AUTH password (the default user)
    } else {
      u.user = cred.substr(0, colon);
      u.password = cred.substr(colon + 1);
    }
    if (u.password.empty()) return Bad(url, "an empty password");
  }
  std::string hostport = rest;
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    if (u.cluster) return Bad(url, "a Redis Cluster has no database number");
    hostport = rest.substr(0, slash);
    const std::string db = rest.substr(slash + 1);
    if (!db.empty() && !ParseInt(db, 0, 65535, &u.db)) return Bad(url, "the database must be a number 0-65535");
  }
  if (hostport.find_first_of("?#") != std::string::npos) return Bad(url, "query strings are not supported");
  if (!u.cluster) {
    if (Status s = ParseHostPort(url, hostport, &u.host, &u.port); !s.ok()) return s;
    return u;
  }
  size_t from = 0;
  for (;;) {
    const size_t comma = hostport.find(',', from);
    std::pair<std::string, int> seed;
    if (Status s = ParseHostPort(url, hostport.substr(from, comma - from), &seed.first, &seed.second); !s.ok())
      return s;
    u.seeds.push_back(std::move(seed));
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  u.host = u.seeds[0].first;
  u.port = u.seeds[0].second;
  return u;
}

}  // namespace kvault

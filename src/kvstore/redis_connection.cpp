#include "kvstore/redis_connection.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

namespace kvault {

namespace {

timeval Timeval(uint32_t ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

}  // namespace

std::string RedisConnError(const redisContext* c, const char* what) {
  return std::string("redis ") + what + ": " + (c && c->err ? c->errstr : "no connection");
}

RedisReplyPtr RedisCommand(redisContext* c, const std::vector<std::string>& args, std::string* error) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  RedisReplyPtr r(
      static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())),
      freeReplyObject);
  if (!r && error) *error = RedisConnError(c, args.empty() ? "command" : args[0].c_str());
  return r;
}

std::string RedisCheck(redisContext* c, const std::vector<std::string>& args) {
  std::string error;
  RedisReplyPtr r = RedisCommand(c, args, &error);
  if (!r) return error;
  if (r->type == REDIS_REPLY_ERROR) return "redis " + args[0] + ": " + std::string(r->str, r->len);
  return "";
}

RedisConn ConnectRedis(const RedisUrl& u, uint32_t timeout_ms, std::string* error) {
  const timeval tv = Timeval(timeout_ms);
  RedisConn c(redisConnectWithTimeout(u.host.c_str(), u.port, tv), redisFree);
  if (!c || c->err) {
    *error = RedisConnError(c.get(), ("connect to " + u.host + ":" + std::to_string(u.port)).c_str());
    return RedisConn(nullptr, redisFree);
  }
  redisSetTimeout(c.get(), tv);
  redisEnableKeepAlive(c.get());
  std::string e;
  if (!u.password.empty()) {
    e = u.user.empty() ? RedisCheck(c.get(), {"AUTH", u.password}) : RedisCheck(c.get(), {"AUTH", u.user, u.password});
  }
  if (e.empty() && u.db != 0) e = RedisCheck(c.get(), {"SELECT", std::to_string(u.db)});
  if (e.empty()) e = RedisCheck(c.get(), {"PING"});
  if (!e.empty()) {
    *error = e;
    return RedisConn(nullptr, redisFree);
  }
  return c;
}

}  // namespace kvault

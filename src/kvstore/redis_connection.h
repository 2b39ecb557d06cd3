// RedisConnection: one synchronous hiredis connection to the server a RedisUrl names — connected
// with a timeout, authenticated (AUTH [user] password), on its database (SELECT), checked (PING) —
// and one-command helpers. Used by the remote tier (redis_tier.h: its read and write connections)
// and by `kvault cache stats --remote-cache` (redis_inventory.h).
//
// Not thread-safe: one thread uses a connection at a time (the tier guards each of its own).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvstore/redis_url.h"

struct redisContext;
struct redisReply;

namespace kvault {

using RedisConn = std::unique_ptr<redisContext, void (*)(redisContext*)>;
using RedisReplyPtr = std::unique_ptr<redisReply, void (*)(void*)>;

// Connects, authenticates, selects the db; each command (and the connect) bounded by `timeout_ms`.
// Null and `*error` (no password in it) on failure.
RedisConn ConnectRedis(const RedisUrl& url, uint32_t timeout_ms, std::string* error);

// "redis <what>: <the connection's error>".
std::string RedisConnError(const redisContext* c, const char* what);

// Runs one command (binary-safe arguments). Null when the connection failed (`*error` says why);
// an error reply is returned as it is.
RedisReplyPtr RedisCommand(redisContext* c, const std::vector<std::string>& args, std::string* error);

// Runs one command and checks its reply is not an error; "" when it worked.
std::string RedisCheck(redisContext* c, const std::vector<std::string>& args);

}  // namespace kvault

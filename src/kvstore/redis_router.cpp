#include "kvstore/redis_router.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <limits>

namespace kvault {

namespace {

constexpr size_t kSlots = 16384;
constexpr int kMaxRedirects = 5;
constexpr uint32_t kNoNode = std::numeric_limits<uint32_t>::max();

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as the Redis Cluster specification gives it.
uint16_t Crc16(std::string_view s) {
  uint16_t crc = 0;
  for (unsigned char c : s) {
    crc ^= static_cast<uint16_t>(c << 8);
    for (int i = 0; i < 8; ++i)
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
  }
  return crc;
}

RedisReplyPtr NoReply() {
  return RedisReplyPtr(nullptr, freeReplyObject);
}

}  // namespace

uint16_t RedisRouter::Slot(std::string_view key) {
  // {tag}: only the tag is hashed, when it is not empty.
  if (const size_t open = key.find('{'); open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return static_cast<uint16_t>(Crc16(key) % kSlots);
}

RedisRouter::RedisRouter(RedisUrl url, uint32_t timeout_ms) : url_(std::move(url)), timeout_ms_(timeout_ms) {
  if (url_.cluster) {
    for (const auto& [host, port] : url_.seeds) NodeAt(host, port);
    slots_.assign(kSlots, kNoNode);
  } else {
    NodeAt(url_.host, url_.port);
  }
}

size_t RedisRouter::NodeAt(const std::string& host, int port) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].host == host && nodes_[i].port == port) return i;
  }
  Node n;
  n.host = host;
  n.port = port;
  nodes_.push_back(std::move(n));
  return nodes_.size() - 1;
}

redisContext* RedisRouter::ConnOf(size_t node, std::string* error) {
  Node& n = nodes_[node];
  if (!n.conn) {
    RedisUrl u = url_;
    u.host = n.host;
    u.port = n.port;
    n.conn = ConnectRedis(u, timeout_ms_, error);
  }
  return n.conn.get();
}

void RedisRouter::Reset() {
  for (auto& n : nodes_) n.conn.reset();
  connected_ = false;
}

std::string RedisRouter::LoadSlots() {
  std::string last_error = "no cluster node answered";
  for (size_t i = 0; i < nodes_.size(); ++i) {
    std::string error;
    redisContext* c = ConnOf(i, &error);
    if (!c) {
      last_error = error;
      continue;
    }
    RedisReplyPtr r = RedisCommand(c, {"CLUSTER", "SLOTS"}, &error);
    if (!r) {
      nodes_[i].conn.reset();
      last_error = error;
      continue;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
      last_error =
          "redis CLUSTER SLOTS: " + (r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "no slot map");
      continue;
    }
    const std::string queried = nodes_[i].host;
    std::vector<uint32_t> slots(kSlots, kNoNode);
    for (size_t e = 0; e < r->elements; ++e) {
      const redisReply* range = r->element[e];
      if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) continue;
      const redisReply* master = range->element[2];
      if (master->type != REDIS_REPLY_ARRAY || master->elements < 2) continue;
      std::string host(master->element[0]->str ? master->element[0]->str : "", master->element[0]->len);
      if (host.empty() || host == "?") host = queried;  // "the node you asked"
      const size_t node = NodeAt(host, static_cast<int>(master->element[1]->integer));
      const long long lo = range->element[0]->integer, hi = range->element[1]->integer;
      for (long long s = std::max(0LL, lo); s <= hi && s < static_cast<long long>(kSlots); ++s)
        slots[static_cast<size_t>(s)] = static_cast<uint32_t>(node);
    }
    if (std::count(slots.begin(), slots.end(), kNoNode) == static_cast<long>(kSlots)) {
      last_error = "redis CLUSTER SLOTS: no slot is served";
      continue;
    }
    slots_ = std::move(slots);
    reload_slots_ = false;
    return "";
  }
  return last_error;
}

std::string RedisRouter::Connect() {
  Reset();
  std::string error;
  if (url_.cluster) {
    // The slot map, then every master that serves a slot: a request never waits for a connection
    // to one (only a redirection to a node not in the map does).
    error = LoadSlots();
    if (error.empty()) Masters(&error);
  } else if (!ConnOf(0, &error)) {
    // error set
  }
  connected_ = error.empty();
  if (!connected_) Reset();
  return error;
}

bool RedisRouter::Redirect(const redisReply* reply, size_t sender, size_t* node, bool* ask) {
  if (!url_.cluster || !reply || reply->type != REDIS_REPLY_ERROR) return false;
  const std::string_view e(reply->str, reply->len);
  const bool moved = e.rfind("MOVED ", 0) == 0;
  *ask = e.rfind("ASK ", 0) == 0;
  if (!moved && !*ask) return false;
  // MOVED <slot> <host>:<port>
  const size_t sp1 = e.find(' '), sp2 = e.find(' ', sp1 + 1), colon = e.rfind(':');
  if (sp2 == std::string_view::npos || colon == std::string_view::npos || colon < sp2) return false;
  unsigned slot = 0;
  int port = 0;
  std::from_chars(e.data() + sp1 + 1, e.data() + sp2, slot);
  std::from_chars(e.data() + colon + 1, e.data() + e.size(), port);
  std::string host(e.substr(sp2 + 1, colon - sp2 - 1));
  if (host.empty()) host = nodes_[sender].host;  // "the node you asked"
  if (port <= 0 || slot >= kSlots) return false;
  *node = NodeAt(host, port);
  if (moved) {
    slots_[slot] = static_cast<uint32_t>(*node);
    reload_slots_ = true;  // more may have moved: the whole map again before the next batch
  }
  return true;
}

std::string RedisRouter::Run(const std::vector<Command>& commands, std::vector<RedisReplyPtr>* replies) {
  replies->clear();
  for (size_t i = 0; i < commands.size(); ++i) replies->push_back(NoReply());
  std::string error;
  if (!connected_) return "not connected";
  if (reload_slots_) {
    if (error = LoadSlots(); !error.empty()) {
      Reset();
      return error;
    }
  }
  std::vector<std::vector<size_t>> by_node(nodes_.size());
  std::vector<size_t> sender(commands.size());  // the node that gave each reply
  for (size_t i = 0; i < commands.size(); ++i) {
    size_t node = NodeFor(commands[i].key);
    if (node == kNoNode) node = 0;  // a slot no master serves: any node answers with the redirection or an error
    by_node[node].push_back(i);
    sender[i] = node;
  }
  for (size_t node = 0; node < by_node.size(); ++node) {
    if (by_node[node].empty()) continue;
    redisContext* c = ConnOf(node, &error);
    if (!c) {
      Reset();
      return error;
    }
    for (size_t i : by_node[node]) {
      const auto& args = commands[i].args;
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data());
    }
  }
  for (size_t node = 0; node < by_node.size(); ++node) {
    for (size_t i : by_node[node]) {
      void* raw = nullptr;
      if (redisGetReply(nodes_[node].conn.get(), &raw) != REDIS_OK) {
        error = RedisConnError(nodes_[node].conn.get(), commands[i].args[0].c_str());
        Reset();
        return error;
      }
      (*replies)[i].reset(static_cast<redisReply*>(raw));
    }
  }
  // Redirections: each command again, alone, where the cluster says.
  for (int round = 0; round < kMaxRedirects; ++round) {
    bool any = false;
    for (size_t i = 0; i < commands.size(); ++i) {
      size_t node = 0;
      bool ask = false;
      if (!Redirect((*replies)[i].get(), sender[i], &node, &ask)) continue;
      any = true;
      redisContext* c = ConnOf(node, &error);
      if (!c) {
        Reset();
        return error;
      }
      if (ask) {
        RedisReplyPtr ok = RedisCommand(c, {"ASKING"}, &error);
        if (!ok) {
          Reset();
          return error;
        }
      }
      RedisReplyPtr r = RedisCommand(c, commands[i].args, &error);
      if (!r) {
        Reset();
        return error;
      }
      (*replies)[i] = std::move(r);
      sender[i] = node;
    }
    if (!any) break;
  }
  return "";
}

std::string RedisRouter::Ping() {
  for (auto& n : nodes_) {
    if (!n.conn) continue;
    if (std::string e = RedisCheck(n.conn.get(), {"PING"}); !e.empty()) {
      Reset();
      return e;
    }
  }
  return "";
}

std::vector<redisContext*> RedisRouter::Masters(std::string* error) {
  std::vector<redisContext*> out;
  if (url_.cluster ? std::all_of(slots_.begin(), slots_.end(), [](uint32_t s) { return s == kNoNode; }) : !connected_) {
    if (!(*error = Connect()).empty()) return out;
  }
  if (!url_.cluster) {
    out.push_back(ConnOf(0, error));
    return out;
  }
  std::vector<uint32_t> masters(slots_.begin(), slots_.end());
  std::sort(masters.begin(), masters.end());
  masters.erase(std::unique(masters.begin(), masters.end()), masters.end());
  for (uint32_t m : masters) {
    if (m == kNoNode) continue;
    redisContext* c = ConnOf(m, error);
    if (!c) return {};
    out.push_back(c);
  }
  return out;
}

}  // namespace kvault

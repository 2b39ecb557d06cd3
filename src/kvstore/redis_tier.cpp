#include "kvstore/redis_tier.h"

#include "kvstore/redis_connection.h"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace kvault {

namespace {

constexpr size_t kBatch = 16;            // commands per pipelined round trip
constexpr uint32_t kPingEveryMs = 1000;  // while the writer is idle and connected

// Stores an agent's record unless the stored one has as many turns or more: 1 stored, 0 not.
constexpr const char* kPublishAgentScript =
    "local t = redis.call('HGET', KEYS[1], 'turns') "
    "if t and tonumber(t) >= tonumber(ARGV[1]) then return 0 end "
    "redis.call('HSET', KEYS[1], 'turns', ARGV[1], 'record', ARGV[2]) "
    "return 1";

using Reply = RedisReplyPtr;

}  // namespace

RedisTier::RedisTier(RedisTierOptions options)
    : options_(std::move(options)),
      prefix_("kvault:" + options_.fingerprint + ":"),
      backoff_ms_(options_.min_backoff_ms),
      read_conn_(nullptr, redisFree) {
  stats_.url = options_.url.Redacted();
  stats_.last_error = "not connected yet";
  down_since_ = next_connect_ = std::chrono::steady_clock::now();
  writer_ = std::thread([this] { WriterLoop(); });
}

RedisTier::~RedisTier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

std::string RedisTier::KeyFor(const BlockKey& key) const {
  return prefix_ + key.Hex();
}

std::string RedisTier::AgentKeyFor(const std::string& tenant, const std::string& id) const {
  std::string name = AgentRegistry::FileName(tenant, id);  // a hash: no client text in the key
  name.resize(name.size() - 5);                            // without ".json"
  return prefix_ + "agent:" + name;
}

RedisTier::Conn RedisTier::Connect(std::string* error) const {
  return ConnectRedis(options_.url, options_.timeout_ms, error);
}

void RedisTier::DownLocked(const std::string& error) {
  ++stats_.errors;
  stats_.last_error = error;
  if (up_) {
    up_ = false;
    down_since_ = std::chrono::steady_clock::now();
    backoff_ms_ = options_.min_backoff_ms;
    next_connect_ = down_since_ + std::chrono::milliseconds(backoff_ms_);
    spdlog::warn("remote cache {}: {}; serving from the local tiers, reconnecting", stats_.url, error);
  }
  cv_.notify_all();
}

void RedisTier::ReadBlocks(std::span<const BlockKey> keys, const ReadSink& sink) {
  std::lock_guard<std::mutex> read_lock(read_mu_);
  size_t i = 0;
  const auto skip_rest = [&] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.skipped_reads += keys.size() - i;
    }
    const Status down = Status::Unavailable("remote cache down");
    for (; i < keys.size(); ++i) {
      if (!sink(i, down)) return;
    }
  };
  while (i < keys.size()) {
    bool up;
    {
      std::lock_guard<std::mutex> lock(mu_);
      up = up_;
    }
    if (!up || !read_conn_) return skip_rest();
    const size_t n = std::min(kBatch, keys.size() - i);
    for (size_t j = 0; j < n; ++j) {
      const std::string k = KeyFor(keys[i + j]);
      redisAppendCommand(read_conn_.get(), "GET %b", k.data(), k.size());
    }
    size_t got = 0;
    bool go_on = true;
    for (; got < n; ++got) {
      void* raw = nullptr;
      if (redisGetReply(read_conn_.get(), &raw) != REDIS_OK) break;
      Reply r(static_cast<redisReply*>(raw), freeReplyObject);
      if (!go_on) continue;  // the caller has what it wants: drain the batch's replies
      const size_t idx = i + got;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.reads;
        if (r->type == REDIS_REPLY_STRING) {
          stats_.read_bytes += r->len;
        } else {
          ++stats_.misses;
        }
      }
      if (r->type == REDIS_REPLY_STRING) {
        go_on = sink(idx, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r->str), r->len));
      } else {
        go_on = sink(idx, Status::NotFound("not in the remote cache"));
      }
    }
    if (got < n) {  // the connection failed mid-batch: it is unusable (replies out of step)
      {
        std::lock_guard<std::mutex> lock(mu_);
        DownLocked(RedisConnError(read_conn_.get(), "GET"));
      }
      read_conn_.reset();
      if (!go_on) return;
      i += got;
      return skip_rest();
    }
    if (!go_on) return;
    i += n;
  }
}

bool RedisTier::ReadableLocked() {
  std::lock_guard<std::mutex> lock(mu_);
  return up_ && read_conn_;
}

std::optional<AgentRecord> RedisTier::FetchAgent(const std::string& tenant, const std::string& id) {
  std::lock_guard<std::mutex> read_lock(read_mu_);
  if (!ReadableLocked()) return std::nullopt;
  const std::string k = AgentKeyFor(tenant, id);
  Reply r(static_cast<redisReply*>(redisCommand(read_conn_.get(), "HGET %b record", k.data(), k.size())),
          freeReplyObject);
  std::lock_guard<std::mutex> lock(mu_);
  if (!r) {
    DownLocked(RedisConnError(read_conn_.get(), "HGET"));
    read_conn_.reset();
    return std::nullopt;
  }
  ++stats_.agent_reads;
  if (r->type == REDIS_REPLY_NIL) return std::nullopt;
  if (r->type != REDIS_REPLY_STRING) {  // e.g. WRONGTYPE: something else was stored under the key
    ++stats_.agent_rejected;
    return std::nullopt;
  }
  std::optional<AgentRecord> rec = AgentRegistry::Decode(std::string_view(r->str, r->len));
  if (!rec || rec->tenant != tenant || rec->id != id) {
    ++stats_.agent_rejected;
    return std::nullopt;
  }
  ++stats_.agent_found;
  return rec;
}

std::optional<uint64_t> RedisTier::CountPresent(std::span<const BlockKey> keys) {
  std::lock_guard<std::mutex> read_lock(read_mu_);
  if (!ReadableLocked()) return std::nullopt;
  uint64_t present = 0;
  for (size_t i = 0; i < keys.size(); i += kBatch) {
    const size_t n = std::min(kBatch, keys.size() - i);
    std::vector<std::string> args{"EXISTS"};
    for (size_t j = 0; j < n; ++j) args.push_back(KeyFor(keys[i + j]));
    Reply r = RedisCommand(read_conn_.get(), args, nullptr);
    if (!r) {
      std::lock_guard<std::mutex> lock(mu_);
      DownLocked(RedisConnError(read_conn_.get(), "EXISTS"));
      read_conn_.reset();
      return std::nullopt;
    }
    if (r->type != REDIS_REPLY_INTEGER) return std::nullopt;
    present += static_cast<uint64_t>(r->integer);
  }
  return present;
}

void RedisTier::Push(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    job.size = job.record ? job.record->ByteSize() : job.bytes.size() + job.agent_key.size();
    queued_bytes_ += job.size;
    queue_.push_back(std::move(job));
    TrimLocked();
  }
  cv_.notify_all();
}

void RedisTier::TrimLocked() {
  while (!queue_.empty() && (queue_.size() > std::max<size_t>(options_.max_queued_writes, 1) ||
                             queued_bytes_ > options_.max_queued_bytes)) {
    queued_bytes_ -= queue_.front().size;
    queue_.pop_front();  // the oldest first
    ++stats_.dropped_writes;
  }
}

void RedisTier::Enqueue(std::shared_ptr<const BlockRecord> record) {
  Job job;
  job.key = record->key;
  job.record = std::move(record);
  Push(std::move(job));
}

Status RedisTier::Write(const BlockKey& key, std::span<const uint8_t> bytes) {
  Job job;
  job.key = key;
  job.bytes.assign(bytes.begin(), bytes.end());
  Push(std::move(job));
  return Status::Ok();
}

Status RedisTier::Remove(const BlockKey& key) {
  Job job;
  job.kind = Job::Kind::kDelete;
  job.key = key;
  Push(std::move(job));
  return Status::Ok();
}

void RedisTier::PublishAgent(const AgentRecord& record) {
  Job job;
  job.kind = Job::Kind::kAgent;
  job.agent_key = AgentKeyFor(record.tenant, record.id);
  job.bytes = AgentRegistry::Encode(record);
  job.turns = record.turns;
  Push(std::move(job));
}

void RedisTier::ForgetAgent(const std::string& tenant, const std::string& id) {
  Job job;
  job.kind = Job::Kind::kDeleteAgent;
  job.agent_key = AgentKeyFor(tenant, id);
  Push(std::move(job));
}

void RedisTier::Reject(const BlockKey& key, const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.rejected;
  }
  spdlog::warn("remote cache: block {} failed verification ({}); deleting it", key.Hex(), why);
  Remove(key);
}

Status RedisTier::Probe() {
  std::lock_guard<std::mutex> lock(mu_);
  return up_ ? Status::Ok() : Status::Unavailable(stats_.last_error);
}

bool RedisTier::WaitWritten(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return written_.wait_for(lock, timeout, [&] { return up_ && queue_.empty() && in_flight_ == 0; });
}

RemoteTierStats RedisTier::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  RemoteTierStats s = stats_;
  s.up = up_;
  s.queued_writes = queue_.size() + in_flight_;
  if (!up_) s.down_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - down_since_).count();
  return s;
}

bool RedisTier::WriteBatch(redisContext* conn, std::vector<Job>& batch, std::string* error) {
  using Kind = Job::Kind;
  std::vector<uint8_t> buf;
  uint64_t bytes = 0;
  for (const Job& job : batch) {
    switch (job.kind) {
      case Kind::kDelete: {
        const std::string k = KeyFor(job.key);
        redisAppendCommand(conn, "DEL %b", k.data(), k.size());
        break;
      }
      case Kind::kDeleteAgent: redisAppendCommand(conn, "DEL %b", job.agent_key.data(), job.agent_key.size()); break;
      case Kind::kAgent: {
        const std::string turns = std::to_string(job.turns);
        redisAppendCommand(conn, "EVAL %s 1 %b %b %b", kPublishAgentScript, job.agent_key.data(), job.agent_key.size(),
                           turns.data(), turns.size(), job.bytes.data(), job.bytes.size());
        break;
      }
      case Kind::kBlock: {
        const std::string k = KeyFor(job.key);
        const std::vector<uint8_t>* v = &job.bytes;
        if (job.record) {
          EncodeBlockFile(*job.record, &buf);
          v = &buf;
        }
        redisAppendCommand(conn, "SET %b %b", k.data(), k.size(), v->data(), v->size());
        bytes += v->size();
        break;
      }
    }
  }
  uint64_t writes = 0, agent_writes = 0, agent_stale = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Kind kind = batch[i].kind;
    const char* what = kind == Kind::kBlock ? "SET" : kind == Kind::kAgent ? "EVAL" : "DEL";
    void* raw = nullptr;
    if (redisGetReply(conn, &raw) != REDIS_OK) {
      *error = RedisConnError(conn, what);
      return false;
    }
    Reply r(static_cast<redisReply*>(raw), freeReplyObject);
    if (r->type == REDIS_REPLY_ERROR) {  // e.g. OOM without an eviction policy: that write is lost
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.errors;
      stats_.last_error = std::string("redis ") + what + ": " + std::string(r->str, r->len);
      continue;
    }
    if (kind == Kind::kBlock) ++writes;
    if (kind == Kind::kAgent) ++(r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? agent_writes : agent_stale);
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.writes += writes;
  stats_.write_bytes += bytes;
  stats_.agent_writes += agent_writes;
  stats_.agent_stale += agent_stale;
  return true;
}

void RedisTier::WriterLoop() {
  Conn conn(nullptr, redisFree);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!up_) {
      if (stop_) return;
      const auto now = std::chrono::steady_clock::now();
      if (now < next_connect_) {
        cv_.wait_until(lock, next_connect_, [&] { return stop_; });
        continue;
      }
      lock.unlock();
      std::string error;
      Conn w = Connect(&error);
      Conn r = w ? Connect(&error) : Conn(nullptr, redisFree);
      const bool connected = w && r;
      if (connected) {
        std::lock_guard<std::mutex> read_lock(read_mu_);
        read_conn_ = std::move(r);
      }
      lock.lock();
      if (!connected) {
        ++stats_.errors;
        stats_.last_error = error;
        backoff_ms_ = std::min(options_.max_backoff_ms, backoff_ms_ * 2);
        next_connect_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms_);
        continue;
      }
      conn = std::move(w);
      up_ = true;
      backoff_ms_ = options_.min_backoff_ms;
      ++stats_.connects;
      spdlog::info("remote cache {}: connected", stats_.url);
      written_.notify_all();
      continue;
    }
    const bool woken =
        cv_.wait_for(lock, std::chrono::milliseconds(kPingEveryMs), [&] { return stop_ || !up_ || !queue_.empty(); });
    if (!up_) continue;
    if (queue_.empty()) {
      if (stop_) return;
      if (!woken) {  // idle: a PING, so that /health sees a Redis that went away
        lock.unlock();
        const std::string e = RedisCheck(conn.get(), {"PING"});
        lock.lock();
        if (!e.empty()) {
          conn.reset();
          DownLocked(e);
        }
      }
      continue;
    }
    std::vector<Job> batch;
    while (!queue_.empty() && batch.size() < kBatch) {
      queued_bytes_ -= queue_.front().size;
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    in_flight_ = batch.size();
    lock.unlock();
    std::string error;
    const bool ok = WriteBatch(conn.get(), batch, &error);
    lock.lock();
    in_flight_ = 0;
    if (!ok) {
      conn.reset();
      DownLocked(error);
      // Unanswered jobs go back to the front, within the bound (the oldest dropped first).
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
        queued_bytes_ += it->size;
        queue_.push_front(std::move(*it));
      }
      TrimLocked();
      if (stop_) return;  // no waiting for Redis at shutdown
      continue;
    }
    if (queue_.empty()) written_.notify_all();
  }
}

}  // namespace kvault

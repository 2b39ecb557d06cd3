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
constexpr int kStableSeconds = 10;       // up this long: the next failure's backoff starts afresh

// Stores an agent's record unless the stored one (or its tombstone) has as many turns or more:
// 1 stored, 0 not.
constexpr const char* kPublishAgentScript =
    "local t = redis.call('HGET', KEYS[1], 'turns') "
    "if t and tonumber(t) >= tonumber(ARGV[1]) then return 0 end "
    "redis.call('HSET', KEYS[1], 'turns', ARGV[1], 'record', ARGV[2]) "
    "return 1";
// Forgets an agent: its record is replaced by a tombstone (its turns, no record; kept 7 days) that
// refuses any record of no more turns — one an instance that still knows the agent would publish.
constexpr const char* kForgetAgentScript =
    "local t = tonumber(redis.call('HGET', KEYS[1], 'turns') or '0') or 0 "
    "local n = math.max(t, tonumber(ARGV[1])) "
    "redis.call('DEL', KEYS[1]) "
    "redis.call('HSET', KEYS[1], 'turns', n) "
    "redis.call('EXPIRE', KEYS[1], 604800) "
    "return n";

using Reply = RedisReplyPtr;

}  // namespace

RedisTier::RedisTier(RedisTierOptions options)
    : options_(std::move(options)),
      prefix_("kvault:" + options_.fingerprint + ":"),
      backoff_ms_(options_.min_backoff_ms),
      reader_(std::make_unique<RedisRouter>(options_.url, options_.read_timeout_ms)) {
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

void RedisTier::DownLocked(const std::string& error) {
  ++stats_.errors;
  stats_.last_error = error;
  if (up_) {
    up_ = false;
    down_since_ = std::chrono::steady_clock::now();
    // After a while up, reconnecting starts again from the shortest wait; a Redis that fails again
    // soon after each reconnect (it answers PING but stalls on data) is tried less and less often.
    backoff_ms_ = down_since_ - up_since_ >= std::chrono::seconds(kStableSeconds)
                      ? options_.min_backoff_ms
                      : std::min(options_.max_backoff_ms, std::max(backoff_ms_, options_.min_backoff_ms) * 2);
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
  std::vector<RedisRouter::Command> commands;
  std::vector<RedisReplyPtr> replies;
  while (i < keys.size()) {
    if (!ReadableLocked()) return skip_rest();
    const size_t n = std::min(kBatch, keys.size() - i);
    commands.clear();
    for (size_t j = 0; j < n; ++j) {
      std::string k = KeyFor(keys[i + j]);
      commands.push_back({k, {"GET", k}});
    }
    if (const std::string error = reader_->Run(commands, &replies); !error.empty()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        DownLocked(error);
      }
      return skip_rest();
    }
    for (size_t j = 0; j < n; ++j, ++i) {
      const redisReply* r = replies[j].get();
      const bool found = r->type == REDIS_REPLY_STRING;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.reads;
        if (found) {
          stats_.read_bytes += r->len;
        } else {
          ++stats_.misses;
        }
      }
      const bool go_on = found ? sink(i, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r->str), r->len))
                               : sink(i, Status::NotFound("not in the remote cache"));
      if (!go_on) return;
    }
  }
}

bool RedisTier::ReadableLocked() {
  std::lock_guard<std::mutex> lock(mu_);
  return up_ && reader_->connected();
}

std::optional<AgentRecord> RedisTier::FetchAgent(const std::string& tenant, const std::string& id) {
  std::lock_guard<std::mutex> read_lock(read_mu_);
  if (!ReadableLocked()) return std::nullopt;
  const std::string k = AgentKeyFor(tenant, id);
  std::vector<RedisReplyPtr> replies;
  const std::string error = reader_->Run({{k, {"HGET", k, "record"}}}, &replies);
  std::lock_guard<std::mutex> lock(mu_);
  if (!error.empty()) {
    DownLocked(error);
    return std::nullopt;
  }
  const redisReply* r = replies[0].get();
  if (r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).rfind("WRONGTYPE", 0) != 0) {
    ++stats_.errors;  // NOPERM, CLUSTERDOWN, …: an error, not a bad record
    stats_.last_error = "redis HGET: " + std::string(r->str, r->len);
    return std::nullopt;
  }
  ++stats_.agent_reads;
  if (r->type == REDIS_REPLY_NIL) return std::nullopt;  // none, or a forgotten agent's tombstone
  std::optional<AgentRecord> rec;
  if (r->type == REDIS_REPLY_STRING) rec = AgentRegistry::Decode(std::string_view(r->str, r->len));
  if (!rec || rec->tenant != tenant || rec->id != id) {  // WRONGTYPE (something else under the key), garbage
    ++stats_.agent_rejected;
    return std::nullopt;
  }
  ++stats_.agent_found;
  return rec;
}

std::optional<std::vector<bool>> RedisTier::Present(std::span<const BlockKey> keys) {
  std::lock_guard<std::mutex> read_lock(read_mu_);
  if (!ReadableLocked()) return std::nullopt;
  // One EXISTS per key: in a cluster the keys live on different nodes.
  std::vector<RedisRouter::Command> commands;
  for (const auto& key : keys) {
    std::string k = KeyFor(key);
    commands.push_back({k, {"EXISTS", k}});
  }
  std::vector<RedisReplyPtr> replies;
  if (const std::string error = reader_->Run(commands, &replies); !error.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    DownLocked(error);
    return std::nullopt;
  }
  std::vector<bool> present;
  for (const auto& r : replies) {
    if (r->type != REDIS_REPLY_INTEGER) return std::nullopt;
    present.push_back(r->integer > 0);
  }
  return present;
}

std::optional<uint64_t> RedisTier::CountPresent(std::span<const BlockKey> keys) {
  auto present = Present(keys);
  if (!present) return std::nullopt;
  return static_cast<uint64_t>(std::count(present->begin(), present->end(), true));
}

void RedisTier::Push(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    if (job.kind == Job::Kind::kForgetAgent) {  // ahead of the blocks, never dropped for them
      urgent_.push_back(std::move(job));
      if (urgent_.size() > std::max<size_t>(options_.max_queued_writes, 1)) {  // bounded too
        urgent_.pop_front();
        ++stats_.dropped_writes;
      }
    } else {
      job.size = job.record  ? job.record->ByteSize()
                 : job.agent ? job.agent->chain.size() * sizeof(BlockKey) + 256
                             : job.bytes.size();
      queued_bytes_ += job.size;
      queue_.push_back(std::move(job));
      TrimLocked();
    }
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

void RedisTier::PublishAgent(AgentRecord record) {
  Job job;
  job.kind = Job::Kind::kAgent;
  job.agent_key = AgentKeyFor(record.tenant, record.id);
  job.turns = record.turns;
  job.agent = std::make_shared<const AgentRecord>(std::move(record));  // encoded by the writer
  Push(std::move(job));
}

void RedisTier::ForgetAgent(const std::string& tenant, const std::string& id, uint64_t turns) {
  Job job;
  job.kind = Job::Kind::kForgetAgent;
  job.agent_key = AgentKeyFor(tenant, id);
  job.turns = turns;
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
  return written_.wait_for(lock, timeout, [&] { return up_ && IdleLocked() && in_flight_ == 0; });
}

RemoteTierStats RedisTier::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  RemoteTierStats s = stats_;
  s.up = up_;
  s.queued_writes = queue_.size() + urgent_.size() + in_flight_;
  if (!up_) s.down_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - down_since_).count();
  return s;
}

bool RedisTier::WriteBatch(RedisRouter& writer, std::vector<Job>& batch, std::string* error) {
  using Kind = Job::Kind;
  std::vector<uint8_t> buf;
  uint64_t bytes = 0;
  std::vector<RedisRouter::Command> commands;
  for (const Job& job : batch) {
    switch (job.kind) {
      case Kind::kDelete: {
        std::string k = KeyFor(job.key);
        commands.push_back({k, {"DEL", k}});
        break;
      }
      case Kind::kForgetAgent:
        commands.push_back(
            {job.agent_key, {"EVAL", kForgetAgentScript, "1", job.agent_key, std::to_string(job.turns)}});
        break;
      case Kind::kAgent: {
        const std::vector<uint8_t> record = AgentRegistry::Encode(*job.agent);
        commands.push_back({job.agent_key,
                            {"EVAL", kPublishAgentScript, "1", job.agent_key, std::to_string(job.turns),
                             std::string(record.begin(), record.end())}});
        break;
      }
      case Kind::kBlock: {
        std::string k = KeyFor(job.key);
        const std::vector<uint8_t>* v = &job.bytes;
        if (job.record) {
          EncodeBlockFile(*job.record, &buf);
          v = &buf;
        }
        commands.push_back({k, {"SET", k, std::string(v->begin(), v->end())}});
        bytes += v->size();
        break;
      }
    }
  }
  std::vector<RedisReplyPtr> replies;
  if (*error = writer.Run(commands, &replies); !error->empty()) return false;
  uint64_t writes = 0, agent_writes = 0, agent_stale = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Kind kind = batch[i].kind;
    const char* what = kind == Kind::kBlock ? "SET" : kind == Kind::kDelete ? "DEL" : "EVAL";
    const redisReply* r = replies[i].get();
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
  RedisRouter writer(options_.url, options_.timeout_ms);
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
      // Both connected here, the reader's outside read_mu_ (reads skip Redis meanwhile, being down).
      std::string error = writer.Connect();
      auto reader = std::make_unique<RedisRouter>(options_.url, options_.read_timeout_ms);
      if (error.empty()) error = reader->Connect();
      const bool connected = error.empty();
      if (connected) {
        std::lock_guard<std::mutex> read_lock(read_mu_);
        reader_ = std::move(reader);
      } else {
        writer.Reset();
      }
      lock.lock();
      if (!connected) {
        ++stats_.errors;
        stats_.last_error = error;
        backoff_ms_ = std::min(options_.max_backoff_ms, backoff_ms_ * 2);
        next_connect_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms_);
        continue;
      }
      up_ = true;
      up_since_ = std::chrono::steady_clock::now();
      ++stats_.connects;
      spdlog::info("remote cache {}: connected", stats_.url);
      written_.notify_all();
      continue;
    }
    const bool woken =
        cv_.wait_for(lock, std::chrono::milliseconds(kPingEveryMs), [&] { return stop_ || !up_ || !IdleLocked(); });
    if (!up_) continue;
    if (IdleLocked()) {
      if (stop_) return;
      if (!woken) {  // idle: a PING, so that /health sees a Redis that went away
        lock.unlock();
        const std::string e = writer.Ping();
        lock.lock();
        if (!e.empty()) DownLocked(e);
      }
      continue;
    }
    std::vector<Job> batch;
    while (!urgent_.empty() && batch.size() < kBatch) {
      batch.push_back(std::move(urgent_.front()));
      urgent_.pop_front();
    }
    while (!queue_.empty() && batch.size() < kBatch) {
      queued_bytes_ -= queue_.front().size;
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    in_flight_ = batch.size();
    lock.unlock();
    std::string error;
    const bool ok = WriteBatch(writer, batch, &error);
    lock.lock();
    in_flight_ = 0;
    if (!ok) {
      DownLocked(error);
      // Unanswered jobs go back to the front, within the bound (the oldest dropped first).
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
        if (it->kind == Job::Kind::kForgetAgent) {
          urgent_.push_front(std::move(*it));
          continue;
        }
        queued_bytes_ += it->size;
        queue_.push_front(std::move(*it));
      }
      TrimLocked();
      if (stop_) return;  // no waiting for Redis at shutdown
      continue;
    }
    if (IdleLocked()) written_.notify_all();
  }
}

}  // namespace kvault

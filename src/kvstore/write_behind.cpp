#include "kvstore/write_behind.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <system_error>

#include "kvstore/disk_tier.h"

namespace kvault {

WriteBehind::WriteBehind(RamTier& ram, BlockTier& below, AgentRegistry& agents, IoThread& io,
                         uint32_t probe_interval_ms)
    : ram_(ram), below_(below), agents_(agents), io_(io), probe_interval_ms_(probe_interval_ms) {
  wipes_seen_ = below_.wipes();
}

void WriteBehind::QueueLocked(std::shared_ptr<const BlockRecord> record) {
  ++pending_[record->key];
  // The job hands its reference over: when Flush() returns, no queued job still holds the record,
  // so a block dropped from RAM gives its buffer back at once.
  io_.PostWrite([this, record = std::move(record)]() mutable { WriteBlock(std::move(record)); });
}

void WriteBehind::Write(std::shared_ptr<const BlockRecord> record) {
  std::lock_guard<std::mutex> lock(mu_);
  const BlockKey& key = record->key;
  if (pending_.count(key) || ram_.IsUnpersisted(key) || below_.Contains(key)) return;
  QueueLocked(std::move(record));
}

bool WriteBehind::Pending(const BlockKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.count(key) > 0;
}

size_t WriteBehind::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

void WriteBehind::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  flushed_.wait(lock, [&] { return pending_.empty(); });
}

void WriteBehind::WriteBlock(std::shared_ptr<const BlockRecord> record) {
  EncodeBlockFile(*record, &write_buf_);
  const BlockKey key = record->key;
  Status s = below_.Write(key, write_buf_);
  record.reset();  // before pending_ empties (Flush): RAM, if it still holds the block, is its owner
  bool recovered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(key);
    if (!s.ok()) ram_.MarkUnpersisted(key);  // (nothing when RAM no longer holds it)
    recovered = NoteWriteLocked(s);
    if (const uint64_t wipes = below_.wipes(); wipes != wipes_seen_) {
      // The tier was emptied (the directory deleted): what RAM still holds is written again.
      wipes_seen_ = wipes;
      ram_.MarkUnpersistedIf([&](const BlockKey& k) { return !pending_.count(k) && !below_.Contains(k); });
      recovered = true;
    }
    if (pending_.empty()) flushed_.notify_all();
  }
  if (recovered) Backfill();
}

void WriteBehind::WriteAgentRecord(const std::string& tenant, const std::string& id, uint64_t generation) {
  io_.PostWrite([this, tenant, id, generation] { SyncAgentRecord(tenant, id, generation); });
}

void WriteBehind::SyncAgentRecord(const std::string& tenant, const std::string& id, uint64_t generation) {
  const std::filesystem::path file = agents_.FileFor(tenant, id);
  const auto now = agents_.Snapshot(tenant, id);
  // A newer turn's job is queued behind that turn's block writes: writing its chain here could
  // name blocks not on disk yet, so that job writes it.
  if (now && now->generation != generation) return;
  Status s;
  if (now) {
    s = WriteFileDurably(file, AgentRegistry::Encode(now->record));
  } else {  // forgotten: no file (the store's ForgetAgent job ends here too)
    std::error_code ec;
    std::filesystem::remove(file, ec);
    if (ec) s = Status::IOError("cannot remove agent record " + file.string() + ": " + ec.message());
  }
  bool recovered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (s.ok()) {
      unwritten_records_.erase({tenant, id});
    } else {
      unwritten_records_.insert({tenant, id});  // Backfill queues it again once writes work
    }
    recovered = NoteWriteLocked(s);
  }
  if (recovered) Backfill();
}

bool WriteBehind::NoteWriteLocked(const Status& s) {
  const auto now = std::chrono::steady_clock::now();
  if (!s.ok()) {
    ++failures_;
    last_error_ = s.message();
    if (!failing()) {
      failing_.store(true, std::memory_order_relaxed);
      failing_since_ = now;
      spdlog::error(
          "kv store: cannot write to the cache directory ({}); serving on without persistence, "
          "keeping new blocks in RAM and trying again every {} ms",
          s.message(), probe_interval_ms_);
    }
    return false;
  }
  if (!failing()) return false;
  failing_.store(false, std::memory_order_relaxed);
  ++recoveries_;
  spdlog::warn(
      "kv store: the cache directory takes writes again after {:.1f} s; writing the {} block(s) "
      "RAM kept meanwhile",
      std::chrono::duration<double>(now - failing_since_).count(), ram_.unpersisted());
  return true;
}

void WriteBehind::Backfill() {
  std::set<std::pair<std::string, std::string>> records;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& b : ram_.TakeUnpersisted()) QueueLocked(std::move(b));
    records.swap(unwritten_records_);
  }
  for (const auto& agent : records) {  // (clang 14 cannot capture structured bindings)
    // Behind the blocks above; a turn after this one queues its own job behind its blocks.
    WriteAgentRecord(agent.first, agent.second, agents_.Generation(agent.first, agent.second));
  }
}

void WriteBehind::ProbeWhileFailing() {
  std::shared_ptr<const BlockRecord> candidate;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failing()) return;
    if (auto taken = ram_.TakeUnpersisted(1); !taken.empty()) {
      candidate = std::move(taken.front());
      ++pending_[candidate->key];
    }
  }
  // A real block when there is one: a nearly full disk may take a small probe file but not a block.
  if (candidate) return WriteBlock(std::move(candidate));
  Status s = below_.Probe();
  bool recovered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    recovered = NoteWriteLocked(s);
  }
  if (recovered) Backfill();
}

PersistenceHealth WriteBehind::health() const {
  PersistenceHealth h;
  std::lock_guard<std::mutex> lock(mu_);
  h.failing = failing();
  h.last_error = last_error_;
  if (h.failing) {
    h.failing_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - failing_since_).count();
  }
  h.unpersisted_blocks = ram_.unpersisted();
  h.failures = failures_;
  h.recoveries = recoveries_;
  return h;
}

void WriteBehind::LogUnwrittenAtShutdown() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failing()) return;
  if (const size_t n = ram_.unpersisted(); n > 0) {
    spdlog::error(
        "kv store: shutting down while the cache directory takes no writes ({}): {} block(s) were never "
        "written",
        last_error_, n);
  }
}

}  // namespace kvault

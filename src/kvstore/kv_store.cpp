#include "kvstore/kv_store.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

namespace kvault {

KvStore::KvStore(const KvStoreOptions& options)
    : options_(options), buffers_(options.buffers ? options.buffers : std::make_shared<BufferPool>(64ull << 20)) {}

namespace {

// Gives a record's buffer back to the pool when its last reference goes.
struct Recycle {
  std::shared_ptr<BufferPool> pool;
  void operator()(BlockRecord* r) const {
    pool->Give(std::move(r->kv));
    delete r;
  }
};

}  // namespace

std::shared_ptr<BlockRecord> KvStore::NewRecord(size_t kv_bytes) {
  std::shared_ptr<BlockRecord> r(new BlockRecord, Recycle{buffers_});
  r->kv = buffers_->Take(kv_bytes);
  return r;
}

StatusOr<std::unique_ptr<KvStore>> KvStore::Open(const KvStoreOptions& options) {
  std::unique_ptr<KvStore> store(new KvStore(options));
  if (!options.dir.empty()) {
    store->disk_ = std::make_unique<DiskTier>(options.dir / options.fingerprint, options.disk_bytes);
    store->disk_->set_write_pause_ms(options.slow_write_ms);
    Status s = store->disk_->Open();
    if (!s.ok()) return s;
    store->agents_ = std::make_unique<AgentRegistry>(store->disk_->root() / "agents");
    s = store->agents_->Load();
    if (!s.ok()) return s;
  } else {
    store->agents_ = std::make_unique<AgentRegistry>();
  }
  store->io_ = std::thread([s = store.get()] { s->IoLoop(); });
  return store;
}

KvStore::~KvStore() {
  Flush();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failing_.load(std::memory_order_relaxed) && !unpersisted_.empty()) {
      spdlog::error(
          "kv store: shutting down while the cache directory takes no writes ({}): {} block(s) were never "
          "written",
          disk_error_, unpersisted_.size());
    }
  }
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    closing_ = true;
  }
  jobs_cv_.notify_all();
  if (io_.joinable()) io_.join();
}

void KvStore::Enqueue(std::function<void()> job, bool read) {
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    (read ? reads_ : writes_).push_back(std::move(job));
  }
  jobs_cv_.notify_one();
}

void KvStore::IoLoop() {
  // Below the engine's compute threads: on a small machine every cycle this thread takes (encoding,
  // checksums, write syscalls) would otherwise be taken from decoding.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
  const auto probe_every = std::chrono::milliseconds(std::max<uint32_t>(1, options_.probe_interval_ms));
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(jobs_mu_);
      const auto ready = [&] { return closing_ || !reads_.empty() || !writes_.empty(); };
      if (failing_.load(std::memory_order_relaxed)) {
        if (!jobs_cv_.wait_for(lock, probe_every, ready)) {
          lock.unlock();
          ProbeDisk();
          continue;
        }
      } else {
        jobs_cv_.wait(lock, ready);
      }
      auto& q = !reads_.empty() ? reads_ : writes_;
      if (q.empty()) return;  // closing and drained
      job = std::move(q.front());
      q.pop_front();
    }
    job();
  }
}

bool KvStore::Has(const BlockKey& key) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ram_.count(key) || pending_.count(key)) return true;
  }
  return disk_ && disk_->Contains(key);
}

bool KvStore::Keep(const BlockKey& key) {
  std::shared_ptr<const BlockRecord> in_ram;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.count(key)) return true;
    if (auto it = ram_.find(key); it != ram_.end()) in_ram = it->second.record;
  }
  if (!disk_) return in_ram != nullptr;
  if (disk_->Contains(key)) {
    disk_->Touch(key);
    return true;
  }
  if (!in_ram) return false;
  Put(std::move(in_ram));  // RAM keeps it; its file was collected: written again
  return true;
}

KvStore::RamLookup KvStore::RamHit(const BlockKey& key, const Fits& fits, bool count_hit,
                                   std::shared_ptr<const BlockRecord>* out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ram_.find(key);
    if (it == ram_.end()) return RamLookup::kAbsent;
    if (fits && !fits(*it->second.record)) return RamLookup::kMisfit;
    ram_lru_.splice(ram_lru_.end(), ram_lru_, it->second.lru);
    if (count_hit) ++ram_hits_;
    *out = it->second.record;
  }
  if (disk_) disk_->Touch(key);  // a use of the block, for the disk tier's LRU too
  return RamLookup::kHit;
}

std::shared_ptr<const BlockRecord> KvStore::GetRam(const BlockKey& key) {
  std::shared_ptr<const BlockRecord> r;
  RamHit(key, nullptr, /*count_hit=*/true, &r);
  return r;
}

void KvStore::RamEraseLocked(std::unordered_map<BlockKey, RamEntry, BlockKeyHash>::iterator it) {
  ram_bytes_ -= it->second.record->ByteSize();
  ram_lru_.erase(it->second.lru);
  unpersisted_.erase(it->first);  // never written, now gone: lost like any block without a disk
  ram_.erase(it);
}

void KvStore::RamInsertLocked(const std::shared_ptr<const BlockRecord>& r) {
  if (ram_.count(r->key)) return;
  ram_lru_.push_back(r->key);
  ram_[r->key] = RamEntry{r, std::prev(ram_lru_.end())};
  ram_bytes_ += r->ByteSize();
  while (ram_bytes_ > options_.ram_bytes && !ram_lru_.empty()) {
    // The least recently used block that is not in an agent's latest chain; those go last.
    auto victim = ram_lru_.begin();
    while (victim != ram_lru_.end() && agents_->InLatestChain(*victim)) ++victim;
    if (victim == ram_lru_.end()) victim = ram_lru_.begin();
    RamEraseLocked(ram_.find(*victim));
  }
}

void KvStore::Put(std::shared_ptr<const BlockRecord> record) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    RamInsertLocked(record);
    if (!disk_ || pending_.count(record->key) || unpersisted_.count(record->key) || disk_->Contains(record->key)) {
      return;
    }
    ++pending_[record->key];
  }
  // The job hands its reference over: when Flush() returns, no queued job still holds the record,
  // so a block dropped from RAM gives its buffer back at once.
  Enqueue([this, record]() mutable { WriteBlock(std::move(record)); }, /*read=*/false);
}

void KvStore::WriteBlock(std::shared_ptr<const BlockRecord> record) {
  EncodeBlockFile(*record, &write_buf_);
  const BlockKey key = record->key;
  Status s = disk_->Write(key, write_buf_);
  record.reset();  // before pending_ empties (Flush): RAM, if it still holds the block, is its owner
  bool recovered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(key);
    if (!s.ok() && ram_.count(key)) unpersisted_.insert(key);
    recovered = NoteWriteLocked(s);
    if (const uint64_t lost = disk_->stats().dir_lost; lost != dir_lost_seen_) {
      // The directory was deleted: what RAM still holds is written again.
      dir_lost_seen_ = lost;
      for (const auto& [k, e] : ram_) {
        if (!pending_.count(k) && !disk_->Contains(k)) unpersisted_.insert(k);
      }
      recovered = true;
    }
    if (pending_.empty()) flushed_.notify_all();
  }
  if (recovered) Backfill();
}

void KvStore::SyncAgentRecord(const std::string& tenant, const std::string& id, uint64_t generation) {
  const std::filesystem::path file = agents_->FileFor(tenant, id);
  const auto now = agents_->Snapshot(tenant, id);
  // A newer turn's job is queued behind that turn's block writes: writing its chain here could
  // name blocks not on disk yet, so that job writes it.
  if (now && now->generation != generation) return;
  Status s;
  if (now) {
    s = WriteFileDurably(file, AgentRegistry::Encode(now->record));
  } else {  // forgotten: no file (ForgetAgent's job ends here too)
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

bool KvStore::NoteWriteLocked(const Status& s) {
  const auto now = std::chrono::steady_clock::now();
  if (!s.ok()) {
    ++persist_failures_;
    disk_error_ = s.message();
    if (!failing_.load(std::memory_order_relaxed)) {
      failing_.store(true, std::memory_order_relaxed);
      failing_since_ = now;
      spdlog::error(
          "kv store: cannot write to the cache directory ({}); serving on without persistence, "
          "keeping new blocks in RAM and trying again every {} ms",
          s.message(), options_.probe_interval_ms);
    }
    return false;
  }
  if (!failing_.load(std::memory_order_relaxed)) return false;
  failing_.store(false, std::memory_order_relaxed);
  ++recoveries_;
  spdlog::warn(
      "kv store: the cache directory takes writes again after {:.1f} s; writing the {} block(s) "
      "RAM kept meanwhile",
      std::chrono::duration<double>(now - failing_since_).count(), unpersisted_.size());
  return true;
}

void KvStore::Backfill() {
  std::vector<std::shared_ptr<const BlockRecord>> blocks;
  std::set<std::pair<std::string, std::string>> records;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const BlockKey& k : unpersisted_) {
      auto it = ram_.find(k);
      if (it == ram_.end()) continue;
      ++pending_[k];
      blocks.push_back(it->second.record);
    }
    unpersisted_.clear();
    records.swap(unwritten_records_);
  }
  for (auto& b : blocks) Enqueue([this, b]() mutable { WriteBlock(std::move(b)); }, /*read=*/false);
  for (const auto& agent : records) {  // (clang 14 cannot capture structured bindings)
    // Behind the blocks above; a turn after this one queues its own job behind its blocks.
    const uint64_t generation = agents_->Generation(agent.first, agent.second);
    Enqueue([this, agent, generation] { SyncAgentRecord(agent.first, agent.second, generation); },
            /*read=*/false);
  }
}

void KvStore::ProbeDisk() {
  std::shared_ptr<const BlockRecord> candidate;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failing_.load(std::memory_order_relaxed)) return;
    for (auto it = unpersisted_.begin(); it != unpersisted_.end();) {
      auto r = ram_.find(*it);
      if (r == ram_.end()) {
        it = unpersisted_.erase(it);
        continue;
      }
      candidate = r->second.record;
      ++pending_[*it];
      unpersisted_.erase(it);
      break;
    }
  }
  // A real block when there is one: a nearly full disk may take a small probe file but not a block.
  if (candidate) return WriteBlock(std::move(candidate));
  Status s = disk_->Probe();
  bool recovered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    recovered = NoteWriteLocked(s);
  }
  if (recovered) Backfill();
}

std::shared_ptr<const BlockRecord> KvStore::LoadFromDisk(const BlockKey& key) {
  if (!disk_ || !disk_->Contains(key)) return nullptr;
  auto n = disk_->ReadInto(key, &read_buf_);
  if (!n.ok()) return nullptr;
  auto rec = DecodeBlockFile(std::span<const uint8_t>(read_buf_.data(), *n), options_.fingerprint, buffers_.get());
  if (!rec.ok()) {
    disk_->Quarantine(key, rec.status().message());
    return nullptr;
  }
  if (rec->key != key) {
    disk_->Quarantine(key, "file name and key differ");
    return nullptr;
  }
  return std::shared_ptr<const BlockRecord>(new BlockRecord(std::move(rec.value())), Recycle{buffers_});
}

std::shared_ptr<const BlockRecord> KvStore::Fetch(const BlockKey& key, bool disk, const Fits& fits, bool* from_disk,
                                                  bool misfit_is_corrupt) {
  *from_disk = false;
  std::shared_ptr<const BlockRecord> r;
  switch (RamHit(key, fits, /*count_hit=*/false, &r)) {
    case RamLookup::kHit: return r;
    case RamLookup::kMisfit: return nullptr;  // a hash collision: not this block (nor is the disk's file)
    case RamLookup::kAbsent: break;
  }
  if (!disk) return nullptr;
  r = LoadFromDisk(key);
  if (!r) return nullptr;
  if (!fits(*r)) {
    // A hash collision or a mislabelled file: never kept, never used.
    if (misfit_is_corrupt) disk_->Quarantine(key, "tokens or position differ from the key's");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  RamInsertLocked(r);
  *from_disk = true;
  return r;
}

namespace {

// How many tokens a partial block after `blocks` full blocks must hold to reach beyond the
// resident ones.
size_t MinPartial(const PrefetchRequest& req, size_t blocks) {
  const size_t at = blocks * req.block_tokens;
  return req.resident > at ? req.resident - at + 1 : 1;
}

}  // namespace

PartialBlock KvStore::FindPartial(const PrefetchRequest& req, size_t blocks, size_t min_len, bool disk,
                                  bool on_disk_only) {
  const std::vector<int32_t>& toks = *req.tokens;
  const size_t pos = blocks * req.block_tokens;
  if (req.block_tokens < 2 || pos >= toks.size() || blocks > req.keys.size()) return {};
  const std::span<const int32_t> rest(toks.data() + pos, std::min<size_t>(req.block_tokens - 1, toks.size() - pos));
  min_len = std::max<size_t>(min_len, 1);
  if (min_len > rest.size()) return {};
  const BlockKey& parent = blocks == 0 ? req.salt : req.keys[blocks - 1];
  const bool has_hint = req.hint.size() > blocks && (blocks == 0 || req.hint[blocks - 1] == parent);
  const std::vector<BlockKey> tails = TailBlockKeys(parent, rest.data(), rest.size());
  if (on_disk_only) {  // only asks whether a candidate is on disk (nothing fetched)
    PartialBlock probe;
    for (size_t k = rest.size(); k >= min_len && !probe.from_disk; --k)
      probe.from_disk = disk_ && disk_->Contains(tails[k - 1]);
    if (has_hint && disk_ && disk_->Contains(req.hint[blocks])) probe.from_disk = true;
    return probe;
  }
  auto count_hit = [&](PartialBlock found) {
    std::lock_guard<std::mutex> lock(mu_);
    ++(found.from_disk ? disk_hits_ : ram_hits_);
    return found;
  };
  // A tail block that the request continues: the longest.
  for (size_t k = rest.size(); k >= min_len; --k) {
    if (!Has(tails[k - 1])) continue;
    bool from_disk = false;
    auto r = Fetch(
        tails[k - 1], disk,
        [&](const BlockRecord& b) {
          return b.tokens.size() == k && b.first_pos == pos &&
                 std::equal(b.tokens.begin(), b.tokens.end(), rest.begin());
        },
        &from_disk);
    if (r) return count_hit({r, k, from_disk});
  }
  // The agent's own block at this position, as far as the request shares its tokens.
  if (has_hint) {
    bool from_disk = false;
    auto r = Fetch(
        req.hint[blocks], disk,
        [&](const BlockRecord& b) {
          return b.parent == parent && b.first_pos == pos && !b.tokens.empty() && b.tokens.size() <= req.block_tokens;
        },
        &from_disk, /*misfit_is_corrupt=*/false);
    if (r) {
      const size_t n = std::min(r->tokens.size(), toks.size() - pos);
      const auto mine = toks.begin() + static_cast<long>(pos);
      const auto end = std::mismatch(r->tokens.begin(), r->tokens.begin() + static_cast<long>(n), mine).first;
      const auto shared = static_cast<size_t>(end - r->tokens.begin());
      if (shared >= min_len) return count_hit({r, shared, from_disk});
    }
  }
  return {};
}

PartialBlock KvStore::FindPartialInRam(const PrefetchRequest& req, size_t blocks, size_t min_len) {
  return FindPartial(req, blocks, min_len, /*disk=*/false);
}

std::shared_ptr<Prefetch> KvStore::StartPrefetch(std::shared_ptr<const PrefetchRequest> req) {
  auto p = std::make_shared<Prefetch>();
  p->first = req->first;
  if (req->first >= req->keys.size()) {
    // Every full block is resident: at most a partial block to fetch. From RAM here, at once; the
    // I/O thread only when the disk alone has a candidate.
    const size_t n = req->keys.size();
    p->partial = FindPartial(*req, n, MinPartial(*req, n), /*disk=*/false);
    if (p->partial.record || !FindPartial(*req, n, MinPartial(*req, n), false, /*on_disk_only=*/true).from_disk) {
      p->done.store(true, std::memory_order_release);
      return p;
    }
  }
  Enqueue(
      [this, p, req = std::move(req)] {
        const auto t0 = std::chrono::steady_clock::now();
        const size_t bt = req->block_tokens;
        const std::vector<int32_t>& toks = *req->tokens;
        size_t i = p->first;
        for (; i < req->keys.size(); ++i) {
          bool from_disk = false;
          const auto begin = toks.begin() + static_cast<long>(i * bt);
          std::shared_ptr<const BlockRecord> r = Fetch(
              req->keys[i], /*disk=*/true,
              [&](const BlockRecord& b) {
                return b.tokens.size() == bt && b.first_pos == i * bt &&
                       std::equal(b.tokens.begin(), b.tokens.end(), begin);
              },
              &from_disk);
          std::lock_guard<std::mutex> lock(mu_);
          if (!r) {
            ++misses_;
            break;
          }
          ++(from_disk ? disk_hits_ : ram_hits_);
          p->records.push_back(std::move(r));
          p->from_disk.push_back(from_disk);
        }
        p->partial = FindPartial(*req, i, MinPartial(*req, i), /*disk=*/true);
        {
          std::lock_guard<std::mutex> lock(mu_);
          fetch_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        p->done.store(true, std::memory_order_release);
      },
      /*read=*/true);
  return p;
}

void KvStore::RecordAgent(AgentRecord record) {
  std::string tenant = record.tenant, id = record.id;
  const uint64_t generation = agents_->Update(std::move(record));
  if (!generation) return;
  // Queued behind this turn's block writes. The job writes the record as the registry holds it
  // when the job runs (nothing if a later turn's job will, no file if the agent was forgotten):
  // neither a later turn nor a ForgetAgent is overtaken by it, nor by a Backfill of an old failure.
  Enqueue(
      [this, tenant = std::move(tenant), id = std::move(id), generation] { SyncAgentRecord(tenant, id, generation); },
      /*read=*/false);
}

AgentTiers KvStore::TiersOf(const std::vector<BlockKey>& chain) const {
  AgentTiers t;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& k : chain) {
    if (auto it = ram_.find(k); it != ram_.end()) {
      ++t.ram_blocks;
      t.ram_bytes += it->second.record->ByteSize();
    }
    if (disk_) {
      if (const uint64_t size = disk_->SizeOf(k)) {
        ++t.disk_blocks;
        t.disk_bytes += size;
      }
    }
  }
  return t;
}

size_t KvStore::EvictFromRam(const std::vector<BlockKey>& chain) {
  Flush();  // blocks still being written stay until they are on disk
  size_t dropped = 0;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& k : chain) {
    auto it = ram_.find(k);
    // RAM is the only copy of a block never written, or whose file the disk tier collected.
    if (it == ram_.end() || unpersisted_.count(k) || (disk_ && !disk_->Contains(k))) continue;
    RamEraseLocked(it);
    ++dropped;
  }
  return dropped;
}

size_t KvStore::ForgetAgent(const std::string& tenant, const std::string& id) {
  auto [blocks, file] = agents_->Remove(tenant, id);
  auto done = std::make_shared<std::promise<size_t>>();
  auto result = done->get_future();
  // On the I/O thread, behind queued writes: a block being written is removed after it lands.
  Enqueue(
      [this, blocks = std::move(blocks), file = std::move(file), tenant, id, done] {
        size_t removed = 0;
        for (const auto& k : blocks) {
          if (agents_->InLatestChain(k)) continue;  // a turn since (the agent again, or another) holds it
          bool any = false;
          {
            std::lock_guard<std::mutex> lock(mu_);
            if (auto it = ram_.find(k); it != ram_.end()) {
              RamEraseLocked(it);
              any = true;
            }
          }
          if (disk_ && disk_->SizeOf(k)) {
            Status s = disk_->Remove(k);
            if (!s.ok()) spdlog::warn("kv store: {}", s.message());
            any = true;
          }
          removed += any;
        }
        // No file unless the agent came back meanwhile (then its current record); a failed
        // removal is retried like a failed write.
        if (!file.empty()) SyncAgentRecord(tenant, id, agents_->Generation(tenant, id));
        done->set_value(removed);
      },
      /*read=*/false);
  return result.get();
}

size_t KvStore::QueuedWriteJobs() const {
  std::lock_guard<std::mutex> lock(jobs_mu_);
  return writes_.size();
}

void KvStore::AfterWrites(std::function<void()> fn) {
  if (!disk_) return fn();
  // Writes run in order on the one I/O thread: a job queued behind them runs after them.
  Enqueue(std::move(fn), /*read=*/false);
}

void KvStore::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  flushed_.wait(lock, [&] { return pending_.empty(); });
}

KvStoreStats KvStore::stats() const {
  KvStoreStats st;
  {
    std::lock_guard<std::mutex> lock(mu_);
    st.ram_blocks = ram_.size();
    st.ram_bytes = ram_bytes_;
    st.ram_hits = ram_hits_;
    st.disk_hits = disk_hits_;
    st.misses = misses_;
    st.pending_writes = pending_.size();
    st.spare_buffer_bytes = buffers_->spare_bytes();
    st.fetch_seconds = fetch_seconds_;
    st.persistence.failing = failing_.load(std::memory_order_relaxed);
    st.persistence.last_error = disk_error_;
    if (st.persistence.failing) {
      st.persistence.failing_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - failing_since_).count();
    }
    st.persistence.unpersisted_blocks = unpersisted_.size();
    st.persistence.failures = persist_failures_;
    st.persistence.recoveries = recoveries_;
  }
  if (disk_) st.disk = disk_->stats();
  st.persistent = disk_ != nullptr;
  return st;
}

}  // namespace kvault

#include "kvstore/kv_store.h"

#include <spdlog/spdlog.h>

#include <future>
#include <utility>

namespace kvault {

KvStore::KvStore(const KvStoreOptions& options)
    : options_(options), buffers_(options.buffers ? options.buffers : std::make_shared<BufferRecycler>(64ull << 20)) {}

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
  if (!options.remote_cache.empty()) {
    auto url = ParseRedisUrl(options.remote_cache);
    if (!url.ok()) return url.status();
    RedisTierOptions ro;
    ro.url = std::move(url.value());
    ro.fingerprint = options.fingerprint;
    ro.max_queued_writes = options.remote_max_queued_writes;
    store->remote_ = std::make_unique<RedisTier>(std::move(ro));
  }
  KvStore* st = store.get();
  // Blocks in an agent's latest chain leave RAM last.
  st->ram_ = std::make_unique<RamTier>(
      options.ram_bytes, [agents = st->agents_.get()](const BlockKey& k) { return agents->InLatestChain(k); });
  std::vector<BlockTier*> below;
  IoThread::IdleWork idle;
  if (st->disk_) {
    below.push_back(st->disk_.get());
    st->writer_ =
        std::make_unique<WriteBehind>(*st->ram_, *st->disk_, *st->agents_, st->io_, options.probe_interval_ms);
    idle.every = std::chrono::milliseconds(options.probe_interval_ms);
    idle.due = [w = st->writer_.get()] { return w->failing(); };
    idle.run = [w = st->writer_.get()] { w->ProbeWhileFailing(); };
  }
  if (st->remote_) below.push_back(st->remote_.get());  // below the disk: asked for what it lacks
  st->lookup_ = std::make_unique<BlockLookup>(*st->ram_, std::move(below), st->io_, options.fingerprint, st->buffers_);
  st->io_.Start(std::move(idle));
  return store;
}

KvStore::~KvStore() {
  Flush();
  if (writer_) writer_->LogUnwrittenAtShutdown();
  io_.Stop();  // runs what is queued (agent records, removals) while every part is still there
}

bool KvStore::Has(const BlockKey& key) const {
  // In this order: a write in flight is on disk before it stops being pending.
  if (ram_->Contains(key)) return true;
  if (writer_ && writer_->Pending(key)) return true;
  return disk_ && disk_->Contains(key);
}

bool KvStore::KeepIfStored(const BlockKey& key) {
  if (writer_ && writer_->Pending(key)) return true;
  std::shared_ptr<const BlockRecord> in_ram = ram_->Peek(key);
  if (!disk_) return in_ram != nullptr;
  if (disk_->Contains(key)) {
    disk_->Touch(key);
    return true;
  }
  if (!in_ram) return false;
  // RAM keeps it; its file was collected (or it came from the remote tier): written to disk again.
  // Not queued for the remote tier, which has it (it was Put, or read from there).
  writer_->Write(std::move(in_ram));
  return true;
}

std::shared_ptr<const BlockRecord> KvStore::FindInRam(const BlockKey& key) {
  return lookup_->GetRam(key);
}

std::shared_ptr<BlockRecord> KvStore::NewRecord(size_t kv_bytes) {
  std::shared_ptr<BlockRecord> r = ShareRecycled(BlockRecord{}, buffers_);
  r->kv = buffers_->Take(kv_bytes);
  return r;
}

void KvStore::Put(std::shared_ptr<const BlockRecord> record) {
  ram_->Insert(record);
  if (remote_) remote_->Enqueue(record);
  if (writer_) writer_->Write(std::move(record));
}

std::shared_ptr<Prefetch> KvStore::StartPrefetch(std::shared_ptr<const PrefetchRequest> request) {
  // Not while Redis is known to be down (no I/O-thread hop for nothing).
  if (!remote_ || request->agent_id.empty() || !remote_->Probe().ok()) return lookup_->Start(std::move(request));
  // A named agent may have had turns on other instances since its record here (or have none here):
  // the remote tier's record, when newer, is adopted and its chain is the hint (its partial last
  // block cannot be found by the tokens alone). One round trip, on the I/O thread.
  return lookup_->Start(std::move(request), [this](std::shared_ptr<const PrefetchRequest> req) {
    std::optional<AgentRecord> shared = remote_->FetchAgent(req->agent_tenant, req->agent_id);
    if (!shared || shared->turns <= req->agent_turns) return req;
    auto refined = std::make_shared<PrefetchRequest>(*req);
    refined->hint = shared->chain;
    refined->agent_turns = shared->turns;
    if (!agents_->Adopt(std::move(*shared), req->agent_generation)) return req;  // changed here meanwhile
    return std::shared_ptr<const PrefetchRequest>(std::move(refined));
  });
}

PartialBlock KvStore::FindPartialInRam(const PrefetchRequest& request, size_t blocks, size_t min_len) {
  return lookup_->FindPartialInRam(request, blocks, min_len);
}

void KvStore::Flush() {
  if (writer_) writer_->Flush();
}

void KvStore::AfterWrites(std::function<void()> fn) {
  if (!disk_) return fn();
  // Writes run in order on the one I/O thread: a job queued behind them runs after them.
  io_.PostWrite(std::move(fn));
}

size_t KvStore::QueuedWriteJobs() const {
  return io_.queued_writes();
}

void KvStore::RecordAgent(AgentRecord record) {
  std::string tenant = record.tenant, id = record.id;
  const uint64_t generation = agents_->Update(std::move(record));
  if (remote_) {  // behind the turn's blocks in the remote tier's queue
    if (auto now = agents_->Snapshot(tenant, id)) remote_->PublishAgent(std::move(now->record));
  }
  if (!generation || !writer_) return;
  // Queued behind this turn's block writes. The job writes the record as the registry holds it
  // when the job runs (nothing if a later turn's job will, no file if the agent was forgotten):
  // neither a later turn nor a ForgetAgent is overtaken by it, nor by a backfill of an old failure.
  writer_->WriteAgentRecord(tenant, id, generation);
}

AgentTiers KvStore::TiersOf(const std::vector<BlockKey>& chain) const {
  AgentTiers t;
  for (const auto& k : chain) {
    if (const uint64_t size = ram_->SizeOf(k)) {
      ++t.ram_blocks;
      t.ram_bytes += size;
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
  // RAM is the only copy of a block never written, or whose file the disk tier collected.
  const auto on_disk = [this](const BlockKey& k) { return !disk_ || disk_->Contains(k); };
  size_t dropped = 0;
  for (const auto& k : chain) dropped += ram_->EraseIfHeldBelow(k, on_disk);
  return dropped;
}

std::vector<std::optional<RemoteBlocks>> KvStore::RemoteBlocksOf(const std::vector<std::vector<BlockKey>>& chains) {
  std::vector<std::optional<RemoteBlocks>> out(chains.size());
  if (!remote_ || chains.empty() || !remote_->Probe().ok()) return out;
  // A chain is named by its last key (each key hashes its parent's). Counts younger than kFresh are
  // answered from the cache; the rest are asked for in one round, one round at a time (callers that
  // find one in flight get what the cache has): an open dashboard asks every second.
  constexpr auto kFresh = std::chrono::seconds(5);
  const auto now = std::chrono::steady_clock::now();
  std::vector<size_t> stale;
  {
    std::lock_guard<std::mutex> lock(remote_counts_mu_);
    for (size_t i = 0; i < chains.size(); ++i) {
      if (chains[i].empty()) {
        out[i] = RemoteBlocks{0, 0};
        continue;
      }
      auto it = remote_counts_.find(chains[i].back());
      if (it != remote_counts_.end()) out[i] = it->second.second;
      if (it == remote_counts_.end() || now - it->second.first > kFresh) stale.push_back(i);
    }
    if (stale.empty() || remote_counting_) return out;
    remote_counting_ = true;
  }
  std::vector<BlockKey> keys;
  for (size_t i : stale) keys.insert(keys.end(), chains[i].begin(), chains[i].end());
  auto done = std::make_shared<std::promise<std::optional<std::vector<bool>>>>();
  auto result = done->get_future();
  io_.PostRead([this, keys, done] { done->set_value(remote_->Present(keys)); });
  // Bounded: an I/O thread busy with a slow disk does not hold an admin call.
  std::optional<std::vector<bool>> present;
  if (result.wait_for(std::chrono::seconds(2)) == std::future_status::ready) present = result.get();
  std::lock_guard<std::mutex> lock(remote_counts_mu_);
  remote_counting_ = false;
  if (!present) return out;
  if (remote_counts_.size() > 65536) remote_counts_.clear();  // agents come and go: bounded
  size_t k = 0;
  for (size_t i : stale) {
    RemoteBlocks b{0, 0};
    for (const BlockKey& key : chains[i]) {
      if (!(*present)[k++]) continue;
      ++b.held;
      // Only there: in no local tier (the dashboard's placement of the agent's blocks).
      if (!ram_->SizeOf(key) && !(disk_ && disk_->SizeOf(key))) ++b.only_there;
    }
    out[i] = b;
    remote_counts_[chains[i].back()] = {now, b};
  }
  return out;
}

size_t KvStore::ForgetAgent(const std::string& tenant, const std::string& id) {
  // The shared record too: a tombstone that refuses records of no more turns (its blocks stay in
  // Redis, a cache, until they are evicted there).
  uint64_t turns = 0;
  auto [blocks, file] = agents_->Remove(tenant, id, &turns);
  if (remote_) remote_->ForgetAgent(tenant, id, turns);  // the turns it had when removed
  auto done = std::make_shared<std::promise<size_t>>();
  auto result = done->get_future();
  // On the I/O thread, behind queued writes: a block being written is removed after it lands.
  io_.PostWrite([this, blocks = std::move(blocks), file = std::move(file), tenant, id, done] {
    size_t removed = 0;
    for (const auto& k : blocks) {
      if (agents_->InLatestChain(k)) continue;  // a turn since (the agent again, or another) holds it
      bool any = ram_->Erase(k);
      if (disk_ && disk_->SizeOf(k)) {
        Status s = disk_->Remove(k);
        if (!s.ok()) spdlog::warn("kv store: {}", s.message());
        any = true;
      }
      removed += any;
    }
    // No file unless the agent came back meanwhile (then its current record); a failed removal is
    // retried like a failed write.
    if (!file.empty() && writer_) writer_->SyncAgentRecord(tenant, id, agents_->Generation(tenant, id));
    done->set_value(removed);
  });
  return result.get();
}

KvStoreStats KvStore::stats() const {
  KvStoreStats st;
  st.ram_blocks = ram_->blocks();
  st.ram_bytes = ram_->bytes();
  const LookupStats looked = lookup_->stats();
  st.ram_hits = looked.ram_hits;
  // below_hits follows the tiers' order: the disk (if any), then the remote tier (if any).
  st.disk_hits = disk_ && !looked.below_hits.empty() ? looked.below_hits[0] : 0;
  st.disk_fetch_seconds = disk_ && !looked.below_seconds.empty() ? looked.below_seconds[0] : 0;
  if (remote_) {
    st.remote = true;
    st.remote_tier = remote_->stats();
    st.remote_tier.hits = looked.below_hits.empty() ? 0 : looked.below_hits.back();
    st.remote_tier.fetch_seconds = looked.below_seconds.empty() ? 0 : looked.below_seconds.back();
  }
  st.misses = looked.misses;
  st.fetch_seconds = looked.fetch_seconds;
  st.spare_buffer_bytes = buffers_->spare_bytes();
  if (writer_) {
    st.pending_writes = writer_->pending();
    st.persistence = writer_->health();
  }
  if (disk_) st.disk = disk_->stats();
  st.persistent = disk_ != nullptr;
  return st;
}

}  // namespace kvault

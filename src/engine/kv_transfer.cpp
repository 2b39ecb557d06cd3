#include "engine/kv_transfer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "kvstore/agent_registry.h"
#include "kvstore/block_key.h"

namespace kvault {

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The first `n` tokens of `rec` are the prompt's from position `pos` on.
bool Continues(const BlockRecord& rec, const std::vector<Token>& prompt, size_t pos, size_t n) {
  return n <= rec.tokens.size() && pos + n <= prompt.size() &&
         std::equal(rec.tokens.begin(), rec.tokens.begin() + static_cast<long>(n),
                    prompt.begin() + static_cast<long>(pos));
}

}  // namespace

KvTransfer::KvTransfer(std::unique_ptr<KvStore> store, LlamaRunner* runner, KvPool* pool, std::string fingerprint,
                       std::string cache_type)
    : store_(std::move(store)),
      runner_(runner),
      pool_(pool),
      fingerprint_(std::move(fingerprint)),
      cache_type_(std::move(cache_type)),
      block_tokens_(pool->block_tokens()) {}

KvTransfer::~KvTransfer() = default;

int32_t KvTransfer::KeyedPromptTokens(size_t prompt_tokens, uint32_t block_tokens) {
  if (block_tokens == 0 || prompt_tokens == 0) return 0;
  return static_cast<int32_t>((prompt_tokens - 1) / block_tokens * block_tokens);
}

void KvTransfer::StartLookup(RequestState& r) {
  const std::string& tenant = r.request.tenant;
  StoreLookup& l = r.lookup;
  l.salt = CacheSalt(fingerprint_, tenant);
  // The last prompt token is always computed (its logits are sampled from): the rest may be
  // restored. Blocks already resident need no fetching.
  auto head = std::make_shared<std::vector<int32_t>>(r.prompt.begin(), r.prompt.end() - 1);
  l.keys = ComputeBlockKeys(l.salt, *head, block_tokens_);
  r.kept_prompt_tokens = KeyedPromptTokens(r.prompt.size(), block_tokens_);
  auto fetch = std::make_shared<PrefetchRequest>();
  fetch->salt = l.salt;
  fetch->keys = l.keys;
  fetch->tokens = std::move(head);
  fetch->block_tokens = block_tokens_;
  fetch->resident = pool_->LongestPrefix(r.prompt, r.tenant);
  fetch->first = fetch->resident / block_tokens_;
  if (const std::string& id = r.request.agent_id; !id.empty() && AgentRegistry::ValidId(id)) {
    fetch->agent_tenant = tenant;
    fetch->agent_id = id;
    if (auto rec = store_->agents().Snapshot(tenant, id)) {
      fetch->hint = std::move(rec->record.chain);
      fetch->agent_turns = rec->record.turns;
      fetch->agent_generation = rec->generation;
    }
  }
  l.fetch = fetch;
  l.prefetch = store_->StartPrefetch(std::move(fetch));
}

void KvTransfer::Restore(RequestState& r) {
  const StoreLookup& l = r.lookup;
  const uint32_t bt = block_tokens_;
  // Full block i: from the fetch when it covers i, else from RAM (the resident prefix may have
  // changed since intake).
  auto record_for = [&](size_t i) -> std::pair<std::shared_ptr<const BlockRecord>, Source> {
    if (i >= l.keys.size()) return {nullptr, Source::kRam};
    const Prefetch* p = l.prefetch.get();
    if (p && i >= p->first && i - p->first < p->records.size()) {
      const size_t j = i - p->first;
      return {p->records[j], p->from_remote[j] ? Source::kRemote : p->from_disk[j] ? Source::kDisk : Source::kRam};
    }
    auto rec = store_->FindInRam(l.keys[i]);
    if (rec && !Continues(*rec, r.prompt, i * bt, rec->tokens.size())) rec = nullptr;
    return {rec, Source::kRam};
  };
  const auto t0 = Clock::now();
  size_t b = static_cast<size_t>(r.n_past) / bt;
  for (auto next = record_for(b); next.first && next.first->tokens.size() == bt; next = record_for(++b)) {
    if (static_cast<size_t>(r.n_past) > b * bt) TruncateTo(r, b * bt);  // a partial resident block: replaced
    if (!Place(r, *next.first, next.second, bt)) break;
  }
  // Then the conversation's last, partial block, when the store has it and it reaches further
  // than what is resident (the store's lookup applies the same minimum).
  const size_t pos = b * bt;
  const size_t min_len = MinPartialTokens(static_cast<size_t>(r.n_past), pos);
  PartialBlock partial;
  if (const Prefetch* p = l.prefetch.get();
      p && p->partial.record && p->partial.record->first_pos == pos && p->partial.tokens >= min_len) {
    partial = p->partial;  // found after the same blocks
  } else if (l.fetch) {
    partial = store_->FindPartialInRam(*l.fetch, b, min_len);
  }
  if (partial.record && partial.tokens >= min_len && pos + partial.tokens < r.prompt.size() &&
      Continues(*partial.record, r.prompt, pos, partial.tokens)) {
    if (static_cast<size_t>(r.n_past) > pos) TruncateTo(r, pos);
    Place(r, *partial.record,
          partial.from_remote ? Source::kRemote
          : partial.from_disk ? Source::kDisk
                              : Source::kRam,
          partial.tokens);
  }
  // The fetched records are placed (or not usable): let their buffers go back to the store now,
  // not when the request ends. The keys stay: Save needs them.
  r.lookup.prefetch.reset();
  r.lookup.fetch.reset();
  stats_.restore_seconds += SecondsSince(t0);
  stats_.restored_tokens_ram += static_cast<uint64_t>(r.restored_ram);
  stats_.restored_tokens_disk += static_cast<uint64_t>(r.restored_disk);
  stats_.restored_tokens_remote += static_cast<uint64_t>(r.restored_remote);
}

void KvTransfer::TruncateTo(RequestState& r, size_t n) {
  pool_->Truncate(r.slot, n);
  r.n_past = static_cast<int32_t>(n);
  r.reused_resident = r.n_past;
}

bool KvTransfer::Place(RequestState& r, const BlockRecord& rec, Source from, size_t n_tokens) {
  const bool placed = rec.first_pos == static_cast<uint32_t>(r.n_past) &&
                      runner_->LoadBlock(r.slot, r.n_past, rec.kv, rec.tokens.size(), n_tokens);
  if (!placed) {
    spdlog::warn("kv store: block {} could not be restored; computing from there", rec.key.Hex());
    return false;
  }
  pool_->Append(r.slot, rec.tokens.data(), n_tokens);
  r.n_past += static_cast<int32_t>(n_tokens);
  (from == Source::kRemote ? r.restored_remote
   : from == Source::kDisk ? r.restored_disk
                           : r.restored_ram) += static_cast<int32_t>(n_tokens);
  return true;
}

void KvTransfer::Save(const RequestState& r) {
  const uint32_t bt = block_tokens_;
  const std::vector<Token>& toks = pool_->tokens(r.slot);
  // The prompt's keys were computed at intake; only the generated tokens' blocks are new.
  std::vector<BlockKey> keys = r.lookup.keys;
  ExtendBlockKeys(r.lookup.salt, toks, bt, &keys);
  const auto t0 = Clock::now();
  const size_t n_full = keys.size();
  // The partial last block too (the next turn would otherwise recompute up to bt - 1 tokens):
  // a tail block, keyed by its parent and its tokens (see TailBlockKeys).
  if (const size_t tail = toks.size() - n_full * bt; tail > 0) {
    keys.push_back(
        TailBlockKeys(n_full == 0 ? r.lookup.salt : keys[n_full - 1], toks.data() + n_full * bt, tail).back());
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    if (store_->KeepIfStored(keys[i])) continue;
    const auto p0 = static_cast<int32_t>(i * bt);
    const auto p1 = static_cast<int32_t>(std::min(toks.size(), (i + 1) * bt));
    std::shared_ptr<BlockRecord> rec;
    const size_t written = runner_->SaveBlock(r.slot, p0, p1, [&](size_t size) {
      rec = store_->NewRecord(size);
      return std::span<uint8_t>(rec->kv.data(), rec->kv.size());
    });
    rec->kv.resize(written);
    rec->key = keys[i];
    rec->parent = i == 0 ? r.lookup.salt : keys[i - 1];
    rec->fingerprint = fingerprint_;
    rec->kv_type = cache_type_;
    rec->first_pos = static_cast<uint32_t>(p0);
    rec->tokens.assign(toks.begin() + p0, toks.begin() + p1);
    store_->Put(std::move(rec));
    ++stats_.blocks_saved;
  }
  stats_.save_seconds += SecondsSince(t0);
  const GenerateRequest& req = r.request;
  if (!req.agent_id.empty() && AgentRegistry::ValidId(req.agent_id)) {
    AgentRecord a;
    a.tenant = req.tenant;
    a.id = req.agent_id;
    a.chain = std::move(keys);
    a.tokens = static_cast<uint32_t>(toks.size());
    a.turns = 1;
    a.last_use_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    store_->RecordAgent(std::move(a));
  }
}

}  // namespace kvault

#include "engine/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <optional>

#include "engine/engine_setup.h"
#include "engine/kv_transfer.h"
#include "engine/llama_runner.h"
#include "engine/logprobs.h"
#include "engine/request_output.h"
#include "engine/scheduler.h"
#include "kvstore/block_key.h"

namespace kvault {

namespace {

double MsBetween(EngineClock::time_point a, EngineClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string OwnerTag(const std::string& tenant, const std::string& id) {
  return tenant + '\n' + id;
}

}  // namespace

// The engine thread's loop over its parts: intake (template, tokenize, KV store lookup) →
// scheduler.Admit (+ KvTransfer::Restore) → scheduler.Schedule → runner.Decode →
// scheduler.Update → sample and stream. Created, used and destroyed on the engine thread only.
class Engine::Impl {
 public:
  Impl(Engine* owner, EngineParts parts)
      : owner_(owner),
        opt_(owner->options_),
        parts_(std::move(parts)),
        runner_(*parts_.runner),
        transfer_(parts_.transfer.get()),
        scheduler_(parts_.pool.get(), parts_.scheduling) {}

  ~Impl() {
    scheduler_.TakeAll();
    owner_->store_.store(nullptr);
  }

  void Started() {
    if (transfer_) owner_->store_.store(&transfer_->store());
    PublishStats();
  }

  // The scheduling loop; returns when the job queue is closed.
  void Loop() {
    Channel<Job>& queue = owner_->queue_;
    while (true) {
      if (scheduler_.idle()) {
        auto job = queue.Pop();  // idle: block until work or shutdown
        if (!job) break;
        Intake(std::move(*job));
      }
      while (auto job = queue.TryPop()) Intake(std::move(*job));
      if (queue.drained()) break;  // jobs pushed just before Close are taken in first
      Reap();
      Admit();
      if (scheduler_.running_count() == 0) {
        // Waiting requests but nothing admissible (cannot last: idle sequences are evictable).
        if (auto job = queue.PopFor(std::chrono::milliseconds(10))) Intake(std::move(*job));
        PublishStats();
        continue;
      }
      Step();
      PublishStats();
    }
    Shutdown();
  }

  // Frees the idle pool slots holding this agent's conversation; returns their tokens.
  // Published before the caller hears back, so that what it reads next (the dashboard's
  // placement) already shows the cells gone.
  size_t FreeAgentSlots(const std::string& tenant, const std::string& id) {
    const size_t freed = parts_.pool->FreeIdleOwnedBy(OwnerTag(tenant, id));
    PublishStats();
    return freed;
  }

 private:
  // Templates and tokenizes a new request; rejects at once what can never run.
  void Intake(Job job) {
    if (job.control) {  // work for the engine thread itself (admin), between steps
      job.control(*this);
      return;
    }
    auto reject = [&](Status s) { SendError(job.handle, std::move(s)); };
    const GenerateRequest& req = job.request;
    Status valid = req.sampling.Validate();
    if (!valid.ok()) return reject(valid);
    auto rendered = runner_.Render(req);
    if (!rendered.ok()) return reject(rendered.status());
    std::vector<Token> tokens = runner_.Tokenize(rendered->prompt, /*parse_special=*/!req.raw_prompt);
    if (req.count_only) {
      GenerationEvent done;
      done.kind = GenerationEvent::Kind::kDone;
      done.prompt_tokens = static_cast<int32_t>(tokens.size());
      return DeliverDone(job.handle, std::move(done));
    }
    const auto n = static_cast<int64_t>(tokens.size());
    const int64_t limit = parts_.ctx_limit;
    if (n == 0) return reject(Status::InvalidArgument("the prompt is empty"));
    if (n >= limit) {
      // The wording Anthropic's API uses, which clients parse to compact the conversation.
      return reject(Status::ContextLength("prompt is too long: " + std::to_string(n) + " tokens > " +
                                          std::to_string(limit - 1) + " maximum"));
    }
    // A max_tokens beyond what the context has left (or none, with no server default) ends at the
    // end of the context: FinishReason::kContextLength, not an error. max_tokens 0 is a warm-up:
    // the prompt is computed and kept like any turn's, and the answer ends before its first token.
    int64_t max_tokens = req.max_tokens >= 0 ? req.max_tokens : opt_.default_max_tokens;
    const bool to_context_end = req.max_tokens != 0 && (max_tokens <= 0 || n + max_tokens > limit);
    if (to_context_end) max_tokens = limit - n;
    auto sampler = runner_.NewSampler(req.sampling, &rendered->grammar, &rendered->reasoning);
    if (!sampler.ok()) return reject(sampler.status());
    job.handle->set_syntax(std::move(rendered->syntax));

    auto r = std::make_unique<RequestState>();
    std::vector<std::string> stops = req.stop;
    for (auto& stop : rendered->extra_stops) {
      if (std::find(stops.begin(), stops.end(), stop) == stops.end()) stops.push_back(std::move(stop));
    }
    r->text = TextStream(std::move(stops));
    r->sampler = std::move(sampler.value());
    r->preserved = std::move(rendered->preserved);
    r->request = std::move(job.request);
    r->handle = std::move(job.handle);
    r->submitted = job.submitted;
    r->ticket = std::move(job.ticket);
    r->prompt = std::move(tokens);
    r->max_tokens = static_cast<int32_t>(max_tokens);
    r->to_context_end = to_context_end;
    const std::string& tenant = r->request.tenant;
    r->tenant = tenant.empty() ? 0 : Checksum64(tenant.data(), tenant.size()) | 1;
    if (transfer_) transfer_->StartLookup(*r);
    scheduler_.Enqueue(std::move(r));
  }

  // Cancelled requests leave; requests that waited too long get a retryable error.
  void Reap() {
    for (const auto& r : scheduler_.running()) {
      if (!r->done && r->handle->cancelled()) Finish(*r, FinishReason::kCancelled);
    }
    scheduler_.Sweep();
    for (auto& e : scheduler_.TakeExpired(EngineClock::now())) {
      if (e.timed_out) {
        SendError(e.request->handle, Status::Overloaded("timed out after " + std::to_string(opt_.queue_timeout_ms) +
                                                        " ms waiting for capacity; retry later"));
      } else {
        GenerationEvent done;
        done.kind = GenerationEvent::Kind::kDone;
        done.finish = FinishReason::kCancelled;
        DeliverDone(e.request->handle, std::move(done));
      }
    }
  }

  void Admit() {
    scheduler_.Admit([this](RequestState& r) {
      if (transfer_) transfer_->Restore(r);  // before the next request's Acquire, which may share it
      r.admitted = EngineClock::now();
      counters_.prompt_tokens_cached += static_cast<uint64_t>(r.n_past);
      // Submit's room check reads these two: running first, so that no moment shows the request
      // in neither count (it would let one request too many in).
      owner_->running_.store(static_cast<uint32_t>(scheduler_.running_count()));
      r.ticket.Release();
      EmitStarted(r);  // a stream starts now, not after the prompt is computed
    });
  }

  // One continuous-batching step: plan, decode, record, sample.
  void Step() {
    StepPlan plan = scheduler_.Schedule();
    if (plan.overflow) {
      // Every running answer waits for cells that only the others hold: the most recently
      // admitted one ends (retryable), and its cells let the others go on.
      spdlog::warn("engine: the KV pool is full of running answers; ending the most recent one");
      Fail(*plan.overflow, Status::Overloaded("the KV pool filled up with running requests before this answer "
                                              "ended; retry later"));
      scheduler_.Sweep();
      return;
    }
    ++counters_.steps;
    const LlamaRunner::StepResult result = runner_.Decode(plan.tokens);
    counters_.busy_seconds += result.seconds;
    counters_.prompt_tokens_computed += static_cast<uint64_t>(plan.prompt_tokens);
    if (plan.prompt_tokens == 0) {
      ++counters_.decode_only_steps;
      counters_.decode_only_tokens += static_cast<uint64_t>(plan.decode_tokens);
      counters_.decode_only_seconds += result.seconds;
    }
    if (!result.ok) {
      for (const StepPlan::Part& p : plan.parts) Fail(*p.request, Status::Internal("the engine failed to decode"));
      scheduler_.Sweep();
      return;
    }
    scheduler_.Update(plan);
    for (auto& [r, row] : plan.sample) Sample(*r, row);
    scheduler_.Sweep();
  }

  void Sample(RequestState& r, int32_t row) {
    // A warm-up (see Intake): its prompt's KV was all it asked for. No first token, so no TTFT
    // (ttft_ms stays -1 and the TTFT metrics leave it out).
    if (r.max_tokens == 0) return Finish(r, FinishReason::kLength);
    if (opt_.digest_logits) r.digests.push_back(runner_.LogitsDigest(row));
    const Token tok = runner_.Sample(r.sampler.get(), row, r.n_gen);
    if (r.ttft_ms < 0) r.ttft_ms = MsBetween(r.submitted, EngineClock::now());
    if (runner_.IsEndOfGeneration(tok)) return Finish(r, FinishReason::kStop);
    ++r.n_gen;
    ++counters_.tokens_generated;
    const bool special = std::find(r.preserved.begin(), r.preserved.end(), tok) != r.preserved.end();
    const std::string piece = runner_.Piece(tok, special);
    if (r.request.top_logprobs >= 0) {
      if (!r.logprobs) r.logprobs = std::make_unique<LogprobQueue>();
      r.logprobs->Add(runner_.Logprob(row, tok, piece, std::min(r.request.top_logprobs, kMaxTopLogprobs)),
                      piece.size());
    }
    EmitText(r, r.text.Push(piece));
    if (r.text.stopped()) {
      // One of the client's stop sequences, or one the chat template adds (an end of turn).
      const auto& asked = r.request.stop;
      const bool client_stop = std::find(asked.begin(), asked.end(), *r.text.matched()) != asked.end();
      return Finish(r, client_stop ? FinishReason::kStopSequence : FinishReason::kStop);
    }
    if (r.n_gen >= r.max_tokens)
      return Finish(r, r.to_context_end ? FinishReason::kContextLength : FinishReason::kLength);
    r.next = tok;
  }

  // The request's output ends; a cancelled request's cells are freed, a finished one stays
  // resident for its next turn and its blocks go to the store (its kDone waits for them to be on
  // disk under sync durability).
  void Finish(RequestState& r, FinishReason reason) {
    GenerationEvent done = EndOutput(r, reason);
    const bool keep = reason != FinishReason::kCancelled;
    if (keep && transfer_) transfer_->Save(r);
    scheduler_.End(r, keep, r.request.agent_id.empty() ? "" : OwnerTag(r.request.tenant, r.request.agent_id));
    // Published before the client hears the end, so that a /health read right after an answer
    // counts its restores and saves (the step's own publish comes after its remaining work).
    PublishStats();
    if (keep && transfer_ && opt_.sync_durability) {
      transfer_->AfterWrites(
          [handle = r.handle, done = std::move(done)]() mutable { DeliverDone(handle, std::move(done)); });
    } else {
      DeliverDone(r.handle, std::move(done));
    }
  }

  void Fail(RequestState& r, Status status) {
    SendError(r.handle, std::move(status));
    scheduler_.End(r, /*keep=*/false);
  }

  void PublishStats() {
    const KvPoolStats ps = parts_.pool->stats();
    std::vector<PoolResident> residents = Residents();
    std::lock_guard<std::mutex> lock(owner_->stats_mu_);
    owner_->residents_.swap(residents);
    EngineStats& st = owner_->stats_;
    st = counters_;
    if (transfer_) {
      const TransferStats& ts = transfer_->stats();
      st.restored_tokens_ram = ts.restored_tokens_ram;
      st.restored_tokens_disk = ts.restored_tokens_disk;
      st.restored_tokens_remote = ts.restored_tokens_remote;
      st.blocks_saved = ts.blocks_saved;
      st.save_seconds = ts.save_seconds;
      st.restore_seconds = ts.restore_seconds;
    }
    st.pool_blocks_total = ps.total_blocks;
    st.pool_blocks_used = ps.used_blocks;
    st.pool_blocks_reserved = ps.reserved_blocks;
    st.pool_blocks_active = ps.active_blocks;
    st.pool_utilization = ps.utilization();
    st.pool_active_utilization = ps.active_utilization();
    st.running = static_cast<uint32_t>(scheduler_.running_count());
    owner_->running_.store(st.running);
    st.idle_resident = ps.idle_slots;
    st.idle_blocks = ps.idle_blocks;
    st.idle_trims = ps.idle_trims;
    st.evictions = ps.evictions;
  }

  // The named agents in the pool: idle slots with an owner, and running requests of an agent.
  std::vector<PoolResident> Residents() const {
    std::vector<PoolResident> out;
    for (auto& [owner, tokens] : parts_.pool->IdleOwned()) {
      const size_t cut = owner.find('\n');  // OwnerTag: tenant '\n' id
      if (cut == std::string::npos) continue;
      out.push_back({owner.substr(0, cut), owner.substr(cut + 1), static_cast<uint32_t>(tokens), false});
    }
    for (const auto& r : scheduler_.running()) {
      if (r->done || r->request.agent_id.empty() || r->slot < 0) continue;
      out.push_back(
          {r->request.tenant, r->request.agent_id, static_cast<uint32_t>(parts_.pool->tokens(r->slot).size()), true});
    }
    return out;
  }

  void Shutdown() {
    const Status gone = Status::Unavailable("the server is shutting down");
    for (auto& r : scheduler_.TakeAll()) SendError(r->handle, gone);
    while (auto job = owner_->queue_.TryPop()) {
      if (job->control) {
        job->control(*this);  // admin work still answers (its caller waits for it)
      } else {
        SendError(job->handle, gone);
      }
    }
  }

  Engine* owner_;
  const EngineOptions& opt_;
  EngineParts parts_;  // declared before scheduler_: requests (their samplers) go before llama
  LlamaRunner& runner_;
  KvTransfer* transfer_;  // null: no KV store
  Scheduler scheduler_;
  EngineStats counters_;  // throughput counters; PublishStats copies them with the rest
};

Engine::Engine(const EngineOptions& options) : options_(options) {
  info_.id = options.model_id.empty() ? options.model_path.stem().string() : options.model_id;
  info_.path = options.model_path.string();
}

Engine::~Engine() {
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

StatusOr<std::unique_ptr<Engine>> Engine::Start(const EngineOptions& options) {
  std::unique_ptr<Engine> engine(new Engine(options));
  std::promise<Status> ready;
  std::future<Status> loaded = ready.get_future();
  engine->thread_ = std::thread([e = engine.get(), &ready] { e->Run(&ready); });
  Status s = loaded.get();
  if (!s.ok()) {
    engine->queue_.Close();
    engine->thread_.join();
    return s;
  }
  return engine;
}

size_t Engine::EvictAgentFromPool(const std::string& tenant, const std::string& agent_id) {
  auto done = std::make_shared<std::promise<size_t>>();
  auto result = done->get_future();
  Job job;
  job.control = [done, tenant, agent_id](Impl& impl) { done->set_value(impl.FreeAgentSlots(tenant, agent_id)); };
  if (!queue_.Push(std::move(job))) return 0;  // admin work is not counted as a waiting request
  return result.get();
}

namespace {

// Each record with where its blocks are now (of `tenant` when set).
std::vector<Engine::AgentView> Views(KvStore& store, std::vector<AgentRecord> records,
                                     const std::optional<std::string>& tenant) {
  std::vector<Engine::AgentView> out;
  std::vector<std::vector<BlockKey>> chains;
  for (auto& r : records) {
    if (tenant && r.tenant != *tenant) continue;
    AgentTiers t = store.TiersOf(r.chain);
    t.remote = store.remote() != nullptr;
    if (t.remote) chains.push_back(r.chain);
    out.push_back({std::move(r), t});
  }
  if (!chains.empty()) {  // one pipelined round for them all
    const std::vector<std::optional<RemoteBlocks>> remote = store.RemoteBlocksOf(chains);
    for (size_t i = 0; i < out.size(); ++i) {
      if (!remote[i]) continue;
      out[i].tiers.remote_blocks = remote[i]->held;
      out[i].tiers.remote_only = remote[i]->only_there;
    }
  }
  return out;
}

}  // namespace

std::vector<Engine::AgentView> Engine::ListAgents(const std::optional<std::string>& tenant) const {
  KvStore* store = store_.load();
  return store ? Views(*store, store->agents().List(), tenant) : std::vector<AgentView>{};
}

std::vector<Engine::AgentView> Engine::FindAgent(const std::string& id,
                                                 const std::optional<std::string>& tenant) const {
  KvStore* store = store_.load();
  return store ? Views(*store, store->agents().Find(id, tenant), tenant) : std::vector<AgentView>{};
}

Engine::AgentEviction Engine::EvictAgent(const AgentRecord& agent) {
  AgentEviction e;
  KvStore* store = store_.load();
  if (!store) return e;
  e.pool_tokens = EvictAgentFromPool(agent.tenant, agent.id);
  e.ram_blocks = store->EvictFromRam(agent.chain);
  e.tiers = store->TiersOf(agent.chain);
  return e;
}

Engine::AgentRemoval Engine::ForgetAgent(const AgentRecord& agent) {
  AgentRemoval r;
  KvStore* store = store_.load();
  if (!store) return r;
  r.pool_tokens = EvictAgentFromPool(agent.tenant, agent.id);
  r.blocks_removed = store->ForgetAgent(agent.tenant, agent.id);
  return r;
}

std::shared_ptr<RequestHandle> Engine::Submit(GenerateRequest request) {
  auto handle = std::make_shared<RequestHandle>();
  // A request that sets no temperature gets the server's (--temperature; 1 as in both APIs).
  if (!request.sampling.temperature) request.sampling.temperature = options_.default_temperature;
  // Room: the free decoding slots (a request there starts at the next step) plus the queue.
  // `pending_` before `running_`: admission raises running before it lowers pending, so a request
  // being admitted is counted in one of the two.
  const uint32_t pending = pending_.fetch_add(1);
  PendingTicket ticket(&pending_);
  const uint32_t running = running_.load();
  const uint32_t room = options_.max_queue + (options_.parallel > running ? options_.parallel - running : 0);
  if (pending >= room) {
    ticket.Release();
    SendError(handle, Status::Overloaded("the server is at capacity (" + std::to_string(options_.max_queue) +
                                         " requests waiting); retry later"));
    return handle;
  }
  Job job{std::move(request), handle, EngineClock::now(), std::move(ticket), nullptr};
  if (!queue_.Push(std::move(job))) SendError(handle, Status::Unavailable("the server is shutting down"));
  return handle;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  EngineStats st = stats_;
  st.waiting = pending_.load();
  return st;
}

std::vector<PoolResident> Engine::pool_residents() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return residents_;
}

KvStoreStats Engine::store_stats() const {
  KvStore* store = store_.load();
  return store ? store->stats() : KvStoreStats{};
}

void Engine::Run(std::promise<Status>* ready) {
  auto parts = LoadEngine(options_, &info_);
  if (!parts.ok()) {  // what was made is freed here, on this thread
    ready->set_value(parts.status());
    return;
  }
  impl_ = std::make_unique<Impl>(this, std::move(parts.value()));
  impl_->Started();
  ready->set_value(Status::Ok());
  spdlog::info(
      "engine: model {} loaded ({}, {} params); pool {} tokens ({:.1f} MiB {} KV, blocks of {}), "
      "request context {} tokens, {} parallel, {} resident",
      info_.id, info_.description, info_.n_params, info_.pool_tokens, static_cast<double>(info_.pool_bytes) / (1 << 20),
      info_.cache_type, info_.block_tokens, info_.ctx_size, options_.parallel, options_.resident_seqs);
  impl_->Loop();
  impl_.reset();
}

}  // namespace kvault

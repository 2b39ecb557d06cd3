#include "engine/scheduler.h"

#include <algorithm>

namespace kvault {

Scheduler::Scheduler(KvPool* pool, const SchedulerOptions& options) : pool_(pool), opt_(options) {}

void Scheduler::Enqueue(std::unique_ptr<RequestState> r) {
  waiting_.push_back(std::move(r));
}

std::vector<Scheduler::Expired> Scheduler::TakeExpired(EngineClock::time_point now) {
  std::vector<Expired> out;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    const bool cancelled = (*it)->handle->cancelled();
    const bool timed_out = !cancelled && now - (*it)->submitted > opt_.queue_timeout;
    if (cancelled || timed_out) {
      out.push_back({std::move(*it), timed_out});
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

int32_t Scheduler::ReservedAnswer(int32_t max_tokens, int32_t have) const {
  if (opt_.reserve_tokens <= 0) return max_tokens;
  return std::min(max_tokens, have + opt_.reserve_tokens);
}

size_t Scheduler::Admit(const std::function<void(RequestState&)>& on_admit) {
  size_t admitted = 0;
  while (!waiting_.empty() && running_.size() < opt_.parallel) {
    RequestState& w = *waiting_.front();
    // Its blocks are still being read: it keeps its place (FIFO); running requests go on.
    if (!w.lookup.ready()) break;
    const int32_t max_total = static_cast<int32_t>(w.prompt.size()) + ReservedAnswer(w.max_tokens, 0);
    auto lease = pool_->Acquire(w.prompt, max_total, w.tenant);
    if (!lease) break;
    w.slot = lease->slot;
    w.n_past = lease->reused;
    w.reused_resident = lease->reused;
    w.reserved_total = max_total;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    ++admitted;
    on_admit(w);
  }
  return admitted;
}

bool Scheduler::HasRoom(RequestState& r) {
  if (r.prefill_left() > 0 || r.n_past + 1 <= r.reserved_total) return true;
  const int32_t prompt = static_cast<int32_t>(r.prompt.size());
  const int32_t total = prompt + ReservedAnswer(r.max_tokens, r.reserved_total - prompt);
  if (!pool_->Grow(r.slot, total)) return false;
  r.reserved_total = total;
  return true;
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  std::vector<RunningSeq> view;
  view.reserve(running_.size());
  for (size_t i = 0; i < running_.size(); ++i) {
    RequestState& r = *running_[i];
    if (!r.done && HasRoom(r)) view.push_back({static_cast<int>(i), r.prefill_left()});
  }
  if (view.empty()) {
    for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
      if (!(*it)->done) {
        plan.overflow = it->get();
        break;
      }
    }
    return plan;
  }
  for (const StepEntry& e : PlanStep(view, static_cast<int32_t>(opt_.step_tokens), &cursor_)) {
    RequestState& r = *running_[e.id];
    plan.parts.push_back({&r, e.n_tokens, e.decode});
    if (e.decode) {
      plan.sample.emplace_back(&r, static_cast<int32_t>(plan.tokens.size()));
      plan.tokens.push_back({r.next, r.n_past, r.slot, true});
      plan.decode_tokens += e.n_tokens;
      continue;
    }
    for (int32_t k = 0; k < e.n_tokens; ++k) {
      const int32_t pos = r.n_past + k;
      const bool last = pos == static_cast<int32_t>(r.prompt.size()) - 1;
      if (last) plan.sample.emplace_back(&r, static_cast<int32_t>(plan.tokens.size()));
      plan.tokens.push_back({r.prompt[pos], pos, r.slot, last});
    }
    plan.prompt_tokens += e.n_tokens;
  }
  return plan;
}

void Scheduler::Update(const StepPlan& plan) {
  for (const StepPlan::Part& p : plan.parts) {
    RequestState& r = *p.request;
    const Token* toks = p.decode ? &r.next : r.prompt.data() + r.n_past;
    pool_->Append(r.slot, toks, static_cast<size_t>(p.n_tokens));
    r.n_past += p.n_tokens;
  }
}

void Scheduler::End(RequestState& r, bool keep, const std::string& owner) {
  if (r.done) return;
  if (keep) {
    pool_->Release(r.slot);
    if (!owner.empty()) pool_->SetOwner(r.slot, owner);
  } else {
    pool_->Free(r.slot);
  }
  r.done = true;
}

void Scheduler::Sweep() {
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return r->done; }),
                 running_.end());
}

std::vector<std::unique_ptr<RequestState>> Scheduler::TakeAll() {
  std::vector<std::unique_ptr<RequestState>> all;
  for (auto& r : running_) {
    if (!r->done) pool_->Free(r->slot);
    r->done = true;
    all.push_back(std::move(r));
  }
  running_.clear();
  for (auto& r : waiting_) all.push_back(std::move(r));
  waiting_.clear();
  return all;
}

}  // namespace kvault

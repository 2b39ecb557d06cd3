// Scheduler: which requests wait, which run, and what the next step computes — vLLM v1's
// scheduler in kvault's terms, with no llama.cpp in it.
//
// Requests enter waiting (FIFO) once templated and tokenized. Admit() takes them in order while
// fewer than `parallel` run and KvPool grants a slot and blocks (reusing resident prefixes); the
// head of the queue is never overtaken, and waits while its KV store fetch is in flight.
// Schedule() returns one step's plan: a decode token for every generating request and
// round-robin prefill chunks (PlanStep) within the step budget, each request's answer cells
// grown as it goes (KvPool::Grow; a request whose cells cannot grow now sits the step out). Update() records what the
// runner computed. Ending a request (End) gives its slot back: kept resident for the next turn, or freed.
//
// Engine thread only; not thread-safe. Tested with a fake KV cache (tests/unit/engine).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_pool.h"
#include "engine/request_state.h"
#include "engine/step_planner.h"

namespace kvault {

struct SchedulerOptions {
  uint32_t parallel = 8;          // requests decoded together at most
  uint32_t step_tokens = 256;     // tokens per step: decode tokens + prefill chunks
  int32_t reserve_tokens = 4096;  // answer cells reserved at admission (0: all of max_tokens)
  std::chrono::milliseconds queue_timeout{60000};
};

// One step: the tokens to decode, and which request samples from which logits row.
struct StepPlan {
  struct Part {
    RequestState* request = nullptr;
    int32_t n_tokens = 0;
    bool decode = false;
  };
  std::vector<Part> parts;
  std::vector<BatchToken> tokens;
  std::vector<std::pair<RequestState*, int32_t>> sample;  // request, logits row
  int32_t decode_tokens = 0;
  int32_t prompt_tokens = 0;
  // Set (and `parts` empty) when every running answer waits for cells that only the others hold:
  // this one, the most recently admitted, must end so that the others go on.
  RequestState* overflow = nullptr;
  bool empty() const { return parts.empty(); }
};

class Scheduler {
 public:
  Scheduler(KvPool* pool, const SchedulerOptions& options);

  void Enqueue(std::unique_ptr<RequestState> r);
  bool idle() const { return waiting_.empty() && running_.empty(); }
  size_t running_count() const { return running_.size(); }
  size_t waiting_count() const { return waiting_.size(); }
  const std::vector<std::unique_ptr<RequestState>>& running() const { return running_; }

  // Waiting requests that leave without running: cancelled by their client, or waiting longer
  // than the queue timeout (`timed_out` tells which). The caller answers them.
  struct Expired {
    std::unique_ptr<RequestState> request;
    bool timed_out = false;
  };
  std::vector<Expired> TakeExpired(EngineClock::time_point now);

  // Admits waiting requests in order. Each one admitted (now running, slot set, resident prefix
  // counted) is handed to `on_admit` before the next is considered, so that what the caller adds
  // to its sequence (stored blocks restored into it) can be shared by the next one's Acquire. Its
  // ticket is still held: the caller releases it once it has published the running count.
  // Returns how many were admitted.
  size_t Admit(const std::function<void(RequestState&)>& on_admit);

  // The next step's plan (see StepPlan).
  StepPlan Schedule();
  // After the step's tokens were computed: they are recorded in the pool and the requests'
  // positions advance.
  void Update(const StepPlan& plan);

  // A running request has ended: `keep` leaves its cells resident and idle for the next turn
  // (owned by `owner` when not empty), else they are freed. It is dropped at the next Sweep.
  void End(RequestState& r, bool keep, const std::string& owner = {});
  // Drops ended requests from the running list.
  void Sweep();
  // Everything waiting and running, for shutdown (running ones' cells freed).
  std::vector<std::unique_ptr<RequestState>> TakeAll();

 private:
  // Answer tokens to reserve cells for, beyond the `have` already reserved.
  int32_t ReservedAnswer(int32_t max_tokens, int32_t have) const;
  // A generating request whose next token has no reserved cell takes more; false when the pool
  // cannot give them now (it waits this step).
  bool HasRoom(RequestState& r);

  KvPool* pool_;
  SchedulerOptions opt_;
  std::deque<std::unique_ptr<RequestState>> waiting_;
  std::vector<std::unique_ptr<RequestState>> running_;
  size_t cursor_ = 0;  // PlanStep's round robin
};

}  // namespace kvault

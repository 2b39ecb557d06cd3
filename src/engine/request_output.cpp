#include "engine/request_output.h"

#include <iterator>

namespace kvault {

namespace {

double MsBetween(EngineClock::time_point a, EngineClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

void SendError(const std::shared_ptr<RequestHandle>& handle, Status status) {
  GenerationEvent ev;
  ev.kind = GenerationEvent::Kind::kError;
  ev.status = std::move(status);
  handle->events().Push(std::move(ev));
  handle->events().Close();
}

void FillPromptCounts(const RequestState& r, GenerationEvent& ev) {
  ev.prompt_tokens = static_cast<int32_t>(r.prompt.size());
  ev.cached_resident = r.reused_resident;
  ev.cached_ram = r.restored_ram;
  ev.cached_disk = r.restored_disk;
  ev.cached_remote = r.restored_remote;
  ev.cached_tokens = r.cached_tokens();
  ev.kept_prompt_tokens = r.kept_prompt_tokens;
}

void EmitStarted(RequestState& r) {
  if (!r.request.stream) return;
  GenerationEvent started;
  started.kind = GenerationEvent::Kind::kStarted;
  FillPromptCounts(r, started);
  r.handle->events().Push(std::move(started));
}

void EmitText(RequestState& r, std::string text) {
  if (text.empty()) return;
  std::vector<TokenLogprob> logprobs;
  if (r.logprobs) logprobs = r.logprobs->Sent(text.size());
  if (!r.request.stream) {  // delivered whole at the end
    r.unsent += text;
    std::move(logprobs.begin(), logprobs.end(), std::back_inserter(r.unsent_logprobs));
    return;
  }
  GenerationEvent ev;
  ev.text = std::move(text);
  ev.logprobs = std::move(logprobs);
  FillPromptCounts(r, ev);
  r.handle->events().Push(std::move(ev));
}

GenerationEvent EndOutput(RequestState& r, FinishReason reason) {
  if (reason != FinishReason::kCancelled) EmitText(r, r.text.Flush());
  if (r.logprobs && reason != FinishReason::kCancelled) {
    // The tokens whose text was held back to the end (all, or up to a stop sequence's cut).
    std::vector<TokenLogprob> rest = r.logprobs->Rest(r.text.stopped());
    std::move(rest.begin(), rest.end(), std::back_inserter(r.unsent_logprobs));
  }
  if (!r.unsent.empty() || !r.unsent_logprobs.empty()) {
    GenerationEvent ev;
    ev.text = std::move(r.unsent);
    ev.logprobs = std::move(r.unsent_logprobs);
    FillPromptCounts(r, ev);
    r.handle->events().Push(std::move(ev));
  }
  GenerationEvent done;
  done.kind = GenerationEvent::Kind::kDone;
  done.finish = reason;
  if (reason == FinishReason::kStopSequence) done.stop_sequence = *r.text.matched();
  FillPromptCounts(r, done);
  done.completion_tokens = r.n_gen;
  done.queue_ms = MsBetween(r.submitted, r.admitted);
  done.ttft_ms = r.ttft_ms;
  done.total_ms = MsBetween(r.submitted, EngineClock::now());
  done.logits_digests = std::move(r.digests);
  return done;
}

void DeliverDone(const std::shared_ptr<RequestHandle>& handle, GenerationEvent done) {
  handle->events().Push(std::move(done));
  handle->events().Close();
}

}  // namespace kvault

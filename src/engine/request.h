// What the API layer hands to the engine, and what comes back.
//
// A GenerateRequest is plain data (chat messages in llama.cpp common's neutral form, sampling,
// limits). The engine answers through the request's RequestHandle: zero or more kText events,
// then exactly one kDone or kError event, after which the channel is closed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat.h"  // common_chat_msg (llama.cpp common: plain structs, no llama objects)
#include "core/status.h"
#include "engine/channel.h"
#include "engine/sampling.h"

namespace kvault {

enum class FinishReason {
  kStop,          // the model ended its turn (end-of-generation token)
  kStopSequence,  // a stop sequence matched (not included in the text)
  kLength,        // max_tokens reached
  kCancelled,     // the client went away
};
const char* FinishReasonName(FinishReason r);

struct GenerateRequest {
  std::vector<common_chat_msg> messages;
  int32_t max_tokens = -1;  // -1: the engine's default (capped by the context)
  SamplingParams sampling;
  std::vector<std::string> stop;  // text-level stop sequences
  std::string tenant;             // cache namespace: blocks are never shared across tenants
  // false: the text arrives in one event just before kDone (no per-token wake-ups of the
  // waiting thread, which would steal CPU from the decode threads); true: piece by piece.
  bool stream = false;
};

struct GenerationEvent {
  enum class Kind { kText, kDone, kError };
  Kind kind = Kind::kText;
  std::string text;  // kText: complete UTF-8 characters, never part of a stop sequence
  // kDone:
  FinishReason finish = FinishReason::kStop;
  std::string stop_sequence;  // kStopSequence: which one
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;  // prompt tokens whose KV was reused, not computed (all tiers)
  int32_t cached_resident = 0;  // … of them still in the pool
  int32_t cached_ram = 0;       // … restored from host RAM
  int32_t cached_disk = 0;      // … restored from disk
  int32_t completion_tokens = 0;
  double queue_ms = 0;  // submitted → admitted
  double ttft_ms = 0;   // submitted → first token sampled
  double total_ms = 0;  // submitted → finished
  // kError:
  Status status;
};

// Shared by the submitting thread and the engine thread.
class RequestHandle {
 public:
  Channel<GenerationEvent>& events() { return events_; }
  // Asks the engine to stop this request at its next step (client went away).
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  Channel<GenerationEvent> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace kvault

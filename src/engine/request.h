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
  kStop,           // the model ended its turn (end-of-generation token)
  kStopSequence,   // a stop sequence matched (not included in the text)
  kLength,         // max_tokens reached
  kContextLength,  // the context ended before max_tokens (max_tokens was larger than what was left)
  kCancelled,      // the client went away
};

// How a request's output is to be read back: the chat layer's format and parser for the model's
// tool-call syntax. Filled by the engine when it applies the chat template; read by the API
// layer (common_chat_parse) to turn generated text into content and tool calls.
struct ChatSyntax {
  common_chat_format format = COMMON_CHAT_FORMAT_CONTENT_ONLY;
  std::string parser;             // serialized PEG parser (common_chat_params::parser)
  std::string generation_prompt;  // what the template put after the last message
  bool parse_tool_calls = false;  // the request offered tools
  bool parse_reasoning = false;   // thinking is on: reasoning is read out of the text (<think>…</think>)
};

struct GenerateRequest {
  // A chat (templated by the engine with the model's chat template) …
  std::vector<common_chat_msg> messages;
  std::vector<common_chat_tool> tools;
  common_chat_tool_choice tool_choice = COMMON_CHAT_TOOL_CHOICE_AUTO;
  bool parallel_tool_calls = false;
  std::string json_schema;  // constrain the answer to this JSON schema (response_format)
  // The chat template's thinking switch (Qwen3, DeepSeek R1, …): unset = the template's default and
  // the text as written; true = thinking on and reasoning parsed out (ChatSyntax::parse_reasoning);
  // false = the template's no-thinking form.
  std::optional<bool> enable_thinking;
  int32_t thinking_budget = -1;  // most tokens inside the reasoning block (-1 = no limit)
  // The chat ends with an assistant message that the answer continues (a prefill: Anthropic's
  // rule, and llama-server's for OpenAI chats) instead of a new assistant turn after it.
  bool continue_final = false;
  // … or a raw prompt (/v1/completions), tokenized as is.
  std::optional<std::string> raw_prompt;
  // Only template and tokenize; answer kDone with prompt_tokens (count_tokens endpoints).
  bool count_only = false;
  // -1: the engine's default. 0: only the prompt is computed and kept, as a cache warm-up (the
  // answer ends with FinishReason::kLength and no token). Larger than what the context has left:
  // generation stops at the end of the context (FinishReason::kContextLength).
  int32_t max_tokens = -1;
  SamplingParams sampling;
  // >= 0: each generated token's log-probability, with this many of the most likely alternatives
  // (at most 20), in GenerationEvent::logprobs; -1 (default): none, at no cost.
  int32_t top_logprobs = -1;
  std::vector<std::string> stop;  // text-level stop sequences (any number)
  std::string tenant;             // cache namespace: blocks are never shared across tenants
  // false: the text arrives in one event just before kDone (no per-token wake-ups of the
  // waiting thread, which would steal CPU from the decode threads); true: piece by piece.
  bool stream = false;
  std::string agent_id;    // X-Agent-Id or the API's user field; for logs and per-agent stats
  std::string request_id;  // for logs
};

// A generated token's log-probability and the most likely tokens at its position, from the
// model's distribution (the softmax of the raw logits, before the sampler chain: no grammar,
// penalties, logit_bias or temperature; llama-server's default, post_sampling_probs = false).
struct TokenLogprob {
  struct Alternative {
    std::string token;
    float logprob = 0.0f;
  };
  std::string token;  // its text as generated (may be part of a UTF-8 character)
  float logprob = 0.0f;
  std::vector<Alternative> top;  // most likely first (GenerateRequest::top_logprobs of them)
};

struct GenerationEvent {
  // kStarted: streamed requests only, first: admitted, the prompt counts are known; sent before
  // the prompt is computed so that the HTTP layer starts its stream (and keep-alives) at once.
  enum class Kind { kText, kDone, kError, kStarted };
  Kind kind = Kind::kText;
  std::string text;  // kText: complete UTF-8 characters, never part of a stop sequence
  // kText, when the request asked for them (top_logprobs >= 0): the tokens whose text this event
  // completes, in order (the last event also carries any left); its text may then be empty.
  std::vector<TokenLogprob> logprobs;
  // kDone:
  FinishReason finish = FinishReason::kStop;
  std::string stop_sequence;  // kStopSequence: which one
  // kDone, kText and kStarted (known from admission on):
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;    // prompt tokens whose KV was reused, not computed (all tiers)
  int32_t cached_resident = 0;  // … of them still in the pool
  int32_t cached_ram = 0;       // … restored from host RAM
  int32_t cached_disk = 0;      // … restored from disk
  int32_t cached_remote = 0;    // … restored from the remote tier (Redis)
  // Prompt tokens whose KV the server keeps for later turns (the store's keyed blocks: the full
  // blocks of the prompt without its last token); 0 where nothing is kept (recurrent models).
  int32_t kept_prompt_tokens = 0;
  // kDone:
  int32_t completion_tokens = 0;
  double queue_ms = 0;                   // submitted → admitted
  double ttft_ms = 0;                    // submitted → first token sampled
  double total_ms = 0;                   // submitted → finished
  std::vector<uint64_t> logits_digests;  // EngineOptions::digest_logits: one per sampled position
  // kError:
  Status status;
};

// Shared by the submitting thread and the engine thread.
class RequestHandle {
 public:
  Channel<GenerationEvent>& events() { return events_; }
  // Set by the engine before it sends the first event; read by the submitter after popping one.
  void set_syntax(ChatSyntax s) { syntax_ = std::move(s); }
  const ChatSyntax& syntax() const { return syntax_; }
  // Asks the engine to stop this request at its next step (client went away).
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  Channel<GenerationEvent> events_;
  ChatSyntax syntax_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace kvault

// The skeleton every generating route shares — POST /v1/chat/completions and /v1/completions
// (openai_routes.cpp), POST /v1/responses (responses_routes.cpp), POST /v1/messages
// (anthropic_routes.cpp) — with each API supplying only its parsing and rendering, as a
// GenerationApi. ServeGeneration:
//   1. begins the call (BeginCall: draining, API key, agent id, --key-concurrency slot),
//   2. lets the API parse the request, then leases the model's engine (AttachModel),
//   3. stamps the request (tenant, agent, request id) and submits it,
//   4. waits for its first event: an error there (bad prompt, queue full) is a plain HTTP error,
//   5. answers with server-sent events (the API's events; keep-alives while quiet) or, once the
//      request is done, one JSON body,
//   6. logs the request in one line and counts it in the metrics when it ends.
// Errors are answered in the API's envelope (ApiFlavor), with Retry-After where retryable. A
// client that goes away cancels its request: noticed within 100 ms while the handler waits, and
// at the latest when its stream ends. The call's lease, in-flight count and key slot are held
// until the answer is complete (streams included).
//
// Threads: ServeGeneration runs on the request's HTTP worker thread; a stream's GenerationApi
// calls are then made from cpp-httplib's content provider for that response, one at a time.
// Never touches llama objects.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/errors.h"
#include "engine/request.h"
#include "server/routes.h"

namespace kvault {

// A parser's result into `*out` (a GenerationApi::Parse's usual body); its error as is.
template <typename T>
Status ParseInto(StatusOr<T> parsed, T* out) {
  if (!parsed.ok()) return parsed.status();
  *out = std::move(parsed.value());
  return Status::Ok();
}

// One generation API's own parts. ServeGeneration calls them in the order they are declared; a
// fresh object serves each request and holds its state (a stream keeps it until it ends).
class GenerationApi {
 public:
  // `name`: the API's label in logs and metrics ("openai.chat"); `flavor`: its error envelope.
  GenerationApi(const char* name, ApiFlavor flavor) : name_(name), flavor_(flavor) {}
  virtual ~GenerationApi() = default;
  GenerationApi(const GenerationApi&) = delete;
  GenerationApi& operator=(const GenerationApi&) = delete;

  const char* name() const { return name_; }
  ApiFlavor flavor() const { return flavor_; }

  // Reads and checks the request (its body, and whatever else it names: the stored response a
  // Responses request continues) for the authenticated `call`. An error is answered in the API's
  // envelope, before any model is loaded.
  virtual Status Parse(const httplib::Request& req, const CallContext& call) = 0;
  // The model the request names (empty: the default one).
  virtual const std::string& model() const = 0;
  // The request to submit. Its identity is stamped by the skeleton: the agent is X-Agent-Id (or
  // Claude Code's session header), else agent_fallback() when that is a valid agent id.
  virtual GenerateRequest& request() = 0;
  virtual std::string agent_fallback() const = 0;
  // The call has its engine and agent; the request is submitted right after: ids, the model's
  // name and whatever else the answer takes from the engine's ModelInfo.
  virtual void Prepare(const CallContext& call) = 0;
  // The request's first event came and is not an error; `syntax` parses the model's output.
  virtual void Started(const ChatSyntax& syntax, const GenerationEvent& first) = 0;

  // A streamed answer (request().stream). Each returns the SSE text to send (empty: nothing).
  // Before the first event:
  virtual std::string StreamStart() { return {}; }
  // Each kText event:
  virtual std::string StreamText(const GenerationEvent& text) = 0;
  // The request failed after the stream started (the status line is out): the API's error event.
  virtual std::string StreamError(const ApiError& error) = 0;
  // kDone: the closing events (the request is logged and counted just before).
  virtual std::string StreamDone(const GenerationEvent& done) = 0;
  // About every 100 ms without an event, given the time since the last write: a keep-alive so that
  // proxies and clients with idle timeouts keep the stream. Default: an SSE comment after
  // kKeepAliveEvery of quiet.
  virtual std::string StreamIdle(std::chrono::steady_clock::duration quiet);

  // A non-streamed answer: each piece of text; where the tokens' logprobs go (null: dropped);
  // then the JSON body, from the kDone event (the request is logged and counted just before).
  virtual void Text(const std::string& text) = 0;
  virtual std::vector<TokenLogprob>* Logprobs() { return nullptr; }
  virtual std::string Body(const GenerationEvent& done) = 0;

 private:
  const char* name_;
  ApiFlavor flavor_;
};

// Serves one generation request with `api` (see above).
void ServeGeneration(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res,
                     std::shared_ptr<GenerationApi> api);

// How long a stream may stay quiet (a long prompt being computed) before a keep-alive goes out,
// so that proxies and clients with idle timeouts do not drop it.
inline constexpr auto kKeepAliveEvery = std::chrono::seconds(5);
// `text` when `quiet` is longer than kKeepAliveEvery, else nothing.
std::string KeepAlive(const std::string& text, std::chrono::steady_clock::duration quiet);

// The request's next event. nullopt once the client has gone away (checked at least every
// 100 ms), after cancelling the request so the engine frees its cells at its next step. A channel
// that closed without kDone or kError (a bug) gives an Internal error event.
std::optional<GenerationEvent> NextEvent(RequestHandle& h, const httplib::Request& req);

}  // namespace kvault

#include "server/generation_route.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <functional>

#include "kvstore/agent_registry.h"

namespace kvault {

namespace {

constexpr const char* kJson = "application/json";
constexpr const char* kSseComment = ": keep-alive\n\n";  // clients skip SSE comments

// The HTTP status an error answers with in the flavor's envelope (what the log line records).
int HttpStatusOf(ApiFlavor flavor, const ApiError& e) {
  return flavor == ApiFlavor::kAnthropic ? AnthropicHttpStatus(e) : e.http_status;
}

// A finished generation in the metrics, the recent-activity window and its agent's turns.
void ObserveDone(const CallContext& call, const char* api, const GenerationEvent& done) {
  if (call.metrics) call.metrics->ObserveGeneration(api, done);
  if (call.activity) {
    call.activity->Observe(ActivityWindow::Clock::now(),
                           {done.ttft_ms, done.prompt_tokens, done.cached_resident, done.cached_ram, done.cached_disk,
                            done.completion_tokens, done.cached_remote});
  }
  if (call.turns && call.engine && !call.agent_id.empty()) {
    AgentTurn turn;
    turn.unix_ms = UnixNowMs();
    turn.api = api;
    turn.prompt_tokens = done.prompt_tokens;
    turn.cached_tokens = done.cached_tokens;
    turn.cached_pool = done.cached_resident;
    turn.cached_ram = done.cached_ram;
    turn.cached_disk = done.cached_disk;
    turn.cached_remote = done.cached_remote;
    turn.completion_tokens = done.completion_tokens;
    turn.ttft_ms = done.ttft_ms;
    turn.total_ms = done.total_ms;
    call.turns->Record(call.engine->info().id, call.tenant, call.agent_id, std::move(turn));
  }
}

// One log line per finished request; finished generations are also observed (ObserveDone).
void LogRequest(const CallContext& call, const char* api, const GenerationEvent& done, int http_status) {
  if (done.kind == GenerationEvent::Kind::kDone) ObserveDone(call, api, done);
  spdlog::info(
      "request {} api={} agent={} status={} prompt={} cached={} (pool {} ram {} disk {} remote {}) generated={} "
      "queue_ms={:.0f} ttft_ms={:.0f} total_ms={:.0f}",
      call.request_id, api, call.agent_id.empty() ? "-" : call.agent_id, http_status, done.prompt_tokens,
      done.cached_tokens, done.cached_resident, done.cached_ram, done.cached_disk, done.cached_remote,
      done.completion_tokens, done.queue_ms, done.ttft_ms, done.total_ms);
}

// Fills the engine request's identity: tenant, request id, and agent — the call's (X-Agent-Id),
// else the API's own field when it is a valid agent id (which then also names the call's agent).
void StampRequest(CallContext& call, const std::string& agent_fallback, GenerateRequest& g) {
  if (call.agent_id.empty() && AgentRegistry::ValidId(agent_fallback)) call.agent_id = agent_fallback;
  g.tenant = call.tenant;
  g.agent_id = call.agent_id;
  g.request_id = call.request_id;
}

// What a request's channel that closed without kDone or kError (a bug) answers.
GenerationEvent EndedWithoutAnswer() {
  GenerationEvent err;
  err.kind = GenerationEvent::Kind::kError;
  err.status = Status::Internal("the engine ended the request without an answer");
  return err;
}

// The request's first event. An error there (bad prompt, queue full) is answered as a plain HTTP
// error in the flavor's envelope and logged; that, or a client that went away, gives nullopt.
std::optional<GenerationEvent> FirstEvent(const CallContext& call, const GenerationApi& api, RequestHandle& h,
                                          const httplib::Request& req, httplib::Response& res) {
  std::optional<GenerationEvent> first = NextEvent(h, req);
  if (first && first->kind == GenerationEvent::Kind::kError) {
    const ApiError e = ApiErrorFromStatus(first->status);
    LogRequest(call, api.name(), *first, HttpStatusOf(api.flavor(), e));
    SendApiError(res, api.flavor(), e);
    return std::nullopt;
  }
  return first;
}

// Reads a non-streamed request to its end: `first` and the events after it, each text piece to
// the API (and the tokens' logprobs where it keeps them). Returns the kDone event, logged. An
// engine error is answered in the flavor's envelope and logged, and gives nullopt; so does a
// client that went away.
std::optional<GenerationEvent> CollectNonStreamed(const CallContext& call, GenerationApi& api, RequestHandle& h,
                                                  const httplib::Request& req, httplib::Response& res,
                                                  GenerationEvent first) {
  std::vector<TokenLogprob>* logprobs = api.Logprobs();
  std::optional<GenerationEvent> ev = std::move(first);
  for (;; ev = NextEvent(h, req)) {
    if (!ev) return std::nullopt;                               // the client went away
    if (ev->kind == GenerationEvent::Kind::kStarted) continue;  // (streamed requests only)
    if (ev->kind == GenerationEvent::Kind::kText) {
      api.Text(ev->text);
      if (logprobs) logprobs->insert(logprobs->end(), ev->logprobs.begin(), ev->logprobs.end());
    } else if (ev->kind == GenerationEvent::Kind::kError) {
      const ApiError e = ApiErrorFromStatus(ev->status);
      LogRequest(call, api.name(), *ev, HttpStatusOf(api.flavor(), e));
      SendApiError(res, api.flavor(), e);
      return std::nullopt;
    } else {
      LogRequest(call, api.name(), *ev, 200);
      return ev;
    }
  }
}

// Answers with a stream of server-sent events: `first` (the request's first event — kStarted at
// admission, before the prompt is computed — already checked not to be an error) and every event
// after it, rendered by `api`. The stream's state holds `call` (lease, in-flight count, key slot)
// until the response ends. A client that goes away cancels the request, at the latest when the
// response ends.
void StreamEvents(httplib::Response& res, const CallContext& call, std::shared_ptr<GenerationApi> api,
                  std::shared_ptr<RequestHandle> handle, GenerationEvent first) {
  struct State {
    CallContext call;
    std::shared_ptr<GenerationApi> api;
    std::shared_ptr<RequestHandle> handle;
    std::optional<GenerationEvent> pending;  // the first event, sent on the first call
    std::chrono::steady_clock::time_point last_write;

    // The text of one event; a kDone or kError event ends the stream.
    std::string Render(const GenerationEvent& ev) {
      if (ev.kind == GenerationEvent::Kind::kText) return api->StreamText(ev);
      if (ev.kind == GenerationEvent::Kind::kError) {  // after the stream started: an error event
        const ApiError e = ApiErrorFromStatus(ev.status);
        LogRequest(call, api->name(), ev, HttpStatusOf(api->flavor(), e));
        return api->StreamError(e);
      }
      LogRequest(call, api->name(), ev, 200);
      return api->StreamDone(ev);
    }
  };
  auto st = std::make_shared<State>();
  st->call = call;
  st->api = std::move(api);
  st->handle = std::move(handle);
  st->pending = std::move(first);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [st](size_t, httplib::DataSink& sink) {
        auto send = [&](const std::string& s) {
          if (s.empty()) return true;
          if (!sink.write(s.data(), s.size())) {
            st->handle->Cancel();  // the client went away
            return false;
          }
          st->last_write = std::chrono::steady_clock::now();
          return true;
        };
        std::optional<GenerationEvent> ev = std::move(st->pending);
        if (ev) {
          st->pending.reset();
          st->last_write = std::chrono::steady_clock::now();
          if (!send(st->api->StreamStart())) return false;
        } else {
          ev = st->handle->events().PopFor(std::chrono::milliseconds(100));
        }
        if (!ev && st->handle->events().drained()) ev = EndedWithoutAnswer();  // see NextEvent
        if (!ev) {
          if (!sink.is_writable()) return st->handle->Cancel(), false;
          return send(st->api->StreamIdle(std::chrono::steady_clock::now() - st->last_write));
        }
        if (ev->kind == GenerationEvent::Kind::kStarted) return true;  // the start went out above
        if (!send(st->Render(*ev))) return false;
        if (ev->kind != GenerationEvent::Kind::kText) sink.done();
        return true;
      },
      // Called when the response ends; httplib stops calling the provider once the client is
      // gone, so this is where a vanished client's request gets cancelled (a no-op if done).
      [st](bool) { st->handle->Cancel(); });
}

}  // namespace

std::string GenerationApi::StreamIdle(std::chrono::steady_clock::duration quiet) {
  return KeepAlive(kSseComment, quiet);
}

void ServeGeneration(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res,
                     std::shared_ptr<GenerationApi> api) {
  const ApiFlavor flavor = api->flavor();
  std::optional<CallContext> call = BeginCall(ctx, req, res, flavor);
  if (!call) return;
  Status parsed = api->Parse(req, *call);
  if (!parsed.ok()) return SendApiError(res, flavor, ApiErrorFromStatus(parsed));
  if (!AttachModel(ctx, *call, api->model(), res, flavor)) return;
  GenerateRequest& g = api->request();
  StampRequest(*call, api->agent_fallback(), g);
  api->Prepare(*call);
  const bool stream = g.stream;
  std::shared_ptr<RequestHandle> handle = call->engine->Submit(std::move(g));

  std::optional<GenerationEvent> first = FirstEvent(*call, *api, *handle, req, res);
  if (!first) return;
  api->Started(handle->syntax(), *first);
  res.set_header("X-Cache-Tokens", std::to_string(first->cached_tokens));

  if (stream) return StreamEvents(res, *call, std::move(api), std::move(handle), std::move(*first));
  std::optional<GenerationEvent> done = CollectNonStreamed(*call, *api, *handle, req, res, std::move(*first));
  if (!done) return;
  res.set_content(api->Body(*done), kJson);
}

std::string KeepAlive(const std::string& text, std::chrono::steady_clock::duration quiet) {
  return quiet > kKeepAliveEvery ? text : std::string();
}

std::optional<GenerationEvent> NextEvent(RequestHandle& h, const httplib::Request& req) {
  while (true) {
    auto ev = h.events().PopFor(std::chrono::milliseconds(100));
    if (req.is_connection_closed()) {
      h.Cancel();
      return std::nullopt;
    }
    if (ev) return ev;
    if (h.events().drained()) {
      // Cannot happen: the engine always ends with kDone or kError. (Events pushed just before
      // the channel closed are not lost: drained() is false while they wait, and the next PopFor
      // returns them.)
      return EndedWithoutAnswer();
    }
  }
}

}  // namespace kvault

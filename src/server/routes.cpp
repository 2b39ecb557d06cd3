#include "server/routes.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "api/ids.h"
#include "kvstore/agent_registry.h"

namespace kvault {

std::shared_ptr<void> TenantLimiter::Enter(const std::string& tenant) {
  struct Slot {
    Slot(TenantLimiter* o, std::string t) : owner(o), tenant(std::move(t)) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    TenantLimiter* owner;
    std::string tenant;
    ~Slot() {
      if (!owner) return;
      std::lock_guard<std::mutex> lock(owner->mu_);
      if (--owner->counts_[tenant] == 0) owner->counts_.erase(tenant);
    }
  };
  if (limit_ <= 0) return std::make_shared<Slot>(nullptr, std::string());
  std::lock_guard<std::mutex> lock(mu_);
  int& n = counts_[tenant];
  if (n >= limit_) return nullptr;
  ++n;
  return std::make_shared<Slot>(this, tenant);
}

std::string WithoutPath(std::string message, const std::string& path) {
  if (path.empty()) return message;
  const std::string name = std::filesystem::path(path).filename().string();
  for (size_t at = message.find(path); at != std::string::npos; at = message.find(path, at + name.size())) {
    message.replace(at, path.size(), name);
  }
  return message;
}

std::string SanitizeId(const std::string& id) {
  std::string out;
  for (char c : id.substr(0, 256)) out += (c >= 0x21 && c <= 0x7e) ? c : '_';
  return out;
}

bool IsAnthropicRequest(const httplib::Request& req) {
  return req.path.rfind("/v1/messages", 0) == 0 || req.has_header("anthropic-version");
}

ApiFlavor FlavorOf(const httplib::Request& req) {
  return IsAnthropicRequest(req) ? ApiFlavor::kAnthropic : ApiFlavor::kOpenAi;
}

void SendApiError(httplib::Response& res, ApiFlavor flavor, const ApiError& e) {
  if (flavor == ApiFlavor::kAnthropic) {
    // Normally set before routing; not for what cpp-httplib refuses before it (a body too large).
    std::string id = res.get_header_value("X-Request-Id");
    if (id.empty()) {
      id = NewRandomId("req_");
      res.set_header("X-Request-Id", id);
    }
    if (!res.has_header("request-id")) res.set_header("request-id", id);
    res.status = AnthropicHttpStatus(e);
    res.set_content(AnthropicErrorBody(e, id), "application/json");
  } else {
    res.status = e.http_status;
    res.set_content(OpenAiErrorBody(e), "application/json");
  }
  if (res.status == 429 || res.status == 503 || res.status == 529) res.set_header("Retry-After", "1");
}

std::optional<CallContext> BeginCall(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res,
                                     ApiFlavor flavor) {
  CallContext call;
  call.request_id = res.get_header_value("X-Request-Id");
  call.metrics = ctx.metrics;
  if (ctx.draining && ctx.draining->load()) {
    SendApiError(res, flavor, ApiErrorFromStatus(Status::Unavailable("the server is shutting down")));
    return std::nullopt;
  }
  auto tenant = ctx.keys->Authenticate(req.get_header_value("x-api-key"), req.get_header_value("Authorization"));
  if (!tenant.ok()) {
    spdlog::info("request {}: {} {} rejected: {}", call.request_id, req.method, req.path, tenant.status().message());
    SendApiError(res, flavor, ApiErrorFromStatus(tenant.status()));
    return std::nullopt;
  }
  call.tenant = std::move(tenant.value());
  if (!ctx.models->load()) {
    SendApiError(res, flavor, ApiErrorFromStatus(Status::Unavailable("the model is loading")));
    return std::nullopt;
  }
  call.agent_id = req.get_header_value("X-Agent-Id");
  // Without X-Agent-Id, the session Claude Code names in its own header (a UUID).
  if (call.agent_id.empty() && AgentRegistry::ValidId(req.get_header_value("X-Claude-Code-Session-Id"))) {
    call.agent_id = req.get_header_value("X-Claude-Code-Session-Id");
  }
  if (!call.agent_id.empty() && !AgentRegistry::ValidId(call.agent_id)) {
    SendApiError(res, flavor,
                 ApiErrorFromStatus(Status::InvalidArgument(
                     "X-Agent-Id must be 1-256 characters from A-Z a-z 0-9 . _ : @ - (and not '.' or '..')")));
    return std::nullopt;
  }
  if (ctx.limiter) {
    call.tenant_slot = ctx.limiter->Enter(call.tenant);
    if (!call.tenant_slot) {
      SendApiError(
          res, flavor,
          ApiErrorFromStatus(Status::Overloaded("too many concurrent requests for this API key; retry later")));
      return std::nullopt;
    }
  }
  call.in_flight = std::make_shared<InFlight>(ctx.in_flight);
  return call;
}

bool AttachModel(const RouteContext& ctx, CallContext& call, const std::string& model, httplib::Response& res,
                 ApiFlavor flavor) {
  ModelManager* models = ctx.models->load();
  if (!models) {
    SendApiError(res, flavor, ApiErrorFromStatus(Status::Unavailable("the model is loading")));
    return false;
  }
  auto lease = models->Acquire(model, std::chrono::seconds(120));
  if (!lease.ok()) {
    SendApiError(res, flavor, ApiErrorFromStatus(lease.status()));
    return false;
  }
  call.lease = std::move(lease.value());
  call.engine = call.lease->engine();
  return true;
}

void StampRequest(CallContext& call, const std::string& user_field, GenerateRequest& g) {
  if (call.agent_id.empty() && AgentRegistry::ValidId(user_field)) call.agent_id = user_field;
  g.tenant = call.tenant;
  g.agent_id = call.agent_id;
  g.request_id = call.request_id;
}

std::optional<GenerationEvent> CollectNonStreamed(const CallContext& call, const char* api, ApiFlavor flavor,
                                                  RequestHandle& h, const httplib::Request& req, httplib::Response& res,
                                                  std::optional<GenerationEvent> first,
                                                  const std::function<void(const std::string&)>& on_text,
                                                  std::vector<TokenLogprob>* logprobs) {
  std::optional<GenerationEvent> ev = first ? std::move(first) : NextEvent(h, req);
  for (;; ev = NextEvent(h, req)) {
    if (!ev) return std::nullopt;                               // the client went away
    if (ev->kind == GenerationEvent::Kind::kStarted) continue;  // (streamed requests only)
    if (ev->kind == GenerationEvent::Kind::kText) {
      on_text(ev->text);
      if (logprobs) logprobs->insert(logprobs->end(), ev->logprobs.begin(), ev->logprobs.end());
    } else if (ev->kind == GenerationEvent::Kind::kError) {
      const ApiError e = ApiErrorFromStatus(ev->status);
      LogRequest(call, api, *ev, flavor == ApiFlavor::kAnthropic ? AnthropicHttpStatus(e) : e.http_status);
      SendApiError(res, flavor, e);
      return std::nullopt;
    } else {
      LogRequest(call, api, *ev, 200);
      return ev;
    }
  }
}

namespace {

// What a request's channel that closed without kDone or kError (a bug) answers.
GenerationEvent EndedWithoutAnswer() {
  GenerationEvent err;
  err.kind = GenerationEvent::Kind::kError;
  err.status = Status::Internal("the engine ended the request without an answer");
  return err;
}

}  // namespace

void StreamEvents(httplib::Response& res, std::shared_ptr<RequestHandle> handle, GenerationEvent first,
                  SseRenderer render) {
  struct State {
    std::shared_ptr<RequestHandle> handle;
    SseRenderer render;
    std::optional<GenerationEvent> pending;  // the first event, sent on the first call
    std::chrono::steady_clock::time_point last_write;
  };
  auto st = std::make_shared<State>();
  st->handle = std::move(handle);
  st->render = std::move(render);
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
          if (st->render.start && !send(st->render.start())) return false;
        } else {
          ev = st->handle->events().PopFor(std::chrono::milliseconds(100));
        }
        if (!ev && st->handle->events().drained()) ev = EndedWithoutAnswer();  // see NextEvent
        if (!ev) {
          if (!sink.is_writable()) return st->handle->Cancel(), false;
          return st->render.idle ? send(st->render.idle(std::chrono::steady_clock::now() - st->last_write)) : true;
        }
        if (ev->kind == GenerationEvent::Kind::kStarted) return true;  // the start went out above
        if (!send(st->render.event(*ev))) return false;
        if (ev->kind != GenerationEvent::Kind::kText) sink.done();
        return true;
      },
      // Called when the response ends; httplib stops calling the provider once the client is
      // gone, so this is where a vanished client's request gets cancelled (a no-op if done).
      [st](bool) { st->handle->Cancel(); });
}

std::optional<GenerationEvent> FirstEvent(const CallContext& call, const char* api, ApiFlavor flavor, RequestHandle& h,
                                          const httplib::Request& req, httplib::Response& res) {
  std::optional<GenerationEvent> first = NextEvent(h, req);
  if (first && first->kind == GenerationEvent::Kind::kError) {
    const ApiError e = ApiErrorFromStatus(first->status);
    LogRequest(call, api, *first, flavor == ApiFlavor::kAnthropic ? AnthropicHttpStatus(e) : e.http_status);
    SendApiError(res, flavor, e);
    return std::nullopt;
  }
  return first;
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

std::function<std::string(std::chrono::steady_clock::duration)> KeepAlive(std::string text) {
  return [text = std::move(text)](std::chrono::steady_clock::duration quiet) {
    return quiet > kKeepAliveEvery ? text : std::string();
  };
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void LogRequest(const CallContext& call, const char* api, const GenerationEvent& done, int http_status) {
  if (call.metrics && done.kind == GenerationEvent::Kind::kDone) call.metrics->ObserveGeneration(api, done);
  spdlog::info(
      "request {} api={} agent={} status={} prompt={} cached={} (pool {} ram {} disk {}) generated={} "
      "queue_ms={:.0f} ttft_ms={:.0f} total_ms={:.0f}",
      call.request_id, api, call.agent_id.empty() ? "-" : call.agent_id, http_status, done.prompt_tokens,
      done.cached_tokens, done.cached_resident, done.cached_ram, done.cached_disk, done.completion_tokens,
      done.queue_ms, done.ttft_ms, done.total_ms);
}

}  // namespace kvault

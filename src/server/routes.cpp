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
  call.activity = ctx.activity;
  call.turns = ctx.turns;
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

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t UnixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace kvault

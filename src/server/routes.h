// What the route handlers share: the server state they reach (RouteContext), the checks every API
// call begins with (BeginCall: draining, API key, agent id, --key-concurrency; AttachModel: the
// model's engine), errors in each API's envelope, ids, and the Register* function of each route
// group. Generation itself (submit, stream or wait, log) is server/generation_route.h.
//
// Used by http_server.cpp, http_hooks.cpp and every *_routes.cpp, on HTTP worker threads; the
// shared state is thread-safe (atomics, TenantLimiter, ApiKeys const after construction, Metrics,
// ResponseStore, ActivityWindow, AgentTurns). Never touches llama objects.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "api/errors.h"
#include "engine/engine.h"
#include "engine/model_manager.h"
#include "server/activity_window.h"
#include "server/agent_turns.h"
#include "server/api_keys.h"
#include "server/metrics.h"
#include "server/response_store.h"
#include "server/server_options.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace kvault {

enum class ApiFlavor { kOpenAi, kAnthropic };

// Requests in flight per tenant, for --key-concurrency. Thread-safe.
class TenantLimiter {
 public:
  explicit TenantLimiter(int limit) : limit_(limit) {}
  // A guard that counts one request of `tenant` while it lives; null when the tenant is at its
  // limit (0 = no limit).
  std::shared_ptr<void> Enter(const std::string& tenant);

 private:
  int limit_;
  std::mutex mu_;
  std::map<std::string, int> counts_;
};

struct RouteContext {
  std::atomic<ModelManager*>* models = nullptr;  // null until the default model is loaded
  const ApiKeys* keys = nullptr;
  const ApiKeys* admin_keys = nullptr;
  Metrics* metrics = nullptr;
  const std::atomic<bool>* draining = nullptr;
  std::atomic<int>* in_flight = nullptr;
  TenantLimiter* limiter = nullptr;
  ResponseStore* responses = nullptr;  // stored Responses (POST/GET/DELETE /v1/responses)
  ActivityWindow* activity = nullptr;  // recent generations, for the dashboard's overview
  AgentTurns* turns = nullptr;         // each agent's recent turns, for the dashboard
  // Dashboard event streams open at once (each holds an HTTP thread): a quarter of the HTTP
  // threads at most, so that they never starve the API; at most 32.
  int max_event_streams = 32;
};

// Counts a request as in flight for as long as it lives (streams: until the stream ends).
class InFlight {
 public:
  explicit InFlight(std::atomic<int>* n) : n_(n) {
    if (n_) n_->fetch_add(1);
  }
  ~InFlight() {
    if (n_) n_->fetch_sub(1);
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<int>* n_;
};

// One API call's identity, after the checks every API call begins with (BeginCall). Copies
// share the lease, the in-flight count and the key slot: they end with the last copy.
struct CallContext {
  Engine* engine = nullptr;                    // set by AttachModel
  std::shared_ptr<ModelManager::Lease> lease;  // keeps the engine loaded while the request lives
  std::string tenant;
  std::string request_id;
  // X-Agent-Id, else X-Claude-Code-Session-Id; else the API's own field, set when the request is
  // stamped (server/generation_route).
  std::string agent_id;
  Metrics* metrics = nullptr;
  ActivityWindow* activity = nullptr;  // a finished generation is recorded in both (may be null)
  AgentTurns* turns = nullptr;
  std::shared_ptr<InFlight> in_flight;  // copied into stream state so a stream counts until it ends
  std::shared_ptr<void> tenant_slot;    // --key-concurrency, released with the last copy
};

// Whether a request speaks the Anthropic API: a /v1/messages route, or any request with an
// `anthropic-version` header (the Anthropic SDKs send it; GET /v1/models then answers in
// Anthropic's shape, and errors come in its envelope).
bool IsAnthropicRequest(const httplib::Request& req);
// kAnthropic for an Anthropic request (IsAnthropicRequest), else kOpenAi: the envelope of errors
// answered before, or outside, an API's own route.
ApiFlavor FlavorOf(const httplib::Request& req);

// Writes `e` in the flavor's envelope (status, Retry-After on 429/503/529). Anthropic's envelope
// carries the response's request id ("request_id", from its X-Request-Id header).
void SendApiError(httplib::Response& res, ApiFlavor flavor, const ApiError& e);

// Checks that the server takes requests (not draining, models attached), the API key, the agent
// id headers, and takes the key's --key-concurrency slot; on failure answers in the flavor's
// envelope and returns nullopt.
std::optional<CallContext> BeginCall(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res,
                                     ApiFlavor flavor);
// Gets the engine for the request's `model` (loading it if needed); on failure answers and
// returns false.
bool AttachModel(const RouteContext& ctx, CallContext& call, const std::string& model, httplib::Response& res,
                 ApiFlavor flavor);

int64_t UnixNow();
int64_t UnixNowMs();

// `message` with every occurrence of `path` replaced by its file name (a model's load error shown
// to API clients, who are not shown where the model files are).
std::string WithoutPath(std::string message, const std::string& path);

// An id from a client (agent, request) made safe for logs and headers: printable ASCII without
// spaces, at most 256 characters; anything else becomes '_'.
std::string SanitizeId(const std::string& id);

// GET /health/live, /health and /metrics (health_routes.cpp); `options` says which are public
// and when the pool counts as degraded.
void RegisterHealthRoutes(httplib::Server& http, const RouteContext& ctx, const ServerOptions& options);
void RegisterOpenAiRoutes(httplib::Server& http, const RouteContext& ctx);
// GET /v1/models and /v1/models/{id}, in OpenAI's shape or (IsAnthropicRequest) Anthropic's.
void RegisterModelRoutes(httplib::Server& http, const RouteContext& ctx);
void RegisterAnthropicRoutes(httplib::Server& http, const RouteContext& ctx);
void RegisterResponsesRoutes(httplib::Server& http, const RouteContext& ctx);
void RegisterAdminRoutes(httplib::Server& http, const RouteContext& ctx);
// GET /admin/overview, /admin/events (server-sent events) and /admin/agents/{id}/turns: the
// dashboard's data, for admin keys and, read-only and for their own tenant, API keys
// (dashboard_routes.cpp); `options`: when the pool counts as degraded (as /health).
void RegisterDashboardRoutes(httplib::Server& http, const RouteContext& ctx, const ServerOptions& options);
// GET /ui and its assets, embedded in the binary (ui_routes.cpp).
void RegisterUiRoutes(httplib::Server& http);

}  // namespace kvault

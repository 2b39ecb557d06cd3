// HttpServer: the HTTP front door. Owns the cpp-httplib server (server/deadline_server) and its
// worker threads, the state the routes share (API keys, metrics, the Responses store, the
// per-key limiter, the draining flag) and wires them up: transport settings, the hooks every
// request goes through (server/http_hooks), then the route groups, each in its own file
// (server/health_routes, openai_routes, responses_routes, anthropic_routes, model_routes,
// admin_routes, dashboard_routes, ui_routes). Routes talk to an Engine only through ModelManager, Engine::Submit and
// the returned RequestHandle (never llama objects).
//
// Created by `kvault serve` (cli/serve_command.cpp) and the tests. Lifecycle: construct →
// Bind() (fails clearly if the address is in use) → Run() blocks until Stop() is called from
// another thread or a signal handler thread. SetModels, StartDraining and in_flight are safe from
// any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"
#include "server/api_keys.h"
#include "server/metrics.h"
#include "server/routes.h"
#include "server/server_options.h"

namespace kvault {

class DeadlineServer;

class HttpServer {
 public:
  HttpServer(ServerOptions options, ModelManager* models);
  ~HttpServer();

  // The models may be attached after Bind(); until then API routes answer 503 "loading".
  void SetModels(ModelManager* models) { models_.store(models); }

  Status Bind();
  void Run();
  // Blocks until Run() accepts connections (or has ended).
  void WaitUntilReady();
  // Also ends the dashboard's event streams (they end when the server drains).
  void Stop();
  int port() const { return bound_port_; }

  // Graceful shutdown, first step: new API requests get 503 (overloaded, Retry-After), /health
  // says "draining"; requests already running go on.
  void StartDraining() { draining_.store(true); }
  // Requests inside an API handler right now (streams included).
  int in_flight() const { return in_flight_.load(); }

 private:
  // Threads, connection limits, timeouts and socket options (cpp-httplib and DeadlineServer).
  void ConfigureTransport();
  // The hooks every request goes through (server/http_hooks.h), then every route group.
  void RegisterRoutes();
  RouteContext Context();

  ServerOptions options_;
  std::atomic<ModelManager*> models_;  // not owned; outlives the server
  ApiKeys keys_;
  ApiKeys admin_keys_;
  Metrics metrics_;
  ActivityWindow activity_;
  AgentTurns turns_;
  std::unique_ptr<ResponseStore> responses_;
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  TenantLimiter limiter_;
  std::unique_ptr<DeadlineServer> http_;
  int bound_port_ = 0;
};

}  // namespace kvault

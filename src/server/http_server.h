// HttpServer: the HTTP front door. Owns the cpp-httplib server and its worker threads, routes
// requests to the API adapters, and talks to the Engine only through Engine::Submit and the
// returned RequestHandle (never llama objects).
//
// Lifecycle: construct → Bind() (fails clearly if the address is in use) → Run() blocks until
// Stop() is called from another thread or a signal handler thread.
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

namespace httplib {
struct Request;
struct Response;
}

namespace kvault {

class DeadlineServer;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0 = pick a free port (tests)
  int http_threads = 8;       // started at once
  int http_threads_max = 0;   // grown on demand up to this (0 = http_threads); each request
                              // waiting for the engine holds one, so it should cover
                              // --parallel + --max-queue
  int max_connections = 256;  // served + waiting for a thread; beyond, new connections are closed
  int read_timeout_s = 10;    // silence allowed while a request is being received
  int request_read_timeout_s = 60;  // a request's head and body must be in this long after its
                                    // first byte (0: no limit beyond read_timeout_s per read)
  int write_timeout_s = 30;   // an unread answer: the client is dropped, its request cancelled
  int idle_timeout_s = 5;     // keep-alive connections with no request
  size_t max_body_bytes = 32u << 20;      // larger bodies get 413
  std::vector<std::string> api_keys;      // empty: no authentication
  std::string tenant_secret;              // keys bare API keys' tenant ids (api_keys.h); empty: random
  std::vector<std::string> admin_keys;    // for /admin/*; empty: admin endpoints are off
  std::vector<std::string> cors_origins;  // browser origins allowed to call the API ("*": any)
  double degraded_utilization = 0.9;      // /health answers 503 "degraded" above this pool load
  bool public_health = true;              // false: /health needs an API key (/health/live never does)
  bool public_metrics = true;             // false: /metrics needs an API key
  int key_concurrency = 0;                // API requests in flight per key at most (0: no limit)
  std::string responses_dir;              // stored Responses (store: true); empty: in memory only
};

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
  void Stop();
  int port() const { return bound_port_; }

  // Graceful shutdown, first step: new API requests get 503 (overloaded, Retry-After), /health
  // says "draining"; requests already running go on.
  void StartDraining() { draining_.store(true); }
  // Requests inside an API handler right now (streams included).
  int in_flight() const { return in_flight_.load(); }

 private:
  void RegisterRoutes();
  RouteContext Context();
  bool CorsAllows(const std::string& origin) const;
  // For /health and /metrics when they are not public; answers 401 itself.
  bool Authorized(const httplib::Request& req, httplib::Response& res);

  ServerOptions options_;
  std::atomic<ModelManager*> models_;  // not owned; outlives the server
  ApiKeys keys_;
  ApiKeys admin_keys_;
  Metrics metrics_;
  std::unique_ptr<ResponseStore> responses_;
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  TenantLimiter limiter_;
  std::unique_ptr<DeadlineServer> http_;
  int bound_port_ = 0;
};

}  // namespace kvault

// ServerOptions: how the HTTP server listens, limits and authenticates, and what /health,
// /metrics and the Responses store do. Plain data: filled in before HttpServer is constructed,
// read-only afterwards (any thread).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace kvault {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                        // 0 = pick a free port (tests)
  int http_threads = 8;                   // started at once
  int http_threads_max = 0;               // grown on demand up to this (0 = http_threads); each request
                                          // waiting for the engine holds one, so it should cover
                                          // --parallel + --max-queue
  int max_connections = 256;              // served + waiting for a thread; beyond, new connections are closed
  int read_timeout_s = 10;                // silence allowed while a request is being received
  int request_read_timeout_s = 60;        // a request's head and body must be in this long after its
                                          // first byte (0: no limit beyond read_timeout_s per read)
  int write_timeout_s = 30;               // an unread answer: the client is dropped, its request cancelled
  int idle_timeout_s = 5;                 // keep-alive connections with no request
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

}  // namespace kvault

// ServerOptions: how the HTTP server listens, limits and authenticates, and what /health,
// /metrics and the Responses store do. The `kvault serve` flags of the same names bind to these
// fields directly (cli/serve_flags.cpp), so each default here is the flag's default.
//
// Plain data: filled in before HttpServer is constructed, read-only afterwards.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvault {

struct ServerOptions {
  std::string host = "127.0.0.1";  // --host
  int port = 8080;                 // --port; 0 = pick a free port (tests)
  int http_threads = 8;            // --http-threads: started at once
  // Grown on demand up to this (0 = http_threads); each request waiting for the engine holds one,
  // so `kvault serve` sets --parallel + --max-queue + --http-threads.
  int http_threads_max = 0;
  int max_connections = 256;  // --max-connections: served + waiting for a thread; beyond, closed
  int read_timeout_s = 10;    // --read-timeout: silence allowed while a request is being received
  // --request-read-timeout: a request's head and body must be in this long after its first byte
  // (0: no limit beyond read_timeout_s per read).
  int request_read_timeout_s = 60;
  int write_timeout_s = 30;           // --write-timeout: an unread answer: the client is dropped, its request cancelled
  int idle_timeout_s = 5;             // --idle-timeout: keep-alive connections with no request
  uint32_t max_body_mib = 32;         // --max-body: larger bodies get 413
  std::vector<std::string> api_keys;  // --api-key: KEY or NAME=KEY (api_keys.h); empty: no authentication
  std::string tenant_secret;          // keys bare API keys' tenant ids (api_keys.h); empty: random
  std::vector<std::string> admin_keys;    // --admin-key: for /admin/*; empty: admin endpoints are off
  std::vector<std::string> cors_origins;  // --cors-origins: browser origins allowed to call the API ("*": any)
  double degraded_utilization = 0.9;      // --degraded-utilization: /health answers 503 "degraded" above this
  bool public_health = true;   // --private-health sets false: /health needs an API key (/health/live never does)
  bool public_metrics = true;  // --private-metrics sets false: /metrics needs an API key
  int key_concurrency = 0;     // --key-concurrency: API requests in flight per key at most (0: no limit)
  std::string responses_dir;   // stored Responses (store: true); empty: in memory only
};

}  // namespace kvault

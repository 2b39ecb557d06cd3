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

namespace httplib {
class Server;
}

namespace kvault {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0 = pick a free port (tests)
  int http_threads = 8;       // started at once
  int http_threads_max = 0;   // grown on demand up to this (0 = http_threads); each request
                              // waiting for the engine holds one, so it should cover
                              // --parallel + --max-queue
  size_t max_body_bytes = 32u << 20;      // larger bodies get 413
  std::vector<std::string> api_keys;      // empty: no authentication
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, Engine* engine);
  ~HttpServer();

  // The engine may be attached after Bind(); until then API routes answer 503 "loading".
  void SetEngine(Engine* engine) { engine_.store(engine); }

  Status Bind();
  void Run();
  // Blocks until Run() accepts connections (or has ended).
  void WaitUntilReady();
  void Stop();
  int port() const { return bound_port_; }

 private:
  void RegisterRoutes();

  ServerOptions options_;
  std::atomic<Engine*> engine_;  // not owned; outlives the server
  ApiKeys keys_;
  std::unique_ptr<httplib::Server> http_;
  int bound_port_ = 0;
};

}  // namespace kvault

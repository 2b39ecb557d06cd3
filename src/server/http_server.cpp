#include "server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>

#include "server/deadline_server.h"
#include "server/http_hooks.h"
#include "server/routes.h"

namespace kvault {

HttpServer::HttpServer(ServerOptions options, ModelManager* models)
    : options_(std::move(options)),
      models_(models),
      keys_(options_.api_keys, options_.tenant_secret),
      admin_keys_(options_.admin_keys, {}, ApiKeys::Entries::kKeysOnly),
      limiter_(options_.key_concurrency),
      http_(std::make_unique<DeadlineServer>()) {
  responses_ = std::make_unique<ResponseStore>(options_.responses_dir);
  ConfigureTransport();
  RegisterRoutes();
}

HttpServer::~HttpServer() = default;

Status HttpServer::Bind() {
  // cpp-httplib's default sets SO_REUSEPORT, which would let a second server silently share a
  // port that is in use. Only SO_REUSEADDR (fast restart after TIME_WAIT).
  http_->set_socket_options([](socket_t sock) {
    int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  });
  if (options_.port == 0) {
    bound_port_ = http_->bind_to_any_port(options_.host);
    if (bound_port_ <= 0) return Status::Unavailable("cannot listen on " + options_.host);
  } else {
    if (!http_->bind_to_port(options_.host, options_.port)) {
      return Status::Unavailable("cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                                 " (address in use, or not available on this machine)");
    }
    bound_port_ = options_.port;
  }
  return Status::Ok();
}

void HttpServer::Run() {
  http_->listen_after_bind();
}

void HttpServer::WaitUntilReady() {
  http_->wait_until_ready();
}

void HttpServer::Stop() {
  draining_.store(true);  // event streams (GET /admin/events) end, so that the workers can be joined
  http_->stop();
}

namespace {

// The most HTTP threads the pool grows to: --http-threads, grown on demand up to http_threads_max,
// never more than --max-connections.
size_t MaxHttpThreads(const ServerOptions& o) {
  const size_t threads = static_cast<size_t>(std::max(1, o.http_threads));
  const size_t cap = static_cast<size_t>(std::max(1, o.max_connections));
  return std::min(cap, std::max(threads, static_cast<size_t>(std::max(0, o.http_threads_max))));
}

}  // namespace

RouteContext HttpServer::Context() {
  RouteContext ctx{&models_,    &keys_,    &admin_keys_,     &metrics_,  &draining_,
                   &in_flight_, &limiter_, responses_.get(), &activity_, &turns_};
  ctx.max_event_streams = static_cast<int>(std::clamp<size_t>(MaxHttpThreads(options_) / 4, 1, 32));
  return ctx;
}

void HttpServer::ConfigureTransport() {
  const size_t threads = static_cast<size_t>(std::max(1, options_.http_threads));
  // Connections past --max-connections are closed at once (each served one holds a thread; the rest
  // wait in the pool's queue, which is what is bounded here).
  const size_t cap = static_cast<size_t>(std::max(1, options_.max_connections));
  const size_t max_threads = MaxHttpThreads(options_);
  const size_t base_threads = std::min(threads, max_threads);
  const size_t queued = std::max<size_t>(1, cap - max_threads);  // 0 would mean unbounded
  http_->new_task_queue = [base_threads, max_threads, queued] {
    return new httplib::ThreadPool(base_threads, max_threads, queued);
  };
  http_->set_payload_max_length(static_cast<size_t>(options_.max_body_mib) << 20);
  http_->set_read_timeout(options_.read_timeout_s, 0);
  http_->set_write_timeout(options_.write_timeout_s, 0);
  http_->set_keep_alive_timeout(options_.idle_timeout_s);
  // Streams are many small writes (one event per token): without TCP_NODELAY, Nagle's algorithm
  // holds an event back until the client ACKs the previous one, and a delayed ACK makes that up
  // to 200 ms (measured: the first streamed token ~0.18 s late on a loopback connection).
  http_->set_tcp_nodelay(true);
  http_->set_request_deadline(std::chrono::seconds(std::max(0, options_.request_read_timeout_s)));
  http_->set_deadline_miss_handler([this] { metrics_.ObserveSlowRequest(); });
}

void HttpServer::RegisterRoutes() {
  InstallHttpHooks(*http_, &metrics_, options_.cors_origins);
  const RouteContext ctx = Context();
  RegisterHealthRoutes(*http_, ctx, options_);
  RegisterOpenAiRoutes(*http_, ctx);
  RegisterModelRoutes(*http_, ctx);
  RegisterAnthropicRoutes(*http_, ctx);
  RegisterResponsesRoutes(*http_, ctx);
  RegisterAdminRoutes(*http_, ctx);
  RegisterDashboardRoutes(*http_, ctx, options_);
  RegisterUiRoutes(*http_);
}

}  // namespace kvault

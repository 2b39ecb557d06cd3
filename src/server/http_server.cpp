#include "server/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "api/errors.h"
#include "api/ids.h"
#include "server/deadline_server.h"
#include "server/routes.h"

namespace kvault {

using json = nlohmann::json;

namespace {

constexpr const char* kJson = "application/json";

ApiFlavor FlavorOf(const httplib::Request& req) {
  return IsAnthropicRequest(req) ? ApiFlavor::kAnthropic : ApiFlavor::kOpenAi;
}

void SendError(const httplib::Request& req, httplib::Response& res, const ApiError& e) {
  SendApiError(res, FlavorOf(req), e);
}

// /health's models: state, load counts and the last load error (the file's name for its path:
// /health may be public).
json ModelsJson(const std::vector<ModelStatus>& models) {
  json list = json::array();
  for (const auto& m : models) {
    json one = {{"name", m.name},
                {"state", m.state},
                {"in_flight", m.in_flight},
                {"loads", m.loads},
                {"last_load_seconds", m.last_load_seconds}};
    if (!m.last_error.empty()) one["last_error"] = WithoutPath(m.last_error, m.path);
    list.push_back(std::move(one));
  }
  return list;
}

}  // namespace

HttpServer::HttpServer(ServerOptions options, ModelManager* models)
    : options_(std::move(options)),
      models_(models),
      keys_(options_.api_keys, options_.tenant_secret),
      admin_keys_(options_.admin_keys, {}, ApiKeys::Entries::kKeysOnly),
      limiter_(options_.key_concurrency),
      http_(std::make_unique<DeadlineServer>()) {
  responses_ = std::make_unique<ResponseStore>(options_.responses_dir);
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
  http_->stop();
}

RouteContext HttpServer::Context() {
  return RouteContext{&models_,    &keys_,     &admin_keys_, &metrics_, &draining_,
                      &in_flight_, &limiter_, responses_.get()};
}

bool HttpServer::CorsAllows(const std::string& origin) const {
  for (const auto& o : options_.cors_origins) {
    if (o == "*" || o == origin) return true;
  }
  return false;
}

bool HttpServer::Authorized(const httplib::Request& req, httplib::Response& res) {
  auto tenant = keys_.Authenticate(req.get_header_value("x-api-key"), req.get_header_value("Authorization"));
  if (tenant.ok()) return true;
  SendError(req, res, ApiErrorFromStatus(tenant.status()));
  return false;
}

void HttpServer::RegisterRoutes() {
  const size_t threads = static_cast<size_t>(std::max(1, options_.http_threads));
  // Connections past --max-connections are closed at once (each served one holds a thread; the rest
  // wait in the pool's queue, which is what is bounded here).
  const size_t cap = static_cast<size_t>(std::max(1, options_.max_connections));
  const size_t max_threads =
      std::min(cap, std::max(threads, static_cast<size_t>(std::max(0, options_.http_threads_max))));
  const size_t base_threads = std::min(threads, max_threads);
  const size_t queued = std::max<size_t>(1, cap - max_threads);  // 0 would mean unbounded
  http_->new_task_queue = [base_threads, max_threads, queued] {
    return new httplib::ThreadPool(base_threads, max_threads, queued);
  };
  http_->set_payload_max_length(options_.max_body_bytes);
  http_->set_read_timeout(options_.read_timeout_s, 0);
  http_->set_write_timeout(options_.write_timeout_s, 0);
  http_->set_keep_alive_timeout(options_.idle_timeout_s);
  // Streams are many small writes (one event per token): without TCP_NODELAY, Nagle's algorithm
  // holds an event back until the client ACKs the previous one, and a delayed ACK makes that up
  // to 200 ms (measured: the first streamed token ~0.18 s late on a loopback connection).
  http_->set_tcp_nodelay(true);
  http_->set_request_deadline(std::chrono::seconds(std::max(0, options_.request_read_timeout_s)));
  http_->set_deadline_miss_handler([this] { metrics_.ObserveSlowRequest(); });

  // Every response carries a request id: the client's X-Request-Id (made safe) or a new one;
  // Anthropic-flavoured ones (IsAnthropicRequest) also as `request-id`, Anthropic's header.
  // CORS: allowed origins get their headers, and preflights are answered here, before auth.
  http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    std::string id = SanitizeId(req.get_header_value("X-Request-Id"));
    if (id.empty()) id = NewRandomId("req_");
    res.set_header("X-Request-Id", id);
    if (IsAnthropicRequest(req)) res.set_header("request-id", id);
    const std::string origin = req.get_header_value("Origin");
    const bool allowed = !origin.empty() && CorsAllows(origin);
    if (allowed) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
      res.set_header("Access-Control-Expose-Headers", "X-Request-Id, request-id, X-Cache-Tokens, Retry-After");
    }
    if (req.method == "OPTIONS") {
      res.status = allowed ? 204 : 403;
      if (allowed) {
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        const std::string asked = req.get_header_value("Access-Control-Request-Headers");
        res.set_header("Access-Control-Allow-Headers",
                       asked.empty()
                           ? "Content-Type, Authorization, x-api-key, anthropic-version, X-Agent-Id, X-Request-Id"
                           : asked);
        res.set_header("Access-Control-Max-Age", "600");
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http_->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.ObserveHttp(EndpointLabel(req.path), res.status);
    // Refusals are logged with their reason, so that an operator sees why a client's request failed.
    if (res.status >= 400 && res.status != 429 && req.path != "/health") {
      spdlog::info("http: {} {} answered {}: {}", req.method, req.path, res.status,
                   res.body.substr(0, 400));
    }
  });
  // cpp-httplib calls this for every status >= 400, also after a handler wrote its own error:
  // only an empty body is filled in (no route, a body over the limit, …).
  http_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      SendError(req, res, {404, "not_found_error", "no route for " + req.method + " " + req.path});
    } else if (res.status == 413) {
      SendError(req, res, {413, "request_too_large", "the request body is too large"});
    } else {
      SendError(
          req, res,
          {res.status, res.status >= 500 ? "api_error" : "invalid_request_error", httplib::status_message(res.status)});
    }
  });
  http_->set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("http: {} {} failed: {}", req.method, req.path, what);
    SendError(req, res, {500, "api_error", "internal server error"});
  });

  http_->Get("/health/live",
             [](const httplib::Request&, httplib::Response& res) { res.set_content(R"({"status":"alive"})", kJson); });

  http_->Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (!options_.public_metrics && !Authorized(req, res)) return;
    ModelManager* models = models_.load();
    res.set_content(metrics_.Render(models, draining_.load()), "text/plain; version=0.0.4; charset=utf-8");
  });

  http_->Get("/health", [this](const httplib::Request& req, httplib::Response& res) {
    if (!options_.public_health && !Authorized(req, res)) return;
    ModelManager* models = models_.load();
    std::shared_ptr<Engine> engine_ref = models ? models->Primary() : nullptr;
    Engine* engine = engine_ref.get();
    if (!engine) {
      res.status = 503;
      if (draining_.load() || !models) {
        res.set_content(draining_.load() ? R"({"status":"draining"})" : R"({"status":"loading"})", kJson);
        return;
      }
      // No engine: "loading" while a load or unload is under way, else "unavailable" (every
      // model unloaded: by an operator, or a failed load whose reload failed too), with each
      // model's last load error.
      const std::vector<ModelStatus> list = models->List();
      const bool moving = std::any_of(list.begin(), list.end(), [](const ModelStatus& m) {
        return m.state == "loading" || m.state == "unloading";
      });
      json body = {{"status", moving ? "loading" : "unavailable"}, {"models", ModelsJson(list)}};
      if (!moving) body["reason"] = "no model is loaded; the next request for one loads it";
      res.set_content(body.dump(), kJson);
      return;
    }
    const EngineStats st = engine->stats();
    const KvStoreStats ks = engine->store_stats();
    // 503 when new work cannot be taken well (draining, pool full of running requests); a disk
    // that stopped taking writes is reported as degraded too, but answers 200: serving goes on.
    std::string status = "ok";
    json reasons = json::array();
    if (st.pool_active_utilization > options_.degraded_utilization) reasons.push_back("pool");
    const std::string& unusable = engine->info().persistence_error;
    if (ks.persistence.failing || !unusable.empty()) reasons.push_back("persistence");
    if (draining_.load()) {
      status = "draining";
      res.status = 503;
    } else if (!reasons.empty()) {
      status = "degraded";
      if (st.pool_active_utilization > options_.degraded_utilization) res.status = 503;
    }
    json body = {{"status", status},
                 {"degraded", reasons},
                 {"model", engine->info().id},
                 {"queue_depth", st.waiting},
                 {"running", st.running},
                 {"pool",
                  {{"utilization", st.pool_utilization},
                   {"active_utilization", st.pool_active_utilization},
                   {"degraded_above", options_.degraded_utilization},
                   {"blocks_total", st.pool_blocks_total},
                   {"blocks_used", st.pool_blocks_used},
                   {"blocks_reserved", st.pool_blocks_reserved},
                   {"block_tokens", engine->info().block_tokens},
                   {"idle_sequences", st.idle_resident},
                   {"idle_blocks", st.idle_blocks},
                   {"evictions", st.evictions},
                   {"idle_trims", st.idle_trims}}},
                 {"engine",
                  {{"deterministic", engine->info().deterministic},
                   {"step_tokens", engine->info().step_tokens},
                   {"steps", st.steps},
                   {"decode_only_steps", st.decode_only_steps},
                   {"decode_only_tokens", st.decode_only_tokens},
                   {"decode_only_seconds", st.decode_only_seconds},
                   {"prompt_tokens_computed", st.prompt_tokens_computed},
                   {"prompt_tokens_cached", st.prompt_tokens_cached},
                   {"tokens_generated", st.tokens_generated},
                   {"busy_seconds", st.busy_seconds},
                   {"restored_tokens_ram", st.restored_tokens_ram},
                   {"restored_tokens_disk", st.restored_tokens_disk},
                   {"blocks_saved", st.blocks_saved},
                   {"save_seconds", st.save_seconds},
                   {"restore_seconds", st.restore_seconds}}}};
    body["kv_store"] = {{"persistent", ks.persistent},
                        {"fingerprint", engine->info().fingerprint},
                        {"ram_blocks", ks.ram_blocks},
                        {"ram_bytes", ks.ram_bytes},
                        {"spare_buffer_bytes", ks.spare_buffer_bytes},
                        {"disk_blocks", ks.disk.blocks},
                        {"disk_bytes", ks.disk.bytes},
                        {"pending_writes", ks.pending_writes},
                        {"disk_hits", ks.disk_hits},
                        {"misses", ks.misses},
                        {"bytes_written", ks.disk.write_bytes},
                        {"bytes_read", ks.disk.read_bytes},
                        {"fetch_seconds", ks.fetch_seconds},
                        {"write_errors", ks.disk.write_errors},
                        {"quarantined", ks.disk.quarantined},
                        {"gc_deleted", ks.disk.gc_deleted},
                        {"vanished", ks.disk.vanished},
                        {"directory_lost", ks.disk.dir_lost}};
    if (!engine->info().persistence_off.empty()) {
      body["kv_store"]["persistence"] = {{"state", "off"}, {"reason", engine->info().persistence_off}};
    } else if (!unusable.empty()) {
      body["kv_store"]["persistence"] = {{"state", "unavailable"}, {"last_error", unusable}};
    } else if (ks.persistent) {
      body["kv_store"]["persistence"] = {{"state", ks.persistence.failing ? "failing" : "ok"},
                                         {"last_error", ks.persistence.last_error},
                                         {"failing_seconds", ks.persistence.failing_seconds},
                                         {"unpersisted_blocks", ks.persistence.unpersisted_blocks},
                                         {"failures", ks.persistence.failures},
                                         {"recoveries", ks.persistence.recoveries}};
    }
    body["models"] = ModelsJson(models->List());
    res.set_content(body.dump(), kJson);
  });

  const RouteContext ctx = Context();
  RegisterOpenAiRoutes(*http_, ctx);
  RegisterModelRoutes(*http_, ctx);
  RegisterAnthropicRoutes(*http_, ctx);
  RegisterResponsesRoutes(*http_, ctx);
  RegisterAdminRoutes(*http_, ctx);
}

}  // namespace kvault

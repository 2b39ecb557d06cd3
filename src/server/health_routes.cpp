// Operational routes: GET /health/live (always public: the process answers), GET /health (the
// primary engine's state, server/health.h) and GET /metrics (Prometheus text, server/metrics.h).
// /health and /metrics need an API key when --private-health / --private-metrics are set.
// Registered by HttpServer; run on HTTP worker threads and read only thread-safe snapshots
// (ModelManager's list and primary engine, Engine::stats, Engine::store_stats).
#include <httplib.h>

#include <memory>

#include "server/health.h"
#include "server/routes.h"

namespace kvault {

namespace {

constexpr const char* kJson = "application/json";

// For /health and /metrics when they are not public: checks the API key, answers 401 itself.
bool Authorized(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto tenant = ctx.keys->Authenticate(req.get_header_value("x-api-key"), req.get_header_value("Authorization"));
  if (tenant.ok()) return true;
  SendApiError(res, FlavorOf(req), ApiErrorFromStatus(tenant.status()));
  return false;
}

HealthReport Health(const RouteContext& ctx, double degraded_utilization) {
  const bool draining = ctx.draining->load();
  ModelManager* models = ctx.models->load();
  if (!models) return HealthWithoutEngine(draining, nullptr);
  std::shared_ptr<Engine> engine = models->Primary();
  if (!engine) {
    if (draining) return HealthWithoutEngine(true, nullptr);
    const std::vector<ModelStatus> list = models->List();
    return HealthWithoutEngine(false, &list);
  }
  const EngineStats stats = engine->stats();
  const KvStoreStats store = engine->store_stats();
  return HealthOfEngine(engine->info(), stats, store, models->List(), draining, degraded_utilization);
}

}  // namespace

void RegisterHealthRoutes(httplib::Server& http, const RouteContext& ctx, const ServerOptions& options) {
  http.Get("/health/live",
           [](const httplib::Request&, httplib::Response& res) { res.set_content(R"({"status":"alive"})", kJson); });

  http.Get("/metrics", [ctx, open = options.public_metrics](const httplib::Request& req, httplib::Response& res) {
    if (!open && !Authorized(ctx, req, res)) return;
    res.set_content(ctx.metrics->Render(ctx.models->load(), ctx.draining->load()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });

  http.Get("/health", [ctx, open = options.public_health, degraded = options.degraded_utilization](
                          const httplib::Request& req, httplib::Response& res) {
    if (!open && !Authorized(ctx, req, res)) return;
    const HealthReport report = Health(ctx, degraded);
    if (report.http_status != 200) res.status = report.http_status;  // else cpp-httplib's default
    res.set_content(report.body.dump(), kJson);
  });
}

}  // namespace kvault

// The dashboard's data routes (the page itself is ui_routes.cpp):
//   GET /admin/overview               the overview as JSON (server/overview.h)
//   GET /admin/events                 the same, as server-sent events (`event: overview`), one a second
//   GET /admin/agents/{id}/turns      one agent's row and its recent turns (server/agent_turns.h)
// Query: ?model=NAME (whose pool and store; default: the most recently used loaded model, as
// /health; a model that is not loaded is never loaded for this: its engine parts are null),
// ?tenant=T (admins: narrow the agents to one tenant), ?limit=N (agents, most recently used
// first: 1–10000, default 1000).
// Auth (server/admin_auth.h, AuthorizeViewer): admin keys see every tenant; API keys see their own
// tenant, read-only; no key configured at all: open, read-only. Event streams are limited to
// RouteContext::max_event_streams at once (then 429) and end when the server drains or stops, or the client leaves.
// Run on HTTP worker threads; they read thread-safe snapshots only (ModelManager, Engine::stats,
// pool_residents, store_stats, ListAgents, Metrics, ActivityWindow, AgentTurns).
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "server/admin_auth.h"
#include "server/health.h"
#include "server/overview.h"
#include "server/routes.h"

namespace kvault {

namespace {

using json = nlohmann::json;
constexpr const char* kJson = "application/json";
constexpr auto kEventEvery = std::chrono::seconds(1);
constexpr size_t kDefaultAgentLimit = 1000;
constexpr size_t kMaxAgentLimit = 10000;

struct Query {
  std::string model;                  // empty: the primary engine
  std::optional<std::string> tenant;  // admins only
  size_t limit = kDefaultAgentLimit;
};

// Reads ?model=, ?tenant= and ?limit=; answers 400/404 itself.
std::optional<Query> ReadQuery(const RouteContext& ctx, const AdminViewer& viewer, const httplib::Request& req,
                               httplib::Response& res) {
  Query q;
  if (req.has_param("model")) {
    q.model = req.get_param_value("model");
    if (!ctx.models->load()->has(q.model)) {
      SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(Status::NotFound("no model '" + q.model + "'")));
      return std::nullopt;
    }
  }
  if (viewer.sees_all_tenants()) {
    if (req.has_param("tenant")) q.tenant = req.get_param_value("tenant");
  } else {
    q.tenant = viewer.tenant;  // an API key sees its own tenant, whatever ?tenant= says
  }
  if (req.has_param("limit")) {
    const std::string v = req.get_param_value("limit");
    size_t n = 0;
    const bool digits = !v.empty() && v.size() <= 6 &&
                        std::all_of(v.begin(), v.end(), [](unsigned char c) { return c >= '0' && c <= '9'; });
    if (digits) n = std::stoul(v);
    if (!digits || n < 1 || n > kMaxAgentLimit) {
      SendApiError(res, ApiFlavor::kOpenAi,
                   ApiErrorFromStatus(Status::InvalidArgument("limit must be an integer from 1 to 10000")));
      return std::nullopt;
    }
    q.limit = n;
  }
  return q;
}

// The engine the overview describes: ?model='s when loaded, else (no ?model=) the primary one.
std::shared_ptr<Engine> EngineFor(ModelManager* models, const Query& q) {
  if (q.model.empty()) return models->Primary();
  for (auto& e : models->Loaded()) {
    if (e->info().id == q.model) return e;
  }
  return nullptr;
}

json BuildOverview(const RouteContext& ctx, const AdminViewer& viewer, const Query& q, double degraded_utilization) {
  ModelManager* models = ctx.models->load();
  const bool draining = ctx.draining->load();
  const std::vector<ModelStatus> list = models->List();
  std::shared_ptr<Engine> engine = EngineFor(models, q);
  OverviewInput in;
  in.unix_ms = UnixNowMs();
  in.role = viewer.role_name();
  in.tenant = viewer.tenant;
  in.can_manage = viewer.can_manage();
  in.models = HealthModelsJson(list);
  if (engine) {
    EngineSnapshot snap{engine->info(), engine->stats(), engine->store_stats()};
    const HealthReport health = HealthOfEngine(snap.info, snap.stats, snap.store, list, draining, degraded_utilization);
    in.status = health.body.value("status", "");
    in.degraded = health.body.value("degraded", json::array());
    std::vector<Engine::AgentView> agents = engine->ListAgents(q.tenant);
    in.agents_total = agents.size();
    std::sort(agents.begin(), agents.end(),
              [](const auto& a, const auto& b) { return a.record.last_use_ms > b.record.last_use_ms; });
    if (agents.size() > q.limit) agents.resize(q.limit);
    in.agents = AgentRows(std::move(agents), engine->pool_residents(), ctx.turns, snap.info.id);
    in.engine = std::move(snap);
  } else {
    const HealthReport health = HealthWithoutEngine(draining, &list);
    in.status = health.body.value("status", "");
  }
  uint64_t generated = 0;
  for (const auto& e : models->Loaded()) generated += e->stats().tokens_generated;
  const auto now = ActivityWindow::Clock::now();
  if (ctx.activity) {
    ctx.activity->SampleTokens(now, generated);
    in.recent = ctx.activity->Summarize(now);
  }
  in.totals = ctx.metrics->Totals();
  return OverviewJson(in);
}

// Counts an open event stream while it lives.
struct StreamSlot {
  explicit StreamSlot(std::atomic<int>* n) : n_(n) {}
  ~StreamSlot() { n_->fetch_sub(1); }
  StreamSlot(const StreamSlot&) = delete;
  StreamSlot& operator=(const StreamSlot&) = delete;
  std::atomic<int>* n_;
};

}  // namespace

void RegisterDashboardRoutes(httplib::Server& http, const RouteContext& ctx, const ServerOptions& options) {
  const double degraded = options.degraded_utilization;

  http.Get("/admin/overview", [ctx, degraded](const httplib::Request& req, httplib::Response& res) {
    auto viewer = AuthorizeViewer(ctx, req, res);
    if (!viewer) return;
    auto q = ReadQuery(ctx, *viewer, req, res);
    if (!q) return;
    res.set_header("Cache-Control", "no-store");
    res.set_content(BuildOverview(ctx, *viewer, *q, degraded).dump(), kJson);
  });

  auto streams = std::make_shared<std::atomic<int>>(0);
  http.Get("/admin/events", [ctx, degraded, streams](const httplib::Request& req, httplib::Response& res) {
    auto viewer = AuthorizeViewer(ctx, req, res);
    if (!viewer) return;
    auto q = ReadQuery(ctx, *viewer, req, res);
    if (!q) return;
    if (streams->fetch_add(1) >= ctx.max_event_streams) {
      streams->fetch_sub(1);
      return SendApiError(res, ApiFlavor::kOpenAi,
                          ApiErrorFromStatus(Status::Overloaded("too many dashboard event streams open; retry later")));
    }
    auto slot = std::make_shared<StreamSlot>(streams.get());
    res.set_header("Cache-Control", "no-store");
    res.set_header("X-Accel-Buffering", "no");  // nginx: pass events through as they come
    auto first = std::make_shared<bool>(true);
    res.set_chunked_content_provider("text/event-stream", [ctx, degraded, viewer = *viewer, q = *q, slot, first,
                                                           streams](size_t, httplib::DataSink& sink) {
      if (!*first) {
        // One event a second; meanwhile notice a server that drains or stops, and a client that left.
        const auto next = std::chrono::steady_clock::now() + kEventEvery;
        while (std::chrono::steady_clock::now() < next) {
          if (ctx.draining->load()) {
            sink.done();
            return true;
          }
          if (!sink.is_writable()) return false;
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
      *first = false;
      const std::string event = "event: overview\ndata: " + BuildOverview(ctx, viewer, q, degraded).dump() + "\n\n";
      return sink.write(event.data(), event.size());
    });
  });

  http.Get("/admin/agents/:id/turns", [ctx](const httplib::Request& req, httplib::Response& res) {
    auto viewer = AuthorizeViewer(ctx, req, res);
    if (!viewer) return;
    auto q = ReadQuery(ctx, *viewer, req, res);
    if (!q) return;
    std::shared_ptr<Engine> engine = EngineFor(ctx.models->load(), *q);
    const std::string id = req.path_params.at("id");
    auto found = engine ? engine->FindAgent(id, q->tenant) : std::vector<Engine::AgentView>{};
    if (found.empty()) {
      return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(Status::NotFound("no agent '" + id + "'")));
    }
    if (found.size() > 1) {
      return SendApiError(res, ApiFlavor::kOpenAi,
                          {409, "invalid_request_error",
                           "agent '" + id + "' exists in " + std::to_string(found.size()) + " tenants; add ?tenant="});
    }
    const std::string model = engine->info().id;
    const std::string tenant = found.front().record.tenant;
    std::vector<AgentRow> rows = AgentRows(std::move(found), engine->pool_residents(), ctx.turns, model);
    json turns = json::array();
    if (ctx.turns) {
      for (const AgentTurn& t : ctx.turns->Turns(model, tenant, id)) turns.push_back(TurnJson(t));
    }
    res.set_header("Cache-Control", "no-store");
    res.set_content(json{{"model", model},
                         {"agent", AgentRowJson(rows.front(), engine->info().block_tokens)},
                         {"turns_kept", ctx.turns ? ctx.turns->turns_per_agent() : 0},
                         {"turns", std::move(turns)}}
                        .dump(),
                    kJson);
  });
}

}  // namespace kvault

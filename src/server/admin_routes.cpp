// Admin routes (need an admin key): the agents API.
//   GET    /admin/agents                 every agent the store knows (?tenant= narrows)
//   GET    /admin/agents/{id}            one agent (?tenant= when several tenants use the id)
//   POST   /admin/agents/{id}/evict      out of the pool and RAM, kept on disk
//   DELETE /admin/agents/{id}            forget: its record, the blocks only it references, its turns
// (Auth: server/admin_auth; the dashboard's read-only routes are dashboard_routes.cpp.)
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "api/json_body.h"
#include "kvstore/agent_registry.h"
#include "server/admin_auth.h"
#include "server/overview.h"
#include "server/routes.h"

namespace kvault {

namespace {

using json = nlohmann::json;
constexpr const char* kJson = "application/json";

std::optional<std::string> TenantParam(const httplib::Request& req) {
  if (!req.has_param("tenant")) return std::nullopt;
  return req.get_param_value("tenant");
}

// Checks the admin key and leases the engine of ?model= (default: the default model), whose
// store holds the agents; answers errors itself.
std::shared_ptr<ModelManager::Lease> BeginAdmin(const RouteContext& ctx, const httplib::Request& req,
                                                httplib::Response& res) {
  if (!RequireAdminKey(ctx, req, res)) return nullptr;
  ModelManager* models = ctx.models->load();
  const std::string model = req.has_param("model") ? req.get_param_value("model") : models->default_name();
  if (!models->has(model)) {
    SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(Status::NotFound("no model '" + model + "'")));
    return nullptr;
  }
  auto lease = models->Acquire(model, std::chrono::seconds(120));
  if (!lease.ok() || !lease.value()->engine()->keeps_agents()) {
    SendApiError(res, ApiFlavor::kOpenAi,
                 ApiErrorFromStatus(lease.ok() ? Status::Unavailable("the model is loading") : lease.status()));
    return nullptr;
  }
  return std::move(lease.value());
}

// The agents named by the path (and ?tenant=); answers 404 / 409 itself when not exactly one.
std::optional<Engine::AgentView> OneAgent(const Engine& engine, const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.path_params.at("id");
  auto found = engine.FindAgent(id, TenantParam(req));
  if (found.empty()) {
    SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(Status::NotFound("no agent '" + id + "'")));
    return std::nullopt;
  }
  if (found.size() > 1) {
    SendApiError(res, ApiFlavor::kOpenAi,
                 {409, "invalid_request_error",
                  "agent '" + id + "' exists in " + std::to_string(found.size()) + " tenants; add ?tenant="});
    return std::nullopt;
  }
  return std::move(found.front());
}

}  // namespace

void RegisterAdminRoutes(httplib::Server& http, const RouteContext& ctx) {
  // Models: body {"model": NAME}. swap = load NAME and unload the others; load keeps others
  // up to --max-loaded-models; unload drains and frees. Requests for a model being loaded or
  // unloaded wait (bounded) meanwhile; a failed load leaves the previous models serving.
  for (const char* action : {"swap", "load", "unload"}) {
    http.Post(std::string("/admin/models/") + action, [ctx, action = std::string(action)](const httplib::Request& req,
                                                                                          httplib::Response& res) {
      if (!RequireAdminKey(ctx, req, res)) return;
      ModelManager* models = ctx.models->load();
      StatusOr<json> parsed = ParseJsonBody(req.body);
      const json body = parsed.ok() ? std::move(parsed).value() : json();
      if (!body.is_object() || !body.contains("model") || !body["model"].is_string()) {
        return SendApiError(res, ApiFlavor::kOpenAi,
                            ApiErrorFromStatus(Status::InvalidArgument("the body must be {\"model\": NAME}")));
      }
      const std::string name = body["model"].get<std::string>();
      if (!models->has(name)) {
        return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(Status::NotFound("no model '" + name + "'")));
      }
      const auto t0 = std::chrono::steady_clock::now();
      Status s = action == "swap"   ? models->Swap(name, std::chrono::seconds(120))
                 : action == "load" ? models->Load(name, std::chrono::seconds(120))
                                    : models->Unload(name);
      if (!s.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(s));
      json states = json::object();
      for (const auto& m : models->List()) states[m.name] = m.state;
      res.set_content(json{{"model", name},
                           {"action", action},
                           {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
                           {"models", states}}
                          .dump(),
                      kJson);
    });
  }

  http.Get("/admin/agents", [ctx](const httplib::Request& req, httplib::Response& res) {
    auto lease = BeginAdmin(ctx, req, res);
    if (!lease) return;
    Engine* engine = lease->engine();
    json list = json::array();
    for (const auto& a : engine->ListAgents(TenantParam(req))) {
      list.push_back(AgentJson(a.record, a.tiers, engine->info().block_tokens));
    }
    res.set_content(json{{"agents", list}}.dump(), kJson);
  });

  http.Get("/admin/agents/:id", [ctx](const httplib::Request& req, httplib::Response& res) {
    auto lease = BeginAdmin(ctx, req, res);
    if (!lease) return;
    Engine* engine = lease->engine();
    auto agent = OneAgent(*engine, req, res);
    if (!agent) return;
    res.set_content(AgentJson(agent->record, agent->tiers, engine->info().block_tokens).dump(), kJson);
  });

  http.Post("/admin/agents/:id/evict", [ctx](const httplib::Request& req, httplib::Response& res) {
    auto lease = BeginAdmin(ctx, req, res);
    if (!lease) return;
    Engine* engine = lease->engine();
    auto agent = OneAgent(*engine, req, res);
    if (!agent) return;
    const Engine::AgentEviction e = engine->EvictAgent(agent->record);
    res.set_content(json{{"id", agent->record.id},
                         {"tenant", agent->record.tenant},
                         {"evicted", {{"pool_tokens", e.pool_tokens}, {"ram_blocks", e.ram_blocks}}},
                         {"disk", {{"blocks", e.tiers.disk_blocks}, {"bytes", e.tiers.disk_bytes}}}}
                        .dump(),
                    kJson);
  });

  http.Delete("/admin/agents/:id", [ctx](const httplib::Request& req, httplib::Response& res) {
    auto lease = BeginAdmin(ctx, req, res);
    if (!lease) return;
    Engine* engine = lease->engine();
    auto agent = OneAgent(*engine, req, res);
    if (!agent) return;
    const Engine::AgentRemoval removal = engine->ForgetAgent(agent->record);
    if (ctx.turns) ctx.turns->Forget(engine->info().id, agent->record.tenant, agent->record.id);
    res.set_content(json{{"id", agent->record.id},
                         {"tenant", agent->record.tenant},
                         {"deleted", true},
                         {"pool_tokens_freed", removal.pool_tokens},
                         {"blocks_removed", removal.blocks_removed}}
                        .dump(),
                    kJson);
  });
}

}  // namespace kvault

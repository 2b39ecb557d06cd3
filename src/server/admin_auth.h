// Who may call the admin routes, and as whom:
//   - RequireAdminKey: the agents and models API (list across tenants, evict, forget, swap): an
//     admin key (--admin-key), as before: 403 when admin keys are off or the key is only an API
//     key, 401 otherwise.
//   - AuthorizeViewer: the dashboard's read-only data (GET /admin/overview, /admin/events,
//     /admin/agents/{id}/turns): an admin key sees every tenant and may manage agents; a valid
//     API key (--api-key) sees its own tenant's agents, read-only; with no key configured at all
//     (the API itself is open) anyone who reaches the port reads the one tenant, read-only. Any
//     other caller gets 401. A key is read from `Authorization: Bearer K` or `x-api-key: K`, never
//     from the URL, and is never logged.
// Both answer their refusal in the OpenAI envelope themselves. Used on HTTP worker threads by
// admin_routes.cpp and dashboard_routes.cpp; they only read ApiKeys (const) and the models pointer.
#pragma once

#include <optional>
#include <string>

#include "server/routes.h"

namespace kvault {

struct AdminViewer {
  enum class Role { kAdmin, kTenant, kOpen };
  Role role = Role::kOpen;
  std::string tenant;  // kTenant: the API key's tenant; kOpen: "" (the open API's one tenant)

  bool can_manage() const { return role == Role::kAdmin; }
  // Every tenant's agents, or `tenant`'s only.
  bool sees_all_tenants() const { return role == Role::kAdmin; }
  const char* role_name() const;
};

// True for an admin key; else answers 403/401 (and 503 while the models load) and returns false.
bool RequireAdminKey(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res);

// The caller's view (see above); nullopt after answering 401 (or 503 while the models load).
std::optional<AdminViewer> AuthorizeViewer(const RouteContext& ctx, const httplib::Request& req,
                                           httplib::Response& res);

}  // namespace kvault

#include "server/admin_auth.h"

#include <httplib.h>

namespace kvault {

namespace {

bool ModelsAttached(const RouteContext& ctx, httplib::Response& res) {
  if (ctx.models->load()) return true;
  SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(Status::Unavailable("the model is loading")));
  return false;
}

}  // namespace

const char* AdminViewer::role_name() const {
  switch (role) {
    case Role::kAdmin: return "admin";
    case Role::kTenant: return "tenant";
    case Role::kOpen: return "open";
  }
  return "open";
}

bool RequireAdminKey(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  const std::string x = req.get_header_value("x-api-key");
  const std::string auth = req.get_header_value("Authorization");
  if (!ctx.admin_keys->enabled()) {
    SendApiError(
        res, ApiFlavor::kOpenAi,
        ApiErrorFromStatus(Status::PermissionDenied("admin endpoints are off: start the server with --admin-key")));
    return false;
  }
  if (!ctx.admin_keys->Authenticate(x, auth).ok()) {
    // A valid API key that is not an admin key is forbidden; anything else is unauthenticated.
    const bool api_key_ok = ctx.keys->enabled() && ctx.keys->Authenticate(x, auth).ok();
    SendApiError(res, ApiFlavor::kOpenAi,
                 ApiErrorFromStatus(api_key_ok ? Status::PermissionDenied("this key is not an admin key")
                                               : Status::Unauthenticated("missing or invalid admin key")));
    return false;
  }
  return ModelsAttached(ctx, res);
}

std::optional<AdminViewer> AuthorizeViewer(const RouteContext& ctx, const httplib::Request& req,
                                           httplib::Response& res) {
  const std::string x = req.get_header_value("x-api-key");
  const std::string auth = req.get_header_value("Authorization");
  AdminViewer viewer;
  if (ctx.admin_keys->enabled() && ctx.admin_keys->Authenticate(x, auth).ok()) {
    viewer.role = AdminViewer::Role::kAdmin;
  } else if (ctx.keys->enabled()) {
    auto tenant = ctx.keys->Authenticate(x, auth);
    if (!tenant.ok()) {
      SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(Status::Unauthenticated("missing or invalid key")));
      return std::nullopt;
    }
    viewer.role = AdminViewer::Role::kTenant;
    viewer.tenant = std::move(tenant.value());
  } else if (ctx.admin_keys->enabled()) {
    // Admin keys but no API keys: the dashboard needs the admin key.
    SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(Status::Unauthenticated("missing or invalid admin key")));
    return std::nullopt;
  } else {
    viewer.role = AdminViewer::Role::kOpen;
  }
  if (!ModelsAttached(ctx, res)) return std::nullopt;
  return viewer;
}

}  // namespace kvault

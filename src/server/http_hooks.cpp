#include "server/http_hooks.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

#include "api/errors.h"
#include "api/ids.h"
#include "server/routes.h"

namespace kvault {

namespace {

bool CorsAllows(const std::vector<std::string>& allowed, const std::string& origin) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& o) { return o == "*" || o == origin; });
}

void SendError(const httplib::Request& req, httplib::Response& res, const ApiError& e) {
  SendApiError(res, FlavorOf(req), e);
}

}  // namespace

void InstallHttpHooks(httplib::Server& http, Metrics* metrics, std::vector<std::string> cors_origins) {
  http.set_pre_routing_handler([cors = std::move(cors_origins)](const httplib::Request& req, httplib::Response& res) {
    std::string id = SanitizeId(req.get_header_value("X-Request-Id"));
    if (id.empty()) id = NewRandomId("req_");
    res.set_header("X-Request-Id", id);
    if (IsAnthropicRequest(req)) res.set_header("request-id", id);
    const std::string origin = req.get_header_value("Origin");
    const bool allowed = !origin.empty() && CorsAllows(cors, origin);
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
  http.set_logger([metrics](const httplib::Request& req, const httplib::Response& res) {
    metrics->ObserveHttp(EndpointLabel(req.path), res.status);
    // Refusals are logged with their reason, so that an operator sees why a client's request failed.
    if (res.status >= 400 && res.status != 429 && req.path != "/health") {
      spdlog::info("http: {} {} answered {}: {}", req.method, req.path, res.status, res.body.substr(0, 400));
    }
  });
  // cpp-httplib calls this for every status >= 400, also after a handler wrote its own error:
  // only an empty body is filled in (no route, a body over the limit, …).
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
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
  http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
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
}

}  // namespace kvault

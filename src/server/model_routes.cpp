// GET /v1/models and GET /v1/models/{id}: the configured models, in OpenAI's shape, or in
// Anthropic's for a request with an `anthropic-version` header (IsAnthropicRequest). HTTP worker
// threads; reads ModelManager's list and the loaded engines' ModelInfo only.
#include <httplib.h>
#include <sys/stat.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "api/json_body.h"
#include "server/routes.h"

namespace kvault {

namespace {

using json = nlohmann::json;
constexpr const char* kJson = "application/json";

// A model's "created": its file's modification time (unix seconds), 0 when unknown.
int64_t CreatedAt(const std::string& path) {
  struct stat st {};
  if (path.empty() || stat(path.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_mtime);
}

// RFC 3339 in UTC, as Anthropic's created_at: 2025-02-19T00:00:00Z.
std::string Rfc3339(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct ModelsView {
  std::vector<ModelStatus> list;
  std::vector<std::shared_ptr<Engine>> loaded;  // held while their ModelInfo is read
  bool show_path = false;                       // only an open server shows where the model files are

  const ModelInfo* Info(const std::string& name) const {
    for (const auto& e : loaded) {
      if (e->info().id == name) return &e->info();
    }
    return nullptr;
  }
};

json OpenAiModel(const ModelsView& v, const ModelStatus& status) {
  json model = {{"id", status.name}, {"object", "model"}, {"created", CreatedAt(status.path)}, {"owned_by", "kvault"}};
  json meta = {{"state", status.state}};
  if (v.show_path) meta["path"] = status.path;
  // Why its last load failed (a file llama.cpp refuses, memory): what a 500 for it said.
  if (!status.last_error.empty()) {
    meta["last_error"] = v.show_path ? status.last_error : WithoutPath(status.last_error, status.path);
  }
  if (const ModelInfo* m = v.Info(status.name)) {
    meta.update({{"description", m->description},
                 {"n_ctx", m->ctx_size},
                 {"pool_tokens", m->pool_tokens},
                 {"pool_bytes", m->pool_bytes},
                 {"cache_type", m->cache_type},
                 {"n_ctx_train", m->n_ctx_train},
                 {"n_params", m->n_params},
                 {"size_bytes", m->size_bytes}});
  }
  model["meta"] = meta;
  return model;
}

json AnthropicModel(const ModelStatus& status) {
  return {{"type", "model"},
          {"id", status.name},
          {"display_name", status.name},
          {"created_at", Rfc3339(CreatedAt(status.path))}};
}

// Anthropic's page of the list: `limit` (1-1000, default 20) after `after_id` or before
// `before_id`, in the configured order (the default model first).
void AnthropicList(const ModelsView& v, const httplib::Request& req, httplib::Response& res) {
  auto bad = [&](const std::string& m) { SendApiError(res, ApiFlavor::kAnthropic, {400, "invalid_request_error", m}); };
  size_t limit = 20;
  if (req.has_param("limit")) {
    const std::string s = req.get_param_value("limit");
    char* end = nullptr;
    const long n = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || n < 1 || n > 1000) return bad("limit: must be an integer from 1 to 1000");
    limit = static_cast<size_t>(n);
  }
  auto index_of = [&](const std::string& id) -> std::optional<size_t> {
    for (size_t i = 0; i < v.list.size(); ++i) {
      if (v.list[i].name == id) return i;
    }
    return std::nullopt;
  };
  const bool after = req.has_param("after_id"), before = req.has_param("before_id");
  if (after && before) return bad("after_id and before_id cannot be used together");
  size_t first = 0, last = std::min(limit, v.list.size());  // [first, last)
  bool has_more = last < v.list.size();
  if (after) {
    auto at = index_of(req.get_param_value("after_id"));
    if (!at) return bad("after_id: no model '" + req.get_param_value("after_id") + "'");
    first = *at + 1;
    last = std::min(first + limit, v.list.size());
    has_more = last < v.list.size();
  } else if (before) {
    auto at = index_of(req.get_param_value("before_id"));
    if (!at) return bad("before_id: no model '" + req.get_param_value("before_id") + "'");
    last = *at;
    first = last > limit ? last - limit : 0;
    has_more = first > 0;
  }
  json data = json::array();
  for (size_t i = first; i < last; ++i) data.push_back(AnthropicModel(v.list[i]));
  json body = {{"data", data},
               {"has_more", has_more},
               {"first_id", data.empty() ? json(nullptr) : data.front()["id"]},
               {"last_id", data.empty() ? json(nullptr) : data.back()["id"]}};
  res.set_content(DumpJson(body), kJson);
}

// The checks every API route makes (server up, key valid), then the models as they are now.
std::optional<ModelsView> Begin(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res,
                                ApiFlavor flavor) {
  auto call = BeginCall(ctx, req, res, flavor);
  if (!call) return std::nullopt;
  ModelManager* models = ctx.models->load();
  ModelsView v;
  v.list = models->List();
  v.loaded = models->Loaded();
  v.show_path = !ctx.keys->enabled();
  return v;
}

void HandleList(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  const ApiFlavor flavor = IsAnthropicRequest(req) ? ApiFlavor::kAnthropic : ApiFlavor::kOpenAi;
  auto v = Begin(ctx, req, res, flavor);
  if (!v) return;
  if (flavor == ApiFlavor::kAnthropic) return AnthropicList(*v, req, res);
  json data = json::array();
  for (const auto& status : v->list) data.push_back(OpenAiModel(*v, status));
  res.set_content(DumpJson({{"object", "list"}, {"data", data}}), kJson);
}

void HandleGet(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  const ApiFlavor flavor = IsAnthropicRequest(req) ? ApiFlavor::kAnthropic : ApiFlavor::kOpenAi;
  auto v = Begin(ctx, req, res, flavor);
  if (!v) return;
  const std::string id = req.matches[1];
  for (const auto& status : v->list) {
    if (status.name != id) continue;
    return res.set_content(DumpJson(flavor == ApiFlavor::kAnthropic ? AnthropicModel(status) : OpenAiModel(*v, status)),
                           kJson);
  }
  // Unlike the generation routes, which serve unknown names with the default model, a model
  // asked for by id must exist.
  if (flavor == ApiFlavor::kAnthropic) {
    return SendApiError(res, flavor, {404, "not_found_error", "model: " + id});
  }
  SendApiError(res, flavor, {404, "invalid_request_error", "The model '" + id + "' does not exist", "model_not_found"});
}

}  // namespace

void RegisterModelRoutes(httplib::Server& http, const RouteContext& ctx) {
  http.Get("/v1/models", [ctx](const httplib::Request& req, httplib::Response& res) { HandleList(ctx, req, res); });
  http.Get(R"(/v1/models/(.+))",
           [ctx](const httplib::Request& req, httplib::Response& res) { HandleGet(ctx, req, res); });
}

}  // namespace kvault

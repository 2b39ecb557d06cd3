// OpenAI Responses routes: POST /v1/responses, GET and DELETE /v1/responses/{id}.
//
// A stored response chain is an agent: its turns run under one agent id (X-Agent-Id, else the
// chain's own, else prompt_cache_key, else `user`, else the first response's id), so the KV of
// a conversation continued with previous_response_id is that agent's latest chain in the KV store,
// restored from RAM or disk (server/response_store.h keeps only the items).
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "api/chat_output.h"
#include "api/ids.h"
#include "api/openai_responses.h"
#include "kvstore/agent_registry.h"
#include "server/routes.h"

namespace kvault {

namespace {

constexpr const char* kJson = "application/json";

// What a response keeps while it is answered (a stream: between events).
struct ResponsesState {
  CallContext call;
  ResponseStore* store = nullptr;
  StoredResponse record;  // written when the answer is done (store: true)
  bool store_it = false;
  std::unique_ptr<ChatOutput> output;
  std::unique_ptr<ResponseBuilder> builder;
};

ResponsesUsage UsageOf(const GenerationEvent& ev) {
  return {ev.prompt_tokens, ev.cached_tokens, ev.completion_tokens};
}

// The answer is complete (ResponseBuilder::Finish): its record goes to the store before the
// client hears of it, so that a next turn naming it always finds it. A failed write is logged and
// the answer says "store": false.
void StoreRecord(ResponsesState& st) {
  if (!st.store_it) return;
  st.record.response = st.builder->response();
  for (const auto& item : st.builder->output()) st.record.items.push_back(item);
  Status s = st.store->Put(st.record);
  if (!s.ok()) {
    spdlog::error("request {}: response {} not stored: {}", st.call.request_id, st.record.id, s.message());
    st.builder->MarkNotStored();
  }
}

std::string Deltas(ResponsesState& st, const std::vector<OutputDelta>& ds) {
  std::string out;
  for (const auto& d : ds) out += st.builder->Delta(d);
  return out;
}

void HandleCreate(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kOpenAi);
  if (!call) return;
  auto parsed = ParseResponsesRequest(req.body);
  if (!parsed.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(parsed.status()));
  nlohmann::json history = nlohmann::json::array();
  std::string chain_agent;
  if (!parsed->previous_response_id.empty()) {
    auto h = ctx.responses->History(call->tenant, parsed->previous_response_id);
    if (!h.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(h.status()));
    history = std::move(h->first);
    chain_agent = std::move(h->second);
  }
  GenerateRequest& g = parsed->generate;
  Status built = BuildResponsesMessages(parsed->instructions, history, parsed->input, g.messages);
  if (!built.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(built));
  if (!AttachModel(ctx, *call, parsed->model, res, ApiFlavor::kOpenAi)) return;

  auto st = std::make_shared<ResponsesState>();
  const std::string id = NewRandomId("resp_");
  // The chain's agent first (a prompt_cache_key may be shared by many conversations), then
  // prompt_cache_key, then user.
  std::string agent = chain_agent;
  for (const std::string* fallback : {&parsed->prompt_cache_key, &parsed->user}) {
    if (!AgentRegistry::ValidId(agent)) agent = *fallback;
  }
  if (!AgentRegistry::ValidId(agent) && parsed->store) agent = id;  // a new chain is an agent of its own
  StampRequest(*call, agent, g);
  const bool stream = g.stream;
  st->call = *call;
  st->store = ctx.responses;
  st->store_it = parsed->store;
  st->record.id = id;
  st->record.tenant = call->tenant;
  st->record.agent = call->agent_id;
  st->record.previous_response_id = parsed->previous_response_id;
  st->record.items = parsed->input;
  nlohmann::json base = parsed->echo;
  base["id"] = id;
  base["created_at"] = UnixNow();
  base["model"] = parsed->model.empty() ? call->engine->info().id : parsed->model;
  st->builder = std::make_unique<ResponseBuilder>(std::move(base), parsed->namespaces);
  std::shared_ptr<RequestHandle> handle = call->engine->Submit(std::move(g));

  std::optional<GenerationEvent> first = FirstEvent(*call, "openai.responses", ApiFlavor::kOpenAi, *handle, req, res);
  if (!first) return;
  st->output = std::make_unique<ChatOutput>(handle->syntax(), [] { return NewRandomId("call_"); });
  res.set_header("X-Cache-Tokens", std::to_string(first->cached_tokens));

  if (stream) {
    SseRenderer render;
    render.start = [st] { return st->builder->Created(); };
    render.event = [st](const GenerationEvent& ev) -> std::string {
      if (ev.kind == GenerationEvent::Kind::kText) return Deltas(*st, st->output->Append(ev.text));
      if (ev.kind == GenerationEvent::Kind::kError) {  // after the stream started: response.failed
        const ApiError e = ApiErrorFromStatus(ev.status);
        LogRequest(st->call, "openai.responses", ev, e.http_status);
        return st->builder->Failed(e.code.empty() ? "server_error" : e.code, e.message);
      }
      std::string out = Deltas(*st, st->output->Finish());
      LogRequest(st->call, "openai.responses", ev, 200);
      out += st->builder->Finish(ev.finish, UsageOf(ev));
      StoreRecord(*st);
      return out + st->builder->Completed();
    };
    // While a long prompt is computed: response.in_progress (the clients' idle timers count events;
    // before any output item it replaces nothing in their snapshot), then SSE comments.
    render.idle = [st, keep = KeepAlive(": keep-alive\n\n")](std::chrono::steady_clock::duration quiet) {
      std::string beat = keep(quiet);
      if (beat.empty() || !st->builder->output().empty() || st->output->raw_text().size() > 0) return beat;
      return st->builder->InProgress();
    };
    return StreamEvents(res, std::move(handle), std::move(*first), std::move(render));
  }

  auto done = CollectNonStreamed(*call, "openai.responses", ApiFlavor::kOpenAi, *handle, req, res, std::move(first),
                                 [&](const std::string& text) { Deltas(*st, st->output->Append(text)); });
  if (!done) return;
  Deltas(*st, st->output->Finish());
  st->builder->Finish(done->finish, UsageOf(*done));
  StoreRecord(*st);
  res.set_content(RenderResponse(st->builder->response()), kJson);
}

void HandleGet(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kOpenAi);
  if (!call) return;
  auto r = ctx.responses->Get(call->tenant, req.path_params.at("id"));
  if (!r.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(r.status()));
  res.set_content(RenderResponse(r->response), kJson);
}

void HandleDelete(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kOpenAi);
  if (!call) return;
  const std::string id = req.path_params.at("id");
  Status s = ctx.responses->Delete(call->tenant, id);
  if (!s.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(s));
  res.set_content(RenderResponseDeleted(id), kJson);
}

}  // namespace

void RegisterResponsesRoutes(httplib::Server& http, const RouteContext& ctx) {
  http.Post("/v1/responses",
            [ctx](const httplib::Request& req, httplib::Response& res) { HandleCreate(ctx, req, res); });
  http.Get("/v1/responses/:id",
           [ctx](const httplib::Request& req, httplib::Response& res) { HandleGet(ctx, req, res); });
  http.Delete("/v1/responses/:id",
              [ctx](const httplib::Request& req, httplib::Response& res) { HandleDelete(ctx, req, res); });
}

}  // namespace kvault

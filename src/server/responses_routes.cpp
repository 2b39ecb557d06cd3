// OpenAI Responses routes: POST /v1/responses (a GenerationApi, server/generation_route.h: the
// api/openai_responses adapter parses and renders), GET and DELETE /v1/responses/{id}. HTTP
// worker threads; stored responses are server/response_store's (thread-safe).
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
#include "server/generation_route.h"

namespace kvault {

namespace {

constexpr const char* kJson = "application/json";

ResponsesUsage UsageOf(const GenerationEvent& ev) {
  return {ev.prompt_tokens, ev.cached_tokens, ev.completion_tokens};
}

// POST /v1/responses.
class ResponsesApi : public GenerationApi {
 public:
  explicit ResponsesApi(ResponseStore* store) : GenerationApi("openai.responses", ApiFlavor::kOpenAi), store_(store) {}

  // The request, and the chain it continues (previous_response_id): the chat is the chain's
  // items, then this input.
  Status Parse(const httplib::Request& req, const CallContext& call) override {
    auto parsed = ParseResponsesRequest(req.body);
    if (!parsed.ok()) return parsed.status();
    request_ = std::move(parsed.value());
    nlohmann::json history = nlohmann::json::array();
    if (!request_.previous_response_id.empty()) {
      auto h = store_->History(call.tenant, request_.previous_response_id);
      if (!h.ok()) return h.status();
      history = std::move(h->first);
      chain_agent_ = std::move(h->second);
    }
    Status built = BuildResponsesMessages(request_.instructions, history, request_.input, request_.generate.messages);
    if (!built.ok()) return built;
    record_.id = NewRandomId("resp_");
    return Status::Ok();
  }
  const std::string& model() const override { return request_.model; }
  GenerateRequest& request() override { return request_.generate; }
  // The chain's agent first (a prompt_cache_key may be shared by many conversations), then
  // prompt_cache_key, then user; a new stored chain is an agent of its own.
  std::string agent_fallback() const override {
    std::string agent = chain_agent_;
    for (const std::string* fallback : {&request_.prompt_cache_key, &request_.user}) {
      if (!AgentRegistry::ValidId(agent)) agent = *fallback;
    }
    if (!AgentRegistry::ValidId(agent) && request_.store) agent = record_.id;
    return agent;
  }
  void Prepare(const CallContext& call) override {
    record_.tenant = call.tenant;
    record_.agent = call.agent_id;
    record_.previous_response_id = request_.previous_response_id;
    record_.items = request_.input;
    nlohmann::json base = request_.echo;
    base["id"] = record_.id;
    base["created_at"] = UnixNow();
    base["model"] = request_.model.empty() ? call.engine->info().id : request_.model;
    builder_ = std::make_unique<ResponseBuilder>(std::move(base), request_.namespaces);
    request_id_ = call.request_id;
  }
  void Started(const ChatSyntax& syntax, const GenerationEvent&) override {
    output_ = std::make_unique<ChatOutput>(syntax, [] { return NewRandomId("call_"); });
  }

  std::string StreamStart() override { return builder_->Created(); }
  std::string StreamText(const GenerationEvent& ev) override { return Deltas(output_->Append(ev.text)); }
  // After the stream started: response.failed.
  std::string StreamError(const ApiError& e) override {
    return builder_->Failed(e.code.empty() ? "server_error" : e.code, e.message);
  }
  std::string StreamDone(const GenerationEvent& ev) override {
    std::string out = Deltas(output_->Finish());
    out += builder_->Finish(FinishOf(ev), UsageOf(ev));
    StoreRecord();
    return out + builder_->Completed();
  }
  // While a long prompt is computed: response.in_progress (the clients' idle timers count events;
  // before any output item it replaces nothing in their snapshot), then SSE comments.
  std::string StreamIdle(std::chrono::steady_clock::duration quiet) override {
    std::string beat = GenerationApi::StreamIdle(quiet);
    if (beat.empty() || !builder_->output().empty() || output_->raw_text().size() > 0) return beat;
    return builder_->InProgress();
  }

  void Text(const std::string& text) override { Deltas(output_->Append(text)); }
  std::string Body(const GenerationEvent& done) override {
    Deltas(output_->Finish());
    builder_->Finish(FinishOf(done), UsageOf(done));
    StoreRecord();
    return RenderResponse(builder_->response());
  }

 private:
  // A prewarm ends where it was asked to, before any output: "completed", not cut short.
  FinishReason FinishOf(const GenerationEvent& done) const {
    return request_.prewarm && done.finish == FinishReason::kLength ? FinishReason::kStop : done.finish;
  }
  std::string Deltas(const std::vector<OutputDelta>& ds) {
    std::string out;
    for (const auto& d : ds) out += builder_->Delta(d);
    return out;
  }

  // The answer is complete (ResponseBuilder::Finish): its record goes to the store before the
  // client hears of it, so that a next turn naming it always finds it. A failed write is logged and
  // the answer says "store": false.
  void StoreRecord() {
    if (!request_.store) return;
    record_.response = builder_->response();
    for (const auto& item : builder_->output()) record_.items.push_back(item);
    Status s = store_->Put(record_);
    if (!s.ok()) {
      spdlog::error("request {}: response {} not stored: {}", request_id_, record_.id, s.message());
      builder_->MarkNotStored();
    }
  }

  ResponseStore* store_;
  ResponsesRequest request_;
  std::string chain_agent_;  // the agent of the chain continued (previous_response_id), if any
  StoredResponse record_;    // written when the answer is done (store: true)
  std::string request_id_;
  std::unique_ptr<ChatOutput> output_;
  std::unique_ptr<ResponseBuilder> builder_;
};

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
  http.Post("/v1/responses", [ctx](const httplib::Request& req, httplib::Response& res) {
    ServeGeneration(ctx, req, res, std::make_shared<ResponsesApi>(ctx.responses));
  });
  http.Get("/v1/responses/:id",
           [ctx](const httplib::Request& req, httplib::Response& res) { HandleGet(ctx, req, res); });
  http.Delete("/v1/responses/:id",
              [ctx](const httplib::Request& req, httplib::Response& res) { HandleDelete(ctx, req, res); });
}

}  // namespace kvault

// Anthropic-compatible routes: POST /v1/messages (a GenerationApi, server/generation_route.h: the
// api/anthropic_request and api/anthropic_messages adapters parse and render) and POST
// /v1/messages/count_tokens (the prompt's tokens, nothing generated). HTTP worker threads; one
// object per request.
#include <httplib.h>

#include <memory>

#include "api/anthropic_messages.h"
#include "api/chat_output.h"
#include "api/ids.h"
#include "server/generation_route.h"

namespace kvault {

namespace {

constexpr const char* kJson = "application/json";

// POST /v1/messages.
class MessagesApi : public GenerationApi {
 public:
  MessagesApi() : GenerationApi("anthropic.messages", ApiFlavor::kAnthropic) {}

  Status Parse(const httplib::Request& req, const CallContext&) override {
    return ParseInto(ParseMessagesRequest(req.body), &request_);
  }
  const std::string& model() const override { return request_.model; }
  GenerateRequest& request() override { return request_.generate; }
  std::string agent_fallback() const override { return request_.user_id; }
  void Prepare(const CallContext& call) override {
    result_.id = NewRandomId("msg_");
    result_.model = request_.model.empty() ? call.engine->info().id : request_.model;
    result_.thinking = request_.thinking;
    result_.display = request_.display;
  }
  // message_start carries the prompt's usage, known from the first event on.
  void Started(const ChatSyntax& syntax, const GenerationEvent& first) override {
    output_ = std::make_unique<ChatOutput>(syntax, [] { return NewRandomId("toolu_"); });
    ApplyCounts(first);
  }

  std::string StreamStart() override { return stream_.Start(); }
  std::string StreamText(const GenerationEvent& ev) override { return Deltas(output_->Append(ev.text)); }
  std::string StreamError(const ApiError& e) override { return AnthropicStream::Error(AnthropicErrorBody(e)); }
  std::string StreamDone(const GenerationEvent& ev) override {
    std::string out = Deltas(output_->Finish());
    ApplyDone(ev);
    return out + stream_.Finish();
  }
  // Keep the connection visibly alive while nothing is generated (long prefills).
  std::string StreamIdle(std::chrono::steady_clock::duration quiet) override {
    return KeepAlive(AnthropicStream::Ping(), quiet);
  }

  void Text(const std::string& text) override { output_->Append(text); }
  std::string Body(const GenerationEvent& done) override {
    output_->Finish();
    ApplyDone(done);
    return RenderMessage(result_);
  }

 private:
  std::string Deltas(const std::vector<OutputDelta>& ds) {
    std::string out;
    for (const auto& d : ds) out += stream_.Delta(d);
    return out;
  }
  void ApplyCounts(const GenerationEvent& ev) {
    result_.usage = ComputeUsage(ev.prompt_tokens, ev.cached_tokens, ev.kept_prompt_tokens, ev.completion_tokens);
  }
  void ApplyDone(const GenerationEvent& ev) {
    ApplyCounts(ev);
    result_.finish = ev.finish;
    result_.stop_sequence = ev.stop_sequence;
    result_.text = output_->content();
    result_.reasoning = output_->reasoning();
    result_.tool_calls = output_->tool_calls();
  }

  MessagesRequest request_;
  MessagesResult result_;
  AnthropicStream stream_{&result_};  // streams only
  std::unique_ptr<ChatOutput> output_;
};

void HandleCountTokens(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kAnthropic);
  if (!call) return;
  auto parsed = ParseMessagesRequest(req.body, /*count_only=*/true);
  if (!parsed.ok()) return SendApiError(res, ApiFlavor::kAnthropic, ApiErrorFromStatus(parsed.status()));
  if (!AttachModel(ctx, *call, parsed->model, res, ApiFlavor::kAnthropic)) return;
  parsed->generate.tenant = call->tenant;
  auto handle = call->engine->Submit(std::move(parsed->generate));
  std::optional<GenerationEvent> ev = NextEvent(*handle, req);
  if (!ev) return;
  if (ev->kind == GenerationEvent::Kind::kError) {
    return SendApiError(res, ApiFlavor::kAnthropic, ApiErrorFromStatus(ev->status));
  }
  res.set_content(RenderCountTokens(ev->prompt_tokens), kJson);
}

}  // namespace

void RegisterAnthropicRoutes(httplib::Server& http, const RouteContext& ctx) {
  http.Post("/v1/messages", [ctx](const httplib::Request& req, httplib::Response& res) {
    ServeGeneration(ctx, req, res, std::make_shared<MessagesApi>());
  });
  http.Post("/v1/messages/count_tokens",
            [ctx](const httplib::Request& req, httplib::Response& res) { HandleCountTokens(ctx, req, res); });
}

}  // namespace kvault

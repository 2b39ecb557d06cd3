// Anthropic-compatible routes: POST /v1/messages and POST /v1/messages/count_tokens.
#include <httplib.h>

#include <memory>

#include "api/anthropic_messages.h"
#include "api/chat_output.h"
#include "api/ids.h"
#include "server/routes.h"

namespace kvault {

namespace {

constexpr const char* kJson = "application/json";

// What a Messages call keeps while it is answered (a stream: between events).
struct MessagesState {
  CallContext call;
  MessagesResult result;
  std::unique_ptr<ChatOutput> output;
  std::unique_ptr<AnthropicStream> stream;
};

void ApplyCounts(MessagesState& st, const GenerationEvent& ev) {
  st.result.usage = ComputeUsage(ev.prompt_tokens, ev.cached_tokens, ev.kept_prompt_tokens, ev.completion_tokens);
}

void ApplyDone(MessagesState& st, const GenerationEvent& ev) {
  ApplyCounts(st, ev);
  st.result.finish = ev.finish;
  st.result.stop_sequence = ev.stop_sequence;
  st.result.text = st.output->content();
  st.result.reasoning = st.output->reasoning();
  st.result.tool_calls = st.output->tool_calls();
}

void HandleMessages(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kAnthropic);
  if (!call) return;
  auto parsed = ParseMessagesRequest(req.body);
  if (!parsed.ok()) return SendApiError(res, ApiFlavor::kAnthropic, ApiErrorFromStatus(parsed.status()));
  if (!AttachModel(ctx, *call, parsed->model, res, ApiFlavor::kAnthropic)) return;
  GenerateRequest& g = parsed->generate;
  StampRequest(*call, parsed->user_id, g);
  const bool stream = g.stream;

  auto st = std::make_shared<MessagesState>();
  st->call = *call;
  std::shared_ptr<RequestHandle> handle = call->engine->Submit(std::move(g));
  st->result.id = NewRandomId("msg_");
  st->result.model = parsed->model.empty() ? call->engine->info().id : parsed->model;
  st->result.thinking = parsed->thinking;
  st->result.display = parsed->display;

  std::optional<GenerationEvent> first =
      FirstEvent(*call, "anthropic.messages", ApiFlavor::kAnthropic, *handle, req, res);
  if (!first) return;
  st->output = std::make_unique<ChatOutput>(handle->syntax(), [] { return NewRandomId("toolu_"); });
  ApplyCounts(*st, *first);
  res.set_header("X-Cache-Tokens", std::to_string(first->cached_tokens));

  if (stream) {
    st->stream = std::make_unique<AnthropicStream>(&st->result);
    auto deltas = [](MessagesState& st, const std::vector<OutputDelta>& ds) {
      std::string out;
      for (const auto& d : ds) out += st.stream->Delta(d);
      return out;
    };
    SseRenderer render;
    render.start = [st] { return st->stream->Start(); };
    render.event = [st, deltas](const GenerationEvent& ev) -> std::string {
      if (ev.kind == GenerationEvent::Kind::kText) return deltas(*st, st->output->Append(ev.text));
      if (ev.kind == GenerationEvent::Kind::kError) {  // after the stream started: an error event
        const ApiError e = ApiErrorFromStatus(ev.status);
        LogRequest(st->call, "anthropic.messages", ev, AnthropicHttpStatus(e));
        return AnthropicStream::Error(AnthropicErrorBody(e));
      }
      std::string out = deltas(*st, st->output->Finish());
      ApplyDone(*st, ev);
      LogRequest(st->call, "anthropic.messages", ev, 200);
      return out + st->stream->Finish();
    };
    // Keep the connection visibly alive while nothing is generated (long prefills).
    render.idle = KeepAlive(AnthropicStream::Ping());
    return StreamEvents(res, std::move(handle), std::move(*first), std::move(render));
  }

  auto done = CollectNonStreamed(*call, "anthropic.messages", ApiFlavor::kAnthropic, *handle, req, res,
                                 std::move(first), [&](const std::string& text) { st->output->Append(text); });
  if (!done) return;
  st->output->Finish();
  ApplyDone(*st, *done);
  res.set_content(RenderMessage(st->result), kJson);
}

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
  http.Post("/v1/messages",
            [ctx](const httplib::Request& req, httplib::Response& res) { HandleMessages(ctx, req, res); });
  http.Post("/v1/messages/count_tokens",
            [ctx](const httplib::Request& req, httplib::Response& res) { HandleCountTokens(ctx, req, res); });
}

}  // namespace kvault

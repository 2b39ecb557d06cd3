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
constexpr auto kPingEvery = std::chrono::seconds(5);

struct MessagesState {
  std::shared_ptr<RequestHandle> handle;
  CallContext call;
  MessagesResult result;
  std::unique_ptr<ChatOutput> output;
  std::unique_ptr<AnthropicStream> stream;
  std::optional<GenerationEvent> pending;
  int32_t block_tokens = 0;
  std::chrono::steady_clock::time_point last_write;
};

void ApplyCounts(MessagesState& st, const GenerationEvent& ev) {
  st.result.usage = ComputeUsage(ev.prompt_tokens, ev.cached_tokens, st.block_tokens, ev.completion_tokens);
}

void ApplyDone(MessagesState& st, const GenerationEvent& ev) {
  ApplyCounts(st, ev);
  st.result.finish = ev.finish;
  st.result.stop_sequence = ev.stop_sequence;
  st.result.text = st.output->content();
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
  st->block_tokens = static_cast<int32_t>(call->engine->info().block_tokens);
  st->handle = call->engine->Submit(std::move(g));
  st->result.id = NewRandomId("msg_");
  st->result.model = parsed->model.empty() ? call->engine->info().id : parsed->model;

  std::optional<GenerationEvent> first = NextEvent(*st->handle, req);
  if (!first) return;
  if (first->kind == GenerationEvent::Kind::kError) {
    const ApiError e = ApiErrorFromStatus(first->status);
    LogRequest(*call, "anthropic.messages", *first, AnthropicHttpStatus(e));
    return SendApiError(res, ApiFlavor::kAnthropic, e);
  }
  st->output = std::make_unique<ChatOutput>(st->handle->syntax(), [] { return NewRandomId("toolu_"); });
  ApplyCounts(*st, *first);
  res.set_header("X-Cache-Tokens", std::to_string(first->cached_tokens));

  if (stream) {
    res.set_header("Cache-Control", "no-cache");
    st->stream = std::make_unique<AnthropicStream>(&st->result);
    st->pending = std::move(first);
    res.set_chunked_content_provider(
        "text/event-stream",
        [st](size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& s) {
            if (s.empty()) return true;
            if (!sink.write(s.data(), s.size())) {
              st->handle->Cancel();
              return false;
            }
            st->last_write = std::chrono::steady_clock::now();
            return true;
          };
          auto send_deltas = [&](const std::vector<OutputDelta>& deltas) {
            for (const auto& d : deltas) {
              if (!send(st->stream->Delta(d))) return false;
            }
            return true;
          };
          std::optional<GenerationEvent> ev = std::move(st->pending);
          const bool first_call = ev.has_value();
          st->pending.reset();
          if (first_call && !send(st->stream->Start())) return false;
          if (!ev) ev = st->handle->events().PopFor(std::chrono::milliseconds(100));
          if (!ev) {
            if (!sink.is_writable()) return st->handle->Cancel(), false;
            // Keep the connection visibly alive while nothing is generated (long prefills).
            if (std::chrono::steady_clock::now() - st->last_write > kPingEvery) return send(AnthropicStream::Ping());
            return true;
          }
          if (ev->kind == GenerationEvent::Kind::kText) return send_deltas(st->output->Append(ev->text));
          if (ev->kind == GenerationEvent::Kind::kError) {
            send(AnthropicStream::Error(AnthropicErrorBody(ApiErrorFromStatus(ev->status))));
            sink.done();
            return true;
          }
          if (!send_deltas(st->output->Finish())) return false;
          ApplyDone(*st, *ev);
          LogRequest(st->call, "anthropic.messages", *ev, 200);
          if (!send(st->stream->Finish())) return false;
          sink.done();
          return true;
        },
        [st](bool) { st->handle->Cancel(); });
    return;
  }

  auto done = CollectNonStreamed(*call, "anthropic.messages", ApiFlavor::kAnthropic, *st->handle, req, res,
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

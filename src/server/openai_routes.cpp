// OpenAI-compatible routes: POST /v1/chat/completions and POST /v1/completions.
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "api/chat_output.h"
#include "api/openai_chat.h"
#include "api/openai_completions.h"
#include "server/routes.h"

namespace kvault {

namespace {

constexpr const char* kJson = "application/json";

void ApplyDone(ChatCompletionResult& r, const GenerationEvent& ev) {
  r.finish = ev.finish;
  r.prompt_tokens = ev.prompt_tokens;
  r.completion_tokens = ev.completion_tokens;
  r.cached_tokens = ev.cached_tokens;
  r.cached_resident = ev.cached_resident;
  r.cached_ram = ev.cached_ram;
  r.cached_disk = ev.cached_disk;
  r.queue_ms = ev.queue_ms;
  r.ttft_ms = ev.ttft_ms;
  r.total_ms = ev.total_ms;
}

// What a streamed chat completion keeps between calls of the content provider.
struct ChatStreamState {
  std::shared_ptr<RequestHandle> handle;
  CallContext call;
  ChatCompletionResult result;
  std::unique_ptr<ChatOutput> output;
  std::optional<GenerationEvent> pending;  // the first event, already popped
  bool include_usage = false;
  bool started = false;
};

void HandleChatCompletions(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kOpenAi);
  if (!call) return;
  auto parsed = ParseChatCompletionRequest(req.body);
  if (!parsed.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(parsed.status()));
  if (!AttachModel(ctx, *call, parsed->model, res, ApiFlavor::kOpenAi)) return;
  GenerateRequest& g = parsed->generate;
  StampRequest(*call, parsed->user, g);
  const bool stream = g.stream;

  auto st = std::make_shared<ChatStreamState>();
  st->include_usage = parsed->include_usage;
  st->call = *call;
  st->handle = call->engine->Submit(std::move(g));
  st->result.id = NewChatCompletionId();
  st->result.model = call->engine->info().id;
  st->result.created = UnixNow();

  // The first event: an error (bad prompt, queue full) is still a plain HTTP error.
  std::optional<GenerationEvent> first = NextEvent(*st->handle, req);
  if (!first) return;
  if (first->kind == GenerationEvent::Kind::kError) {
    const ApiError e = ApiErrorFromStatus(first->status);
    LogRequest(*call, "openai.chat", *first, e.http_status);
    return SendApiError(res, ApiFlavor::kOpenAi, e);
  }
  st->output = std::make_unique<ChatOutput>(st->handle->syntax(), [] { return NewRandomId("call_"); });
  res.set_header("X-Cache-Tokens", std::to_string(first->cached_tokens));

  if (stream) {
    res.set_header("Cache-Control", "no-cache");
    st->pending = std::move(first);
    res.set_chunked_content_provider(
        "text/event-stream",
        [st](size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& s) {
            if (!sink.write(s.data(), s.size())) {
              st->handle->Cancel();  // the client went away
              return false;
            }
            return true;
          };
          auto send_deltas = [&](const std::vector<OutputDelta>& deltas) {
            for (const auto& d : deltas) {
              const std::string chunk =
                  d.kind == OutputDelta::Kind::kText
                      ? RenderChatCompletionChunk(st->result, ChunkKind::kText, d.text, st->include_usage)
                      : RenderToolCallChunk(st->result, d, st->include_usage);
              if (!send(chunk)) return false;
            }
            return true;
          };
          if (!st->started) {
            st->started = true;
            if (!send(RenderChatCompletionChunk(st->result, ChunkKind::kRole, "", st->include_usage))) return false;
          }
          std::optional<GenerationEvent> ev = std::move(st->pending);
          st->pending.reset();
          if (!ev) ev = st->handle->events().PopFor(std::chrono::milliseconds(100));
          if (!ev) return sink.is_writable() ? true : (st->handle->Cancel(), false);
          if (ev->kind == GenerationEvent::Kind::kText) return send_deltas(st->output->Append(ev->text));
          if (ev->kind == GenerationEvent::Kind::kError) {  // after the stream started: an error event
            send("data: " + OpenAiErrorBody(ApiErrorFromStatus(ev->status)) + "\n\n");
            sink.done();
            return true;
          }
          if (!send_deltas(st->output->Finish())) return false;
          ApplyDone(st->result, *ev);
          st->result.tool_calls = st->output->tool_calls();
          LogRequest(st->call, "openai.chat", *ev, 200);
          if (!send(RenderChatCompletionChunk(st->result, ChunkKind::kFinish, "", st->include_usage))) return false;
          if (st->include_usage && !send(RenderChatCompletionChunk(st->result, ChunkKind::kUsage, "", true))) return false;
          if (!send(kSseDone)) return false;
          sink.done();
          return true;
        },
        // Called when the response ends; httplib stops calling the provider once the client is
        // gone, so this is where a vanished client's request gets cancelled (a no-op if done).
        [st](bool) { st->handle->Cancel(); });
    return;
  }

  auto done = CollectNonStreamed(*call, "openai.chat", ApiFlavor::kOpenAi, *st->handle, req, res, std::move(first),
                                 [&](const std::string& text) { st->output->Append(text); });
  if (!done) return;
  st->output->Finish();
  ApplyDone(st->result, *done);
  st->result.text = st->output->content();
  st->result.tool_calls = st->output->tool_calls();
  res.set_content(RenderChatCompletion(st->result), kJson);
}

void HandleCompletions(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kOpenAi);
  if (!call) return;
  auto parsed = ParseCompletionRequest(req.body);
  if (!parsed.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(parsed.status()));
  if (!AttachModel(ctx, *call, parsed->model, res, ApiFlavor::kOpenAi)) return;
  GenerateRequest& g = parsed->generate;
  StampRequest(*call, parsed->user, g);
  g.stream = false;  // streamed completions: see docs/api.md (not supported yet)
  auto handle = call->engine->Submit(std::move(g));
  CompletionResult result;
  result.id = NewRandomId("cmpl-");
  result.model = call->engine->info().id;
  result.created = UnixNow();
  auto done = CollectNonStreamed(*call, "openai.completions", ApiFlavor::kOpenAi, *handle, req, res, std::nullopt,
                                 [&](const std::string& text) { result.text += text; });
  if (!done) return;
  result.finish = done->finish;
  result.prompt_tokens = done->prompt_tokens;
  result.completion_tokens = done->completion_tokens;
  result.cached_tokens = done->cached_tokens;
  res.set_header("X-Cache-Tokens", std::to_string(result.cached_tokens));
  res.set_content(RenderCompletion(result), kJson);
}

}  // namespace

void RegisterOpenAiRoutes(httplib::Server& http, const RouteContext& ctx) {
  http.Post("/v1/chat/completions",
            [ctx](const httplib::Request& req, httplib::Response& res) { HandleChatCompletions(ctx, req, res); });
  http.Post("/v1/completions",
            [ctx](const httplib::Request& req, httplib::Response& res) { HandleCompletions(ctx, req, res); });
}

}  // namespace kvault

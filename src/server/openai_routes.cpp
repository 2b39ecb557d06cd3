// OpenAI-compatible routes: POST /v1/chat/completions and POST /v1/completions (the model routes
// are in model_routes.cpp).
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "api/chat_output.h"
#include "api/openai_chat.h"
#include "api/openai_common.h"
#include "api/openai_completions.h"
#include "server/routes.h"

namespace kvault {

namespace {

constexpr const char* kJson = "application/json";

// The outcome and token counts both OpenAI results carry.
template <class Result>
void ApplyCounts(Result& r, const GenerationEvent& ev) {
  r.finish = ev.finish;
  r.prompt_tokens = ev.prompt_tokens;
  r.completion_tokens = ev.completion_tokens;
  r.cached_tokens = ev.cached_tokens;
}

void ApplyDone(CompletionResult& r, const GenerationEvent& ev) {
  ApplyCounts(r, ev);
}

void ApplyDone(ChatCompletionResult& r, const GenerationEvent& ev) {
  ApplyCounts(r, ev);
  r.cached_resident = ev.cached_resident;
  r.cached_ram = ev.cached_ram;
  r.cached_disk = ev.cached_disk;
  r.queue_ms = ev.queue_ms;
  r.ttft_ms = ev.ttft_ms;
  r.total_ms = ev.total_ms;
}

// What a chat completion keeps while it is answered (a stream: between events).
struct ChatState {
  CallContext call;
  ChatCompletionResult result;
  std::unique_ptr<ChatOutput> output;
  bool include_usage = false;
  // Streams: token logprobs not yet sent; they go with the next chunk (the parser may hold text
  // back, e.g. a possible tool-call marker), else with the finish chunk.
  std::vector<TokenLogprob> logprobs;
};

// The chat completion chunks of parsed output pieces; the first carries the pending logprobs.
std::string ChatDeltaChunks(ChatState& st, const std::vector<OutputDelta>& deltas) {
  std::string out;
  for (const auto& d : deltas) {
    // (Reasoning is parsed out only for requests that turn thinking on, which the OpenAI routes
    // never do: the model's text, thinking tags included, is the content.)
    if (d.kind == OutputDelta::Kind::kThinking) continue;
    out += d.kind == OutputDelta::Kind::kText
               ? RenderChatCompletionChunk(st.result, ChunkKind::kText, d.text, st.include_usage, &st.logprobs)
               : RenderToolCallChunk(st.result, d, st.include_usage, &st.logprobs);
    st.logprobs.clear();
  }
  return out;
}

void HandleChatCompletions(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kOpenAi);
  if (!call) return;
  auto parsed = ParseChatCompletionRequest(req.body);
  if (!parsed.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(parsed.status()));
  if (!AttachModel(ctx, *call, parsed->model, res, ApiFlavor::kOpenAi)) return;
  GenerateRequest& g = parsed->generate;
  StampRequest(*call, parsed->user, g);
  const bool stream = g.stream;

  auto st = std::make_shared<ChatState>();
  st->include_usage = parsed->include_usage;
  st->call = *call;
  std::shared_ptr<RequestHandle> handle = call->engine->Submit(std::move(g));
  st->result.id = NewChatCompletionId();
  st->result.model = call->engine->info().id;
  st->result.created = UnixNow();
  st->result.system_fingerprint = OpenAiSystemFingerprint(call->engine->info().fingerprint);
  st->result.logprobs = parsed->generate.top_logprobs >= 0;

  std::optional<GenerationEvent> first = FirstEvent(*call, "openai.chat", ApiFlavor::kOpenAi, *handle, req, res);
  if (!first) return;
  st->output = std::make_unique<ChatOutput>(handle->syntax(), [] { return NewRandomId("call_"); });
  res.set_header("X-Cache-Tokens", std::to_string(first->cached_tokens));

  if (stream) {
    SseRenderer render;
    render.start = [st] { return RenderChatCompletionChunk(st->result, ChunkKind::kRole, "", st->include_usage); };
    render.event = [st](const GenerationEvent& ev) -> std::string {
      if (ev.kind == GenerationEvent::Kind::kText) {
        st->logprobs.insert(st->logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
        return ChatDeltaChunks(*st, st->output->Append(ev.text));
      }
      if (ev.kind == GenerationEvent::Kind::kError) {  // after the stream started: an error event
        const ApiError e = ApiErrorFromStatus(ev.status);
        LogRequest(st->call, "openai.chat", ev, e.http_status);
        return "data: " + OpenAiErrorBody(e) + "\n\n";
      }
      std::string out = ChatDeltaChunks(*st, st->output->Finish());
      ApplyDone(st->result, ev);
      st->result.tool_calls = st->output->tool_calls();
      LogRequest(st->call, "openai.chat", ev, 200);
      out += RenderChatCompletionChunk(st->result, ChunkKind::kFinish, "", st->include_usage, &st->logprobs);
      if (st->include_usage) out += RenderChatCompletionChunk(st->result, ChunkKind::kUsage, "", true);
      return out + kSseDone;
    };
    render.idle = KeepAlive(": keep-alive\n\n");  // an SSE comment: clients skip it
    return StreamEvents(res, std::move(handle), std::move(*first), std::move(render));
  }

  auto done = CollectNonStreamed(
      *call, "openai.chat", ApiFlavor::kOpenAi, *handle, req, res, std::move(first),
      [&](const std::string& text) { st->output->Append(text); }, &st->result.token_logprobs);
  if (!done) return;
  st->output->Finish();
  ApplyDone(st->result, *done);
  st->result.text = st->output->content();
  st->result.tool_calls = st->output->tool_calls();
  res.set_content(RenderChatCompletion(st->result), kJson);
}

// What a text completion keeps while it is answered (a stream: between events).
struct CompletionState {
  CallContext call;
  CompletionResult result;
  bool include_usage = false;
  size_t text_offset = 0;  // streams: logprobs' text_offset so far
};

void HandleCompletions(const RouteContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto call = BeginCall(ctx, req, res, ApiFlavor::kOpenAi);
  if (!call) return;
  auto parsed = ParseCompletionRequest(req.body);
  if (!parsed.ok()) return SendApiError(res, ApiFlavor::kOpenAi, ApiErrorFromStatus(parsed.status()));
  if (!AttachModel(ctx, *call, parsed->model, res, ApiFlavor::kOpenAi)) return;
  GenerateRequest& g = parsed->generate;
  StampRequest(*call, parsed->user, g);
  const bool stream = g.stream;

  auto st = std::make_shared<CompletionState>();
  st->include_usage = parsed->include_usage;
  st->call = *call;
  std::shared_ptr<RequestHandle> handle = call->engine->Submit(std::move(g));
  st->result.id = NewRandomId("cmpl-");
  st->result.model = call->engine->info().id;
  st->result.created = UnixNow();
  st->result.system_fingerprint = OpenAiSystemFingerprint(call->engine->info().fingerprint);
  st->result.logprobs = parsed->generate.top_logprobs >= 0;

  std::optional<GenerationEvent> first = FirstEvent(*call, "openai.completions", ApiFlavor::kOpenAi, *handle, req, res);
  if (!first) return;
  res.set_header("X-Cache-Tokens", std::to_string(first->cached_tokens));

  if (stream) {
    SseRenderer render;
    render.event = [st](const GenerationEvent& ev) -> std::string {
      if (ev.kind == GenerationEvent::Kind::kText) {
        return RenderCompletionChunk(st->result, CompletionChunkKind::kText, ev.text, st->include_usage, &ev.logprobs,
                                     &st->text_offset);
      }
      if (ev.kind == GenerationEvent::Kind::kError) {  // after the stream started: an error event
        const ApiError e = ApiErrorFromStatus(ev.status);
        LogRequest(st->call, "openai.completions", ev, e.http_status);
        return "data: " + OpenAiErrorBody(e) + "\n\n";
      }
      ApplyDone(st->result, ev);
      LogRequest(st->call, "openai.completions", ev, 200);
      std::string out = RenderCompletionChunk(st->result, CompletionChunkKind::kFinish, "", st->include_usage);
      if (st->include_usage) out += RenderCompletionChunk(st->result, CompletionChunkKind::kUsage, "", true);
      return out + kSseDone;
    };
    render.idle = KeepAlive(": keep-alive\n\n");  // an SSE comment: clients skip it
    return StreamEvents(res, std::move(handle), std::move(*first), std::move(render));
  }

  auto done = CollectNonStreamed(
      *call, "openai.completions", ApiFlavor::kOpenAi, *handle, req, res, std::move(first),
      [&](const std::string& text) { st->result.text += text; }, &st->result.token_logprobs);
  if (!done) return;
  ApplyDone(st->result, *done);
  res.set_content(RenderCompletion(st->result), kJson);
}

}  // namespace

void RegisterOpenAiRoutes(httplib::Server& http, const RouteContext& ctx) {
  http.Post("/v1/chat/completions",
            [ctx](const httplib::Request& req, httplib::Response& res) { HandleChatCompletions(ctx, req, res); });
  http.Post("/v1/completions",
            [ctx](const httplib::Request& req, httplib::Response& res) { HandleCompletions(ctx, req, res); });
}

}  // namespace kvault

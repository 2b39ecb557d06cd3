// OpenAI-compatible routes: POST /v1/chat/completions and POST /v1/completions (the model routes
// are in model_routes.cpp). Each is a GenerationApi (server/generation_route.h): the OpenAI
// adapters (api/openai_chat, api/openai_completions) parse and render; the skeleton does the rest.
// HTTP worker threads; one object per request.
#include <httplib.h>

#include <memory>

#include "api/chat_output.h"
#include "api/openai_chat.h"
#include "api/openai_common.h"
#include "api/openai_completions.h"
#include "server/generation_route.h"

namespace kvault {

namespace {

// An error after the stream started: an OpenAI error object as a data event.
std::string ErrorEvent(const ApiError& e) {
  return "data: " + OpenAiErrorBody(e) + "\n\n";
}

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
  r.cached_remote = ev.cached_remote;
  r.queue_ms = ev.queue_ms;
  r.ttft_ms = ev.ttft_ms;
  r.total_ms = ev.total_ms;
}

// POST /v1/chat/completions.
class ChatCompletionsApi : public GenerationApi {
 public:
  ChatCompletionsApi() : GenerationApi("openai.chat", ApiFlavor::kOpenAi) {}

  Status Parse(const httplib::Request& req, const CallContext&) override {
    return ParseInto(ParseChatCompletionRequest(req.body), &request_);
  }
  const std::string& model() const override { return request_.model; }
  GenerateRequest& request() override { return request_.generate; }
  std::string agent_fallback() const override { return request_.user; }
  void Prepare(const CallContext& call) override {
    result_.id = NewChatCompletionId();
    result_.model = call.engine->info().id;
    result_.created = UnixNow();
    result_.system_fingerprint = OpenAiSystemFingerprint(call.engine->info().fingerprint);
    result_.logprobs = request_.generate.top_logprobs >= 0;
  }
  void Started(const ChatSyntax& syntax, const GenerationEvent&) override {
    output_ = std::make_unique<ChatOutput>(syntax, [] { return NewRandomId("call_"); });
  }

  std::string StreamStart() override {
    return RenderChatCompletionChunk(result_, ChunkKind::kRole, "", request_.include_usage);
  }
  std::string StreamText(const GenerationEvent& ev) override {
    logprobs_.insert(logprobs_.end(), ev.logprobs.begin(), ev.logprobs.end());
    return DeltaChunks(output_->Append(ev.text));
  }
  std::string StreamError(const ApiError& e) override { return ErrorEvent(e); }
  std::string StreamDone(const GenerationEvent& ev) override {
    std::string out = DeltaChunks(output_->Finish());
    ApplyDone(result_, ev);
    result_.tool_calls = output_->tool_calls();
    out += RenderChatCompletionChunk(result_, ChunkKind::kFinish, "", request_.include_usage, &logprobs_);
    if (request_.include_usage) out += RenderChatCompletionChunk(result_, ChunkKind::kUsage, "", true);
    return out + kSseDone;
  }

  void Text(const std::string& text) override { output_->Append(text); }
  std::vector<TokenLogprob>* Logprobs() override { return &result_.token_logprobs; }
  std::string Body(const GenerationEvent& done) override {
    output_->Finish();
    ApplyDone(result_, done);
    result_.text = output_->content();
    result_.tool_calls = output_->tool_calls();
    return RenderChatCompletion(result_);
  }

 private:
  // The chat completion chunks of parsed output pieces; the first carries the pending logprobs.
  std::string DeltaChunks(const std::vector<OutputDelta>& deltas) {
    std::string out;
    for (const auto& d : deltas) {
      // (Reasoning is parsed out only for requests that turn thinking on, which the OpenAI routes
      // never do: the model's text, thinking tags included, is the content.)
      if (d.kind == OutputDelta::Kind::kThinking) continue;
      out += d.kind == OutputDelta::Kind::kText
                 ? RenderChatCompletionChunk(result_, ChunkKind::kText, d.text, request_.include_usage, &logprobs_)
                 : RenderToolCallChunk(result_, d, request_.include_usage, &logprobs_);
      logprobs_.clear();
    }
    return out;
  }

  ChatCompletionRequest request_;
  ChatCompletionResult result_;
  std::unique_ptr<ChatOutput> output_;
  // Streams: token logprobs not yet sent; they go with the next chunk (the parser may hold text
  // back, e.g. a possible tool-call marker), else with the finish chunk.
  std::vector<TokenLogprob> logprobs_;
};

// POST /v1/completions (legacy text completions: the prompt as is, no chat template).
class CompletionsApi : public GenerationApi {
 public:
  CompletionsApi() : GenerationApi("openai.completions", ApiFlavor::kOpenAi) {}

  Status Parse(const httplib::Request& req, const CallContext&) override {
    return ParseInto(ParseCompletionRequest(req.body), &request_);
  }
  const std::string& model() const override { return request_.model; }
  GenerateRequest& request() override { return request_.generate; }
  std::string agent_fallback() const override { return request_.user; }
  void Prepare(const CallContext& call) override {
    result_.id = NewRandomId("cmpl-");
    result_.model = call.engine->info().id;
    result_.created = UnixNow();
    result_.system_fingerprint = OpenAiSystemFingerprint(call.engine->info().fingerprint);
    result_.logprobs = request_.generate.top_logprobs >= 0;
  }
  void Started(const ChatSyntax&, const GenerationEvent&) override {}

  std::string StreamText(const GenerationEvent& ev) override {
    return RenderCompletionChunk(result_, CompletionChunkKind::kText, ev.text, request_.include_usage, &ev.logprobs,
                                 &text_offset_);
  }
  std::string StreamError(const ApiError& e) override { return ErrorEvent(e); }
  std::string StreamDone(const GenerationEvent& ev) override {
    ApplyDone(result_, ev);
    std::string out = RenderCompletionChunk(result_, CompletionChunkKind::kFinish, "", request_.include_usage);
    if (request_.include_usage) out += RenderCompletionChunk(result_, CompletionChunkKind::kUsage, "", true);
    return out + kSseDone;
  }

  void Text(const std::string& text) override { result_.text += text; }
  std::vector<TokenLogprob>* Logprobs() override { return &result_.token_logprobs; }
  std::string Body(const GenerationEvent& done) override {
    ApplyDone(result_, done);
    return RenderCompletion(result_);
  }

 private:
  CompletionRequest request_;
  CompletionResult result_;
  size_t text_offset_ = 0;  // streams: logprobs' text_offset so far
};

}  // namespace

void RegisterOpenAiRoutes(httplib::Server& http, const RouteContext& ctx) {
  http.Post("/v1/chat/completions", [ctx](const httplib::Request& req, httplib::Response& res) {
    ServeGeneration(ctx, req, res, std::make_shared<ChatCompletionsApi>());
  });
  http.Post("/v1/completions", [ctx](const httplib::Request& req, httplib::Response& res) {
    ServeGeneration(ctx, req, res, std::make_shared<CompletionsApi>());
  });
}

}  // namespace kvault

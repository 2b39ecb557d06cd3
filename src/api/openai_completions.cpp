#include "api/openai_completions.h"

#include <nlohmann/json.hpp>

#include "api/json_body.h"
#include "api/openai_common.h"

namespace kvault {

using json = nlohmann::json;

StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body_text) {
  StatusOr<json> parsed = ParseJsonBody(body_text);
  if (!parsed.ok()) return parsed.status();
  json body = std::move(parsed).value();
  if (!body.is_object()) return Status::InvalidArgument("the request body must be a JSON object");
  CompletionRequest out;
  if (body.contains("model")) {
    if (!body["model"].is_string()) return Status::InvalidArgument("'model' must be a string");
    out.model = body["model"].get<std::string>();
  }
  if (!body.contains("prompt")) return Status::InvalidArgument("'prompt' is a required property");
  const json& prompt = body["prompt"];
  if (prompt.is_string()) {
    out.generate.raw_prompt = prompt.get<std::string>();
  } else if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
    out.generate.raw_prompt = prompt[0].get<std::string>();
  } else {
    return Status::InvalidArgument(
        "'prompt' must be a string (one prompt per request; token arrays are not supported)");
  }
  if (out.generate.raw_prompt->empty()) return Status::InvalidArgument("'prompt' must not be empty");
  out.generate.max_tokens = 16;  // OpenAI's default for completions
  Status st = ParseOpenAiSamplingFields(body, out.generate);
  if (!st.ok()) return st;
  st = ParseOpenAiStreamFields(body, out.generate, out.include_usage);
  if (!st.ok()) return st;
  if (body.contains("echo") && body["echo"].is_boolean() && body["echo"].get<bool>()) {
    return Status::InvalidArgument("'echo' is not supported");
  }
  if (body.contains("suffix") && !body["suffix"].is_null()) return Status::InvalidArgument("'suffix' is not supported");
  if (body.contains("user") && body["user"].is_string()) out.user = body["user"].get<std::string>();
  return out;
}

namespace {

const char* FinishName(const CompletionResult& r) {
  return r.finish == FinishReason::kLength ? "length" : "stop";
}

json Choice(const std::string& text, json finish_reason) {
  return {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", std::move(finish_reason)}};
}

json Envelope(const CompletionResult& r) {
  return {{"id", r.id}, {"object", "text_completion"}, {"created", r.created}, {"model", r.model}};
}

}  // namespace

std::string RenderCompletion(const CompletionResult& r) {
  json body = Envelope(r);
  body["choices"] = json::array({Choice(r.text, FinishName(r))});
  body["usage"] = OpenAiUsageJson(r.prompt_tokens, r.completion_tokens, r.cached_tokens);
  // Random-weight models can emit byte tokens that are not valid UTF-8; replace, never throw.
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string RenderCompletionChunk(const CompletionResult& r, CompletionChunkKind kind, const std::string& text,
                                  bool include_usage) {
  json chunk = Envelope(r);
  if (kind == CompletionChunkKind::kUsage) {
    chunk["choices"] = json::array();
    chunk["usage"] = OpenAiUsageJson(r.prompt_tokens, r.completion_tokens, r.cached_tokens);
  } else {
    chunk["choices"] =
        json::array({kind == CompletionChunkKind::kText ? Choice(text, nullptr) : Choice("", FinishName(r))});
    if (include_usage) chunk["usage"] = nullptr;
  }
  return "data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

}  // namespace kvault

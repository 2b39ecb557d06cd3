#include "api/openai_completions.h"

#include <nlohmann/json.hpp>

#include "api/json_body.h"
#include "api/openai_common.h"

namespace kvault {

using json = nlohmann::json;

namespace {

// Every field of OpenAI's (legacy) Completions reference, and llama-server's top_k and min_p:
// anything else is refused as OpenAI refuses it.
const std::vector<std::string_view> kCompletionFields = {"model",
                                                         "prompt",
                                                         "max_tokens",
                                                         "temperature",
                                                         "top_p",
                                                         "seed",
                                                         "stop",
                                                         "n",
                                                         "presence_penalty",
                                                         "frequency_penalty",
                                                         "logit_bias",
                                                         "logprobs",
                                                         "stream",
                                                         "stream_options",
                                                         "user",
                                                         "echo",
                                                         "suffix",
                                                         "best_of",
                                                         "top_k",
                                                         "min_p"};

}  // namespace

StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body_text) {
  StatusOr<json> parsed = ParseJsonBody(body_text);
  if (!parsed.ok()) return parsed.status();
  json body = std::move(parsed).value();
  if (!body.is_object()) return Status::InvalidArgument("the request body must be a JSON object");
  Status known = CheckKnownFields(body, kCompletionFields);
  if (!known.ok()) return known;
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
  if (body.contains("echo") && !body["echo"].is_null() && body["echo"] != false) {
    return Status::InvalidArgument("'echo' is not supported (only false)");
  }
  st = RefuseField(body, "suffix", "kvault does not insert text (fill-in-the-middle)");
  if (!st.ok()) return st;
  if (body.contains("best_of") && !body["best_of"].is_null() && body["best_of"] != 1) {
    return Status::InvalidArgument("'best_of' must be 1: kvault generates one completion per request");
  }
  // Legacy "logprobs": the number of alternatives per token (OpenAI allows 0-5; kvault up to 20).
  if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    const json& lp = body["logprobs"];
    if (!lp.is_number_integer() || lp.get<int64_t>() < 0 || lp.get<int64_t>() > 20) {
      return Status::InvalidArgument("'logprobs' must be an integer between 0 and 20");
    }
    out.generate.top_logprobs = lp.get<int32_t>();
  }
  if (body.contains("user") && !body["user"].is_null()) {
    if (!body["user"].is_string()) return Status::InvalidArgument("'user' must be a string");
    out.user = body["user"].get<std::string>();
  }
  return out;
}

namespace {

const char* FinishName(const CompletionResult& r) {
  return OpenAiTextFinishReason(r.finish);
}

json Choice(const std::string& text, json finish_reason, json logprobs = nullptr) {
  return {{"index", 0}, {"text", text}, {"logprobs", std::move(logprobs)}, {"finish_reason", std::move(finish_reason)}};
}

json Envelope(const CompletionResult& r) {
  return {{"id", r.id},
          {"object", "text_completion"},
          {"created", r.created},
          {"model", r.model},
          {"system_fingerprint", r.system_fingerprint}};
}

}  // namespace

std::string RenderCompletion(const CompletionResult& r) {
  json body = Envelope(r);
  size_t offset = 0;
  body["choices"] = json::array(
      {Choice(r.text, FinishName(r), r.logprobs ? CompletionLogprobsJson(r.token_logprobs, offset) : json(nullptr))});
  body["usage"] = OpenAiUsageJson(r.prompt_tokens, r.completion_tokens, r.cached_tokens);
  // Random-weight models can emit byte tokens that are not valid UTF-8; replace, never throw.
  return DumpJson(body);
}

std::string RenderCompletionChunk(const CompletionResult& r, CompletionChunkKind kind, const std::string& text,
                                  bool include_usage, const std::vector<TokenLogprob>* logprobs, size_t* text_offset) {
  json chunk = Envelope(r);
  if (kind == CompletionChunkKind::kUsage) {
    chunk["choices"] = json::array();
    chunk["usage"] = OpenAiUsageJson(r.prompt_tokens, r.completion_tokens, r.cached_tokens);
  } else {
    size_t local_offset = 0;
    json lp = logprobs && !logprobs->empty()
                  ? CompletionLogprobsJson(*logprobs, text_offset ? *text_offset : local_offset)
                  : json(nullptr);
    chunk["choices"] = json::array({kind == CompletionChunkKind::kText ? Choice(text, nullptr, std::move(lp))
                                                                       : Choice("", FinishName(r), std::move(lp))});
    if (include_usage) chunk["usage"] = nullptr;
  }
  return "data: " + DumpJson(chunk) + "\n\n";
}

}  // namespace kvault

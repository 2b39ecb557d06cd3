#include "api/openai_chat.h"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <random>

namespace kvault {

using json = nlohmann::json;

namespace {

Status Invalid(const std::string& m) { return Status::InvalidArgument(m); }

// Content is a string, or an array of {"type":"text","text":…} parts (joined).
StatusOr<std::string> ParseContent(const json& content, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return std::string();
  if (!content.is_array()) return Invalid("'" + where + "' must be a string or an array of content parts");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string pwhere = where + "[" + std::to_string(i) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return Invalid("'" + pwhere + "' must be an object with a string 'type'");
    }
    const std::string type = part["type"].get<std::string>();
    if (type != "text") {
      return Invalid("'" + pwhere + "': content part type '" + type + "' is not supported (only 'text')");
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return Invalid("'" + pwhere + ".text' must be a string");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

Status CheckNumber(const json& body, const char* key) {
  if (body.contains(key) && !body[key].is_null() && !body[key].is_number()) {
    return Invalid(std::string("'") + key + "' must be a number");
  }
  return Status::Ok();
}

json UsageJson(const ChatCompletionResult& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", r.cached_tokens}}}};
}

}  // namespace

StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body_text) {
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return Invalid("the request body is not valid JSON");
  if (!body.is_object()) return Invalid("the request body must be a JSON object");

  ChatCompletionRequest out;
  if (body.contains("model")) {
    if (!body["model"].is_string()) return Invalid("'model' must be a string");
    out.model = body["model"].get<std::string>();
  }
  if (!body.contains("messages")) return Invalid("'messages' is a required property");
  const json& messages = body["messages"];
  if (!messages.is_array()) return Invalid("'messages' must be an array");
  if (messages.empty()) return Invalid("'messages' must contain at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return Invalid("'" + where + "' must be an object");
    if (!m.contains("role") || !m["role"].is_string()) return Invalid("'" + where + ".role' must be a string");
    std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "developer" && role != "user" && role != "assistant" && role != "tool") {
      return Invalid("'" + where + ".role' must be one of system, developer, user, assistant, tool; got '" + role + "'");
    }
    if (role == "developer") role = "system";  // OpenAI's newer name for system instructions
    auto content = ParseContent(m.contains("content") ? m["content"] : json(), i);
    if (!content.ok()) return content.status();
    common_chat_msg msg;
    msg.role = role;
    msg.content = std::move(content.value());
    out.generate.messages.push_back(std::move(msg));
  }

  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (!body.contains(key) || body[key].is_null()) continue;
    if (!body[key].is_number_integer()) return Invalid(std::string("'") + key + "' must be an integer");
    const int64_t v = body[key].get<int64_t>();
    if (v <= 0) return Invalid(std::string("'") + key + "' must be at least 1");
    out.generate.max_tokens = static_cast<int32_t>(std::min<int64_t>(v, INT32_MAX));
  }
  for (const char* key : {"temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty"}) {
    Status st = CheckNumber(body, key);
    if (!st.ok()) return st;
  }
  SamplingParams& sp = out.generate.sampling;
  if (body.contains("temperature") && !body["temperature"].is_null()) sp.temperature = body["temperature"].get<float>();
  if (body.contains("top_p") && !body["top_p"].is_null()) sp.top_p = body["top_p"].get<float>();
  if (body.contains("min_p") && !body["min_p"].is_null()) sp.min_p = body["min_p"].get<float>();
  if (body.contains("top_k") && !body["top_k"].is_null()) {
    if (!body["top_k"].is_number_integer()) return Invalid("'top_k' must be an integer");
    sp.top_k = static_cast<int32_t>(std::clamp<int64_t>(body["top_k"].get<int64_t>(), -1, INT32_MAX));
  }
  if (body.contains("seed") && !body["seed"].is_null()) {
    if (!body["seed"].is_number_integer()) return Invalid("'seed' must be an integer");
    sp.seed = static_cast<uint32_t>(body["seed"].get<int64_t>());
  }
  Status sampling_ok = sp.Validate();
  if (!sampling_ok.ok()) return sampling_ok;
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      out.generate.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array()) {
      if (stop.size() > 4) return Invalid("'stop' takes at most 4 sequences");
      for (const auto& s : stop) {
        if (!s.is_string()) return Invalid("'stop' must be a string or an array of strings");
        out.generate.stop.push_back(s.get<std::string>());
      }
    } else {
      return Invalid("'stop' must be a string or an array of strings");
    }
  }
  if (body.contains("n") && !body["n"].is_null() && !(body["n"].is_number_integer() && body["n"].get<int64_t>() == 1)) {
    return Invalid("'n' must be 1: kvault returns one choice per request");
  }
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) return Invalid("'stream' must be a boolean");
    out.generate.stream = body["stream"].get<bool>();
  }
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return Invalid("'stream_options' must be an object");
    if (!out.generate.stream) return Invalid("'stream_options' is only allowed when 'stream' is true");
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean()) return Invalid("'stream_options.include_usage' must be a boolean");
      out.include_usage = so["include_usage"].get<bool>();
    }
  }
  return out;
}

std::string RenderChatCompletion(const ChatCompletionResult& r) {
  // OpenAI reports both the model's end of turn and a matched stop sequence as "stop".
  const char* finish = r.finish == FinishReason::kLength ? "length" : "stop";
  json body = {
      {"id", r.id},
      {"object", "chat.completion"},
      {"created", r.created},
      {"model", r.model},
      {"choices", json::array({{{"index", 0},
                                {"message", {{"role", "assistant"}, {"content", r.text}}},
                                {"logprobs", nullptr},
                                {"finish_reason", finish}}})},
      {"usage", UsageJson(r)},
      // Not in OpenAI's schema (clients ignore unknown fields); llama-server has a similar one.
      {"timings", {{"queue_ms", r.queue_ms}, {"ttft_ms", r.ttft_ms}, {"total_ms", r.total_ms}}},
      {"cache",
       {{"resident_tokens", r.cached_resident},
        {"ram_tokens", r.cached_ram},
        {"disk_tokens", r.cached_disk},
        {"computed_tokens", r.prompt_tokens - r.cached_tokens}}},
  };
  // Random-weight models can emit byte tokens that are not valid UTF-8; replace, never throw.
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string RenderChatCompletionChunk(const ChatCompletionResult& r, ChunkKind kind, const std::string& text,
                                      bool include_usage) {
  json chunk = {{"id", r.id}, {"object", "chat.completion.chunk"}, {"created", r.created}, {"model", r.model}};
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  switch (kind) {
    case ChunkKind::kRole: choice["delta"] = {{"role", "assistant"}, {"content", ""}}; break;
    case ChunkKind::kText: choice["delta"] = {{"content", text}}; break;
    case ChunkKind::kFinish:
      choice["delta"] = json::object();
      choice["finish_reason"] = r.finish == FinishReason::kLength ? "length" : "stop";
      break;
    case ChunkKind::kUsage: break;
  }
  if (kind == ChunkKind::kUsage) {
    chunk["choices"] = json::array();
    chunk["usage"] = UsageJson(r);
  } else {
    chunk["choices"] = json::array({choice});
    if (include_usage) chunk["usage"] = nullptr;
  }
  return "data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

std::string NewChatCompletionId() {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
  std::string id = "chatcmpl-";
  for (int i = 0; i < 24; ++i) id += kAlphabet[pick(rng)];
  return id;
}

}  // namespace kvault

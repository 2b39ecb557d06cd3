#include "api/openai_chat.h"

#include "api/json_body.h"
#include "api/openai_common.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace kvault {

using json = nlohmann::json;

namespace {

Status Invalid(const std::string& m) {
  return Status::InvalidArgument(m);
}

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

// OpenAI "tools": [{"type":"function","function":{"name","description","parameters"}}].
StatusOr<std::vector<common_chat_tool>> ParseTools(const json& tools) {
  if (!tools.is_array()) return Invalid("'tools' must be an array");
  std::vector<common_chat_tool> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) return Invalid("'" + where + "' must be an object");
    if (!t.contains("type") || t["type"] != "function") return Invalid("'" + where + ".type' must be 'function'");
    if (!t.contains("function") || !t["function"].is_object())
      return Invalid("'" + where + ".function' must be an object");
    const json& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string() || f["name"].get<std::string>().empty()) {
      return Invalid("'" + where + ".function.name' must be a non-empty string");
    }
    common_chat_tool tool;
    tool.name = f["name"].get<std::string>();
    if (f.contains("description") && !f["description"].is_null()) {
      if (!f["description"].is_string()) return Invalid("'" + where + ".function.description' must be a string");
      tool.description = f["description"].get<std::string>();
    }
    json params = json{{"type", "object"}, {"properties", json::object()}};
    if (f.contains("parameters") && !f["parameters"].is_null()) {
      if (!f["parameters"].is_object())
        return Invalid("'" + where + ".function.parameters' must be a JSON schema object");
      params = f["parameters"];
    }
    tool.parameters = params.dump();
    for (const auto& other : out) {
      if (other.name == tool.name) return Invalid("'tools' has two functions named '" + tool.name + "'");
    }
    out.push_back(std::move(tool));
  }
  return out;
}

// {"type":"allowed_tools","allowed_tools":{"mode":"auto"|"required","tools":[{"type":"function",
// "function":{"name":…}}, …]}}: only those tools, called as the mode says.
Status ApplyAllowedTools(const json& choice, GenerateRequest& g) {
  const json* at = choice.contains("allowed_tools") ? &choice["allowed_tools"] : nullptr;
  if (!at || !at->is_object() || !at->contains("mode") || !(*at)["mode"].is_string() || !at->contains("tools") ||
      !(*at)["tools"].is_array()) {
    return Invalid("'tool_choice.allowed_tools' must be an object with 'mode' ('auto' or 'required') and 'tools'");
  }
  const std::string mode = (*at)["mode"].get<std::string>();
  if (mode != "auto" && mode != "required") {
    return Invalid("'tool_choice.allowed_tools.mode' must be 'auto' or 'required'; got '" + mode + "'");
  }
  std::vector<common_chat_tool> allowed;
  for (const json& t : (*at)["tools"]) {
    if (!t.is_object() || !t.contains("function") || !t["function"].is_object() || !t["function"].contains("name") ||
        !t["function"]["name"].is_string()) {
      return Invalid("'tool_choice.allowed_tools.tools' must hold {\"type\":\"function\",\"function\":{\"name\":…}}");
    }
    const std::string name = t["function"]["name"].get<std::string>();
    auto it = std::find_if(g.tools.begin(), g.tools.end(), [&](const common_chat_tool& x) { return x.name == name; });
    if (it == g.tools.end())
      return Invalid("'tool_choice.allowed_tools' names function '" + name + "', which is not in 'tools'");
    allowed.push_back(*it);
  }
  if (allowed.empty()) return Invalid("'tool_choice.allowed_tools.tools' must name at least one tool");
  g.tools = std::move(allowed);
  g.tool_choice = mode == "required" ? COMMON_CHAT_TOOL_CHOICE_REQUIRED : COMMON_CHAT_TOOL_CHOICE_AUTO;
  return Status::Ok();
}

// "none" | "auto" | "required" | {"type":"function","function":{"name":…}} (that tool only) |
// allowed_tools (above).
Status ApplyToolChoice(const json& choice, GenerateRequest& g) {
  if (choice.is_string()) {
    const std::string c = choice.get<std::string>();
    if (c == "auto")
      g.tool_choice = COMMON_CHAT_TOOL_CHOICE_AUTO;
    else if (c == "none")
      g.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
    else if (c == "required")
      g.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    else
      return Invalid("'tool_choice' must be 'none', 'auto', 'required' or a function; got '" + c + "'");
    if (g.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && g.tools.empty()) {
      return Invalid("'tool_choice' is 'required' but no 'tools' were given");
    }
    return Status::Ok();
  }
  if (choice.is_object() && choice.contains("type") && choice["type"] == "allowed_tools")
    return ApplyAllowedTools(choice, g);
  if (!choice.is_object() || !choice.contains("function") || !choice["function"].is_object() ||
      !choice["function"].contains("name") || !choice["function"]["name"].is_string()) {
    return Invalid("'tool_choice' must be a string or {\"type\":\"function\",\"function\":{\"name\":…}}");
  }
  const std::string name = choice["function"]["name"].get<std::string>();
  auto it = std::find_if(g.tools.begin(), g.tools.end(), [&](const common_chat_tool& t) { return t.name == name; });
  if (it == g.tools.end()) return Invalid("'tool_choice' names function '" + name + "', which is not in 'tools'");
  common_chat_tool only = *it;
  g.tools = {std::move(only)};
  g.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
  return Status::Ok();
}

// A choice's "logprobs": the tokens' when there are any, else null.
json LogprobsOrNull(const std::vector<TokenLogprob>* logprobs) {
  return logprobs && !logprobs->empty() ? ChatLogprobsJson(*logprobs) : json(nullptr);
}

json ToolCallsJson(const std::vector<ToolCall>& calls) {
  json arr = json::array();
  for (const auto& c : calls) {
    arr.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  }
  return arr;
}

json UsageJson(const ChatCompletionResult& r) {
  return OpenAiUsageJson(r.prompt_tokens, r.completion_tokens, r.cached_tokens);
}

// Every top-level field of OpenAI's Chat Completions reference is read, accepted or refused here;
// anything else (a typo, another server's extension) is refused as OpenAI refuses it.
const std::vector<std::string_view> kChatFields = {
    // read
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "stream", "stream_options",
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "user", "modalities",
    // read, not in OpenAI's reference (llama-server's)
    "top_k", "min_p",
    // accepted: about OpenAI's own storage, billing and caching, nothing a local answer depends on
    "store", "metadata", "service_tier", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
    // refused unless null (kRefusedChatFields)
    "audio", "prediction", "web_search_options", "functions", "function_call", "verbosity", "reasoning_effort"};

// Fields of the reference kvault does not implement: a 400 naming the field, unless null.
const std::pair<const char*, const char*> kRefusedChatFields[] = {
    {"audio", "kvault generates text only"},
    {"prediction", "predicted outputs are not implemented"},
    {"web_search_options", "kvault has no web search"},
    {"functions", "the deprecated functions API is not implemented; use 'tools'"},
    {"function_call", "the deprecated functions API is not implemented; use 'tool_choice'"},
    {"verbosity", "kvault cannot steer the length of the model's answers"},
    {"reasoning_effort", "kvault does not control the model's reasoning (the chat template's default applies)"},
};

Status CheckChatFields(const json& body) {
  for (const auto& [key, why] : kRefusedChatFields) {
    Status st = RefuseField(body, key, why);
    if (!st.ok()) return st;
  }
  if (body.contains("modalities") && !body["modalities"].is_null() && body["modalities"] != json::array({"text"})) {
    return Invalid("'modalities' is not supported beyond [\"text\"]: kvault generates text only");
  }
  for (const char* key : {"safety_identifier", "prompt_cache_key", "prompt_cache_retention", "service_tier"}) {
    if (body.contains(key) && !body[key].is_null() && !body[key].is_string()) {
      return Invalid(std::string("'") + key + "' must be a string");
    }
  }
  if (body.contains("store") && !body["store"].is_null() && !body["store"].is_boolean()) {
    return Invalid("'store' must be a boolean");
  }
  if (body.contains("metadata") && !body["metadata"].is_null() && !body["metadata"].is_object()) {
    return Invalid("'metadata' must be an object");
  }
  return CheckKnownFields(body, kChatFields);
}

// "logprobs": true (each token's log-probability) and "top_logprobs" (0-20 alternatives each).
Status ParseLogprobs(const json& body, GenerateRequest& g) {
  bool want = false;
  if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    if (!body["logprobs"].is_boolean()) return Invalid("'logprobs' must be a boolean");
    want = body["logprobs"].get<bool>();
  }
  int64_t top = 0;
  if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
    if (!body["top_logprobs"].is_number_integer()) return Invalid("'top_logprobs' must be an integer");
    top = body["top_logprobs"].get<int64_t>();
    if (top < 0 || top > 20) return Invalid("'top_logprobs' must be between 0 and 20");
    if (!want) return Invalid("'top_logprobs' requires 'logprobs' to be true");
  }
  g.top_logprobs = want ? static_cast<int32_t>(top) : -1;
  return Status::Ok();
}

}  // namespace

StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body_text) {
  StatusOr<json> parsed = ParseJsonBody(body_text);
  if (!parsed.ok()) return parsed.status();
  json body = std::move(parsed).value();
  if (!body.is_object()) return Invalid("the request body must be a JSON object");

  ChatCompletionRequest out;
  Status fields = CheckChatFields(body);
  if (!fields.ok()) return fields;
  out.generate.parallel_tool_calls = true;  // OpenAI's default
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
      return Invalid("'" + where + ".role' must be one of system, developer, user, assistant, tool; got '" + role +
                     "'");
    }
    if (role == "developer") role = "system";  // OpenAI's newer name for system instructions
    auto content = ParseContent(m.contains("content") ? m["content"] : json(), i);
    if (!content.ok()) return content.status();
    common_chat_msg msg;
    msg.role = role;
    msg.content = std::move(content.value());
    if (role == "assistant" && m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      const json& calls = m["tool_calls"];
      if (!calls.is_array()) return Invalid("'" + where + ".tool_calls' must be an array");
      for (size_t k = 0; k < calls.size(); ++k) {
        const json& c = calls[k];
        const std::string cw = where + ".tool_calls[" + std::to_string(k) + "]";
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) {
          return Invalid("'" + cw + "' must be an object with a 'function'");
        }
        const json& f = c["function"];
        if (!f.contains("name") || !f["name"].is_string())
          return Invalid("'" + cw + ".function.name' must be a string");
        common_chat_tool_call call;
        call.name = f["name"].get<std::string>();
        if (f.contains("arguments") && f["arguments"].is_string()) {
          call.arguments = f["arguments"].get<std::string>();
        } else if (f.contains("arguments") && f["arguments"].is_object()) {
          call.arguments = f["arguments"].dump();
        } else {
          return Invalid("'" + cw + ".function.arguments' must be a string of JSON");
        }
        // The chat templates render arguments as JSON objects: they must parse.
        if (!json::accept(call.arguments)) return Invalid("'" + cw + ".function.arguments' is not valid JSON");
        if (c.contains("id") && c["id"].is_string()) call.id = c["id"].get<std::string>();
        msg.tool_calls.push_back(std::move(call));
      }
    }
    if (role == "tool") {
      if (!m.contains("tool_call_id") || !m["tool_call_id"].is_string()) {
        return Invalid("'" + where + ".tool_call_id' must be a string (the id of the call this answers)");
      }
      msg.tool_call_id = m["tool_call_id"].get<std::string>();
    }
    out.generate.messages.push_back(std::move(msg));
  }
  // A last assistant message is continued, as llama-server does (OpenAI itself would start a new
  // message after it; a client that sends one means a prefill).
  if (const auto& m = out.generate.messages;
      !m.empty() && m.back().role == "assistant" && m.back().tool_calls.empty()) {
    out.generate.continue_final = true;
  }

  if (body.contains("tools") && !body["tools"].is_null()) {
    auto tools = ParseTools(body["tools"]);
    if (!tools.ok()) return tools.status();
    out.generate.tools = std::move(tools.value());
  }
  if (body.contains("tool_choice") && !body["tool_choice"].is_null()) {
    Status st = ApplyToolChoice(body["tool_choice"], out.generate);
    if (!st.ok()) return st;
  }
  if (body.contains("parallel_tool_calls") && !body["parallel_tool_calls"].is_null()) {
    if (!body["parallel_tool_calls"].is_boolean()) return Invalid("'parallel_tool_calls' must be a boolean");
    out.generate.parallel_tool_calls = body["parallel_tool_calls"].get<bool>();
  }
  if (body.contains("response_format") && !body["response_format"].is_null()) {
    const json& rf = body["response_format"];
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string()) {
      return Invalid("'response_format' must be an object with a string 'type'");
    }
    const std::string type = rf["type"].get<std::string>();
    if (type == "json_object") {
      out.generate.json_schema = R"({"type":"object"})";
    } else if (type == "json_schema") {
      if (!rf.contains("json_schema") || !rf["json_schema"].is_object()) {
        return Invalid("'response_format.json_schema' must be an object");
      }
      const json& js = rf["json_schema"];
      if (js.contains("schema") && !js["schema"].is_object()) {
        return Invalid("'response_format.json_schema.schema' must be a JSON schema object");
      }
      out.generate.json_schema = js.contains("schema") ? js["schema"].dump() : R"({"type":"object"})";
    } else if (type != "text") {
      return Invalid("'response_format.type' must be 'text', 'json_object' or 'json_schema'; got '" + type + "'");
    }
    // With tools, as llama-server: llama.cpp's chat layer lists the tools in the prompt and
    // constrains the answer to the schema, so a tool call cannot be demanded at the same time.
    if (!out.generate.json_schema.empty() && !out.generate.tools.empty() &&
        out.generate.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED) {
      return Invalid(
          "'response_format' cannot be combined with a required tool call ('tool_choice'): llama.cpp's chat layer "
          "constrains the whole answer to the response format's JSON schema, so no tool could be called");
    }
  }
  if (body.contains("user") && !body["user"].is_null()) {
    if (!body["user"].is_string()) return Invalid("'user' must be a string");
    out.user = body["user"].get<std::string>();
  }

  Status common = ParseOpenAiSamplingFields(body, out.generate);
  if (!common.ok()) return common;
  Status logprobs = ParseLogprobs(body, out.generate);
  if (!logprobs.ok()) return logprobs;
  Status stream = ParseOpenAiStreamFields(body, out.generate, out.include_usage);
  if (!stream.ok()) return stream;
  return out;
}

const char* OpenAiFinishReason(const ChatCompletionResult& r) {
  // OpenAI reports both the model's end of turn and a matched stop sequence as "stop".
  if (r.finish == FinishReason::kLength || r.finish == FinishReason::kContextLength)
    return "length";  // even when a call was cut short
  return r.tool_calls.empty() ? "stop" : "tool_calls";
}

std::string RenderChatCompletion(const ChatCompletionResult& r) {
  const char* finish = OpenAiFinishReason(r);
  json message = {{"role", "assistant"}, {"content", r.text}};
  if (!r.tool_calls.empty()) {
    if (r.text.empty()) message["content"] = nullptr;
    message["tool_calls"] = ToolCallsJson(r.tool_calls);
  }
  json body = {
      {"id", r.id},
      {"object", "chat.completion"},
      {"created", r.created},
      {"model", r.model},
      {"system_fingerprint", r.system_fingerprint},
      {"choices", json::array({{{"index", 0},
                                {"message", message},
                                {"logprobs", r.logprobs ? ChatLogprobsJson(r.token_logprobs) : json(nullptr)},
                                {"finish_reason", finish}}})},
      {"usage", UsageJson(r)},
      // Not in OpenAI's schema (clients ignore unknown fields); llama-server has a similar one.
      {"timings", {{"queue_ms", r.queue_ms}, {"ttft_ms", r.ttft_ms}, {"total_ms", r.total_ms}}},
      {"cache",
       {{"resident_tokens", r.cached_resident},
        {"ram_tokens", r.cached_ram},
        {"disk_tokens", r.cached_disk},
        {"remote_tokens", r.cached_remote},
        {"computed_tokens", r.prompt_tokens - r.cached_tokens}}},
  };
  // Random-weight models can emit byte tokens that are not valid UTF-8; replace, never throw.
  return DumpJson(body);
}

std::string RenderChatCompletionChunk(const ChatCompletionResult& r, ChunkKind kind, const std::string& text,
                                      bool include_usage, const std::vector<TokenLogprob>* logprobs) {
  json chunk = {{"id", r.id},
                {"object", "chat.completion.chunk"},
                {"created", r.created},
                {"model", r.model},
                {"system_fingerprint", r.system_fingerprint}};
  json choice = {{"index", 0}, {"logprobs", LogprobsOrNull(logprobs)}, {"finish_reason", nullptr}};
  switch (kind) {
    case ChunkKind::kRole: choice["delta"] = {{"role", "assistant"}, {"content", ""}}; break;
    case ChunkKind::kText: choice["delta"] = {{"content", text}}; break;
    case ChunkKind::kFinish:
      choice["delta"] = json::object();
      choice["finish_reason"] = OpenAiFinishReason(r);
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
  return "data: " + DumpJson(chunk) + "\n\n";
}

std::string RenderToolCallChunk(const ChatCompletionResult& r, const OutputDelta& d, bool include_usage,
                                const std::vector<TokenLogprob>* logprobs) {
  json call = {{"index", d.tool_index}};
  if (d.kind == OutputDelta::Kind::kToolStart) {
    call["id"] = d.id;
    call["type"] = "function";
    call["function"] = {{"name", d.name}, {"arguments", ""}};
  } else {
    call["function"] = {{"arguments", d.text}};
  }
  json chunk = {{"id", r.id},
                {"object", "chat.completion.chunk"},
                {"created", r.created},
                {"model", r.model},
                {"system_fingerprint", r.system_fingerprint},
                {"choices", json::array({{{"index", 0},
                                          {"delta", {{"tool_calls", json::array({call})}}},
                                          {"logprobs", LogprobsOrNull(logprobs)},
                                          {"finish_reason", nullptr}}})}};
  if (include_usage) chunk["usage"] = nullptr;
  return "data: " + DumpJson(chunk) + "\n\n";
}

}  // namespace kvault

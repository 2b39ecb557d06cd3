#include "api/anthropic_request.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "api/anthropic_tools.h"
#include "api/json_body.h"
#include "api/media_placeholder.h"
#include "base64.hpp"  // llama.cpp common's header-only base64

namespace kvault {

using json = nlohmann::json;

namespace {

constexpr const char* kSignaturePrefix = "kvault1.";

Status Invalid(const std::string& m) {
  return Status::InvalidArgument(m);
}

// How an image or document block is treated: refused in the request's last user turn (the
// model would be asked about something it cannot see), a placeholder in earlier ones.
struct MediaPolicy {
  bool placeholder = false;
};

Status Unsupported(const std::string& where, const std::string& type) {
  return Invalid("'" + where + "': " + type +
                 " blocks are not supported by this server (its model reads text only); in earlier turns they "
                 "are replaced by a placeholder");
}

// Text of a "content" that is a string or an array of text blocks (tool_result, system).
StatusOr<std::string> TextOf(const json& content, const std::string& where, MediaPolicy media) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return std::string();
  if (!content.is_array()) return Invalid("'" + where + "' must be a string or an array of text blocks");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& b = content[i];
    const std::string bw = where + "[" + std::to_string(i) + "]";
    if (!b.is_object() || !b.contains("type") || !b["type"].is_string()) {
      return Invalid("'" + bw + "' must be an object with a string 'type'");
    }
    const std::string type = b["type"].get<std::string>();
    std::string piece;
    if (type == "image" || type == "document") {
      if (!media.placeholder) return Unsupported(bw, type);
      piece = MediaPlaceholder(type);
    } else if (type == "text") {
      if (!b.contains("text") || !b["text"].is_string()) return Invalid("'" + bw + ".text' must be a string");
      piece = b["text"].get<std::string>();
    } else {
      return Invalid("'" + bw + "': block type '" + type + "' is not allowed here");
    }
    if (!text.empty()) text += "\n\n";
    text += piece;
  }
  return text;
}

// A thinking block sent back in an assistant message: its text, or the text its kvault signature
// carries (display "omitted").
std::string ReasoningOf(const json& b) {
  std::string text = b.contains("thinking") && b["thinking"].is_string() ? b["thinking"].get<std::string>() : "";
  if (text.empty() && b.contains("signature") && b["signature"].is_string()) {
    text = ReasoningFromSignature(b["signature"].get<std::string>());
  }
  return text;
}

// One Anthropic message → one or more common_chat_msg (tool results become "tool" messages).
Status AppendMessage(const json& m, size_t index, MediaPolicy media, std::vector<common_chat_msg>& out) {
  const std::string where = "messages[" + std::to_string(index) + "]";
  if (!m.is_object()) return Invalid("'" + where + "' must be an object");
  if (!m.contains("role") || !m["role"].is_string()) return Invalid("'" + where + ".role' must be a string");
  const std::string role = m["role"].get<std::string>();
  if (role != "user" && role != "assistant" && role != "system") {
    return Invalid("'" + where + ".role' must be 'user', 'assistant' or 'system'; got '" + role + "'");
  }
  if (!m.contains("content")) return Invalid("'" + where + ".content' is required");
  const json& content = m["content"];
  common_chat_msg msg;
  msg.role = role;
  if (role == "system") {  // a system turn inside the conversation (Claude Code's environment block)
    auto text = TextOf(content, where + ".content", media);
    if (!text.ok()) return text.status();
    msg.content = StripBillingHeader(text.value());
    if (!msg.content.empty()) out.push_back(std::move(msg));
    return Status::Ok();
  }
  if (content.is_string()) {
    msg.content = content.get<std::string>();
    out.push_back(std::move(msg));
    return Status::Ok();
  }
  if (!content.is_array()) return Invalid("'" + where + ".content' must be a string or an array of content blocks");
  for (size_t i = 0; i < content.size(); ++i) {
    const json& b = content[i];
    const std::string bw = where + ".content[" + std::to_string(i) + "]";
    if (!b.is_object() || !b.contains("type") || !b["type"].is_string()) {
      return Invalid("'" + bw + "' must be an object with a string 'type'");
    }
    const std::string type = b["type"].get<std::string>();
    if (type == "text") {
      if (!b.contains("text") || !b["text"].is_string()) return Invalid("'" + bw + ".text' must be a string");
      if (!msg.content.empty()) msg.content += "\n\n";
      msg.content += b["text"].get<std::string>();
    } else if (type == "tool_use") {
      if (role != "assistant") return Invalid("'" + bw + "': tool_use blocks belong in assistant messages");
      if (!b.contains("name") || !b["name"].is_string()) return Invalid("'" + bw + ".name' must be a string");
      if (!b.contains("id") || !b["id"].is_string()) return Invalid("'" + bw + ".id' must be a string");
      const json input = b.contains("input") ? b["input"] : json::object();
      if (!input.is_object()) return Invalid("'" + bw + ".input' must be an object");
      msg.tool_calls.push_back({b["name"].get<std::string>(), DumpJson(input), b["id"].get<std::string>()});
    } else if (type == "tool_result") {
      if (role != "user") return Invalid("'" + bw + "': tool_result blocks belong in user messages");
      if (!b.contains("tool_use_id") || !b["tool_use_id"].is_string()) {
        return Invalid("'" + bw + ".tool_use_id' must be a string");
      }
      auto text = TextOf(b.contains("content") ? b["content"] : json(), bw + ".content", media);
      if (!text.ok()) return text.status();
      common_chat_msg result;
      result.role = "tool";
      result.tool_call_id = b["tool_use_id"].get<std::string>();
      result.content = std::move(text.value());
      if (b.contains("is_error") && !b["is_error"].is_null()) {
        if (!b["is_error"].is_boolean()) return Invalid("'" + bw + ".is_error' must be a boolean");
        if (b["is_error"].get<bool>()) result.content = "Error: " + result.content;
      }
      out.push_back(std::move(result));
    } else if (type == "thinking") {
      if (role != "assistant") return Invalid("'" + bw + "': thinking blocks belong in assistant messages");
      // Rendered as the chat template renders reasoning (many keep only the last turn's).
      if (!msg.reasoning_content.empty()) msg.reasoning_content += "\n\n";
      msg.reasoning_content += ReasoningOf(b);
    } else if (type == "redacted_thinking") {
      // Another server's encrypted reasoning: nothing this model can read.
    } else if (type == "image" || type == "document") {
      if (!media.placeholder) return Unsupported(bw, type);
      if (!msg.content.empty()) msg.content += "\n\n";
      msg.content += MediaPlaceholder(type);
    } else {
      return Invalid("'" + bw + "': content block type '" + type + "' is not supported");
    }
  }
  if (!msg.content.empty() || !msg.tool_calls.empty() || !msg.reasoning_content.empty() || content.empty()) {
    out.push_back(std::move(msg));
  }
  return Status::Ok();
}

// thinking: {"type":"enabled","budget_tokens":N} | {"type":"adaptive"} | {"type":"disabled"}, with
// "display": "summarized" | "omitted". Drives the chat template's thinking switch.
Status ApplyThinking(const json& t, MessagesRequest& out) {
  if (!t.is_object() || !t.contains("type") || !t["type"].is_string()) {
    return Invalid("thinking: must be an object with a string 'type'");
  }
  const std::string type = t["type"].get<std::string>();
  for (const auto& [key, value] : t.items()) {
    const bool known =
        key == "type" || (key == "budget_tokens" && type == "enabled") || (key == "display" && type != "disabled");
    if (!known) return Invalid("thinking." + key + ": Extra inputs are not permitted");
  }
  if (type == "disabled") {
    out.generate.enable_thinking = false;
    return Status::Ok();
  }
  if (type != "enabled" && type != "adaptive") {
    return Invalid("thinking.type: must be 'enabled', 'adaptive' or 'disabled'; got '" + type + "'");
  }
  if (type == "enabled") {
    if (!t.contains("budget_tokens") || !t["budget_tokens"].is_number_integer() ||
        t["budget_tokens"].get<int64_t>() < 1) {
      return Invalid("thinking.budget_tokens: must be a positive integer");
    }
    out.generate.thinking_budget =
        static_cast<int32_t>(std::min<int64_t>(t["budget_tokens"].get<int64_t>(), INT32_MAX));
  }
  if (t.contains("display")) {
    const json& d = t["display"];
    if (!d.is_string() || (d != "summarized" && d != "omitted")) {
      return Invalid("thinking.display: must be 'summarized' or 'omitted'");
    }
    out.display = d == "omitted" ? ThinkingDisplay::kOmitted : ThinkingDisplay::kSummarized;
  }
  out.generate.enable_thinking = true;
  out.thinking = true;
  return Status::Ok();
}

// output_config: {"effort": …} (accepted: a local model has no effort setting) and
// {"format": {"type": "json_schema", "schema": {…}}} (the answer follows the schema).
Status ApplyOutputConfig(const json& c, GenerateRequest& g) {
  if (!c.is_object()) return Invalid("output_config: must be an object");
  for (const auto& [key, value] : c.items()) {
    if (key == "effort") {
      static const char* const kEfforts[] = {"low", "medium", "high", "xhigh", "max"};
      if (!value.is_string() ||
          std::find(std::begin(kEfforts), std::end(kEfforts), value.get<std::string>()) == std::end(kEfforts)) {
        return Invalid("output_config.effort: must be 'low', 'medium', 'high', 'xhigh' or 'max'");
      }
    } else if (key == "format") {
      if (value.is_null()) continue;
      if (!value.is_object() || !value.contains("type") || value["type"] != "json_schema" ||
          !value.contains("schema") || !value["schema"].is_object()) {
        return Invalid("output_config.format: must be {\"type\": \"json_schema\", \"schema\": {…}}");
      }
      g.json_schema = DumpJson(value["schema"]);
    } else {
      return Invalid("output_config." + key + ": Extra inputs are not permitted");
    }
  }
  return Status::Ok();
}

// context_management: {"edits": [{"type": "clear_thinking_20251015" | "clear_tool_uses_20250919", …}]}.
// Accepted; kvault does not edit the history it is sent (the chat template decides what of
// earlier turns' reasoning it renders), so nothing is cleared.
Status CheckContextManagement(const json& c) {
  if (!c.is_object()) return Invalid("context_management: must be an object");
  for (const auto& [key, value] : c.items()) {
    if (key != "edits") return Invalid("context_management." + key + ": Extra inputs are not permitted");
    if (!value.is_array()) return Invalid("context_management.edits: must be an array");
    for (size_t i = 0; i < value.size(); ++i) {
      const json& e = value[i];
      const std::string where = "context_management.edits[" + std::to_string(i) + "]";
      if (!e.is_object() || !e.contains("type") || !e["type"].is_string()) {
        return Invalid(where + ": must be an object with a string 'type'");
      }
      const std::string type = e["type"].get<std::string>();
      if (type != "clear_thinking_20251015" && type != "clear_tool_uses_20250919") {
        return Invalid(where + ".type: '" + type + "' is not supported");
      }
    }
  }
  return Status::Ok();
}

// The top-level cache_control (automatic caching): {"type": "ephemeral", "ttl": "5m" | "1h"}. kvault
// keeps every prompt's blocks however it is set; the shape is checked so that a typo is not taken
// silently. (A block's own cache_control is accepted as it comes.)
Status CheckCacheControl(const json& c) {
  if (!c.is_object()) return Invalid("cache_control: must be an object");
  for (const auto& [key, value] : c.items()) {
    if (key == "type") {
      if (value != "ephemeral") return Invalid("cache_control.type: must be 'ephemeral'");
    } else if (key == "ttl") {
      if (value != "5m" && value != "1h") return Invalid("cache_control.ttl: must be '5m' or '1h'");
    } else {
      return Invalid("cache_control." + key + ": Extra inputs are not permitted");
    }
  }
  if (!c.contains("type")) return Invalid("cache_control.type: Field required");
  return Status::Ok();
}

// Claude Code's metadata.user_id is a JSON string: {"device_id":…,"session_id":…,…}.
std::string AgentFromUserId(const std::string& user_id) {
  if (user_id.empty() || user_id.front() != '{') return user_id;
  json j = json::parse(user_id, nullptr, false);
  if (j.is_object() && j.contains("session_id") && j["session_id"].is_string()) {
    return j["session_id"].get<std::string>();
  }
  return user_id;
}

}  // namespace

std::string ThinkingSignature(const std::string& reasoning) {
  return kSignaturePrefix + base64::encode(reasoning);
}

std::string ReasoningFromSignature(const std::string& signature) {
  const std::string prefix = kSignaturePrefix;
  if (signature.compare(0, prefix.size(), prefix) != 0) return "";
  try {
    return base64::decode(signature.substr(prefix.size()));
  } catch (const std::exception&) {
    return "";
  }
}

std::string StripBillingHeader(const std::string& text) {
  static const std::string kPrefix = "x-anthropic-billing-header:";
  std::string out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    const bool billing = line.substr(0, kPrefix.size()) == kPrefix;
    if (!billing) {
      out.append(line);
      if (end < text.size()) out += '\n';
    } else if (end < text.size() && !out.empty() && out.back() != '\n') {
      out += '\n';
    }
    if (end == text.size()) break;
    pos = end + 1;
  }
  // A system prompt that was only the billing line leaves nothing behind.
  const size_t first = out.find_first_not_of("\n");
  return first == std::string::npos ? std::string() : out.substr(first);
}

StatusOr<MessagesRequest> ParseMessagesRequest(std::string_view body_text, bool count_only) {
  StatusOr<json> parsed = ParseJsonBody(body_text);
  if (!parsed.ok()) return parsed.status();
  json body = std::move(parsed).value();
  if (!body.is_object()) return Invalid("the request body must be a JSON object");
  // The Messages reference's request fields; anything else is refused as Anthropic refuses it.
  static const char* const kFields[] = {
      "model",          "messages",    "max_tokens",  "system",        "metadata",
      "stop_sequences", "stream",      "temperature", "top_p",         "top_k",
      "tools",          "tool_choice", "thinking",    "output_config", "context_management",
      "service_tier",   "container",   "mcp_servers", "cache_control"};
  for (const auto& [key, value] : body.items()) {
    if (key == "inference_geo" || key == "speed") {  // in the reference; nothing a local server can honour
      if (value.is_null()) continue;
      return Invalid(key + ": not supported by this server (it runs the model on its own machine, at one speed)");
    }
    if (std::find(std::begin(kFields), std::end(kFields), key) == std::end(kFields)) {
      return Invalid(key + ": Extra inputs are not permitted");
    }
  }
  // Automatic prompt caching: accepted, as kvault caches every prompt's blocks without being asked.
  if (body.contains("cache_control") && !body["cache_control"].is_null()) {
    Status st = CheckCacheControl(body["cache_control"]);
    if (!st.ok()) return st;
  }
  if (body.contains("container") && !body["container"].is_null()) {
    return Invalid("container: code execution containers are not supported by this server");
  }
  if (body.contains("mcp_servers") && !body["mcp_servers"].is_null() &&
      !(body["mcp_servers"].is_array() && body["mcp_servers"].empty())) {
    return Invalid(
        "mcp_servers: MCP servers called by the API are not supported by this server; run them in "
        "the client");
  }
  MessagesRequest out;
  GenerateRequest& g = out.generate;
  g.count_only = count_only;
  if (body.contains("model")) {
    if (!body["model"].is_string()) return Invalid("model: must be a string");
    out.model = body["model"].get<std::string>();
  }
  if (!count_only) {
    if (!body.contains("max_tokens")) return Invalid("max_tokens: Field required");
    if (!body["max_tokens"].is_number_integer()) return Invalid("max_tokens: must be an integer");
    const int64_t v = body["max_tokens"].get<int64_t>();
    if (v < 0) return Invalid("max_tokens: must be greater than or equal to 0");
    g.max_tokens = static_cast<int32_t>(std::min<int64_t>(v, INT32_MAX));
  }
  if (body.contains("system") && !body["system"].is_null()) {
    auto system = TextOf(body["system"], "system", MediaPolicy{});
    if (!system.ok()) return system.status();
    std::string text = StripBillingHeader(system.value());
    if (!text.empty()) {
      common_chat_msg sys;
      sys.role = "system";
      sys.content = std::move(text);
      g.messages.push_back(std::move(sys));
    }
  }
  if (!body.contains("messages")) return Invalid("messages: Field required");
  const json& messages = body["messages"];
  if (!messages.is_array()) return Invalid("messages: must be an array");
  if (messages.empty()) return Invalid("messages: at least one message is required");
  // Images and documents before the last user turn become placeholders (api/media_placeholder.h).
  size_t last_user = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].is_object() && messages[i].contains("role") && messages[i]["role"] == "user") last_user = i;
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    Status st = AppendMessage(messages[i], i, MediaPolicy{i < last_user}, g.messages);
    if (!st.ok()) return st;
  }
  // A last assistant message is a prefill: the answer continues it and holds only what follows.
  if (!g.messages.empty() && g.messages.back().role == "assistant" && g.messages.back().tool_calls.empty()) {
    const common_chat_msg& last = g.messages.back();
    if (!last.content.empty() && std::isspace(static_cast<unsigned char>(last.content.back()))) {
      return Invalid("messages: final assistant content cannot end with trailing whitespace");
    }
    g.continue_final = true;
  }
  if (body.contains("tools") && !body["tools"].is_null()) {
    auto tools = ParseAnthropicTools(body["tools"]);
    if (!tools.ok()) return tools.status();
    g.tools = std::move(tools.value());
    g.parallel_tool_calls = true;  // Anthropic's default
  }
  if (body.contains("tool_choice") && !body["tool_choice"].is_null()) {
    Status st = ApplyAnthropicToolChoice(body["tool_choice"], g);
    if (!st.ok()) return st;
  }
  // No thinking unless asked for, as in Anthropic's API: the template's no-thinking form.
  g.enable_thinking = false;
  if (body.contains("thinking") && !body["thinking"].is_null()) {
    Status st = ApplyThinking(body["thinking"], out);
    if (!st.ok()) return st;
  }
  if (body.contains("output_config") && !body["output_config"].is_null()) {
    Status st = ApplyOutputConfig(body["output_config"], g);
    if (!st.ok()) return st;
  }
  if (body.contains("context_management") && !body["context_management"].is_null()) {
    Status st = CheckContextManagement(body["context_management"]);
    if (!st.ok()) return st;
  }
  if (body.contains("service_tier") && !body["service_tier"].is_null() &&
      (!body["service_tier"].is_string() ||
       (body["service_tier"] != "auto" && body["service_tier"] != "standard_only"))) {
    return Invalid("service_tier: must be 'auto' or 'standard_only'");
  }
  for (const char* key : {"temperature", "top_p"}) {
    if (body.contains(key) && !body[key].is_null() && !body[key].is_number()) {
      return Invalid(std::string(key) + ": must be a number");
    }
  }
  if (body.contains("temperature") && !body["temperature"].is_null()) {
    const float t = body["temperature"].get<float>();
    if (t < 0.0f || t > 1.0f) return Invalid("temperature: must be between 0 and 1");
    g.sampling.temperature = t;
  }
  if (body.contains("top_p") && !body["top_p"].is_null()) g.sampling.top_p = body["top_p"].get<float>();
  if (body.contains("top_k") && !body["top_k"].is_null()) {
    if (!body["top_k"].is_number_integer() || body["top_k"].get<int64_t>() < 0) {
      return Invalid("top_k: must be a non-negative integer");
    }
    g.sampling.top_k = static_cast<int32_t>(std::min<int64_t>(body["top_k"].get<int64_t>(), INT32_MAX));
  }
  Status sampling_ok = g.sampling.Validate();
  if (!sampling_ok.ok()) return sampling_ok;
  if (body.contains("stop_sequences") && !body["stop_sequences"].is_null()) {
    const json& stop = body["stop_sequences"];
    if (!stop.is_array()) return Invalid("stop_sequences: must be an array of strings");
    for (const auto& s : stop) {
      if (!s.is_string() || s.get<std::string>().empty()) return Invalid("stop_sequences: must be non-empty strings");
      g.stop.push_back(s.get<std::string>());
    }
  }
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) return Invalid("stream: must be a boolean");
    g.stream = body["stream"].get<bool>();
  }
  if (body.contains("metadata") && !body["metadata"].is_null()) {
    const json& md = body["metadata"];
    if (!md.is_object()) return Invalid("metadata: must be an object");
    for (const auto& [key, value] : md.items()) {
      if (key != "user_id") return Invalid("metadata." + key + ": Extra inputs are not permitted");
      if (!value.is_null() && !value.is_string()) return Invalid("metadata.user_id: must be a string");
    }
    if (md.contains("user_id") && md["user_id"].is_string())
      out.user_id = AgentFromUserId(md["user_id"].get<std::string>());
  }
  if (!count_only && g.max_tokens == 0) {  // a cache warm-up: the prompt is computed and kept, nothing generated
    if (g.stream) return Invalid("max_tokens: 0 (a cache warm-up) cannot be streamed; set 'stream' to false");
    if (out.thinking) return Invalid("max_tokens: 0 (a cache warm-up) cannot be combined with 'thinking'");
    if (!g.json_schema.empty()) {
      return Invalid("max_tokens: 0 (a cache warm-up) cannot be combined with 'output_config.format'");
    }
  }
  return out;
}

}  // namespace kvault

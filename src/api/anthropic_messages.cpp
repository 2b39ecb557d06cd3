#include "api/anthropic_messages.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "api/json_body.h"

namespace kvault {

using json = nlohmann::json;

namespace {

Status Invalid(const std::string& m) {
  return Status::InvalidArgument(m);
}

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Event(const char* name, const json& data) {
  return std::string("event: ") + name + "\ndata: " + Dump(data) + "\n\n";
}

// Text of a "content" that is a string or an array of text blocks (tool_result, system).
StatusOr<std::string> TextOf(const json& content, const std::string& where) {
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
    if (type == "image" || type == "document") {
      return Invalid("'" + bw + "': " + type + " blocks are not supported by this server (text only)");
    }
    if (type != "text") return Invalid("'" + bw + "': block type '" + type + "' is not allowed here");
    if (!b.contains("text") || !b["text"].is_string()) return Invalid("'" + bw + ".text' must be a string");
    if (!text.empty()) text += "\n\n";
    text += b["text"].get<std::string>();
  }
  return text;
}

// One Anthropic message → one or more common_chat_msg (tool results become "tool" messages).
Status AppendMessage(const json& m, size_t index, std::vector<common_chat_msg>& out) {
  const std::string where = "messages[" + std::to_string(index) + "]";
  if (!m.is_object()) return Invalid("'" + where + "' must be an object");
  if (!m.contains("role") || !m["role"].is_string()) return Invalid("'" + where + ".role' must be a string");
  const std::string role = m["role"].get<std::string>();
  if (role != "user" && role != "assistant") {
    return Invalid("'" + where + ".role' must be 'user' or 'assistant'; got '" + role + "'");
  }
  if (!m.contains("content")) return Invalid("'" + where + ".content' is required");
  const json& content = m["content"];
  common_chat_msg msg;
  msg.role = role;
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
      msg.tool_calls.push_back({b["name"].get<std::string>(), Dump(input), b["id"].get<std::string>()});
    } else if (type == "tool_result") {
      if (role != "user") return Invalid("'" + bw + "': tool_result blocks belong in user messages");
      if (!b.contains("tool_use_id") || !b["tool_use_id"].is_string()) {
        return Invalid("'" + bw + ".tool_use_id' must be a string");
      }
      auto text = TextOf(b.contains("content") ? b["content"] : json(), bw + ".content");
      if (!text.ok()) return text.status();
      common_chat_msg result;
      result.role = "tool";
      result.tool_call_id = b["tool_use_id"].get<std::string>();
      result.content = std::move(text.value());
      if (b.contains("is_error") && b["is_error"].is_boolean() && b["is_error"].get<bool>()) {
        result.content = "Error: " + result.content;
      }
      out.push_back(std::move(result));
    } else if (type == "thinking" || type == "redacted_thinking") {
      // Earlier turns' thinking (from another model): not part of this model's prompt.
    } else if (type == "image" || type == "document") {
      return Invalid("'" + bw + "': " + type + " blocks are not supported by this server (text only)");
    } else {
      return Invalid("'" + bw + "': content block type '" + type + "' is not supported");
    }
  }
  if (!msg.content.empty() || !msg.tool_calls.empty() || content.empty()) out.push_back(std::move(msg));
  return Status::Ok();
}

StatusOr<std::vector<common_chat_tool>> ParseTools(const json& tools) {
  if (!tools.is_array()) return Invalid("'tools' must be an array");
  std::vector<common_chat_tool> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) return Invalid("'" + where + "' must be an object");
    if (t.contains("type") && t["type"].is_string() && t["type"] != "custom") {
      return Invalid("'" + where + "': tool type '" + t["type"].get<std::string>() +
                     "' (a server-side tool) is not supported; define it as a custom tool with an input_schema");
    }
    if (!t.contains("name") || !t["name"].is_string() || t["name"].get<std::string>().empty()) {
      return Invalid("'" + where + ".name' must be a non-empty string");
    }
    if (!t.contains("input_schema") || !t["input_schema"].is_object()) {
      return Invalid("'" + where + ".input_schema' must be a JSON schema object");
    }
    common_chat_tool tool;
    tool.name = t["name"].get<std::string>();
    if (t.contains("description") && t["description"].is_string())
      tool.description = t["description"].get<std::string>();
    tool.parameters = Dump(t["input_schema"]);
    for (const auto& other : out) {
      if (other.name == tool.name) return Invalid("'tools' has two tools named '" + tool.name + "'");
    }
    out.push_back(std::move(tool));
  }
  return out;
}

Status ApplyToolChoice(const json& choice, GenerateRequest& g) {
  if (!choice.is_object() || !choice.contains("type") || !choice["type"].is_string()) {
    return Invalid("'tool_choice' must be an object with a string 'type'");
  }
  const std::string type = choice["type"].get<std::string>();
  if (choice.contains("disable_parallel_tool_use") && choice["disable_parallel_tool_use"].is_boolean()) {
    g.parallel_tool_calls = !choice["disable_parallel_tool_use"].get<bool>();
  }
  if (type == "auto") {
    g.tool_choice = COMMON_CHAT_TOOL_CHOICE_AUTO;
  } else if (type == "none") {
    g.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
  } else if (type == "any" || type == "tool") {
    if (g.tools.empty()) return Invalid("'tool_choice' is '" + type + "' but no 'tools' were given");
    g.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    if (type == "tool") {
      if (!choice.contains("name") || !choice["name"].is_string())
        return Invalid("'tool_choice.name' must be a string");
      const std::string name = choice["name"].get<std::string>();
      auto it = std::find_if(g.tools.begin(), g.tools.end(), [&](const common_chat_tool& t) { return t.name == name; });
      if (it == g.tools.end()) return Invalid("'tool_choice' names tool '" + name + "', which is not in 'tools'");
      common_chat_tool only = *it;
      g.tools = {std::move(only)};
    }
  } else {
    return Invalid("'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'; got '" + type + "'");
  }
  return Status::Ok();
}

}  // namespace

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
    if (v < 1) return Invalid("max_tokens: must be greater than or equal to 1");
    g.max_tokens = static_cast<int32_t>(std::min<int64_t>(v, INT32_MAX));
  }
  if (body.contains("system") && !body["system"].is_null()) {
    auto system = TextOf(body["system"], "system");
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
  for (size_t i = 0; i < messages.size(); ++i) {
    Status st = AppendMessage(messages[i], i, g.messages);
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
    auto tools = ParseTools(body["tools"]);
    if (!tools.ok()) return tools.status();
    g.tools = std::move(tools.value());
    g.parallel_tool_calls = true;  // Anthropic's default
  }
  if (body.contains("tool_choice") && !body["tool_choice"].is_null()) {
    Status st = ApplyToolChoice(body["tool_choice"], g);
    if (!st.ok()) return st;
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
  if (body.contains("metadata") && body["metadata"].is_object() && body["metadata"].contains("user_id") &&
      body["metadata"]["user_id"].is_string()) {
    out.user_id = body["metadata"]["user_id"].get<std::string>();
  }
  return out;
}

MessagesUsage ComputeUsage(int32_t prompt_tokens, int32_t cached_tokens, int32_t block_tokens, int32_t output_tokens) {
  MessagesUsage u;
  u.cache_read_input_tokens = cached_tokens;
  // Full blocks of the prompt (its last token excluded, as the store keys them) are kept.
  const int32_t kept = block_tokens > 0 && prompt_tokens > 0 ? (prompt_tokens - 1) / block_tokens * block_tokens : 0;
  u.cache_creation_input_tokens = std::max(0, kept - cached_tokens);
  u.input_tokens = std::max(0, prompt_tokens - cached_tokens - u.cache_creation_input_tokens);
  u.output_tokens = output_tokens;
  return u;
}

namespace {

json UsageJson(const MessagesUsage& u) {
  return {{"input_tokens", u.input_tokens},
          {"cache_creation_input_tokens", u.cache_creation_input_tokens},
          {"cache_read_input_tokens", u.cache_read_input_tokens},
          {"output_tokens", u.output_tokens}};
}

json ToolInput(const std::string& arguments) {
  // Generated text: nested past the limit it is not taken apart (see json_body.h).
  if (JsonNestingDepth(arguments, /*count_in_strings=*/true) > kMaxJsonDepth) return json::object();
  json input = json::parse(arguments, nullptr, false);
  return input.is_object() ? input : json::object();  // cut short by max_tokens: no input
}

}  // namespace

const char* AnthropicStopReason(const MessagesResult& r) {
  if (!r.tool_calls.empty() && r.finish != FinishReason::kLength) return "tool_use";
  switch (r.finish) {
    case FinishReason::kLength: return "max_tokens";
    case FinishReason::kStopSequence: return "stop_sequence";
    default: return "end_turn";
  }
}

namespace {

// The stop sequence that ended the answer: only with stop_reason "stop_sequence" (a tool call
// that ended on one reports tool_use and null, as Anthropic does).
json StopSequenceJson(const MessagesResult& r) {
  return std::string_view(AnthropicStopReason(r)) == "stop_sequence" ? json(r.stop_sequence) : json(nullptr);
}

}  // namespace

std::string RenderMessage(const MessagesResult& r) {
  json content = json::array();
  if (!r.text.empty()) content.push_back({{"type", "text"}, {"text", r.text}});
  for (const auto& c : r.tool_calls) {
    content.push_back({{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", ToolInput(c.arguments)}});
  }
  json body = {{"id", r.id},
               {"type", "message"},
               {"role", "assistant"},
               {"model", r.model},
               {"content", content},
               {"stop_reason", AnthropicStopReason(r)},
               {"stop_sequence", StopSequenceJson(r)},
               {"usage", UsageJson(r.usage)}};
  return Dump(body);
}

std::string RenderCountTokens(int32_t input_tokens) {
  return Dump(json{{"input_tokens", input_tokens}});
}

std::string AnthropicStream::Start() {
  MessagesUsage u = r_->usage;
  u.output_tokens = 0;
  json message = {{"id", r_->id},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"model", r_->model},
                  {"content", json::array()},
                  {"stop_reason", nullptr},
                  {"stop_sequence", nullptr},
                  {"usage", UsageJson(u)}};
  return Event("message_start", {{"type", "message_start"}, {"message", message}}) + Ping();
}

std::string AnthropicStream::CloseBlock() {
  if (open_index_ < 0) return "";
  const int index = open_index_;
  open_index_ = -1;
  return Event("content_block_stop", {{"type", "content_block_stop"}, {"index", index}});
}

std::string AnthropicStream::Delta(const OutputDelta& d) {
  std::string out;
  switch (d.kind) {
    case OutputDelta::Kind::kText:
      if (d.text.empty()) return out;
      if (open_index_ < 0 || !open_is_text_) {
        out += CloseBlock();
        open_index_ = next_index_++;
        open_is_text_ = true;
        out += Event("content_block_start", {{"type", "content_block_start"},
                                             {"index", open_index_},
                                             {"content_block", {{"type", "text"}, {"text", ""}}}});
      }
      out += Event("content_block_delta", {{"type", "content_block_delta"},
                                           {"index", open_index_},
                                           {"delta", {{"type", "text_delta"}, {"text", d.text}}}});
      return out;
    case OutputDelta::Kind::kToolStart:
      out += CloseBlock();
      open_index_ = next_index_++;
      open_is_text_ = false;
      out +=
          Event("content_block_start",
                {{"type", "content_block_start"},
                 {"index", open_index_},
                 {"content_block", {{"type", "tool_use"}, {"id", d.id}, {"name", d.name}, {"input", json::object()}}}});
      return out;
    case OutputDelta::Kind::kToolArgs:
      if (open_index_ < 0 || open_is_text_ || d.text.empty()) return out;
      out += Event("content_block_delta", {{"type", "content_block_delta"},
                                           {"index", open_index_},
                                           {"delta", {{"type", "input_json_delta"}, {"partial_json", d.text}}}});
      return out;
  }
  return out;
}

std::string AnthropicStream::Finish() {
  std::string out = CloseBlock();
  out += Event("message_delta",
               {{"type", "message_delta"},
                {"delta", {{"stop_reason", AnthropicStopReason(*r_)}, {"stop_sequence", StopSequenceJson(*r_)}}},
                {"usage", UsageJson(r_->usage)}});
  out += Event("message_stop", {{"type", "message_stop"}});
  return out;
}

std::string AnthropicStream::Ping() {
  return Event("ping", {{"type", "ping"}});
}

std::string AnthropicStream::Error(const std::string& error_body) {
  return "event: error\ndata: " + error_body + "\n\n";
}

}  // namespace kvault

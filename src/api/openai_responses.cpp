#include "api/openai_responses.h"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "api/ids.h"
#include "api/json_body.h"
#include "api/media_placeholder.h"
#include "api/openai_common.h"

namespace kvault {

using json = nlohmann::json;

namespace {

Status Invalid(const std::string& m) {
  return Status::InvalidArgument(m);
}

bool Present(const json& body, const char* key) {
  return body.contains(key) && !body[key].is_null();
}

// Every field of the Responses reference: read, accepted, or refused below.
const std::vector<std::string_view> kFields = {"model",
                                               "input",
                                               "instructions",
                                               "tools",
                                               "tool_choice",
                                               "parallel_tool_calls",
                                               "max_output_tokens",
                                               "temperature",
                                               "top_p",
                                               "text",
                                               "reasoning",
                                               "include",
                                               "metadata",
                                               "store",
                                               "stream",
                                               "stream_options",
                                               "previous_response_id",
                                               "prompt_cache_key",
                                               "prompt_cache_retention",
                                               "prompt_cache_options",
                                               "user",
                                               "safety_identifier",
                                               "service_tier",
                                               "truncation",
                                               "background",
                                               "client_metadata",
                                               "max_tool_calls",
                                               "top_logprobs",
                                               "conversation",
                                               "prompt",
                                               "context_management",
                                               "moderation"};

// prompt_cache_options: {"ttl", "mode": "implicit" | "explicit", "prewarm": bool,
// "comparison_response_id"}. kvault keeps every prompt's blocks whatever the mode and TTL; prewarm
// is honoured (ResponsesRequest::prewarm); cache diagnostics are not implemented (400).
Status ApplyPromptCacheOptions(const json& o, ResponsesRequest& r) {
  for (const auto& [key, value] : o.items()) {
    if (value.is_null()) continue;
    if (key == "ttl") {
      if (!value.is_string()) return Invalid("'prompt_cache_options.ttl' must be a string");
    } else if (key == "mode") {
      if (value != "implicit" && value != "explicit") {
        return Invalid("'prompt_cache_options.mode' must be 'implicit' or 'explicit'");
      }
    } else if (key == "prewarm") {
      if (!value.is_boolean()) return Invalid("'prompt_cache_options.prewarm' must be a boolean");
      r.prewarm = value.get<bool>();
    } else if (key == "comparison_response_id") {
      return Invalid(
          "'prompt_cache_options.comparison_response_id': prompt cache diagnostics are not supported by this "
          "server (the usage's cached_tokens and the X-Cache-Tokens header say what was reused)");
    } else {
      return Invalid("Unrecognized request argument supplied: prompt_cache_options." + key);
    }
  }
  return Status::Ok();
}

// OK when `v` is one of the strings `allowed`; else "'WHERE' must be one of 'a', 'b' (got V)".
Status CheckOneOf(const json& v, const std::string& where, std::initializer_list<std::string_view> allowed) {
  std::string list;
  for (std::string_view a : allowed) {
    if (v.is_string() && v.get_ref<const std::string&>() == a) return Status::Ok();
    list += (list.empty() ? "'" : ", '") + std::string(a) + "'";
  }
  return Invalid("'" + where + "' must be one of " + list + " (got " + v.dump() + ")");
}

// reasoning: {"effort", "summary", "generate_summary" (the deprecated name of summary), "context",
// "mode"}. effort drives the chat template's thinking switch: on unless "none"; the other values
// (how long to think) are accepted, as a local model's reasoning length is the template's. summary
// values are accepted: the reasoning comes back whole as reasoning_text ("none" is Codex's "no
// summaries"). context "auto" and mode "standard" are what kvault does; the others are refused.
Status ApplyReasoning(const json& rs, GenerateRequest& g) {
  if (!rs.is_object()) return Invalid("'reasoning' must be an object");
  g.enable_thinking = true;  // a reasoning object without an effort, as Codex sends {"summary":"auto"}
  for (const auto& [key, value] : rs.items()) {
    if (value.is_null()) continue;
    if (key == "effort") {
      Status st = CheckOneOf(value, "reasoning.effort", {"none", "minimal", "low", "medium", "high", "xhigh", "max"});
      if (!st.ok()) return st;
      g.enable_thinking = value != "none";
    } else if (key == "summary" || key == "generate_summary") {
      Status st = CheckOneOf(value, "reasoning." + key, {"auto", "concise", "detailed", "none"});
      if (!st.ok()) return st;
    } else if (key == "context") {
      if (value != "auto") {
        return Invalid("'reasoning.context': only 'auto' is supported (got " + value.dump() +
                       "): earlier turns' reasoning is rendered as the model's chat template renders it");
      }
    } else if (key == "mode") {
      if (value != "standard") {
        return Invalid("'reasoning.mode': only 'standard' is supported by this server (got " + value.dump() + ")");
      }
    } else {
      return Invalid("Unrecognized request argument supplied: reasoning." + key);
    }
  }
  return Status::Ok();
}

// Text of a message's content: a string, or input_text / output_text / refusal parts. Images and
// files: with `placeholder`, a fixed text (a tool's output, earlier turns: refusing them would end
// the conversation), else a 400 (the model would be asked about what it cannot see).
StatusOr<std::string> ContentText(const json& content, const std::string& where, bool placeholder) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Invalid("'" + where + "' must be a string or an array of content parts");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& p = content[i];
    const std::string pw = where + "[" + std::to_string(i) + "]";
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string()) {
      return Invalid("'" + pw + "' must be an object with a string 'type'");
    }
    const std::string type = p["type"].get<std::string>();
    const char* key = type == "refusal" ? "refusal" : "text";
    if (placeholder && (type == "input_image" || type == "input_file")) {
      text += MediaPlaceholder(type == "input_image" ? "image" : "file");
      continue;
    }
    if (type != "input_text" && type != "output_text" && type != "refusal") {
      return Invalid("'" + pw + "': content part type '" + type +
                     "' is not supported by this server (its model reads text only)");
    }
    if (!p.contains(key) || !p[key].is_string()) return Invalid("'" + pw + "." + key + "' must be a string");
    text += p[key].get<std::string>();
  }
  return text;
}

// The text of a reasoning item: its reasoning_text content, else its summary.
std::string ReasoningText(const json& item) {
  std::string text;
  for (const char* key : {"content", "summary"}) {
    if (!item.contains(key) || !item[key].is_array()) continue;
    for (const json& p : item[key]) {
      if (p.is_object() && p.contains("text") && p["text"].is_string()) {
        if (!text.empty()) text += "\n\n";
        text += p["text"].get<std::string>();
      }
    }
    if (!text.empty()) break;
  }
  return text;
}

// `media_before`: items before this index may hold images and files (placeholders).
Status AppendItems(const json& items, const std::string& where, size_t media_before,
                   std::vector<common_chat_msg>& out) {
  std::string reasoning;  // a reasoning item waits for the assistant turn it precedes
  // The assistant turn an item joins: the open one (function calls and a message after them are
  // one turn of the model), or a new one when `new_turn` or none is open; pending reasoning is
  // added to it.
  auto assistant = [&](bool new_turn) -> common_chat_msg& {
    if (new_turn || out.empty() || out.back().role != "assistant") {
      common_chat_msg m;
      m.role = "assistant";
      out.push_back(std::move(m));
    }
    if (!reasoning.empty()) {
      std::string& r = out.back().reasoning_content;
      r += (r.empty() ? "" : "\n\n") + reasoning;
      reasoning.clear();
    }
    return out.back();
  };
  for (size_t i = 0; i < items.size(); ++i) {
    const json& item = items[i];
    const std::string w = where + "[" + std::to_string(i) + "]";
    if (!item.is_object()) return Invalid("'" + w + "' must be an object");
    std::string type = "message";
    if (item.contains("type") && !item["type"].is_null()) {
      if (!item["type"].is_string()) return Invalid("'" + w + ".type' must be a string");
      type = item["type"].get<std::string>();
    }
    if (type == "message") {
      if (!item.contains("role") || !item["role"].is_string()) return Invalid("'" + w + ".role' must be a string");
      std::string role = item["role"].get<std::string>();
      if (role == "developer") role = "system";
      if (role != "user" && role != "system" && role != "assistant") {
        return Invalid("'" + w + ".role' must be 'user', 'system', 'developer' or 'assistant'; got '" + role + "'");
      }
      if (!item.contains("content")) return Invalid("'" + w + ".content' is required");
      auto text = ContentText(item["content"], w + ".content", i < media_before);
      if (!text.ok()) return text.status();
      if (role == "assistant") {
        // A message after the turn's text or calls is the model's next turn.
        const bool open = !out.empty() && out.back().role == "assistant";
        const bool new_turn = open && (!out.back().tool_calls.empty() || !out.back().content.empty());
        assistant(new_turn).content += text.value();
        continue;
      }
      reasoning.clear();
      common_chat_msg m;
      m.role = role;
      m.content = std::move(text.value());
      out.push_back(std::move(m));
    } else if (type == "function_call") {
      for (const char* key : {"call_id", "name", "arguments"}) {
        if (!item.contains(key) || !item[key].is_string()) return Invalid("'" + w + "." + key + "' must be a string");
      }
      assistant(false).tool_calls.push_back(
          {item["name"].get<std::string>(), item["arguments"].get<std::string>(), item["call_id"].get<std::string>()});
    } else if (type == "function_call_output") {
      if (!item.contains("call_id") || !item["call_id"].is_string()) {
        return Invalid("'" + w + ".call_id' must be a string");
      }
      if (!item.contains("output")) return Invalid("'" + w + ".output' is required");
      auto text = ContentText(item["output"], w + ".output", /*placeholder=*/true);
      if (!text.ok()) return text.status();
      reasoning.clear();
      common_chat_msg m;
      m.role = "tool";
      m.tool_call_id = item["call_id"].get<std::string>();
      m.content = std::move(text.value());
      out.push_back(std::move(m));
    } else if (type == "reasoning") {
      reasoning = ReasoningText(item);
    } else {
      return Invalid("'" + w + ".type': item type '" + type + "' is not supported by this server");
    }
  }
  return Status::Ok();
}

// Function tools ({"type":"function","name","description","parameters","strict"}), and Codex's
// `namespace` tools, whose functions are offered by name (the namespace is put back on calls).
Status ParseTools(const json& tools, ResponsesRequest& r) {
  if (!tools.is_array()) return Invalid("'tools' must be an array");
  auto add = [&](const json& t, const std::string& w, const std::string& ns) -> Status {
    if (!t.contains("name") || !t["name"].is_string() || t["name"].get<std::string>().empty()) {
      return Invalid("'" + w + ".name' must be a non-empty string");
    }
    common_chat_tool tool;
    tool.name = t["name"].get<std::string>();
    if (Present(t, "description")) {
      if (!t["description"].is_string()) return Invalid("'" + w + ".description' must be a string");
      tool.description = t["description"].get<std::string>();
    }
    json params = json{{"type", "object"}, {"properties", json::object()}};
    if (Present(t, "parameters")) {
      if (!t["parameters"].is_object()) return Invalid("'" + w + ".parameters' must be a JSON schema object");
      params = t["parameters"];
    }
    tool.parameters = DumpJson(params);
    for (const auto& other : r.generate.tools) {
      if (other.name == tool.name) return Invalid("'tools' has two functions named '" + tool.name + "'");
    }
    if (!ns.empty()) r.namespaces[tool.name] = ns;
    r.generate.tools.push_back(std::move(tool));
    return Status::Ok();
  };
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string w = "tools[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("type") || !t["type"].is_string()) {
      return Invalid("'" + w + "' must be an object with a string 'type'");
    }
    const std::string type = t["type"].get<std::string>();
    if (type == "function") {
      Status st = add(t, w, "");
      if (!st.ok()) return st;
    } else if (type == "namespace") {
      if (!t.contains("name") || !t["name"].is_string()) return Invalid("'" + w + ".name' must be a string");
      if (!t.contains("tools") || !t["tools"].is_array()) return Invalid("'" + w + ".tools' must be an array");
      for (size_t j = 0; j < t["tools"].size(); ++j) {
        const json& f = t["tools"][j];
        const std::string fw = w + ".tools[" + std::to_string(j) + "]";
        if (!f.is_object() || !f.contains("type") || f["type"] != "function") {
          return Invalid("'" + fw + ".type' must be 'function'");
        }
        Status st = add(f, fw, t["name"].get<std::string>());
        if (!st.ok()) return st;
      }
    } else {
      return Invalid("'" + w + ".type': '" + type +
                     "' is a hosted tool, which this server does not run; offer function tools only (Codex: "
                     "web_search = \"disabled\" in config.toml)");
    }
  }
  return Status::Ok();
}

// "none" | "auto" | "required" | {"type":"function","name"} | {"type":"allowed_tools","mode","tools"}.
Status ApplyToolChoice(const json& c, GenerateRequest& g) {
  auto only = [&](const std::vector<std::string>& names) -> Status {
    std::vector<common_chat_tool> kept;
    for (const auto& name : names) {
      auto it = std::find_if(g.tools.begin(), g.tools.end(), [&](const common_chat_tool& t) { return t.name == name; });
      if (it == g.tools.end()) return Invalid("'tool_choice' names function '" + name + "', which is not in 'tools'");
      kept.push_back(*it);
    }
    g.tools = std::move(kept);
    return Status::Ok();
  };
  if (c.is_string()) {
    const std::string s = c.get<std::string>();
    if (s == "auto") {
      g.tool_choice = COMMON_CHAT_TOOL_CHOICE_AUTO;
    } else if (s == "none") {
      g.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
    } else if (s == "required") {
      if (g.tools.empty()) return Invalid("'tool_choice' is 'required' but no 'tools' were given");
      g.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    } else {
      return Invalid("'tool_choice' must be 'none', 'auto', 'required' or an object; got '" + s + "'");
    }
    return Status::Ok();
  }
  const std::string type =
      c.is_object() && c.contains("type") && c["type"].is_string() ? c["type"].get<std::string>() : "";
  if (type == "function") {
    if (!c.contains("name") || !c["name"].is_string()) return Invalid("'tool_choice.name' must be a string");
    g.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    return only({c["name"].get<std::string>()});
  }
  if (type == "allowed_tools") {
    const std::string mode = c.contains("mode") && c["mode"].is_string() ? c["mode"].get<std::string>() : "";
    if ((mode != "auto" && mode != "required") || !c.contains("tools") || !c["tools"].is_array() ||
        c["tools"].empty()) {
      return Invalid("'tool_choice' allowed_tools needs 'mode' ('auto' or 'required') and a non-empty 'tools'");
    }
    std::vector<std::string> names;
    for (const json& t : c["tools"]) {
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string()) {
        return Invalid("'tool_choice.tools' must hold {\"type\":\"function\",\"name\":…}");
      }
      names.push_back(t["name"].get<std::string>());
    }
    g.tool_choice = mode == "required" ? COMMON_CHAT_TOOL_CHOICE_REQUIRED : COMMON_CHAT_TOOL_CHOICE_AUTO;
    return only(names);
  }
  return Invalid("'tool_choice' of type '" + type + "' is not supported (function tools only)");
}

// text.format: text | json_object | json_schema {name, schema, strict, description}.
Status ApplyTextFormat(const json& text, GenerateRequest& g) {
  if (!text.is_object()) return Invalid("'text' must be an object");
  for (const auto& [key, value] : text.items()) {
    if (key != "format" && key != "verbosity") return Invalid("Unrecognized request argument supplied: text." + key);
  }
  if (!Present(text, "format")) return Status::Ok();
  const json& f = text["format"];
  const std::string type =
      f.is_object() && f.contains("type") && f["type"].is_string() ? f["type"].get<std::string>() : "";
  if (type == "text") return Status::Ok();
  if (type == "json_object") {
    g.json_schema = R"({"type":"object"})";
    return Status::Ok();
  }
  if (type == "json_schema") {
    if (!f.contains("schema") || !f["schema"].is_object()) return Invalid("'text.format.schema' must be an object");
    g.json_schema = DumpJson(f["schema"]);
    return Status::Ok();
  }
  return Invalid("'text.format.type' must be 'text', 'json_object' or 'json_schema'");
}

Status ParseOptionalString(const json& body, const char* key, std::string& out) {
  if (!Present(body, key)) return Status::Ok();
  if (!body[key].is_string()) return Invalid(std::string("'") + key + "' must be a string");
  out = body[key].get<std::string>();
  return Status::Ok();
}

}  // namespace

StatusOr<ResponsesRequest> ParseResponsesRequest(std::string_view body_text) {
  StatusOr<json> parsed = ParseJsonBody(body_text);
  if (!parsed.ok()) return parsed.status();
  const json body = std::move(parsed).value();
  if (!body.is_object()) return Invalid("the request body must be a JSON object");
  Status known = CheckKnownFields(body, kFields);
  if (!known.ok()) return known;
  ResponsesRequest r;
  GenerateRequest& g = r.generate;
  for (const auto& [key, why] : std::vector<std::pair<const char*, const char*>>{
           {"conversation", "conversations are not stored by this server; use previous_response_id"},
           {"prompt", "prompt templates are not stored by this server"},
           {"max_tool_calls", "the number of tool calls is not limited by this server"},
           {"context_management", "this server does not edit the context"},
           {"moderation", "this server has no moderation"}}) {
    Status st = RefuseField(body, key, why);
    if (!st.ok()) return st;
  }
  if (Present(body, "background") && body["background"] != false) {
    return Invalid("'background': background responses are not supported by this server");
  }
  if (Present(body, "truncation") && body["truncation"] != "disabled") {
    return Invalid("'truncation': only 'disabled' is supported (a prompt longer than the context is an error)");
  }
  if (Present(body, "top_logprobs") && body["top_logprobs"] != 0) {
    return Invalid("'top_logprobs' is not supported on /v1/responses (use /v1/chat/completions)");
  }
  if (Present(body, "include")) {
    if (!body["include"].is_array()) return Invalid("'include' must be an array");
    for (const json& v : body["include"]) {
      // Reasoning comes back as text (reasoning_text), never encrypted: there is nothing to add.
      if (v != "reasoning.encrypted_content") {
        return Invalid("'include': " + DumpJson(v) + " is not supported by this server");
      }
    }
  }
  if (Present(body, "model")) {
    if (!body["model"].is_string()) return Invalid("'model' must be a string");
    r.model = body["model"].get<std::string>();
  }
  if (!Present(body, "input") && !Present(body, "previous_response_id")) return Invalid("'input' is required");
  if (Present(body, "input")) {
    const json& in = body["input"];
    if (in.is_string()) {
      r.input = json::array({{{"type", "message"}, {"role", "user"}, {"content", in}}});
    } else if (in.is_array()) {
      r.input = in;
    } else {
      return Invalid("'input' must be a string or an array of items");
    }
  }
  for (const auto& [key, out] :
       std::vector<std::pair<const char*, std::string*>>{{"instructions", &r.instructions},
                                                         {"previous_response_id", &r.previous_response_id},
                                                         {"prompt_cache_key", &r.prompt_cache_key},
                                                         {"user", &r.user}}) {
    Status st = ParseOptionalString(body, key, *out);
    if (!st.ok()) return st;
  }
  for (const char* key : {"safety_identifier", "service_tier", "prompt_cache_retention"}) {
    if (Present(body, key) && !body[key].is_string()) return Invalid(std::string("'") + key + "' must be a string");
  }
  for (const char* key : {"metadata", "client_metadata", "stream_options", "prompt_cache_options"}) {
    if (Present(body, key) && !body[key].is_object()) return Invalid(std::string("'") + key + "' must be an object");
  }
  if (Present(body, "prompt_cache_options")) {
    Status st = ApplyPromptCacheOptions(body["prompt_cache_options"], r);
    if (!st.ok()) return st;
  }
  if (Present(body, "store")) {
    if (!body["store"].is_boolean()) return Invalid("'store' must be a boolean");
    r.store = body["store"].get<bool>();
  }
  if (Present(body, "stream")) {
    if (!body["stream"].is_boolean()) return Invalid("'stream' must be a boolean");
    g.stream = body["stream"].get<bool>();
  }
  if (Present(body, "max_output_tokens")) {
    if (!body["max_output_tokens"].is_number_integer() || body["max_output_tokens"].get<int64_t>() < 1) {
      return Invalid("'max_output_tokens' must be an integer >= 1");
    }
    g.max_tokens = static_cast<int32_t>(std::min<int64_t>(body["max_output_tokens"].get<int64_t>(), INT32_MAX));
  }
  if (r.prewarm) g.max_tokens = 0;  // the engine's warm-up: the prompt computed and kept, no output
  Status sampling = ParseOpenAiSamplingFields(body, g);  // temperature, top_p (the rest are not fields here)
  if (!sampling.ok()) return sampling;
  if (Present(body, "tools")) {
    Status st = ParseTools(body["tools"], r);
    if (!st.ok()) return st;
  }
  g.parallel_tool_calls = true;  // OpenAI's default
  if (Present(body, "parallel_tool_calls")) {
    if (!body["parallel_tool_calls"].is_boolean()) return Invalid("'parallel_tool_calls' must be a boolean");
    g.parallel_tool_calls = body["parallel_tool_calls"].get<bool>();
  }
  if (Present(body, "tool_choice")) {
    Status st = ApplyToolChoice(body["tool_choice"], g);
    if (!st.ok()) return st;
  }
  if (Present(body, "text")) {
    Status st = ApplyTextFormat(body["text"], g);
    if (!st.ok()) return st;
  }
  // As in chat completions (llama-server's rule): a response format constrains the whole answer,
  // so a call that must be made cannot be.
  if (!g.json_schema.empty() && g.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED) {
    return Invalid("'tool_choice': a required tool call cannot be combined with 'text.format' " +
                   std::string("json_schema / json_object (the format constrains the whole answer)"));
  }
  json reasoning = {{"effort", nullptr}, {"summary", nullptr}};
  if (Present(body, "reasoning")) {
    const json& rs = body["reasoning"];
    Status st = ApplyReasoning(rs, g);  // reasoning is returned as reasoning items
    if (!st.ok()) return st;
    r.thinking = *g.enable_thinking;
    reasoning.update(rs);
  }
  r.echo = {{"instructions", r.instructions.empty() ? json(nullptr) : json(r.instructions)},
            {"tools", Present(body, "tools") ? body["tools"] : json::array()},
            {"tool_choice", Present(body, "tool_choice") ? body["tool_choice"] : json("auto")},
            {"parallel_tool_calls", g.parallel_tool_calls},
            {"text", Present(body, "text") ? body["text"] : json{{"format", {{"type", "text"}}}}},
            {"reasoning", reasoning},
            {"metadata", Present(body, "metadata") ? body["metadata"] : json::object()},
            {"temperature", Present(body, "temperature") ? body["temperature"] : json(nullptr)},
            {"top_p", Present(body, "top_p") ? body["top_p"] : json(nullptr)},
            {"max_output_tokens", Present(body, "max_output_tokens") ? body["max_output_tokens"] : json(nullptr)},
            {"previous_response_id", r.previous_response_id.empty() ? json(nullptr) : json(r.previous_response_id)},
            {"store", r.store},
            {"truncation", "disabled"},
            {"background", false},
            {"service_tier", Present(body, "service_tier") ? body["service_tier"] : json("default")},
            {"user", Present(body, "user") ? body["user"] : json(nullptr)},
            {"safety_identifier", Present(body, "safety_identifier") ? body["safety_identifier"] : json(nullptr)},
            {"prompt_cache_key", r.prompt_cache_key.empty() ? json(nullptr) : json(r.prompt_cache_key)}};
  return r;
}

Status BuildResponsesMessages(const std::string& instructions, const json& history, const json& input,
                              std::vector<common_chat_msg>& out) {
  if (!instructions.empty()) {
    common_chat_msg sys;
    sys.role = "system";
    sys.content = instructions;
    out.push_back(std::move(sys));
  }
  Status st = AppendItems(history, "previous_response_id", history.size(), out);
  if (!st.ok()) return st;
  // Images and files: placeholders before the last user message (earlier turns a client replays,
  // as Codex does), a 400 in it.
  size_t last_user = 0;
  for (size_t i = 0; i < input.size(); ++i) {
    if (input[i].is_object() && input[i].contains("role") && input[i]["role"] == "user") last_user = i;
  }
  st = AppendItems(input, "input", last_user, out);
  if (!st.ok()) return st;
  if (out.empty()) return Invalid("'input' must hold at least one item");
  return Status::Ok();
}

ResponseBuilder::ResponseBuilder(json base, std::map<std::string, std::string> namespaces)
    : response_(std::move(base)), namespaces_(std::move(namespaces)) {
  response_["object"] = "response";
  response_["status"] = "in_progress";
  response_["output"] = json::array();
  response_["error"] = nullptr;
  response_["incomplete_details"] = nullptr;
  response_["usage"] = nullptr;
}

std::string ResponseBuilder::Event(const char* type, json data) {
  data["type"] = type;
  data["sequence_number"] = seq_++;
  return std::string("event: ") + type + "\ndata: " + DumpJson(data) + "\n\n";
}

std::string ResponseBuilder::Created() {
  std::string out = Event("response.created", {{"response", response_}});
  out += InProgress();  // numbered after response.created
  return out;
}

std::string ResponseBuilder::InProgress() {
  return Event("response.in_progress", {{"response", response_}});
}

std::string ResponseBuilder::Open(Item kind, json item) {
  std::string out = Close();
  open_ = kind;
  item_ = std::move(item);
  text_.clear();
  const int64_t index = static_cast<int64_t>(response_["output"].size());
  out += Event("response.output_item.added", {{"output_index", index}, {"item", item_}});
  if (kind == Item::kMessage) {
    out += Event("response.content_part.added",
                 {{"item_id", item_["id"]},
                  {"output_index", index},
                  {"content_index", 0},
                  {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
  } else if (kind == Item::kReasoning) {
    out += Event("response.content_part.added", {{"item_id", item_["id"]},
                                                 {"output_index", index},
                                                 {"content_index", 0},
                                                 {"part", {{"type", "reasoning_text"}, {"text", ""}}}});
  }
  return out;
}

std::string ResponseBuilder::Close() {
  if (open_ == Item::kNone) return "";
  std::string out;
  const int64_t index = static_cast<int64_t>(response_["output"].size());
  const json id = item_["id"];
  if (open_ == Item::kMessage) {
    const json part = {{"type", "output_text"}, {"text", text_}, {"annotations", json::array()}};
    out += Event(
        "response.output_text.done",
        {{"item_id", id}, {"output_index", index}, {"content_index", 0}, {"text", text_}, {"logprobs", json::array()}});
    out += Event("response.content_part.done",
                 {{"item_id", id}, {"output_index", index}, {"content_index", 0}, {"part", part}});
    item_["content"] = json::array({part});
  } else if (open_ == Item::kReasoning) {
    const json part = {{"type", "reasoning_text"}, {"text", text_}};
    out += Event("response.reasoning_text.done",
                 {{"item_id", id}, {"output_index", index}, {"content_index", 0}, {"text", text_}});
    out += Event("response.content_part.done",
                 {{"item_id", id}, {"output_index", index}, {"content_index", 0}, {"part", part}});
    item_["content"] = json::array({part});
  } else {
    item_["arguments"] = text_;
    out += Event("response.function_call_arguments.done",
                 {{"item_id", id}, {"output_index", index}, {"name", item_["name"]}, {"arguments", text_}});
  }
  item_["status"] = item_status_;
  item_status_ = "completed";
  out += Event("response.output_item.done", {{"output_index", index}, {"item", item_}});
  response_["output"].push_back(item_);
  open_ = Item::kNone;
  return out;
}

std::string ResponseBuilder::Delta(const OutputDelta& d) {
  std::string out;
  const int64_t index = static_cast<int64_t>(response_["output"].size());  // the open item's (not yet in output)
  switch (d.kind) {
    case OutputDelta::Kind::kThinking:
      if (d.text.empty()) return out;
      if (open_ != Item::kReasoning) {
        out += Open(Item::kReasoning, {{"id", NewRandomId("rs_")},
                                       {"type", "reasoning"},
                                       {"summary", json::array()},
                                       {"content", json::array()},
                                       {"encrypted_content", nullptr},
                                       {"status", "in_progress"}});
      }
      text_ += d.text;
      out += Event("response.reasoning_text.delta", {{"item_id", item_["id"]},
                                                     {"output_index", response_["output"].size()},
                                                     {"content_index", 0},
                                                     {"delta", d.text}});
      return out;
    case OutputDelta::Kind::kText:
      if (d.text.empty()) return out;
      if (open_ != Item::kMessage) {
        out += Open(Item::kMessage, {{"id", NewRandomId("msg_")},
                                     {"type", "message"},
                                     {"role", "assistant"},
                                     {"status", "in_progress"},
                                     {"content", json::array()}});
      }
      text_ += d.text;
      out += Event("response.output_text.delta", {{"item_id", item_["id"]},
                                                  {"output_index", response_["output"].size()},
                                                  {"content_index", 0},
                                                  {"delta", d.text},
                                                  {"logprobs", json::array()}});
      return out;
    case OutputDelta::Kind::kToolStart: {
      json item = {{"id", NewRandomId("fc_")}, {"type", "function_call"}, {"status", "in_progress"},
                   {"call_id", d.id},          {"name", d.name},          {"arguments", ""}};
      auto ns = namespaces_.find(d.name);
      if (ns != namespaces_.end()) item["namespace"] = ns->second;
      out = Open(Item::kCall, std::move(item));
      tool_index_ = d.tool_index;
      return out;
    }
    case OutputDelta::Kind::kToolArgs:
      // Arguments of the open call only (an earlier call's arrive before the next is announced).
      if (open_ != Item::kCall || d.tool_index != tool_index_ || d.text.empty()) return out;
      text_ += d.text;
      out += Event("response.function_call_arguments.delta",
                   {{"item_id", item_["id"]}, {"output_index", index}, {"delta", d.text}});
      return out;
  }
  return out;
}

std::string ResponseBuilder::Finish(FinishReason finish, const ResponsesUsage& u) {
  const bool cut = finish == FinishReason::kLength || finish == FinishReason::kContextLength;
  if (cut && open_ != Item::kNone) item_status_ = "incomplete";  // the item the limit cut
  std::string out = Close();
  response_["status"] = cut ? "incomplete" : "completed";
  if (cut) response_["incomplete_details"] = {{"reason", "max_output_tokens"}};
  response_["usage"] = {{"input_tokens", u.input_tokens},
                        {"input_tokens_details", {{"cached_tokens", u.cached_tokens}, {"cache_write_tokens", 0}}},
                        {"output_tokens", u.output_tokens},
                        {"output_tokens_details", {{"reasoning_tokens", 0}}},
                        {"total_tokens", u.input_tokens + u.output_tokens}};
  return out;
}

std::string ResponseBuilder::Completed() {
  return Event(response_["status"] == "incomplete" ? "response.incomplete" : "response.completed",
               {{"response", response_}});
}

std::string ResponseBuilder::Failed(const std::string& code, const std::string& message) {
  response_["status"] = "failed";
  response_["error"] = {{"code", code}, {"message", message}};
  return Event("response.failed", {{"response", response_}});
}

std::string RenderResponse(const json& response) {
  return DumpJson(response);
}

std::string RenderResponseDeleted(const std::string& id) {
  return DumpJson(json{{"id", id}, {"object", "response"}, {"deleted", true}});
}

}  // namespace kvault

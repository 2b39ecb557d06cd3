#include "api/anthropic_tools.h"

#include <algorithm>
#include <iterator>

#include "api/json_body.h"

namespace kvault {

using json = nlohmann::json;

namespace {

Status Invalid(const std::string& m) {
  return Status::InvalidArgument(m);
}

}  // namespace

StatusOr<std::vector<common_chat_tool>> ParseAnthropicTools(const json& tools) {
  // The fields of a custom tool in the Messages reference; accepted ones that change nothing
  // here: cache_control (caching is automatic), strict (tool inputs always follow the schema's
  // grammar), defer_loading (every tool is rendered), input_examples, eager_input_streaming.
  static const char* const kToolFields[] = {"type",          "name",           "description",
                                            "input_schema",  "strict",         "cache_control",
                                            "defer_loading", "input_examples", "eager_input_streaming"};
  if (!tools.is_array()) return Invalid("'tools' must be an array");
  std::vector<common_chat_tool> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) return Invalid("'" + where + "' must be an object");
    for (const char* key : {"type", "description"}) {
      if (t.contains(key) && !t[key].is_null() && !t[key].is_string()) {
        return Invalid("'" + where + "." + key + "' must be a string");
      }
    }
    if (t.contains("type") && t["type"].is_string() && t["type"] != "custom") {
      return Invalid("'" + where + "': tool type '" + t["type"].get<std::string>() +
                     "' (a server-side tool) is not supported; define it as a custom tool with an input_schema");
    }
    for (const auto& [key, value] : t.items()) {
      if (std::find(std::begin(kToolFields), std::end(kToolFields), key) == std::end(kToolFields)) {
        return Invalid(where + "." + key + ": Extra inputs are not permitted");
      }
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
    tool.parameters = DumpJson(t["input_schema"]);
    for (const auto& other : out) {
      if (other.name == tool.name) return Invalid("'tools' has two tools named '" + tool.name + "'");
    }
    out.push_back(std::move(tool));
  }
  return out;
}

Status ApplyAnthropicToolChoice(const json& choice, GenerateRequest& g) {
  if (!choice.is_object() || !choice.contains("type") || !choice["type"].is_string()) {
    return Invalid("'tool_choice' must be an object with a string 'type'");
  }
  const std::string type = choice["type"].get<std::string>();
  for (const auto& [key, value] : choice.items()) {
    if (key != "type" && key != "name" && key != "disable_parallel_tool_use") {
      return Invalid("tool_choice." + key + ": Extra inputs are not permitted");
    }
  }
  if (choice.contains("disable_parallel_tool_use") && !choice["disable_parallel_tool_use"].is_null()) {
    if (!choice["disable_parallel_tool_use"].is_boolean()) {
      return Invalid("'tool_choice.disable_parallel_tool_use' must be a boolean");
    }
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

}  // namespace kvault

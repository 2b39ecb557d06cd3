// Fuzz target: OpenAI request parsing (chat completions and text completions). Any input must
// give a value or an InvalidArgument, never a crash, hang or sanitizer report; and:
// - an error names what is wrong: a non-empty message that quotes the field ('…'), speaks of the
//   request body, or names the unrecognized argument;
// - an accepted chat request round-trips: written back as an OpenAI request (WriteChatRequest,
//   every field the parser reads), it parses again to the same request, and a parsed request
//   keeps the parser's own invariants (roles, tool choice, logprobs, continue_final, sampling
//   ranges).
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/json_body.h"
#include "api/openai_chat.h"
#include "api/openai_completions.h"

namespace {

using json = nlohmann::json;

[[noreturn]] void Fail() {
  __builtin_trap();
}

void CheckError(const kvault::Status& st) {
  if (st.code() != kvault::Status::Code::kInvalidArgument) Fail();
  const std::string& m = st.message();
  if (m.empty()) Fail();
  if (m.find('\'') == std::string::npos && m.rfind("the request body", 0) != 0 &&
      m.rfind("Unrecognized request argument supplied: ", 0) != 0) {
    Fail();
  }
}

const char* ToolChoiceName(common_chat_tool_choice c) {
  switch (c) {
    case COMMON_CHAT_TOOL_CHOICE_AUTO: return "auto";
    case COMMON_CHAT_TOOL_CHOICE_NONE: return "none";
    case COMMON_CHAT_TOOL_CHOICE_REQUIRED: return "required";
  }
  Fail();
}

// The parsed request as an OpenAI request body, in canonical form. Returns false when it cannot
// be written so that it parses back the same (two logit_bias keys naming one token id, "7" and
// "007": an object cannot hold both once written as ids).
bool WriteChatRequest(const kvault::ChatCompletionRequest& r, json& out) {
  const kvault::GenerateRequest& g = r.generate;
  out = json::object();
  out["model"] = r.model;
  json messages = json::array();
  for (const auto& m : g.messages) {
    json jm = {{"role", m.role}, {"content", m.content}};
    if (!m.tool_calls.empty()) {
      json calls = json::array();
      for (const auto& c : m.tool_calls) {
        calls.push_back(
            {{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
      }
      jm["tool_calls"] = calls;
    }
    if (m.role == "tool") jm["tool_call_id"] = m.tool_call_id;
    messages.push_back(jm);
  }
  out["messages"] = messages;
  if (!g.tools.empty()) {
    json tools = json::array();
    for (const auto& t : g.tools) {
      tools.push_back(
          {{"type", "function"},
           {"function",
            {{"name", t.name}, {"description", t.description}, {"parameters", json::parse(t.parameters)}}}});
    }
    out["tools"] = tools;
  }
  out["tool_choice"] = ToolChoiceName(g.tool_choice);
  out["parallel_tool_calls"] = g.parallel_tool_calls;
  if (!g.json_schema.empty()) {
    out["response_format"] = {{"type", "json_schema"},
                              {"json_schema", {{"name", "s"}, {"schema", json::parse(g.json_schema)}}}};
  }
  if (!r.user.empty()) out["user"] = r.user;
  if (g.max_tokens != -1) out["max_tokens"] = g.max_tokens;
  const kvault::SamplingParams& sp = g.sampling;
  if (sp.temperature) out["temperature"] = *sp.temperature;
  out["top_p"] = sp.top_p;
  out["min_p"] = sp.min_p;
  out["presence_penalty"] = sp.presence_penalty;
  out["frequency_penalty"] = sp.frequency_penalty;
  out["top_k"] = sp.top_k;
  if (sp.seed) out["seed"] = *sp.seed;
  if (!sp.logit_bias.empty()) {
    json bias = json::object();
    for (const auto& [id, v] : sp.logit_bias) {
      const std::string key = std::to_string(id);
      if (bias.contains(key)) return false;
      bias[key] = v;
    }
    out["logit_bias"] = bias;
  }
  if (g.top_logprobs >= 0) {
    out["logprobs"] = true;
    out["top_logprobs"] = g.top_logprobs;
  }
  if (!g.stop.empty()) out["stop"] = g.stop;
  out["stream"] = g.stream;
  if (g.stream) out["stream_options"] = {{"include_usage", r.include_usage}};
  return true;
}

void CheckInvariants(const kvault::ChatCompletionRequest& r) {
  const kvault::GenerateRequest& g = r.generate;
  if (g.messages.empty() || g.raw_prompt || g.count_only) Fail();
  for (const auto& m : g.messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") Fail();
    if (!m.tool_calls.empty() && m.role != "assistant") Fail();
    for (const auto& c : m.tool_calls) {
      if (!json::accept(c.arguments)) Fail();
    }
  }
  const auto& last = g.messages.back();
  if (g.continue_final != (last.role == "assistant" && last.tool_calls.empty())) Fail();
  for (size_t i = 0; i < g.tools.size(); ++i) {
    if (g.tools[i].name.empty() || !json::accept(g.tools[i].parameters)) Fail();
    for (size_t k = 0; k < i; ++k) {
      if (g.tools[k].name == g.tools[i].name) Fail();
    }
  }
  if (g.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && g.tools.empty()) Fail();
  if (!g.json_schema.empty() && !json::accept(g.json_schema)) Fail();
  if (g.top_logprobs < -1 || g.top_logprobs > 20) Fail();
  if (g.max_tokens == 0 || g.max_tokens < -1) Fail();
  if (!g.sampling.Validate().ok()) Fail();
  if (r.include_usage && !g.stream) Fail();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto chat = kvault::ParseChatCompletionRequest(body);
  if (!chat.ok()) {
    CheckError(chat.status());
  } else {
    CheckInvariants(*chat);
    json written;
    if (WriteChatRequest(*chat, written)) {
      const std::string text = kvault::DumpJson(written);
      auto again = kvault::ParseChatCompletionRequest(text);
      if (!again.ok()) Fail();
      json rewritten;
      if (!WriteChatRequest(*again, rewritten) || kvault::DumpJson(rewritten) != text) Fail();
      if (again->generate.continue_final != chat->generate.continue_final) Fail();
    }
  }
  auto completion = kvault::ParseCompletionRequest(body);
  if (!completion.ok()) {
    CheckError(completion.status());
  } else {
    const kvault::GenerateRequest& g = completion->generate;
    if (!g.raw_prompt || g.raw_prompt->empty() || !g.messages.empty()) Fail();
    if (!g.sampling.Validate().ok()) Fail();
  }
  return 0;
}

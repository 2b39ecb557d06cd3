#include "api/anthropic_messages.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "api/json_body.h"

namespace kvault {

using json = nlohmann::json;

namespace {

std::string Event(const char* name, const json& data) {
  return std::string("event: ") + name + "\ndata: " + DumpJson(data) + "\n\n";
}

}  // namespace

MessagesUsage ComputeUsage(int32_t prompt_tokens, int32_t cached_tokens, int32_t kept_tokens, int32_t output_tokens) {
  MessagesUsage u;
  u.cache_read_input_tokens = cached_tokens;
  u.cache_creation_input_tokens = std::max(0, kept_tokens - cached_tokens);
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
  const bool cut = r.finish == FinishReason::kLength || r.finish == FinishReason::kContextLength;
  if (!r.tool_calls.empty() && !cut) return "tool_use";
  switch (r.finish) {
    case FinishReason::kLength: return "max_tokens";
    case FinishReason::kContextLength: return "model_context_window_exceeded";
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

namespace {

json ThinkingBlock(const MessagesResult& r) {
  return {{"type", "thinking"},
          {"thinking", r.display == ThinkingDisplay::kOmitted ? "" : r.reasoning},
          {"signature", ThinkingSignature(r.reasoning)}};
}

}  // namespace

std::string RenderMessage(const MessagesResult& r) {
  json content = json::array();
  if (r.thinking && !r.reasoning.empty()) content.push_back(ThinkingBlock(r));
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
  return DumpJson(body);
}

std::string RenderCountTokens(int32_t input_tokens) {
  return DumpJson(json{{"input_tokens", input_tokens}});
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
  std::string out;
  if (open_ == Block::kThinking) {
    out += Event("content_block_delta",
                 {{"type", "content_block_delta"},
                  {"index", open_index_},
                  {"delta", {{"type", "signature_delta"}, {"signature", ThinkingSignature(reasoning_)}}}});
    reasoning_.clear();
  }
  out += Event("content_block_stop", {{"type", "content_block_stop"}, {"index", open_index_}});
  open_index_ = -1;
  open_ = Block::kNone;
  return out;
}

std::string AnthropicStream::Open(Block kind, const json& content_block) {
  std::string out = CloseBlock();
  open_index_ = next_index_++;
  open_ = kind;
  out += Event("content_block_start",
               {{"type", "content_block_start"}, {"index", open_index_}, {"content_block", content_block}});
  return out;
}

std::string AnthropicStream::Delta(const OutputDelta& d) {
  std::string out;
  switch (d.kind) {
    case OutputDelta::Kind::kThinking:
      if (d.text.empty() || !r_->thinking) return out;
      if (open_ != Block::kThinking) {
        out += Open(Block::kThinking, {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
      }
      reasoning_ += d.text;
      if (r_->display == ThinkingDisplay::kOmitted) return out;
      out += Event("content_block_delta", {{"type", "content_block_delta"},
                                           {"index", open_index_},
                                           {"delta", {{"type", "thinking_delta"}, {"thinking", d.text}}}});
      return out;
    case OutputDelta::Kind::kText:
      if (d.text.empty()) return out;
      if (open_ != Block::kText) out += Open(Block::kText, {{"type", "text"}, {"text", ""}});
      out += Event("content_block_delta", {{"type", "content_block_delta"},
                                           {"index", open_index_},
                                           {"delta", {{"type", "text_delta"}, {"text", d.text}}}});
      return out;
    case OutputDelta::Kind::kToolStart:
      return Open(Block::kTool, {{"type", "tool_use"}, {"id", d.id}, {"name", d.name}, {"input", json::object()}});
    case OutputDelta::Kind::kToolArgs:
      if (open_ != Block::kTool || d.text.empty()) return out;
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

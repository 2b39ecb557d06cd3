// Turns a request's generated text into what the APIs send: content and tool calls, piece by
// piece. With tools offered, the text is parsed by llama.cpp's chat layer (common_chat_parse,
// the model family's tool-call syntax, as the engine's ChatSyntax says); without, it is content.
//
// Deltas are stable: a tool call is announced once with its final name and id, then only its
// arguments grow, so both OpenAI's and Anthropic's streams can be built from them. Used by the
// HTTP handlers, one instance per request, on one thread. Pure text processing, no llama objects.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/request.h"

namespace kvault {

struct OutputDelta {
  enum class Kind { kText, kToolStart, kToolArgs, kThinking };
  Kind kind = Kind::kText;
  size_t tool_index = 0;  // kToolStart, kToolArgs
  std::string text;       // kText: content; kToolArgs: a piece of the arguments' JSON; kThinking: reasoning
  std::string id;         // kToolStart
  std::string name;       // kToolStart
};

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text as generated
};

class ChatOutput {
 public:
  // `new_id` names tool calls ("call_…" for OpenAI, "toolu_…" for Anthropic).
  ChatOutput(ChatSyntax syntax, std::function<std::string()> new_id);

  // Adds generated text; returns what became certain.
  std::vector<OutputDelta> Append(const std::string& text);
  // The generation ended: parses the whole text as complete and returns the rest.
  std::vector<OutputDelta> Finish();

  const std::string& content() const { return content_; }
  const std::string& reasoning() const { return reasoning_; }
  const std::vector<ToolCall>& tool_calls() const { return calls_; }
  const std::string& raw_text() const { return raw_; }

 private:
  std::vector<OutputDelta> Update(bool final);

  ChatSyntax syntax_;
  std::function<std::string()> new_id_;
  std::string raw_;
  std::string content_;          // sent so far
  std::string reasoning_;        // sent so far (ChatSyntax::parse_reasoning)
  std::vector<ToolCall> calls_;  // announced so far (arguments: sent so far)
  std::vector<std::string> ids_;
  struct ParserState;
  std::shared_ptr<ParserState> parser_;
};

}  // namespace kvault

#include "api/chat_output.h"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "api/json_body.h"

#include "chat.h"

namespace kvault {

struct ChatOutput::ParserState {
  common_chat_parser_params params;
};

ChatOutput::ChatOutput(ChatSyntax syntax, std::function<std::string()> new_id)
    : syntax_(std::move(syntax)), new_id_(std::move(new_id)) {
  if (syntax_.parse_tool_calls || syntax_.parse_reasoning) {
    parser_ = std::make_shared<ParserState>();
    parser_->params.format = syntax_.format;
    parser_->params.generation_prompt = syntax_.generation_prompt;
    parser_->params.parse_tool_calls = syntax_.parse_tool_calls;
    if (syntax_.parse_reasoning) parser_->params.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
    if (!syntax_.parser.empty()) parser_->params.parser.load(syntax_.parser);
  }
}

std::vector<OutputDelta> ChatOutput::Append(const std::string& text) {
  raw_ += text;
  if (!parser_) {
    content_ += text;
    if (text.empty()) return {};
    return {OutputDelta{OutputDelta::Kind::kText, 0, text, "", ""}};
  }
  return Update(/*final=*/false);
}

std::vector<OutputDelta> ChatOutput::Finish() {
  if (!parser_) return {};
  return Update(/*final=*/true);
}

std::vector<OutputDelta> ChatOutput::Update(bool final) {
  common_chat_msg msg;
  try {
    // llama.cpp's parsers recurse into nested JSON: output nested past the limit (a model
    // repeating brackets) is not parsed, so that it cannot exhaust the stack (json_body.h).
    if (JsonNestingDepth(raw_, /*count_in_strings=*/true) > kMaxJsonDepth) {
      throw std::runtime_error("the output nests brackets too deeply to parse");
    }
    msg = common_chat_parse(raw_, /*is_partial=*/!final, parser_->params);
  } catch (const std::exception& e) {
    if (!final) return {};  // not parseable yet: wait for more text
    // The output does not follow the format (e.g. cut by max_tokens): keep what was
    // understood so far; if nothing was, the whole text is content.
    spdlog::debug("chat output: final parse failed: {}", e.what());
    msg.content = calls_.empty() && reasoning_.empty() ? raw_ : content_;
    msg.reasoning_content = reasoning_;
    for (const auto& c : calls_) msg.tool_calls.push_back({c.name, c.arguments, c.id});
  }
  std::vector<OutputDelta> out;
  if (msg.reasoning_content.size() > reasoning_.size() &&
      msg.reasoning_content.compare(0, reasoning_.size(), reasoning_) == 0) {
    out.push_back({OutputDelta::Kind::kThinking, 0, msg.reasoning_content.substr(reasoning_.size()), "", ""});
    reasoning_ = msg.reasoning_content;
  }
  // Content grows at its end; a shrink (a partial marker the parser took back) is not sent.
  if (msg.content.size() > content_.size() && msg.content.compare(0, content_.size(), content_) == 0) {
    out.push_back({OutputDelta::Kind::kText, 0, msg.content.substr(content_.size()), "", ""});
    content_ = msg.content;
  }
  for (size_t i = 0; i < msg.tool_calls.size(); ++i) {
    const common_chat_tool_call& c = msg.tool_calls[i];
    if (i >= calls_.size()) {
      // Announce a call once its name is complete: its arguments started, a later call
      // exists, or the output ended.
      const bool settled = final || !c.arguments.empty() || i + 1 < msg.tool_calls.size();
      if (!settled || c.name.empty() || i != calls_.size()) break;
      while (ids_.size() <= i) ids_.push_back(c.id.empty() ? new_id_() : c.id);
      calls_.push_back({ids_[i], c.name, ""});
      out.push_back({OutputDelta::Kind::kToolStart, i, "", ids_[i], c.name});
    }
    ToolCall& sent = calls_[i];
    if (c.arguments.size() > sent.arguments.size() &&
        c.arguments.compare(0, sent.arguments.size(), sent.arguments) == 0) {
      out.push_back({OutputDelta::Kind::kToolArgs, i, c.arguments.substr(sent.arguments.size()), "", ""});
      sent.arguments = c.arguments;
    }
  }
  return out;
}

}  // namespace kvault

// Turns a request into the prompt text the model reads: its chat rendered by the model's chat
// template (llama.cpp's chat layer) with its tools, output grammar and thinking switch, or its raw
// prompt. Also says how to read the output back (ChatSyntax) and which tokens bound the model's
// reasoning (for a thinking budget).
//
// System messages after the first (Claude Code sends its environment block as one) are rendered
// as system turns where the template renders them; a template that rejects or drops them gets
// their text folded into the neighbouring user turn instead (the previous one, else the next),
// so the same history always renders to the same tokens.
//
// Owned and called by the engine thread (it holds the model's templates); not thread-safe.
#pragma once

#include <string>
#include <vector>

#include "chat.h"
#include "core/status.h"
#include "engine/request.h"
#include "engine/sampling.h"

struct llama_vocab;

namespace kvault {

struct RenderedPrompt {
  std::string prompt;
  ChatSyntax syntax;
  GrammarSpec grammar;
  std::vector<std::string> extra_stops;  // the chat format's own stop strings
  std::vector<int32_t> preserved;        // special tokens of the tool-call syntax, output as text
  ReasoningBudget reasoning;             // empty unless the request set a thinking budget
  bool folded_system = false;            // system messages were folded into user turns
};

class ChatRenderer {
 public:
  // `templates` and `vocab` belong to the engine's model and outlive the renderer.
  ChatRenderer(const common_chat_templates* templates, const llama_vocab* vocab)
      : templates_(templates), vocab_(vocab) {}

  // InvalidArgument when the template cannot be applied to the request.
  StatusOr<RenderedPrompt> Render(const GenerateRequest& req) const;

  // Whether the model's template has a thinking switch (enable_thinking).
  bool supports_thinking() const;

  // The grammar with the optional free text before tool calls ("until-N?" in the root rule)
  // removed; unchanged when the root rule has no such element. (Exposed for tests.)
  static std::string WithoutLeadingText(const std::string& grammar);

  // The messages with every system message but a leading one folded into a user turn: appended
  // to the previous user or tool-result message, else prepended to the next one, else made a user
  // message. (Exposed for tests.)
  static std::vector<common_chat_msg> FoldSystemMessages(const std::vector<common_chat_msg>& messages);

 private:
  StatusOr<common_chat_params> Apply(const GenerateRequest& req, const std::vector<common_chat_msg>& messages,
                                     common_chat_templates_inputs& in) const;

  const common_chat_templates* templates_;
  const llama_vocab* vocab_;
};

}  // namespace kvault

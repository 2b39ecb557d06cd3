#include "engine/chat_render.h"

#include <cctype>
#include <stdexcept>

#include "common.h"
#include "llama.h"

namespace kvault {

namespace {

bool IsFoldTarget(const common_chat_msg& m) {
  return m.role == "user" || m.role == "tool";
}

void AppendText(std::string& to, const std::string& text) {
  if (!to.empty() && !text.empty()) to += "\n\n";
  to += text;
}

std::vector<int32_t> Tokens(const llama_vocab* vocab, const std::string& text) {
  auto t = common_tokenize(vocab, text, /*add_special=*/false, /*parse_special=*/true);
  return std::vector<int32_t>(t.begin(), t.end());
}

}  // namespace

std::string ChatRenderer::WithoutLeadingText(const std::string& grammar) {
  std::string out;
  size_t pos = 0;
  while (pos < grammar.size()) {
    size_t end = grammar.find('\n', pos);
    if (end == std::string::npos) end = grammar.size();
    std::string line = grammar.substr(pos, end - pos);
    if (line.rfind("root ::=", 0) == 0) {
      // Drop every " until-<digits>?" element.
      for (size_t at = line.find(" until-"); at != std::string::npos; at = line.find(" until-", at)) {
        size_t d = at + 7;
        while (d < line.size() && std::isdigit(static_cast<unsigned char>(line[d]))) ++d;
        if (d > at + 7 && d < line.size() && line[d] == '?') {
          line.erase(at, d + 1 - at);
        } else {
          at = d;
        }
      }
    }
    out += line;
    if (end < grammar.size()) out += '\n';
    pos = end + 1;
  }
  return out;
}

std::vector<common_chat_msg> ChatRenderer::FoldSystemMessages(const std::vector<common_chat_msg>& messages) {
  std::vector<common_chat_msg> out;
  std::string pending;  // system text after an assistant turn, waiting for the next user turn
  // Pending text that no user turn takes (an assistant turn or the end comes next) becomes a user
  // turn of its own, so that what is rendered before a later assistant turn never changes.
  auto flush = [&] {
    if (pending.empty()) return;
    common_chat_msg user;
    user.role = "user";
    user.content = std::move(pending);
    pending.clear();
    out.push_back(std::move(user));
  };
  for (size_t i = 0; i < messages.size(); ++i) {
    const common_chat_msg& m = messages[i];
    if (m.role != "system" || i == 0) {
      if (m.role == "assistant") flush();
      out.push_back(m);
      if (!pending.empty() && IsFoldTarget(out.back())) {
        out.back().content = pending + "\n\n" + out.back().content;
        pending.clear();
      }
      continue;
    }
    if (!out.empty() && IsFoldTarget(out.back())) {
      AppendText(out.back().content, m.content);
    } else {
      AppendText(pending, m.content);
    }
  }
  flush();
  return out;
}

bool ChatRenderer::supports_thinking() const {
  return common_chat_templates_support_enable_thinking(templates_);
}

StatusOr<common_chat_params> ChatRenderer::Apply(const GenerateRequest& req,
                                                 const std::vector<common_chat_msg>& messages,
                                                 common_chat_templates_inputs& in) const {
  in.messages = messages;
  in.add_generation_prompt = !req.continue_final;
  if (req.continue_final) in.continue_final_message = COMMON_CHAT_CONTINUATION_AUTO;
  in.use_jinja = true;
  in.tools = req.tools;
  in.tool_choice = req.tools.empty() ? COMMON_CHAT_TOOL_CHOICE_NONE : req.tool_choice;
  in.parallel_tool_calls = req.parallel_tool_calls;
  in.json_schema = req.json_schema;
  if (req.enable_thinking) {
    in.enable_thinking = *req.enable_thinking;
    in.chat_template_kwargs["enable_thinking"] = *req.enable_thinking ? "true" : "false";
  }
  // Reasoning is parsed out of the answer when the request turned thinking on explicitly (the
  // Anthropic API's thinking blocks); otherwise the text stays as the model wrote it.
  in.reasoning_format =
      req.enable_thinking.value_or(false) ? COMMON_REASONING_FORMAT_DEEPSEEK : COMMON_REASONING_FORMAT_NONE;
  try {
    return common_chat_templates_apply(templates_, in);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("cannot apply the chat template: ") + e.what());
  }
}

StatusOr<RenderedPrompt> ChatRenderer::Render(const GenerateRequest& req) const {
  RenderedPrompt r;
  if (req.raw_prompt) {
    r.prompt = *req.raw_prompt;
    return r;
  }
  common_chat_templates_inputs in;
  StatusOr<common_chat_params> applied = Apply(req, req.messages, in);
  // An assistant turn with several tool calls (parallel calls, made by this or another model) that
  // the template refuses (Llama 3.1's "only supports single tool-calls at once"): each call as an
  // assistant turn of its own, in order, the turn's text with the first.
  bool parallel_calls = false;
  for (const auto& m : req.messages) parallel_calls |= m.role == "assistant" && m.tool_calls.size() > 1;
  std::vector<common_chat_msg> split;
  if (!applied.ok() && parallel_calls) {
    for (const auto& m : req.messages) {
      if (m.role != "assistant" || m.tool_calls.size() <= 1) {
        split.push_back(m);
        continue;
      }
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        common_chat_msg one = k == 0 ? m : common_chat_msg();
        one.role = "assistant";
        one.tool_calls = {m.tool_calls[k]};
        split.push_back(std::move(one));
      }
    }
    in = common_chat_templates_inputs();
    applied = Apply(req, split, in);
  }
  // System messages after the first: kept where the template renders them (it neither threw nor
  // dropped their text), else folded into user turns.
  bool later_system = false;
  for (size_t i = 1; i < req.messages.size(); ++i) later_system |= req.messages[i].role == "system";
  if (later_system) {
    bool kept = applied.ok();
    for (size_t i = 1; kept && i < req.messages.size(); ++i) {
      const common_chat_msg& m = req.messages[i];
      // (common's string_strip: templates often trim a message, as Llama 3.1's `| trim`)
      if (m.role == "system" && applied->prompt.find(string_strip(m.content)) == std::string::npos) kept = false;
    }
    if (!kept) {
      in = common_chat_templates_inputs();
      applied = Apply(req, FoldSystemMessages(split.empty() ? req.messages : split), in);
      r.folded_system = true;
    }
  }
  if (!applied.ok()) return applied.status();
  common_chat_params& params = applied.value();
  r.prompt = std::move(params.prompt);
  r.syntax.format = params.format;
  r.syntax.parser = std::move(params.parser);
  r.syntax.generation_prompt = params.generation_prompt;
  r.syntax.parse_tool_calls = !req.tools.empty() && in.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
  r.syntax.parse_reasoning = in.reasoning_format != COMMON_REASONING_FORMAT_NONE && params.supports_thinking;
  r.extra_stops = std::move(params.additional_stops);
  for (const auto& t : params.preserved_tokens) {
    auto ids = common_tokenize(vocab_, t, false, true);
    if (ids.size() == 1) r.preserved.push_back(ids[0]);
  }
  if (r.syntax.parse_reasoning && req.thinking_budget >= 0 && !params.thinking_start_tag.empty() &&
      !params.thinking_end_tags.empty()) {
    r.reasoning.budget = req.thinking_budget;
    r.reasoning.start = {Tokens(vocab_, params.thinking_start_tag)};
    for (const auto& tag : params.thinking_end_tags) r.reasoning.end.push_back(Tokens(vocab_, tag));
    r.reasoning.forced = r.reasoning.end.front();
    // A generation prompt that already opened the reasoning block: counting starts at once.
    const std::string& gp = params.generation_prompt;
    const size_t open = gp.rfind(params.thinking_start_tag);
    r.reasoning.starts_open =
        open != std::string::npos && gp.find(params.thinking_end_tags.front(), open) == std::string::npos;
  }
  if (!params.grammar.empty()) {
    // A required tool call (OpenAI "required" or a named function, Anthropic "any"/"tool")
    // is the whole answer in those APIs. llama.cpp's grammar lets text precede the call;
    // drop that optional text from the root rule so the model starts with the call.
    if (in.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED) params.grammar = WithoutLeadingText(params.grammar);
    r.grammar.grammar = std::move(params.grammar);
    r.grammar.lazy = params.grammar_lazy;
    for (const auto& t : params.grammar_triggers) {
      switch (t.type) {
        case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: r.grammar.trigger_patterns.push_back(regex_escape(t.value)); break;
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN: r.grammar.trigger_patterns.push_back(t.value); break;
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: {
          std::string p = t.value;
          if (p.empty() || p.front() != '^') p.insert(0, "^");
          if (p.back() != '$') p += "$";
          r.grammar.trigger_patterns.push_back(std::move(p));
          break;
        }
        case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN: r.grammar.trigger_tokens.push_back(t.token); break;
      }
    }
    // The template's grammars start at the generation prompt, which is already in the
    // prompt: advance the grammar past it (as llama.cpp's common_sampler does).
    if (!r.grammar.lazy && !params.generation_prompt.empty()) {
      auto toks = common_tokenize(vocab_, params.generation_prompt, false, true);
      for (size_t i = 0; i < toks.size(); ++i) {
        const std::string piece = common_token_to_piece(vocab_, toks[i], true);
        const bool spurious_space = i == 0 && !piece.empty() && std::isspace(static_cast<unsigned char>(piece[0])) &&
                                    !std::isspace(static_cast<unsigned char>(params.generation_prompt[0]));
        if (!spurious_space) r.grammar.prefill.push_back(toks[i]);
      }
    }
  }
  return r;
}

}  // namespace kvault

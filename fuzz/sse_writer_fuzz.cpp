// Fuzz target: the server-sent-event writers of both APIs (Anthropic's event stream, OpenAI's
// chunks) fed with arbitrary output deltas — text, tool starts, argument pieces, in any order,
// any bytes (invalid UTF-8 included). Every event must be complete SSE whose data is valid JSON
// (so no delta can split or inject an event), and nothing may throw.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "api/anthropic_messages.h"
#include "api/openai_chat.h"

namespace {

// Splits `sse` into events and checks each: "event: <name>\n" (Anthropic) then "data: <json>".
void CheckEvents(const std::string& sse, bool named) {
  size_t pos = 0;
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    if (end == std::string::npos) __builtin_trap();  // an unterminated event
    std::string_view ev(sse.data() + pos, end - pos);
    pos = end + 2;
    if (named) {
      if (ev.rfind("event: ", 0) != 0) __builtin_trap();
      const size_t nl = ev.find('\n');
      if (nl == std::string_view::npos) __builtin_trap();
      ev.remove_prefix(nl + 1);
    }
    if (ev.rfind("data: ", 0) != 0) __builtin_trap();
    ev.remove_prefix(6);
    if (ev == "[DONE]") continue;
    if (ev.find('\n') != std::string_view::npos) __builtin_trap();  // one data line per event
    if (!nlohmann::json::accept(ev)) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Input: a list of deltas, each one op byte, one length byte, then that many bytes.
  std::vector<kvault::OutputDelta> deltas;
  size_t tools = 0;
  for (size_t i = 0; i + 2 <= size;) {
    const uint8_t op = data[i] % 3;
    const size_t len = std::min<size_t>(data[i + 1], size - i - 2);
    std::string bytes(reinterpret_cast<const char*>(data + i + 2), len);
    i += 2 + len;
    kvault::OutputDelta d;
    if (op == 0 || (tools == 0 && op == 2)) {
      d.kind = kvault::OutputDelta::Kind::kText;
      d.text = bytes;
    } else if (op == 1) {
      d.kind = kvault::OutputDelta::Kind::kToolStart;
      d.tool_index = tools++;
      d.id = "call_" + std::to_string(d.tool_index);
      d.name = bytes;
    } else {
      d.kind = kvault::OutputDelta::Kind::kToolArgs;
      d.tool_index = tools - 1;
      d.text = bytes;
    }
    deltas.push_back(std::move(d));
  }

  kvault::MessagesResult m;
  m.id = "msg_fuzz";
  m.model = "fuzz";
  kvault::AnthropicStream stream(&m);
  std::string sse = stream.Start();
  for (const auto& d : deltas) sse += stream.Delta(d);
  m.finish = size % 2 ? kvault::FinishReason::kStop : kvault::FinishReason::kLength;
  sse += stream.Finish();
  sse += kvault::AnthropicStream::Ping();
  CheckEvents(sse, /*named=*/true);
  if (!nlohmann::json::accept(kvault::RenderMessage(m))) __builtin_trap();

  kvault::ChatCompletionResult c;
  c.id = "chatcmpl-fuzz";
  c.model = "fuzz";
  std::string chunks = kvault::RenderChatCompletionChunk(c, kvault::ChunkKind::kRole, "", true);
  for (const auto& d : deltas) {
    if (d.kind == kvault::OutputDelta::Kind::kText) {
      c.text += d.text;
      chunks += kvault::RenderChatCompletionChunk(c, kvault::ChunkKind::kText, d.text, true);
    } else {
      chunks += kvault::RenderToolCallChunk(c, d, true);
    }
  }
  chunks += kvault::RenderChatCompletionChunk(c, kvault::ChunkKind::kFinish, "", true);
  chunks += kvault::RenderChatCompletionChunk(c, kvault::ChunkKind::kUsage, "", true);
  chunks += kvault::kSseDone;
  CheckEvents(chunks, /*named=*/false);
  if (!nlohmann::json::accept(kvault::RenderChatCompletion(c))) __builtin_trap();
  return 0;
}

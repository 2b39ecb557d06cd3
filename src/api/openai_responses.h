// OpenAI Responses API adapter (`POST /v1/responses`): JSON request → GenerateRequest and the
// conversation's items, engine output → the Response object and its server-sent events. Pure
// translation; no I/O, no llama objects. Called by the HTTP server on its threads (one
// ResponseBuilder per request).
//
// Items map onto the chat the model's template renders: `instructions` and system/developer
// messages → system turns; user messages → user turns; assistant messages, `reasoning` and
// `function_call` items → one assistant turn (text, reasoning, tool calls); `function_call_output`
// → tool results. See docs/api.md for every field: honoured, accepted, or refused by name.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat_output.h"
#include "core/status.h"
#include "engine/request.h"

namespace kvault {

struct ResponsesRequest {
  std::string model;
  GenerateRequest generate;                        // everything but the messages (BuildResponsesMessages)
  nlohmann::json input = nlohmann::json::array();  // this request's input, as items
  std::string instructions;                        // empty: none (not carried to later turns)
  bool store = true;                               // the API's default
  std::string previous_response_id;
  std::string prompt_cache_key;  // names the agent when no X-Agent-Id is sent
  std::string user;              // (deprecated by OpenAI) names the agent after prompt_cache_key
  bool thinking = false;         // reasoning items are returned
  // prompt_cache_options.prewarm: the prompt is computed and kept, nothing generated
  // (generate.max_tokens 0); the Response is "completed" with no output.
  bool prewarm = false;
  // Function name → its `namespace` tool (Codex's multi_agent_v1), put back on function_call items.
  std::map<std::string, std::string> namespaces;
  // The request's fields that the Response object repeats (tools, tool_choice, text, reasoning,
  // metadata, temperature, top_p, …), as sent or defaulted.
  nlohmann::json echo = nlohmann::json::object();
};

// InvalidArgument naming the offending field.
StatusOr<ResponsesRequest> ParseResponsesRequest(std::string_view body);

// The chat the model reads: instructions, then `history` (earlier turns' items, oldest first),
// then `input`. InvalidArgument naming a bad item (`where` prefixes the path: "input").
Status BuildResponsesMessages(const std::string& instructions, const nlohmann::json& history,
                              const nlohmann::json& input, std::vector<common_chat_msg>& out);

struct ResponsesUsage {
  int32_t input_tokens = 0;
  int32_t cached_tokens = 0;
  int32_t output_tokens = 0;
};

// Builds one response: its output items from the engine's parsed deltas, the Response object,
// and (for streams) the events, each numbered by `sequence_number` from 0. The same calls serve
// streamed and non-streamed requests; the latter ignore the returned events.
class ResponseBuilder {
 public:
  // `base`: the Response object's fixed fields (id, created_at, model, and the request's echo).
  ResponseBuilder(nlohmann::json base, std::map<std::string, std::string> namespaces);

  std::string Created();  // response.created, response.in_progress
  std::string Delta(const OutputDelta& delta);
  // Closes the open item and completes the Response object: status "completed", or
  // "incomplete" when the answer was cut by max_output_tokens or the end of the context (the cut
  // item too), and its usage. Returns the closing item's events.
  std::string Finish(FinishReason finish, const ResponsesUsage& usage);
  // After Finish: response.completed or response.incomplete with the whole Response.
  std::string Completed();
  // After Finish, when the response could not be kept: "store": false in the Response.
  void MarkNotStored() { response_["store"] = false; }
  // An engine error after the stream started: response.failed.
  std::string Failed(const std::string& code, const std::string& message);
  // Keeps an idle stream alive before any output (a long prompt): response.in_progress.
  std::string InProgress();

  const nlohmann::json& response() const { return response_; }
  const nlohmann::json& output() const { return response_["output"]; }

 private:
  enum class Item { kNone, kMessage, kReasoning, kCall };
  std::string Event(const char* type, nlohmann::json data);
  std::string Open(Item kind, nlohmann::json item);
  std::string Close();

  nlohmann::json response_;
  std::map<std::string, std::string> namespaces_;
  int64_t seq_ = 0;
  Item open_ = Item::kNone;
  nlohmann::json item_;                    // the open item
  std::string text_;                       // its text, reasoning or arguments so far
  size_t tool_index_ = 0;                  // the open call's index among the answer's calls (OutputDelta::tool_index)
  std::string item_status_ = "completed";  // what the next closed item becomes
};

// The Response object of `response` rendered for `GET /v1/responses/{id}` and non-streamed
// answers; `{"id","object":"response","deleted":true}` for DELETE.
std::string RenderResponse(const nlohmann::json& response);
std::string RenderResponseDeleted(const std::string& id);

}  // namespace kvault

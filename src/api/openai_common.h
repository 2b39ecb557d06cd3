// Request and response fields shared by OpenAI's chat and text completions: max_tokens /
// max_completion_tokens, temperature, top_p, min_p, top_k, seed, stop, n, presence_penalty,
// frequency_penalty, logit_bias; stream and stream_options; which fields a request may carry;
// usage, logprobs and system_fingerprint in the answers. Used by the OpenAI adapters only; pure
// functions, any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/request.h"

namespace kvault {

Status ParseOpenAiSamplingFields(const nlohmann::json& body, GenerateRequest& g);

// "stream" (into g.stream) and "stream_options" (include_usage; include_obfuscation accepted: it
// only pads OpenAI's own chunks), only allowed with stream: true.
Status ParseOpenAiStreamFields(const nlohmann::json& body, GenerateRequest& g, bool& include_usage);

// Every field of `body` must be in `known` (read, or accepted as harmless by the caller):
// anything else is refused as OpenAI refuses it, "Unrecognized request argument supplied: X",
// so that no field is silently ignored.
Status CheckKnownFields(const nlohmann::json& body, const std::vector<std::string_view>& known);

// A field kvault does not implement: InvalidArgument naming it and saying why, unless it is
// absent or null.
Status RefuseField(const nlohmann::json& body, const char* key, const std::string& why);

// The "usage" object of a response or of a stream's last chunk.
nlohmann::json OpenAiUsageJson(int32_t prompt_tokens, int32_t completion_tokens, int32_t cached_tokens);

// "finish_reason" for an engine outcome without tool calls: "length" when max_tokens or the
// context ended the text, else "stop".
const char* OpenAiTextFinishReason(FinishReason finish);

// "system_fingerprint": the server build and the model it ran,
// "kvault-<version>-<llama.cpp tag>-<first 8 hex digits of the model fingerprint>" (the model
// file's content and the KV configuration, kvstore/fingerprint.h).
std::string OpenAiSystemFingerprint(const std::string& model_fingerprint);

// Chat completions' "logprobs": {"content":[{"token","logprob","bytes","top_logprobs":[…]}],
// "refusal":null}.
nlohmann::json ChatLogprobsJson(const std::vector<TokenLogprob>& tokens);

// Legacy completions' "logprobs": {"tokens","token_logprobs","top_logprobs":[{token: logprob}],
// "text_offset"}; `text_offset` is the byte offset of the first token in the answer's text, and
// is advanced past these tokens (streams continue it from chunk to chunk).
nlohmann::json CompletionLogprobsJson(const std::vector<TokenLogprob>& tokens, size_t& text_offset);

}  // namespace kvault

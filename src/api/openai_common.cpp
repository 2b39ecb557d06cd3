#include "api/openai_common.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

namespace kvault {

using json = nlohmann::json;

namespace {

Status Invalid(const std::string& m) {
  return Status::InvalidArgument(m);
}

bool Present(const json& body, const char* key) {
  return body.contains(key) && !body[key].is_null();
}

Status CheckNumber(const json& body, const char* key) {
  if (Present(body, key) && !body[key].is_number()) return Invalid(std::string("'") + key + "' must be a number");
  return Status::Ok();
}

// "logit_bias": {"<token id>": bias, …}; the ids are checked against the vocabulary by the engine.
Status ParseLogitBias(const json& bias, SamplingParams& sp) {
  if (!bias.is_object()) return Invalid("'logit_bias' must be an object mapping token ids to biases");
  for (const auto& [key, value] : bias.items()) {
    const char* begin = key.c_str();
    char* end = nullptr;
    errno = 0;
    const long id = std::strtol(begin, &end, 10);
    if (key.empty() || *end != '\0' || !std::isdigit(static_cast<unsigned char>(key[0])) || errno == ERANGE ||
        id > INT32_MAX) {
      return Invalid("'logit_bias' keys must be token ids (integers as strings); got '" + key + "'");
    }
    if (!value.is_number()) return Invalid("'logit_bias." + key + "' must be a number between -100 and 100");
    sp.logit_bias.emplace_back(static_cast<int32_t>(id), value.get<float>());
  }
  return Status::Ok();
}

}  // namespace

json OpenAiUsageJson(int32_t prompt_tokens, int32_t completion_tokens, int32_t cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

Status ParseOpenAiStreamFields(const json& body, GenerateRequest& g, bool& include_usage) {
  if (Present(body, "stream")) {
    if (!body["stream"].is_boolean()) return Invalid("'stream' must be a boolean");
    g.stream = body["stream"].get<bool>();
  }
  if (Present(body, "stream_options")) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return Invalid("'stream_options' must be an object");
    if (!g.stream) return Invalid("'stream_options' is only allowed when 'stream' is true");
    for (const auto& [key, value] : so.items()) {
      if (key != "include_usage" && key != "include_obfuscation") {
        return Invalid("'stream_options." + key + "' is not supported (include_usage, include_obfuscation)");
      }
      if (!value.is_null() && !value.is_boolean()) return Invalid("'stream_options." + key + "' must be a boolean");
    }
    if (Present(so, "include_usage")) include_usage = so["include_usage"].get<bool>();
  }
  return Status::Ok();
}

Status ParseOpenAiSamplingFields(const json& body, GenerateRequest& g) {
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (!Present(body, key)) continue;
    if (!body[key].is_number_integer()) return Invalid(std::string("'") + key + "' must be an integer");
    const int64_t v = body[key].get<int64_t>();
    if (v <= 0) return Invalid(std::string("'") + key + "' must be at least 1");
    g.max_tokens = static_cast<int32_t>(std::min<int64_t>(v, INT32_MAX));
  }
  for (const char* key : {"temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty"}) {
    Status st = CheckNumber(body, key);
    if (!st.ok()) return st;
  }
  SamplingParams& sp = g.sampling;
  if (Present(body, "temperature")) sp.temperature = body["temperature"].get<float>();
  if (Present(body, "top_p")) sp.top_p = body["top_p"].get<float>();
  if (Present(body, "min_p")) sp.min_p = body["min_p"].get<float>();
  if (Present(body, "presence_penalty")) sp.presence_penalty = body["presence_penalty"].get<float>();
  if (Present(body, "frequency_penalty")) sp.frequency_penalty = body["frequency_penalty"].get<float>();
  if (Present(body, "top_k")) {
    if (!body["top_k"].is_number_integer()) return Invalid("'top_k' must be an integer");
    sp.top_k = static_cast<int32_t>(std::clamp<int64_t>(body["top_k"].get<int64_t>(), -1, INT32_MAX));
  }
  if (Present(body, "seed")) {
    if (!body["seed"].is_number_integer()) return Invalid("'seed' must be an integer");
    sp.seed = static_cast<uint32_t>(body["seed"].get<int64_t>());
  }
  if (Present(body, "logit_bias")) {
    Status st = ParseLogitBias(body["logit_bias"], sp);
    if (!st.ok()) return st;
  }
  Status sampling_ok = sp.Validate();
  if (!sampling_ok.ok()) return sampling_ok;
  if (Present(body, "stop")) {  // any number of sequences (OpenAI's limit of 4 is not kept)
    const json& stop = body["stop"];
    if (stop.is_string()) {
      g.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array()) {
      for (const auto& s : stop) {
        if (!s.is_string()) return Invalid("'stop' must be a string or an array of strings");
        g.stop.push_back(s.get<std::string>());
      }
    } else {
      return Invalid("'stop' must be a string or an array of strings");
    }
  }
  if (Present(body, "n") && !(body["n"].is_number_integer() && body["n"].get<int64_t>() == 1)) {
    return Invalid("'n' must be 1: kvault returns one choice per request");
  }
  return Status::Ok();
}

Status CheckKnownFields(const json& body, const std::vector<std::string_view>& known) {
  for (const auto& [key, value] : body.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return Invalid("Unrecognized request argument supplied: " + key);
    }
  }
  return Status::Ok();
}

Status RefuseField(const json& body, const char* key, const std::string& why) {
  if (!Present(body, key)) return Status::Ok();
  return Invalid(std::string("'") + key + "' is not supported: " + why);
}

const char* OpenAiTextFinishReason(FinishReason finish) {
  return finish == FinishReason::kLength || finish == FinishReason::kContextLength ? "length" : "stop";
}

std::string OpenAiSystemFingerprint(const std::string& model_fingerprint) {
  std::string fp = std::string("kvault-") + KVAULT_VERSION + "-" + KVAULT_LLAMA_TAG;
  if (!model_fingerprint.empty()) fp.append("-").append(model_fingerprint, 0, 8);  // none without a KV store
  return fp;
}

namespace {

json Bytes(const std::string& token) {
  json bytes = json::array();
  for (unsigned char c : token) bytes.push_back(static_cast<int>(c));
  return bytes;
}

}  // namespace

json ChatLogprobsJson(const std::vector<TokenLogprob>& tokens) {
  json content = json::array();
  for (const auto& t : tokens) {
    json top = json::array();
    for (const auto& a : t.top) top.push_back({{"token", a.token}, {"logprob", a.logprob}, {"bytes", Bytes(a.token)}});
    content.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", Bytes(t.token)}, {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json CompletionLogprobsJson(const std::vector<TokenLogprob>& tokens, size_t& text_offset) {
  json out = {{"tokens", json::array()},
              {"token_logprobs", json::array()},
              {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const auto& t : tokens) {
    out["tokens"].push_back(t.token);
    out["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (const auto& a : t.top) {
      if (!top.contains(a.token)) top[a.token] = a.logprob;  // two ids with one text: the likelier
    }
    out["top_logprobs"].push_back(top);
    out["text_offset"].push_back(text_offset);
    text_offset += t.token.size();
  }
  return out;
}

}  // namespace kvault

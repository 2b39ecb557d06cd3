// Maps kvault Status values to HTTP errors and renders them in each API's error envelope.
// Called by the API adapters and the HTTP server; pure functions, any thread.
#pragma once

#include <string>
#include <utility>

#include "core/status.h"

namespace kvault {

struct ApiError {
  ApiError() = default;
  // (A constructor rather than an aggregate, so that {status, type, message} needs no code.)
  ApiError(int status, std::string t, std::string m, std::string c = "")
      : http_status(status), type(std::move(t)), message(std::move(m)), code(std::move(c)) {}

  int http_status = 500;
  std::string type;     // Anthropic's error type names, e.g. "invalid_request_error"
  std::string message;
  std::string code;  // OpenAI's machine-readable "code" (e.g. "context_length_exceeded"); empty = null
};

ApiError ApiErrorFromStatus(const Status& status);

// {"error":{"message":…,"type":…,"param":null,"code":…}}; 401 carries code "invalid_api_key", a
// prompt longer than the context "context_length_exceeded".
std::string OpenAiErrorBody(const ApiError& error);

// {"type":"error","error":{"type":…,"message":…},"request_id":…} (request_id when given, as
// Anthropic's error bodies carry the request's id).
std::string AnthropicErrorBody(const ApiError& error, const std::string& request_id = "");
// Anthropic answers "overloaded" with 529 where OpenAI-style APIs use 503.
int AnthropicHttpStatus(const ApiError& error);

}  // namespace kvault

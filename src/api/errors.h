// Maps kvault Status values to HTTP errors and renders them in each API's error envelope.
// Called by the API adapters and the HTTP server; pure functions, any thread.
#pragma once

#include <string>

#include "core/status.h"

namespace kvault {

struct ApiError {
  int http_status = 500;
  std::string type;     // Anthropic's error type names, e.g. "invalid_request_error"
  std::string message;
};

ApiError ApiErrorFromStatus(const Status& status);

// {"error":{"message":…,"type":…,"param":null,"code":null}}; 401 carries code "invalid_api_key".
std::string OpenAiErrorBody(const ApiError& error);

// {"type":"error","error":{"type":…,"message":…}}
std::string AnthropicErrorBody(const ApiError& error);
// Anthropic answers "overloaded" with 529 where OpenAI-style APIs use 503.
int AnthropicHttpStatus(const ApiError& error);

}  // namespace kvault

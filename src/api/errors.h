// Maps kvault Status values to HTTP errors and renders them in each API's error envelope.
// Called by the API adapters and the HTTP server; pure functions, any thread.
#pragma once

#include <string>

#include "core/status.h"

namespace kvault {

struct ApiError {
  int http_status = 500;
  std::string type;     // OpenAI/Anthropic error type, e.g. "invalid_request_error"
  std::string message;
};

ApiError ApiErrorFromStatus(const Status& status);

// {"error":{"message":…,"type":…,"param":null,"code":null}}
std::string OpenAiErrorBody(const ApiError& error);

}  // namespace kvault

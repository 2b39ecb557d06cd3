#include "api/errors.h"

#include <nlohmann/json.hpp>

#include "api/json_body.h"

namespace kvault {

ApiError ApiErrorFromStatus(const Status& status) {
  using C = Status::Code;
  switch (status.code()) {
    case C::kInvalidArgument: return {400, "invalid_request_error", status.message()};
    case C::kTooLarge: return {400, "invalid_request_error", status.message()};
    case C::kContextLength: return {400, "invalid_request_error", status.message(), "context_length_exceeded"};
    case C::kUnauthenticated: return {401, "authentication_error", status.message()};
    case C::kPermissionDenied: return {403, "permission_error", status.message()};
    case C::kNotFound: return {404, "not_found_error", status.message()};
    case C::kOverloaded: return {429, "rate_limit_error", status.message()};
    case C::kUnavailable: return {503, "overloaded_error", status.message()};
    case C::kOk: return {500, "api_error", "internal error: an ok status was reported as an error"};
    default: return {500, "api_error", status.message()};
  }
}

std::string OpenAiErrorBody(const ApiError& error) {
  nlohmann::json code = nullptr;
  if (!error.code.empty()) code = error.code;
  if (error.http_status == 401) code = "invalid_api_key";
  nlohmann::json body = {
      {"error", {{"message", error.message}, {"type", error.type}, {"param", nullptr}, {"code", code}}}};
  return DumpJson(body);
}

std::string AnthropicErrorBody(const ApiError& error, const std::string& request_id) {
  nlohmann::json body = {{"type", "error"}, {"error", {{"type", error.type}, {"message", error.message}}}};
  if (!request_id.empty()) body["request_id"] = request_id;
  return DumpJson(body);
}

int AnthropicHttpStatus(const ApiError& error) {
  return error.http_status == 503 ? 529 : error.http_status;
}

}  // namespace kvault

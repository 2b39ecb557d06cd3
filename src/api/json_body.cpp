#include "api/json_body.h"

#include <algorithm>
#include <string>

namespace kvault {

int JsonNestingDepth(std::string_view text, bool count_in_strings) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      if (!count_in_strings) continue;
    } else if (c == '"') {
      in_string = true;
      continue;
    }
    if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

StatusOr<nlohmann::json> ParseJsonBody(std::string_view text) {
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    return Status::InvalidArgument("the request body nests arrays or objects deeper than " +
                                   std::to_string(kMaxJsonDepth) + " levels");
  }
  nlohmann::json body = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return Status::InvalidArgument("the request body is not valid JSON");
  return body;
}

std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace kvault

// Random identifiers for responses and tool calls, in the shapes clients expect
// ("chatcmpl-…", "call_…", "msg_…", "toolu_…", request ids). Any thread.
#pragma once

#include <string>

namespace kvault {

// `prefix` followed by `n` random alphanumerics.
std::string NewRandomId(const std::string& prefix, int n = 24);

}  // namespace kvault

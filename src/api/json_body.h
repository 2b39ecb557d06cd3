// Parsing JSON that kvault did not write — request bodies, and tool calls a model generated —
// with a bound on nesting, so that no input can exhaust a thread's stack. nlohmann's parser is
// iterative, but copying a value and dump() recurse once per level, and the API adapters, the
// chat templates and the schema-to-grammar conversion all copy and dump what the client sent.
// Pure functions, any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "core/status.h"

namespace kvault {

// The deepest nesting kvault accepts in a request body (tool schemas nest a few levels; 128 is
// serde_json's default limit too).
inline constexpr int kMaxJsonDepth = 128;

// The deepest nesting of arrays and objects in `text`: `[` and `{` open a level, `]` and `}`
// close one. Brackets inside JSON strings do not count unless `count_in_strings` (for text that
// is not known to be JSON, such as a model's output, where a stray quote must not hide brackets).
// Does not validate anything else.
int JsonNestingDepth(std::string_view text, bool count_in_strings = false);

// A request body as a JSON value: InvalidArgument when it is not valid JSON or nests deeper than
// kMaxJsonDepth (checked before parsing). Any JSON value; the caller checks it is an object.
StatusOr<nlohmann::json> ParseJsonBody(std::string_view text);

// `j` as compact JSON text for a response body, an event or a file; invalid UTF-8 in its strings
// (a model's output cut mid-character, a client's bytes) is replaced, never thrown on.
std::string DumpJson(const nlohmann::json& j);

}  // namespace kvault

// What an image, document or file in a conversation becomes where kvault does not refuse it
// (earlier turns, a tool's output): its models read text only, and refusing every later turn of a
// conversation that once held one would end it. Fixed text, so the history renders to the same
// tokens every turn. Used by the Anthropic and Responses adapters; pure, any thread.
#pragma once

#include <string>

namespace kvault {

// "[image omitted: this server's model reads text only]" for kind "image".
inline std::string MediaPlaceholder(const std::string& kind) {
  return "[" + kind + " omitted: this server's model reads text only]";
}

}  // namespace kvault

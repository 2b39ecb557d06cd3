// Anthropic Messages `tools` and `tool_choice` → the engine's tools and tool choice. Pure
// translation, any thread; used by api/anthropic_request.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "core/status.h"
#include "engine/request.h"

namespace kvault {

// Custom tools (`name`, `description`, `input_schema`; `type` "custom" or absent). Accepted fields
// that change nothing here: cache_control (caching is automatic), strict (tool inputs always
// follow the schema's grammar), defer_loading (every tool is rendered), input_examples,
// eager_input_streaming. Server tools and other fields: InvalidArgument naming them.
StatusOr<std::vector<common_chat_tool>> ParseAnthropicTools(const nlohmann::json& tools);

// `auto`, `any`, `tool` (+`name`: only that tool is kept), `none`; `disable_parallel_tool_use`.
Status ApplyAnthropicToolChoice(const nlohmann::json& choice, GenerateRequest& g);

}  // namespace kvault

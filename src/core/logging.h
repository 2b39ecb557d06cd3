// Process-wide logging setup. Call InitLogging once from main(); everything else logs through
// spdlog's default logger. llama.cpp's and ggml's own log lines are routed into the same logger
// (their INFO chatter at debug level) so operators see one stream with one format.
#pragma once

#include <string>

#include "core/status.h"

namespace kvault {

// level: trace, debug, info, warn, error, off. format: "text" (one readable line per event) or
// "json" (one JSON object per line: {"time","level","msg"}, for log collectors).
Status InitLogging(const std::string& level, const std::string& format = "text");

// Routes llama.cpp/ggml logging into spdlog. Safe to call more than once.
void RouteLlamaLogging();

}  // namespace kvault

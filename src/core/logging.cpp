#include "core/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "llama.h"

namespace kvault {

Status InitLogging(const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return Status::InvalidArgument("unknown log level '" + level +
                                   "' (trace, debug, info, warn, error, off)");
  }
  auto logger = spdlog::stderr_color_mt("kvault");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
  RouteLlamaLogging();
  return Status::Ok();
}

namespace {

void LlamaLogCallback(ggml_log_level level, const char* text, void* /*user*/) {
  std::string_view line(text);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.empty()) return;
  switch (level) {
    case GGML_LOG_LEVEL_ERROR: spdlog::error("llama: {}", line); break;
    case GGML_LOG_LEVEL_WARN: spdlog::warn("llama: {}", line); break;
    case GGML_LOG_LEVEL_DEBUG: spdlog::trace("llama: {}", line); break;
    default: spdlog::debug("llama: {}", line); break;
  }
}

}  // namespace

void RouteLlamaLogging() { llama_log_set(LlamaLogCallback, nullptr); }

}  // namespace kvault

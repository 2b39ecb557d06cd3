#include "core/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "llama.h"

namespace kvault {

namespace {

// %j: the message as the contents of a JSON string (quotes, backslashes, control characters
// escaped; bytes that are not valid UTF-8 pass through as they are).
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    static const char kHex[] = "0123456789abcdef";
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            const char esc[] = {'\\', 'u', '0', '0', kHex[(c >> 4) & 15], kHex[c & 15]};
            dest.append(std::string_view(esc, sizeof(esc)));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

}  // namespace

Status InitLogging(const std::string& level, const std::string& format) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return Status::InvalidArgument("unknown log level '" + level +
                                   "' (trace, debug, info, warn, error, off)");
  }
  if (format != "text" && format != "json") {
    return Status::InvalidArgument("unknown log format '" + format + "' (text, json)");
  }
  auto logger = spdlog::stderr_color_mt("kvault");
  if (format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonEscapedMessage>('j').set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%e","level":"%l","msg":"%j"})");
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  }
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

// Helpers shared by the fleet tests (fleet_test.cpp, fleet_routing_test.cpp,
// fleet_nginx_test.cpp): chat turns over HTTP with an agent's headers, /metrics values, the
// remote tier's part of /health.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "server_process.h"

namespace kvault::testing {

using Headers = std::vector<std::pair<std::string, std::string>>;

// A user message of about `words` words on `topic`.
inline nlohmann::json Conversation(const std::string& topic, int words) {
  std::string s = "Fleet agent on " + topic + ": ";
  for (int i = 0; i < words; ++i) s += topic + std::to_string(i % 13) + " ";
  return nlohmann::json::array({{{"role", "user"}, {"content", s}}});
}

// `messages` followed by the assistant's `answer` and a new user message.
inline nlohmann::json NextTurn(nlohmann::json messages, const std::string& answer, const std::string& user) {
  messages.push_back({{"role", "assistant"}, {"content", answer}});
  messages.push_back({{"role", "user"}, {"content", user}});
  return messages;
}

// POST /v1/chat/completions (greedy); the HTTP status in *status (0: no answer) and the body.
inline nlohmann::json Chat(int port, const Headers& headers, const nlohmann::json& messages, int max_tokens,
                           int* status) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(120));
  const nlohmann::json body = {{"messages", messages}, {"max_tokens", max_tokens}, {"temperature", 0}};
  auto r =
      c.Post("/v1/chat/completions", httplib::Headers(headers.begin(), headers.end()), body.dump(), "application/json");
  *status = r ? r->status : 0;
  if (!r) return nlohmann::json();
  return nlohmann::json::parse(r->body, nullptr, false);
}

inline std::string AnswerText(const nlohmann::json& answer) {
  if (!answer.is_object() || !answer.contains("choices")) return std::string();
  return answer["choices"][0]["message"]["content"].get<std::string>();
}

// The value of the first /metrics sample whose name and labels are `sample`; -1 if none or no answer.
inline double Metric(int port, const std::string& sample) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(std::chrono::milliseconds(500));
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return -1;
  size_t pos = 0;
  while ((pos = r->body.find(sample + " ", pos)) != std::string::npos) {
    if (pos == 0 || r->body[pos - 1] == '\n') return std::stod(r->body.substr(pos + sample.size() + 1));
    pos += sample.size();
  }
  return -1;
}

// /health's kv_store.remote; null without a remote tier.
inline nlohmann::json RemoteOf(const nlohmann::json& health) {
  if (!health.is_object() || !health.contains("kv_store") || !health["kv_store"].contains("remote")) return {};
  return health["kv_store"]["remote"];
}

// Waits (up to 10 s) until the instance is connected to Redis, has written to it and has nothing
// queued for it; returns the last /health.
inline nlohmann::json RemoteWritten(int port) {
  return HealthWhen(
      port,
      [](const nlohmann::json& h) {
        const nlohmann::json r = RemoteOf(h);
        return !r.is_null() && r["state"] == "up" && r["writes"].get<int>() > 0 && r["queued_writes"] == 0;
      },
      std::chrono::seconds(10));
}

}  // namespace kvault::testing

// Helpers shared by the engine tests: run a request to the end and keep what came back.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"

namespace kvault::testing {

struct Output {
  std::string text;
  std::vector<std::string> pieces;  // the text events, as they came
  GenerationEvent done;
  std::optional<GenerationEvent> started;  // streamed requests
  Status error;
};

inline Output Collect(const std::shared_ptr<RequestHandle>& h) {
  Output out;
  while (auto ev = h->events().Pop()) {
    if (ev->kind == GenerationEvent::Kind::kText) {
      out.text += ev->text;
      out.pieces.push_back(ev->text);
    } else if (ev->kind == GenerationEvent::Kind::kDone) {
      out.done = *ev;
    } else if (ev->kind == GenerationEvent::Kind::kStarted) {
      EXPECT_TRUE(out.pieces.empty() && !out.started) << "kStarted comes once, first";
      out.started = *ev;
    } else {
      out.error = ev->status;
    }
  }
  return out;
}

inline common_chat_msg Msg(const std::string& role, const std::string& content) {
  common_chat_msg m;
  m.role = role;
  m.content = content;
  return m;
}

}  // namespace kvault::testing

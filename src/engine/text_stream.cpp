#include "engine/text_stream.h"

#include <algorithm>

#include "core/utf8.h"

namespace kvault {

TextStream::TextStream(std::vector<std::string> stop_sequences) {
  for (auto& s : stop_sequences) {
    if (s.empty()) continue;
    max_stop_len_ = std::max(max_stop_len_, s.size());
    stops_.push_back(std::move(s));
  }
}

std::string TextStream::Push(const std::string& piece) {
  if (stopped()) return {};
  held_ += piece;

  // A complete stop sequence anywhere in the held text: cut at the earliest one.
  size_t best = std::string::npos;
  for (const auto& s : stops_) {
    const size_t at = held_.find(s);
    if (at != std::string::npos && at < best) {
      best = at;
      matched_ = s;
    }
  }
  if (best != std::string::npos) {
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }

  // Hold back the longest suffix that is a proper prefix of some stop sequence.
  size_t keep = 0;
  for (const auto& s : stops_) {
    const size_t max_k = std::min(s.size() - 1, held_.size());
    for (size_t k = max_k; k > keep; --k) {
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
    }
  }
  size_t send = held_.size() - keep;
  // And never end inside a UTF-8 character.
  send = Utf8CompletePrefix(std::string_view(held_).substr(0, send));
  std::string out = held_.substr(0, send);
  held_.erase(0, send);
  return out;
}

std::string TextStream::Flush() {
  if (stopped()) return {};
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace kvault

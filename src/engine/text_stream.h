// TextStream: turns a sequence's detokenized pieces into text that is safe to send.
//
// Two rules, both required by every streaming API: never send half a UTF-8 character, and never
// send any part of a stop sequence (text that may still turn out to be the start of one is held
// back until it cannot). Owned by one engine-side sequence; not thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kvault {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop_sequences = {});

  // Adds a token's bytes; returns the text that can be sent now (possibly empty).
  // After a stop sequence matched, returns the text before it and stopped() becomes true;
  // later calls return nothing.
  std::string Push(const std::string& piece);

  // At the end of generation: whatever was held back (an unfinished UTF-8 character is sent
  // as is; JSON serialisation replaces it). Empty after a stop.
  std::string Flush();

  bool stopped() const { return matched_.has_value(); }
  // The stop sequence that ended the text, if any.
  const std::optional<std::string>& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  size_t max_stop_len_ = 0;
  std::string held_;  // received, not yet sent
  std::optional<std::string> matched_;
};

}  // namespace kvault

// Log-probabilities of generated tokens (OpenAI `logprobs` / `top_logprobs`): the numbers from
// one logits row, and the bookkeeping that hands each token's entry out with the text event that
// completes its text. Pure code, no llama objects; the engine thread uses it for requests that
// asked for logprobs only (GenerateRequest::top_logprobs >= 0), so the default path costs nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "engine/request.h"

namespace kvault {

// The most alternatives a request may ask for (OpenAI's limit).
inline constexpr int32_t kMaxTopLogprobs = 20;

// `token`'s log-probability under the softmax of `logits` (n_vocab raw scores), and the `n_top`
// most likely token ids with theirs, most likely first (ties: lower id first). Computed in
// double precision; one pass over the row plus a partial selection of n_top.
struct TokenDistribution {
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;
};
TokenDistribution LogSoftmaxAt(const float* logits, int32_t n_vocab, int32_t token, int32_t n_top);

// The entries of a sequence's tokens, waiting for the text that carries them. The engine's text
// lags its tokens (TextStream holds back half UTF-8 characters and possible stop sequences), so
// an entry goes out with the event whose text reaches the end of the token's bytes; what is
// left at the end goes with the last event (all of it, or — when a stop sequence cut the text —
// the tokens whose text starts before the cut, as llama-server drops the stop string's tokens).
class LogprobQueue {
 public:
  // A token whose `piece_bytes` bytes were just pushed to the sequence's TextStream.
  void Add(TokenLogprob entry, size_t piece_bytes);
  // `bytes` more bytes of text were sent (or kept for the final event); returns the entries whose
  // text is now complete, in order.
  std::vector<TokenLogprob> Sent(size_t bytes);
  // At the end: every entry left (`cut` = false) or only those whose text starts before the end
  // of the text sent (`cut` = true: a stop sequence ended the text).
  std::vector<TokenLogprob> Rest(bool cut);

 private:
  struct Pending {
    TokenLogprob entry;
    size_t begin = 0;
    size_t end = 0;
  };
  std::deque<Pending> pending_;
  size_t pushed_ = 0;  // bytes of all tokens added
  size_t sent_ = 0;    // bytes of text sent
};

}  // namespace kvault

// What the engine sends back on a request's RequestHandle: the stream's start, text (whole for
// non-streamed requests), log-probabilities with the text that completes their tokens, the final
// kDone event with its counts and timings, or one kError. The rules of GenerationEvent
// (engine/request.h) are kept here, in one place.
//
// Engine thread only (the handle's channel is the thread-safe part).
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "engine/request.h"
#include "engine/request_state.h"

namespace kvault {

// One kError event, and the channel closed.
void SendError(const std::shared_ptr<RequestHandle>& handle, Status status);

// The prompt's counts (prompt, cached by tier, kept), known from admission on.
void FillPromptCounts(const RequestState& r, GenerationEvent& ev);

// kStarted for a streamed request (sent at admission, before its prompt is computed).
void EmitStarted(RequestState& r);

// Text ready to send (with the log-probabilities of the tokens it completes): an event for a
// streamed request, kept until the end for the others.
void EmitText(RequestState& r, std::string text);

// The request ends: what its text stream held back and what a non-streamed request kept go out
// (not for a cancelled one); returns the kDone event, for the caller to deliver (at once, or once
// the request's blocks are durable) with DeliverDone.
GenerationEvent EndOutput(RequestState& r, FinishReason reason);
void DeliverDone(const std::shared_ptr<RequestHandle>& handle, GenerationEvent done);

}  // namespace kvault

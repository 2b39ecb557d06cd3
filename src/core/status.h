// Status and StatusOr: how kvault reports recoverable errors without exceptions.
//
// Modelled on LevelDB's Status. Every layer returns Status (or StatusOr<T>) for failures a
// caller can act on; the API layer maps codes to HTTP statuses and error envelopes, the CLI maps
// them to exit codes. Cheap to copy when ok.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace kvault {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // the caller's input is wrong (HTTP 400)
    kNotFound,         // a named thing does not exist (HTTP 404)
    kUnauthenticated,  // no or a wrong API key (HTTP 401)
    kPermissionDenied, // the key may not do this (HTTP 403)
    kIOError,          // the file system failed
    kCorruption,       // data exists but is malformed (not GGUF, bad checksum)
    kUnavailable,      // temporarily cannot serve (loading, draining) (HTTP 503)
    kOverloaded,       // queue full; retry later (HTTP 429)
    kTooLarge,         // request exceeds a limit (HTTP 413 / 400)
    kContextLength,    // the prompt does not fit the model's context (HTTP 400, OpenAI context_length_exceeded)
    kInternal,         // a bug or an engine failure (HTTP 500)
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return Status(Code::kInvalidArgument, std::move(m)); }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status Unauthenticated(std::string m) { return Status(Code::kUnauthenticated, std::move(m)); }
  static Status PermissionDenied(std::string m) { return Status(Code::kPermissionDenied, std::move(m)); }
  static Status IOError(std::string m) { return Status(Code::kIOError, std::move(m)); }
  static Status Corruption(std::string m) { return Status(Code::kCorruption, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status Overloaded(std::string m) { return Status(Code::kOverloaded, std::move(m)); }
  static Status TooLarge(std::string m) { return Status(Code::kTooLarge, std::move(m)); }
  static Status ContextLength(std::string m) { return Status(Code::kContextLength, std::move(m)); }
  static Status Internal(std::string m) { return Status(Code::kInternal, std::move(m)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: message", or "OK".
  std::string ToString() const;

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

const char* StatusCodeName(Status::Code code);

// Either a value or a non-ok Status.
template <typename T>
class StatusOr {
 public:
  StatusOr(Status s) : status_(std::move(s)) {}  // NOLINT: implicit by design
  StatusOr(T v) : value_(std::move(v)) {}        // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace kvault

// The error type of every layer below the front ends. Each front end converts an Error
// to its own form exactly once (HTTP status, gRPC status, CLI exit code).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace outpost {

enum class ErrorCode {
  kInvalidArgument,     // the caller sent something malformed or inconsistent
  kNotFound,            // unknown model, version or tensor
  kUnavailable,         // exists but cannot serve now (loading, draining, shutting down)
  kResourceExhausted,   // a bounded queue or limit is full: retry later
  kDeadlineExceeded,    // the request's time budget ran out
  kPayloadTooLarge,     // over a configured size limit
  kFailedPrecondition,  // the server's state does not allow it
  kPermissionDenied,    // not signed by enough trusted keys, or not what was signed
  kUnauthenticated,     // the caller could not be identified (no valid credentials)
  kInternal,            // a bug or a runtime failure that is not the caller's fault
};

std::string_view ErrorCodeName(ErrorCode code);
// The HTTP status every HTTP front end answers an Error with.
int HttpStatusOf(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void Fail(ErrorCode code, const std::string& message) {
  throw Error(code, message);
}

}  // namespace outpost

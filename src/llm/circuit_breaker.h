// Stops calling a failing cloud for a while: closed (calls flow) -> `failures` consecutive
// failures -> open (calls refused for `cooldown`) -> half-open (one trial call) -> closed on
// success, open again on failure.
#pragma once

#include <chrono>
#include <mutex>
#include <string_view>

namespace outpost {

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };
  using Clock = std::chrono::steady_clock;

  CircuitBreaker(int failures, std::chrono::milliseconds cooldown)
      : threshold_(failures), cooldown_(cooldown) {}

  // True when a call may go out now; in half-open, only the first caller gets true until
  // that trial reports back.
  bool Allow();
  // Whether a call could go out now, without claiming the half-open trial (for routing).
  bool WouldAllow();
  void Success();
  void Failure();
  State state();

 private:
  void Advance();  // under mu_: open -> half-open once the cooldown is over
  std::mutex mu_;
  int threshold_;
  std::chrono::milliseconds cooldown_;
  State state_ = State::kClosed;
  int consecutive_ = 0;
  bool trial_out_ = false;
  Clock::time_point opened_{};
};

std::string_view BreakerStateName(CircuitBreaker::State s);

}  // namespace outpost

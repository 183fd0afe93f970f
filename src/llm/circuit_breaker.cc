#include "llm/circuit_breaker.h"

namespace outpost {

void CircuitBreaker::Advance() {
  if (state_ == State::kOpen && Clock::now() - opened_ >= cooldown_) {
    state_ = State::kHalfOpen;
    trial_out_ = false;
  }
}

bool CircuitBreaker::Allow() {
  std::lock_guard lock(mu_);
  Advance();
  if (state_ == State::kClosed) return true;
  if (state_ == State::kHalfOpen && !trial_out_) {
    trial_out_ = true;
    return true;
  }
  return false;
}

bool CircuitBreaker::WouldAllow() {
  std::lock_guard lock(mu_);
  Advance();
  return state_ == State::kClosed || (state_ == State::kHalfOpen && !trial_out_);
}

void CircuitBreaker::Success() {
  std::lock_guard lock(mu_);
  state_ = State::kClosed;
  consecutive_ = 0;
  trial_out_ = false;
}

void CircuitBreaker::Failure() {
  std::lock_guard lock(mu_);
  ++consecutive_;
  if (state_ == State::kHalfOpen || consecutive_ >= threshold_) {
    state_ = State::kOpen;
    opened_ = Clock::now();
    trial_out_ = false;
  }
}

CircuitBreaker::State CircuitBreaker::state() {
  std::lock_guard lock(mu_);
  Advance();
  return state_;
}

std::string_view BreakerStateName(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::kClosed:
      return "closed";
    case CircuitBreaker::State::kOpen:
      return "open";
    case CircuitBreaker::State::kHalfOpen:
      return "half_open";
  }
  return "?";
}

}  // namespace outpost

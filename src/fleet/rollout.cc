#include "fleet/rollout.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "package/sha256.h"

namespace outpost::fleet {

std::string_view RolloutStateName(RolloutState state) {
  switch (state) {
    case RolloutState::kRunning:
      return "running";
    case RolloutState::kPaused:
      return "paused";
    case RolloutState::kCompleted:
      return "completed";
    case RolloutState::kRolledBack:
      return "rolled_back";
    case RolloutState::kAborted:
      return "aborted";
  }
  return "unknown";
}

std::optional<RolloutState> ParseRolloutState(std::string_view name) {
  for (auto s : {RolloutState::kRunning, RolloutState::kPaused, RolloutState::kCompleted,
                 RolloutState::kRolledBack, RolloutState::kAborted})
    if (RolloutStateName(s) == name) return s;
  return std::nullopt;
}

std::string_view RolloutEventName(RolloutEvent event) {
  switch (event) {
    case RolloutEvent::kPause:
      return "pause";
    case RolloutEvent::kResume:
      return "resume";
    case RolloutEvent::kPromote:
      return "promote";
    case RolloutEvent::kAdvance:
      return "advance";
    case RolloutEvent::kHalt:
      return "halt";
    case RolloutEvent::kAbort:
      return "abort";
  }
  return "unknown";
}

bool IsActive(RolloutState state) {
  return state == RolloutState::kRunning || state == RolloutState::kPaused;
}

RolloutState NextRolloutState(RolloutState state, RolloutEvent event, bool last_wave) {
  using S = RolloutState;
  using E = RolloutEvent;
  switch (state) {
    case S::kRunning:
      switch (event) {
        case E::kPause:
          return S::kPaused;
        case E::kPromote:
        case E::kAdvance:
          return last_wave ? S::kCompleted : S::kRunning;
        case E::kHalt:
          return S::kRolledBack;
        case E::kAbort:
          return S::kAborted;
        case E::kResume:
          break;
      }
      break;
    case S::kPaused:
      switch (event) {
        case E::kResume:
          return S::kRunning;
        case E::kPromote:  // an operator may move a paused rollout on; it stays paused
          return last_wave ? S::kCompleted : S::kPaused;
        case E::kHalt:  // failures count while paused too
          return S::kRolledBack;
        case E::kAbort:
          return S::kAborted;
        case E::kPause:
        case E::kAdvance:
          break;
      }
      break;
    case S::kCompleted:
    case S::kRolledBack:
    case S::kAborted:
      break;
  }
  Fail(ErrorCode::kFailedPrecondition, "a " + std::string(RolloutStateName(state)) +
                                           " rollout cannot " +
                                           std::string(RolloutEventName(event)));
}

int64_t RolloutKey(const std::string& deployment, const std::string& device_id) {
  const std::string h = Sha256Hex(deployment + "\n" + device_id);
  return static_cast<int64_t>(std::stoull(h.substr(0, 16), nullptr, 16) >> 1);
}

int64_t WaveBound(std::vector<int64_t> keys, double percent) {
  if (percent >= 100) return std::numeric_limits<int64_t>::max();
  if (keys.empty()) return 0;
  // ceil(), forgiving the last bits of a percentage like 10 that binary cannot hold exactly.
  const double exact = percent * static_cast<double>(keys.size()) / 100.0;
  size_t count = static_cast<size_t>(std::ceil(exact - 1e-9));
  count = std::clamp<size_t>(count, 1, keys.size());
  std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(count - 1), keys.end());
  const int64_t last = keys[count - 1];
  return last == std::numeric_limits<int64_t>::max() ? last : last + 1;
}

}  // namespace outpost::fleet

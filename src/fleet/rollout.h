// A staged rollout's rules, apart from storage: its states and the one function that moves
// between them, and which devices each wave admits.
//
// Waves are counts, not hash thresholds: the devices a rollout selects are put in a stable
// order (a hash of deployment and device), and wave w admits the first ceil(p_w × n / 100) of
// them, at least one while any device is selected. A canary is never empty while the fleet is
// not, however small the fleet. The admission is a bound on the order's keys that only ever
// rises, so a device admitted once stays admitted when devices enroll later.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::fleet {

enum class RolloutState { kRunning, kPaused, kCompleted, kRolledBack, kAborted };

enum class RolloutEvent {
  kPause,    // an operator
  kResume,   // an operator
  kPromote,  // an operator: to the next wave, or completed past the last
  kAdvance,  // the controller: the wave passed; to the next wave, or completed past the last
  kHalt,     // the controller: too many failures; every device goes back
  kAbort,    // an operator
};

std::string_view RolloutStateName(RolloutState state);
std::optional<RolloutState> ParseRolloutState(std::string_view name);
std::string_view RolloutEventName(RolloutEvent event);  // as steps and audit entries say it
bool IsActive(RolloutState state);                      // running or paused

// The legal moves, in one place: the state after `event` in `state` (`last_wave`: the rollout
// is in its last wave). Throws Error(kFailedPrecondition) for any other move.
RolloutState NextRolloutState(RolloutState state, RolloutEvent event, bool last_wave);

// A device's place in a rollout's order: a stable hash of deployment and device, 0..2^63-1.
int64_t RolloutKey(const std::string& deployment, const std::string& device_id);

// The bound (devices with key < bound are admitted) of a wave of `percent` over the selected
// devices' `keys`: the smallest that admits ceil(percent × n / 100) of them, at least one while
// n > 0; 0 for no devices. The last wave (100 %) admits every key there will ever be.
int64_t WaveBound(std::vector<int64_t> keys, double percent);

}  // namespace outpost::fleet

// The A/B slot record of one updatable thing: which installed version is committed, which one
// is on trial, which one was committed before (kept for rollback and as a delta base), and
// which versions failed their trial. For a model it lives in <repository>/<model>/.slots.json
// (the committed version serves requests that name no version; a model without a record
// serves its highest ready version); for the agent itself, in <agent slots>/outpostd/.
// Written atomically.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace outpost {

inline constexpr const char* kSlotsFile = ".slots.json";

// The agent's slots are written by outpost-supervisor alone. An agent that has fetched and
// verified a new build of itself leaves the package here, in a directory of the agent's own
// inside the slots, and exits; the supervisor takes it from there (verifies it again, installs
// it, and starts its trial).
inline std::filesystem::path AgentHandoffDir(const std::filesystem::path& agent_slots) {
  return agent_slots / ".incoming";
}
inline std::filesystem::path AgentHandoffPackage(const std::filesystem::path& agent_slots) {
  return AgentHandoffDir(agent_slots) / "outpostd.opkg";
}

struct SlotState {
  std::string committed;
  std::string previous;
  std::string trial;
  int trial_attempts = 0;  // trials of `trial` that a crash or restart interrupted
  std::vector<std::string> failed;
  std::string last_failure;  // why the last trial was rolled back

  bool HasFailed(const std::string& version) const;
};

// nullopt when the model has no slot record. Throws Error(kInvalidArgument) for a corrupt one.
std::optional<SlotState> ReadSlots(const std::filesystem::path& model_dir);
void WriteSlots(const std::filesystem::path& model_dir, const SlotState& state);

}  // namespace outpost

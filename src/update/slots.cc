#include "update/slots.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace outpost {

bool SlotState::HasFailed(const std::string& version) const {
  return std::find(failed.begin(), failed.end(), version) != failed.end();
}

std::optional<SlotState> ReadSlots(const std::filesystem::path& model_dir) {
  std::filesystem::path path = model_dir / kSlotsFile;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  auto j = nlohmann::json::parse(ReadFile(path), nullptr, false);
  SlotState s;
  try {
    if (j.is_discarded() || !j.is_object()) throw nlohmann::json::other_error::create(0, "", &j);
    s.committed = j.value("committed", "");
    s.previous = j.value("previous", "");
    s.trial = j.value("trial", "");
    s.trial_attempts = j.value("trial_attempts", 0);
    s.failed = j.value("failed", std::vector<std::string>{});
    s.last_failure = j.value("last_failure", "");
  } catch (const nlohmann::json::exception&) {
    Fail(ErrorCode::kInvalidArgument, path.string() + " is not a valid slot record");
  }
  return s;
}

void WriteSlots(const std::filesystem::path& model_dir, const SlotState& s) {
  nlohmann::json j = {{"committed", s.committed}, {"previous", s.previous},
                      {"trial", s.trial},         {"trial_attempts", s.trial_attempts},
                      {"failed", s.failed},       {"last_failure", s.last_failure}};
  WriteFileAtomically(model_dir / kSlotsFile, j.dump(2) + "\n");
}

}  // namespace outpost

// Measured launch: what the agent runs (its own build, each package it loads) is hashed into an
// application PCR before it is used, and written to an event log first. Replaying the log gives
// the value the PCR must hold; a TPM quote over that PCR then proves to the fleet what this
// device runs, and a log that was edited, cut short or taken from another device does not
// replay to the quoted value.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tpm/tpm.h"

namespace outpost::tpm {

using Sha256 = std::array<uint8_t, 32>;

struct MeasurementEvent {
  unsigned pcr = 0;
  Sha256 digest{};
  std::string description;  // "agent /usr/lib/outpost/outpostd", "package vad 1.2.0", …
};

// PCR 23 is the application PCR of the PC client profile; resettable only at locality 0 by
// the platform, so the log starts anew when it is found reset (a reboot).
constexpr unsigned kApplicationPcr = 23;

class MeasurementLog {
 public:
  explicit MeasurementLog(std::filesystem::path file) : file_(std::move(file)) {}

  // Logs the event (the file is rewritten atomically) and then extends the PCR: a crash in
  // between leaves a log that claims more than the PCR holds, which fails verification rather
  // than passing something unmeasured.
  void Measure(Tpm& tpm, const MeasurementEvent& event);
  // The events in order. Throws Error(kFailedPrecondition) for a malformed log.
  std::vector<MeasurementEvent> Events() const;
  // Starts the log over when the PCR is at its reset value (all zeros): the first measurement
  // after a boot.
  void StartIfReset(Tpm& tpm, unsigned pcr = kApplicationPcr);

 private:
  std::filesystem::path file_;
};

// The value `pcr` holds after `events` from reset: PCR := SHA-256(PCR || digest).
Sha256 Replay(const std::vector<MeasurementEvent>& events, unsigned pcr = kApplicationPcr);
Sha256 ReadPcr(Tpm& tpm, unsigned pcr = kApplicationPcr);
Sha256 Sha256Of(const std::filesystem::path& file);

}  // namespace outpost::tpm

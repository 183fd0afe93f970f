// What the platform under the agent does for its integrity: UEFI Secure Boot, the kernel's
// lockdown mode, and whether a TPM answers. Shown by `outpost info` and sent with the device's
// capabilities to the fleet, so an operator sees which devices can be attested at all.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace outpost::tpm {

struct PlatformSecurity {
  // "enabled", "disabled", "setup mode" (keys not enrolled: anything boots), "not UEFI"
  // (no efivars: legacy BIOS, a container, or efivarfs not mounted) or "unknown" (unreadable).
  std::string secure_boot;
  // The kernel's lockdown: "none", "integrity", "confidentiality", or "not available".
  std::string lockdown;
  bool tpm_present = false;
  std::string tpm_manufacturer;  // when it answered
  std::string tpm_tcti;          // how it was reached
  std::string tpm_error;         // why a TPM that exists did not answer (permissions, busy)
};

struct PlatformPaths {
  std::filesystem::path efivars = "/sys/firmware/efi/efivars";
  std::filesystem::path lockdown = "/sys/kernel/security/lockdown";
};

PlatformSecurity ReadPlatformSecurity(const PlatformPaths& paths = {});
nlohmann::json ToJson(const PlatformSecurity& s);

}  // namespace outpost::tpm

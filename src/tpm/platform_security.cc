#include "tpm/platform_security.h"

#include <fstream>
#include <iterator>
#include <optional>

#include "tpm/tpm.h"

namespace outpost::tpm {
namespace {

constexpr const char* kGlobalVariableGuid = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

// A boolean UEFI variable: four bytes of attributes, then the value. Nothing when absent.
std::optional<bool> EfiFlag(const std::filesystem::path& efivars, const std::string& name) {
  std::ifstream in(efivars / (name + "-" + kGlobalVariableGuid), std::ios::binary);
  if (!in) return std::nullopt;
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 5) return std::nullopt;
  return bytes[4] != 0;
}

std::string SecureBootState(const std::filesystem::path& efivars) {
  std::error_code ec;
  if (!std::filesystem::is_directory(efivars, ec)) return "not UEFI";
  const auto enabled = EfiFlag(efivars, "SecureBoot");
  if (!enabled) return "unknown";
  if (EfiFlag(efivars, "SetupMode").value_or(false)) return "setup mode";
  return *enabled ? "enabled" : "disabled";
}

// "none [integrity] confidentiality": the bracketed word is the mode in force.
std::string LockdownMode(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line)) return "not available";
  const auto open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return "not available";
  return line.substr(open + 1, close - open - 1);
}

}  // namespace

PlatformSecurity ReadPlatformSecurity(const PlatformPaths& paths) {
  PlatformSecurity s;
  s.secure_boot = SecureBootState(paths.efivars);
  s.lockdown = LockdownMode(paths.lockdown);
  if (auto tcti = Tpm::DefaultTcti()) {
    s.tpm_tcti = *tcti;
    try {
      auto tpm = Tpm::Open(*tcti);
      s.tpm_manufacturer = tpm->Info().manufacturer;
      s.tpm_present = true;
    } catch (const std::exception& e) {
      s.tpm_error = e.what();
    }
  }
  return s;
}

nlohmann::json ToJson(const PlatformSecurity& s) {
  nlohmann::json tpm = {{"present", s.tpm_present}};
  if (!s.tpm_manufacturer.empty()) tpm["manufacturer"] = s.tpm_manufacturer;
  if (!s.tpm_tcti.empty()) tpm["tcti"] = s.tpm_tcti;
  if (!s.tpm_error.empty()) tpm["error"] = s.tpm_error;
  return {{"secure_boot", s.secure_boot}, {"lockdown", s.lockdown}, {"tpm", tpm}};
}

}  // namespace outpost::tpm

// The device's identity key, made by the TPM and never leaving it: an ECDSA P-256 signing key
// under the storage hierarchy's primary key (the SRK). What is kept on disk is the TPM's own
// wrapping of it, which only the TPM that made it can load: a copied file is useless elsewhere,
// and a cleared TPM makes it useless here.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "tpm/tpm.h"

namespace outpost::tpm {

class DeviceKey {
 public:
  // Loads the key kept in `file`, or, when there is none, has the TPM make one and keeps its
  // wrapped form there (0600, written atomically). A file this TPM cannot load (another TPM's,
  // a cleared TPM, a damaged file) is an error, never silently replaced: the key is the device's
  // identity.
  static DeviceKey LoadOrCreate(Tpm& tpm, const std::filesystem::path& file);

  DeviceKey(DeviceKey&& other) noexcept;
  DeviceKey& operator=(DeviceKey&&) = delete;
  ~DeviceKey();

  // The public key as DER SubjectPublicKeyInfo, what OpenSSL and the fleet server read.
  const std::string& public_key_der() const { return public_der_; }
  // ECDSA over SHA-256(message), DER-encoded (r, s), as OpenSSL verifies it.
  std::string Sign(std::string_view message) const;

 private:
  DeviceKey(Tpm& tpm, uint32_t srk, uint32_t key, bool srk_transient, std::string public_der)
      : tpm_(&tpm),
        srk_(srk),
        key_(key),
        srk_transient_(srk_transient),
        public_der_(std::move(public_der)) {}
  Tpm* tpm_;
  uint32_t srk_;  // ESYS_TR handles
  uint32_t key_;
  bool srk_transient_;
  std::string public_der_;
};

}  // namespace outpost::tpm

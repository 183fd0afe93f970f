// Credentials on the device (the cloud LLM's API key and the like), encrypted at rest so that
// they never sit in a config file, a backup of one, or a log. Layout of the store directory
// (0700): the store's key, and NAME.secret (0600) = a 24-byte nonce then the
// XChaCha20-Poly1305 ciphertext of the value, with the secret's name as associated data, so a
// file renamed to another secret's name does not decrypt.
//
// With a TPM the key is sealed by it (store.key.tpm): a copy of the directory, or the same
// files on another machine, decrypts nothing. A store made without one keeps the key in
// store.key (32 random bytes, 0600), which protects against copies of the ciphertexts alone
// (backups, support bundles), not against a copy of the whole directory; it is sealed, and the
// plain key file overwritten and removed, the first time the store is opened with a TPM.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace outpost {

// A secret value in memory: wiped when it goes.
class SecretValue {
 public:
  explicit SecretValue(std::string value) : value_(std::move(value)) {}
  ~SecretValue();
  SecretValue(const SecretValue&) = delete;
  SecretValue& operator=(const SecretValue&) = delete;
  SecretValue(SecretValue&& other) noexcept;
  const std::string& reveal() const { return value_; }

 private:
  std::string value_;
};

class SecretStore {
 public:
  // Opens (creating, when `create`) the store. Throws Error(kFailedPrecondition) when the key
  // file or the directory is open to group or others, Error(kNotFound) without one.
  // Uses the machine's TPM when there is one (tpm::Tpm::DefaultTcti).
  explicit SecretStore(std::filesystem::path dir, bool create = false);
  // `tcti`: the TPM to seal the key with; none keeps it in a file. A store whose key is sealed
  // cannot be opened without its TPM (Error(kFailedPrecondition)).
  SecretStore(std::filesystem::path dir, bool create, const std::optional<std::string>& tcti);
  ~SecretStore();
  SecretStore(const SecretStore&) = delete;
  SecretStore& operator=(const SecretStore&) = delete;

  void Set(const std::string& name, const std::string& value);
  // Throws Error(kNotFound) for an unknown name, Error(kPermissionDenied) when the file does
  // not decrypt (tampered, renamed, or another store's key).
  SecretValue Get(const std::string& name) const;
  bool Remove(const std::string& name);
  std::vector<std::string> List() const;

 private:
  std::filesystem::path PathOf(const std::string& name) const;
  std::filesystem::path dir_;
  // In libsodium's guarded memory: locked (never swapped), left out of core dumps
  // (MADV_DONTDUMP), and read-only between uses.
  unsigned char* key_ = nullptr;
};

}  // namespace outpost

// Credentials on the device (the cloud LLM's API key and the like), encrypted at rest so that
// they never sit in a config file, a backup of one, or a log. Layout of the store directory
// (0700): store.key (32 random bytes, 0600) and NAME.secret (0600) = a 24-byte nonce then the
// XChaCha20-Poly1305 ciphertext of the value, with the secret's name as associated data, so a
// file renamed to another secret's name does not decrypt. The key beside the ciphertexts
// protects against copies of the files without the key (backups, support bundles), not
// against root on the device; a TPM-sealed key is the upgrade path.
#pragma once

#include <filesystem>
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
  explicit SecretStore(std::filesystem::path dir, bool create = false);
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

// A repository's key for signing TUF metadata: Ed25519 (what `outpost key generate` makes, the
// kind that also signs packages) or ECDSA P-256 (`outpost key generate --type ecdsa`, for
// repositories whose policy asks for NIST curves, as sigstore's and tuf-on-ci's do; TUF metadata
// only). Its key object and id are written as python-tuf writes them, so either implementation
// reads the other's repositories.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "package/keys.h"

namespace outpost::tuf {

inline constexpr const char* kEcdsaP256 = "ecdsa-sha2-nistp256";

class Signer {
 public:
  static Signer FromEd25519(const SigningKey& key);
  static Signer GenerateEcdsa(const std::string& name);
  // NAME.key of either kind. Throws Error(kInvalidArgument) for a malformed file,
  // Error(kFailedPrecondition) when it may be read by others.
  static Signer Load(const std::filesystem::path& key_file);
  // Writes NAME.key (0600, atomically) and NAME.pub; refuses to overwrite a key.
  void Save(const std::filesystem::path& key_path, const std::filesystem::path& pub_path) const;

  const nlohmann::json& key_json() const { return key_json_; }  // {"keytype", "scheme", "keyval"}
  const std::string& keyid() const { return keyid_; }  // sha256 of the key object's canonical form
  std::string Sign(std::string_view message) const;    // raw signature bytes

 private:
  struct Ecdsa;
  std::string name_;
  nlohmann::json key_json_;
  std::string keyid_;
  std::shared_ptr<const SigningKey> ed25519_;
  std::shared_ptr<Ecdsa> ecdsa_;
};

// The TUF key object and id of a key file, public (NAME.pub) or secret (NAME.key), of either
// kind: what a root or a delegation lists for it.
std::pair<std::string, nlohmann::json> LoadTufPublicKey(const std::filesystem::path& path);

// A signed envelope {"signed": ..., "signatures": [{"keyid", "sig"}]} over `signed_part`.
nlohmann::json SignEnvelope(const nlohmann::json& signed_part,
                            const std::vector<const Signer*>& signers);

}  // namespace outpost::tuf

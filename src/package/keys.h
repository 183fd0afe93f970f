// Ed25519 signing keys and the trust file that says whose signatures count.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace outpost {

struct PublicKey {
  std::string keyid;       // hex SHA-256 of the 32-byte public key
  std::string public_key;  // 32 raw bytes
  std::string name;
};

struct SigningKey {
  PublicKey pub;
  std::string secret_key;  // 64 raw bytes (libsodium's seed + public key form)
};

SigningKey GenerateSigningKey(const std::string& name);
// Writes NAME.key (mode 0600, atomically) and NAME.pub; refuses to overwrite an existing key.
void SaveSigningKey(const SigningKey& key, const std::filesystem::path& key_path,
                    const std::filesystem::path& pub_path);
SigningKey LoadSigningKey(const std::filesystem::path& path);
PublicKey LoadPublicKey(const std::filesystem::path& path);

// Who may sign: trusted keys, how many distinct ones a package needs, and revoked key ids.
struct TrustPolicy {
  int threshold = 1;
  std::vector<PublicKey> keys;
  std::vector<std::string> revoked;
};

// The trust file: {"threshold": N, "keys": [{"keyid", "public", "name"}], "revoked": [keyid, ...]}.
// Throws Error(kInvalidArgument) for a malformed file, a key whose id does not match it, or a
// threshold that the non-revoked keys cannot reach.
TrustPolicy LoadTrustPolicy(const std::filesystem::path& path);
TrustPolicy ParseTrustPolicy(const std::string& text);

std::string Sign(const SigningKey& key, std::string_view message);  // 64-byte signature
bool VerifySignature(const PublicKey& key, std::string_view message, std::string_view signature);

std::string ToHex(std::string_view bytes);
// Throws Error(kInvalidArgument) naming `what` for bad hex.
std::string FromHex(std::string_view hex, const std::string& what);

}  // namespace outpost

#include "package/keys.h"

#include <sodium.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "core/json_input.h"
#include "package/sha256.h"

namespace outpost {
namespace {

using json = nlohmann::json;

void InitSodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) Fail(ErrorCode::kInternal, "libsodium failed to initialise");
}

std::string KeyId(std::string_view public_key) { return Sha256Hex(public_key); }

json ReadJson(const std::filesystem::path& path, const char* what) {
  json j = ParseJson(ReadFile(path), JsonLimits::Document(1u << 20), path.string());
  if (!j.is_object()) Fail(ErrorCode::kInvalidArgument, path.string() + ": not a valid " + what);
  return j;
}

PublicKey PublicFromJson(const json& j, const std::string& where, const std::string& path = {}) {
  const JsonFields f(j, where, path);
  if (const std::string type = f.Get("type", "ed25519"); type != "ed25519")
    Fail(ErrorCode::kInvalidArgument,
         where + ": a " + type +
             " key signs TUF metadata only; packages are signed with ed25519 keys");
  PublicKey k;
  k.public_key = FromHex(f.Require<std::string>("public"), where + " public key");
  if (k.public_key.size() != crypto_sign_PUBLICKEYBYTES)
    Fail(ErrorCode::kInvalidArgument, where + ": public key is not 32 bytes");
  k.keyid = KeyId(k.public_key);
  if (auto id = f.Optional<std::string>("keyid"); id && *id != k.keyid)
    Fail(ErrorCode::kInvalidArgument, where + ": keyid does not match the public key");
  k.name = f.Get("name", "");
  return k;
}

}  // namespace

std::string ToHex(std::string_view bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string FromHex(std::string_view hex, const std::string& what) {
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    Fail(ErrorCode::kInvalidArgument, what + " is not lowercase hex");
  };
  if (hex.size() % 2) Fail(ErrorCode::kInvalidArgument, what + " has an odd number of hex digits");
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>(nibble(hex[2 * i]) * 16 + nibble(hex[2 * i + 1]));
  return out;
}

SigningKey GenerateSigningKey(const std::string& name) {
  InitSodium();
  SigningKey k;
  k.pub.public_key.resize(crypto_sign_PUBLICKEYBYTES);
  k.secret_key.resize(crypto_sign_SECRETKEYBYTES);
  crypto_sign_keypair(reinterpret_cast<unsigned char*>(k.pub.public_key.data()),
                      reinterpret_cast<unsigned char*>(k.secret_key.data()));
  k.pub.keyid = KeyId(k.pub.public_key);
  k.pub.name = name;
  return k;
}

void SaveSigningKey(const SigningKey& key, const std::filesystem::path& key_path,
                    const std::filesystem::path& pub_path) {
  for (const auto& p : {key_path, pub_path}) {
    if (std::filesystem::exists(p))
      Fail(ErrorCode::kFailedPrecondition, p.string() + " exists; not overwriting a key");
  }
  json pub = {{"type", "ed25519"},
              {"keyid", key.pub.keyid},
              {"public", ToHex(key.pub.public_key)},
              {"name", key.pub.name}};
  json secret = pub;
  secret["secret"] = ToHex(key.secret_key);
  WriteFileAtomically(key_path, secret.dump(2) + "\n", 0600);
  WriteFileAtomically(pub_path, pub.dump(2) + "\n", 0644);
}

SigningKey LoadSigningKey(const std::filesystem::path& path) {
  RequirePrivateFile(path);
  json j = ReadJson(path, "signing key");
  SigningKey k;
  k.pub = PublicFromJson(j, path.string());
  k.secret_key = FromHex(JsonFields(j, path.string()).Require<std::string>("secret"),
                         path.string() + " secret key");
  if (k.secret_key.size() != crypto_sign_SECRETKEYBYTES ||
      k.secret_key.substr(32) != k.pub.public_key) {
    Fail(ErrorCode::kInvalidArgument,
         path.string() + ": secret key does not belong to its public key");
  }
  return k;
}

PublicKey LoadPublicKey(const std::filesystem::path& path) {
  return PublicFromJson(ReadJson(path, "public key"), path.string());
}

TrustPolicy ParseTrustPolicy(const std::string& text) {
  const json j = ParseJson(text, JsonLimits::Document(1u << 20), "trust file");
  const JsonFields f(j, "trust file");
  TrustPolicy t;
  t.threshold = static_cast<int>(f.Integer("threshold", t.threshold, 1, 100));
  const json* keys = f.Find("keys");
  if (!keys || !keys->is_array()) f.Fail("keys", "must be an array");
  for (const auto& k : *keys)
    t.keys.push_back(
        PublicFromJson(k, "trust file", "keys[" + std::to_string(t.keys.size()) + "]"));
  t.revoked = f.Get("revoked", std::vector<std::string>{});
  int usable = 0;
  for (const auto& k : t.keys)
    usable += std::find(t.revoked.begin(), t.revoked.end(), k.keyid) == t.revoked.end();
  if (usable < t.threshold) {
    Fail(ErrorCode::kInvalidArgument, "trust file: threshold " + std::to_string(t.threshold) +
                                          " but only " + std::to_string(usable) +
                                          " trusted keys that are not revoked");
  }
  return t;
}

TrustPolicy LoadTrustPolicy(const std::filesystem::path& path) {
  return ParseTrustPolicy(ReadFile(path));
}

std::string Sign(const SigningKey& key, std::string_view message) {
  InitSodium();
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       reinterpret_cast<const unsigned char*>(key.secret_key.data()));
  return sig;
}

bool VerifySignature(const PublicKey& key, std::string_view message, std::string_view signature) {
  InitSodium();
  if (signature.size() != crypto_sign_BYTES || key.public_key.size() != crypto_sign_PUBLICKEYBYTES)
    return false;
  return crypto_sign_verify_detached(
             reinterpret_cast<const unsigned char*>(signature.data()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(),
             reinterpret_cast<const unsigned char*>(key.public_key.data())) == 0;
}

}  // namespace outpost
